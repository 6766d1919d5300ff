-- Tracking plans. The plan's commercial terms (discount, pattern, link, limits, restrictions,
-- dates, commission) are one validated document in `terms`; what is queried or constrained
-- (name, integration, trigger, visibility, archive state) has its own column.
create table plans (
    brand_id       bigint not null,
    id             bigserial not null,
    name           text not null,
    integration_id bigint not null,
    provider       text not null,
    terms          jsonb not null,
    code_trigger   text not null,
    report_visible boolean not null default false,
    archived_at    timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (brand_id, id)
);

create unique index plans_brand_name on plans (brand_id, lower(name)) where archived_at is null;

create table campaigns (
    brand_id            bigint not null,
    id                  bigserial not null,
    name                text not null,
    plan_id             bigint,
    outreach_started_at timestamptz,
    archived_at         timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    primary key (brand_id, id),
    foreign key (brand_id, plan_id) references plans (brand_id, id)
);

create index campaigns_brand_plan on campaigns (brand_id, plan_id);

-- A campaign's creators, with the profile snapshot minting needs.
create table roster (
    brand_id    bigint not null,
    campaign_id bigint not null,
    creator_id  bigint not null,
    profile     jsonb not null,
    status      text not null,
    added_at    timestamptz not null default now(),
    approved_at timestamptz,
    removed_at  timestamptz,
    updated_at  timestamptz not null default now(),
    primary key (brand_id, campaign_id, creator_id),
    foreign key (brand_id, campaign_id) references campaigns (brand_id, id)
);
