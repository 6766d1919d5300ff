-- Report rows as entries of ListConversions, StreamConversions and the creator's report: each
-- (report row, campaign credited) gets an id from the conversions' sequence, so orders and report
-- days page together newest first and never share an id, the time it last changed, and whether
-- several campaigns share it.
alter table report_sales
    add column id bigint,
    add column updated_at timestamptz not null default now(),
    add column shared boolean not null default false,
    -- False while the row's campaign or its plan is not known here yet: applied with no
    -- commission rule (commission 0, never approved), and priced again once both arrive.
    add column priced boolean not null default true;

update report_sales set id = nextval('conversions_id_seq');

alter table report_sales
    alter column id set not null,
    alter column id set default nextval('conversions_id_seq');

create unique index report_sales_id on report_sales (brand_id, id);
create index report_sales_by_campaign on report_sales (brand_id, campaign_id, creator_id, id);

update report_sales s set shared = true
where exists (
    select 1 from report_sales o
    where o.brand_id = s.brand_id and o.integration_id = s.integration_id
      and o.tag_campaign_id = s.tag_campaign_id and o.creator_id = s.creator_id
      and o.day = s.day and o.campaign_id <> s.campaign_id);

-- Rows applied before this migration whose plan is still unknown are priced once it arrives.
update report_sales s set priced = false
where s.plan_id = 0
   or not exists (select 1 from plans p where p.brand_id = s.brand_id and p.plan_id = s.plan_id);

create index report_sales_unpriced on report_sales (brand_id) where not priced;
