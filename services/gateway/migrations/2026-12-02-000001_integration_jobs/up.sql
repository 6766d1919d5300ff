-- Work done per integration in rounds (polling Magento's orders, importing Amazon Attribution's
-- reports), one mechanism for every such job: how far each job has got for the integration
-- (`progress`, the job's own JSON: the poller's time, the importer's last day) and a lease so
-- that one replica works on an integration at a time.
create table integration_jobs (
    brand_id       bigint not null,
    integration_id bigint not null,
    job            text not null,
    progress       jsonb,
    leased_until   timestamptz,
    primary key (brand_id, integration_id, job),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

insert into integration_jobs (brand_id, integration_id, job, progress, leased_until)
select brand_id, integration_id, 'order_poll', to_jsonb(polled_until), leased_until
from order_polls;

insert into integration_jobs (brand_id, integration_id, job, progress, leased_until)
select brand_id, integration_id, 'amazon_report', to_jsonb(imported_through), leased_until
from amazon_report_imports;

drop table order_polls;
drop table amazon_report_imports;
