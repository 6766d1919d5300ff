-- Amazon Attribution report rows (from WatchOrders) applied to creators' daily figures: per
-- report row (integration, the tag's campaign and creator, day) and campaign credited (several
-- when the plan is shared), what it added to daily_sales. A revised row takes its previous
-- revision's figures out before adding its own, so a re-imported day replaces, never adds.
create table report_sales (
    brand_id                  bigint not null,
    integration_id            bigint not null,
    -- The campaign whose tag the row is for.
    tag_campaign_id           bigint not null,
    creator_id                bigint not null,
    day                       date not null,
    -- The campaign credited.
    campaign_id               bigint not null,
    plan_id                   bigint not null,
    revision                  integer not null,
    currency                  text not null,
    purchases                 bigint not null,
    sales_minor               bigint not null,
    commission_minor          bigint not null,
    commission_currency       text not null,
    -- pending, then approved once Amazon no longer revises the day and the holding period is over.
    status                    text not null,
    -- The commission when it was approved; later revisions are adjustments.
    approved_commission_minor bigint not null default 0,
    approve_on                date not null,
    primary key (brand_id, integration_id, tag_campaign_id, creator_id, day, campaign_id)
);

create index report_sales_due on report_sales (approve_on) where status = 'pending';
