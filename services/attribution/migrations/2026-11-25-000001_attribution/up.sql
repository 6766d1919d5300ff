-- AttributionService's own projections of plans, campaigns and codes (from PlanService's and
-- CodeMintService's streams), its clicks, conversions and the aggregates reads are served from.

create table plans (
    brand_id                bigint not null,
    plan_id                 bigint not null,
    integration_id          bigint not null,
    provider                text not null,
    -- Commission: percent of the discounted subtotal (bps), or a fixed amount per order.
    commission_bps          integer,
    commission_fixed_minor  bigint,
    commission_currency     text,
    attribution_window_days integer not null default 30,
    holding_period_days     integer not null default 0,
    ends_at                 timestamptz,
    report_visible          boolean not null default false,
    primary key (brand_id, plan_id)
);

create table campaigns (
    brand_id    bigint not null,
    campaign_id bigint not null,
    plan_id     bigint not null default 0,
    archived    boolean not null default false,
    primary key (brand_id, campaign_id)
);

create index campaigns_plan on campaigns (brand_id, plan_id);

-- Every change bumps version (from one sequence) so every replica's slug cache can follow.
create sequence codes_version;

create table codes (
    brand_id        bigint not null,
    code_id         bigint not null,
    campaign_id     bigint not null,
    creator_id      bigint not null,
    plan_id         bigint not null,
    integration_id  bigint not null,
    code            text not null default '',
    slug            text not null default '',
    destination_url text not null default '',
    expires_at      timestamptz,
    active          boolean not null,
    version         bigint not null default nextval('codes_version'),
    primary key (brand_id, code_id)
);

create index codes_by_code on codes (brand_id, integration_id, lower(code)) where code <> '';
create unique index codes_by_slug on codes (slug) where slug <> '';
create index codes_version_idx on codes (version);

create table clicks (
    brand_id      bigint not null,
    click_id      text not null,
    code_id       bigint not null,
    integration_id bigint not null,
    campaign_id   bigint not null,
    creator_id    bigint not null,
    plan_id       bigint not null,
    clicked_at    timestamptz not null,
    referrer_host text not null default '',
    country       text not null default '',
    agent_class   text not null default '',
    visitor_hash  text not null default '',
    primary key (brand_id, click_id)
);

create index clicks_by_creator on clicks (brand_id, campaign_id, creator_id, clicked_at);

-- One row per (order, campaign, creator). Amounts are this creator's share, after refunds.
create table conversions (
    brand_id            bigint not null,
    id                  bigserial not null,
    integration_id      bigint not null,
    store_order_id      text not null,
    campaign_id         bigint not null,
    creator_id          bigint not null,
    code_id             bigint not null,
    plan_id             bigint not null,
    method              text not null,
    matched             text not null,
    split_rule          text not null,
    share_bps           integer not null,
    shared              boolean not null default false,
    status              text not null,
    order_status        text not null,
    order_rank          integer not null,
    currency            text not null,
    -- The order's figures this conversion was computed from (to re-derive after refunds).
    order_total_minor   bigint not null,
    order_refunded_minor bigint not null default 0,
    base_revenue_minor  bigint not null,
    base_discount_minor bigint not null,
    base_commission_minor bigint not null,
    revenue_minor       bigint not null,
    discount_minor      bigint not null,
    commission_minor    bigint not null,
    commission_currency text not null,
    -- Sums of the adjustments rows (changes after approval).
    adjusted_revenue_minor    bigint not null default 0,
    adjusted_commission_minor bigint not null default 0,
    ordered_at          timestamptz not null,
    approve_at          timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    primary key (brand_id, id)
);

create unique index conversions_order_creator
    on conversions (brand_id, integration_id, store_order_id, campaign_id, creator_id);
create index conversions_campaign on conversions (brand_id, campaign_id, creator_id, id);
create index conversions_due on conversions (approve_at) where status = 'pending' and approve_at is not null;

create table adjustments (
    brand_id         bigint not null,
    conversion_id    bigint not null,
    id               bigserial not null,
    revenue_minor    bigint not null,
    commission_minor bigint not null,
    reason           text not null,
    at               timestamptz not null default now(),
    primary key (brand_id, conversion_id, id)
);

-- Daily aggregates, kept current in the transaction that changes a conversion or adds clicks.
create table daily_clicks (
    brand_id    bigint not null,
    campaign_id bigint not null,
    creator_id  bigint not null,
    day         date not null,
    clicks      bigint not null default 0,
    primary key (brand_id, campaign_id, creator_id, day)
);

create table daily_sales (
    brand_id           bigint not null,
    campaign_id        bigint not null,
    creator_id         bigint not null,
    day                date not null,
    currency           text not null,
    orders             bigint not null default 0,
    code_uses          bigint not null default 0,
    revenue_minor      bigint not null default 0,
    discount_minor     bigint not null default 0,
    commission_pending_minor  bigint not null default 0,
    commission_approved_minor bigint not null default 0,
    commission_reversed_minor bigint not null default 0,
    commission_adjusted_minor bigint not null default 0,
    primary key (brand_id, campaign_id, creator_id, day, currency)
);

-- Per code and day: orders, and those with no click on the creator's links before them.
create table code_daily (
    brand_id             bigint not null,
    code_id              bigint not null,
    day                  date not null,
    orders               bigint not null default 0,
    orders_without_click bigint not null default 0,
    primary key (brand_id, code_id, day)
);

create table code_alerts (
    brand_id             bigint not null,
    code_id              bigint not null,
    kind                 text not null,
    campaign_id          bigint not null,
    creator_id           bigint not null,
    code                 text not null,
    evidence             text not null,
    orders               bigint not null default 0,
    orders_without_click bigint not null default 0,
    day                  date,
    day_orders           bigint not null default 0,
    baseline_milli       bigint not null default 0,
    raised_at            timestamptz not null default now(),
    id                   bigserial not null,
    primary key (brand_id, code_id, kind)
);
