create table order_polls (
    brand_id       bigint not null,
    integration_id bigint not null,
    polled_until   timestamptz not null,
    leased_until   timestamptz,
    primary key (brand_id, integration_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);
create table amazon_report_imports (
    brand_id         bigint not null,
    integration_id   bigint not null,
    imported_through date,
    leased_until     timestamptz,
    primary key (brand_id, integration_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);
insert into order_polls (brand_id, integration_id, polled_until, leased_until)
select brand_id, integration_id, (progress #>> '{}')::timestamptz, leased_until
from integration_jobs where job = 'order_poll' and progress is not null;
insert into amazon_report_imports (brand_id, integration_id, imported_through, leased_until)
select brand_id, integration_id, (progress #>> '{}')::date, leased_until
from integration_jobs where job = 'amazon_report';
drop table integration_jobs;
