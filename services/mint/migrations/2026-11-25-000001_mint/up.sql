-- CodeMintService's projection of PlanService (applied from WatchEvents with its cursor in the
-- same transaction) and its own codes, failures and work queues.

create table plans (
    brand_id       bigint not null,
    id             bigint not null,
    name           text not null,
    integration_id bigint not null,
    provider       text not null,
    -- Discount, pattern, link, limits, restrictions, dates: what minting and pushing need.
    terms          jsonb not null,
    code_trigger   text not null,
    archived       boolean not null,
    primary key (brand_id, id)
);

create table campaigns (
    brand_id bigint not null,
    id       bigint not null,
    name     text not null,
    plan_id  bigint,
    archived boolean not null,
    primary key (brand_id, id)
);

create index campaigns_brand_plan on campaigns (brand_id, plan_id);

create table roster (
    brand_id    bigint not null,
    campaign_id bigint not null,
    creator_id  bigint not null,
    profile     jsonb not null,
    status      text not null,
    primary key (brand_id, campaign_id, creator_id)
);

-- One row per minted code (or link, for providers without codes). A code is unique per store
-- integration case-insensitively, disabled codes included, so it is never given to anyone else;
-- a creator has at most one live code per campaign.
create table codes (
    brand_id        bigint not null,
    id              bigserial not null,
    campaign_id     bigint not null,
    creator_id      bigint not null,
    plan_id         bigint not null,
    integration_id  bigint not null,
    provider        text not null,
    code            text,
    status          text not null,
    store_error     text not null default '',
    push_attempts   integer not null default 0,
    next_push_at    timestamptz not null default now(),
    slug            text not null,
    destination_url text not null default '',
    affiliate_url   text not null default '',
    expires_at      timestamptz,
    history         jsonb not null default '[]',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (brand_id, id)
);

create unique index codes_integration_code on codes (brand_id, integration_id, lower(code))
    where code is not null;
create unique index codes_live_creator on codes (brand_id, campaign_id, creator_id)
    where status <> 'disabled';
create unique index codes_slug on codes (slug);
create index codes_to_push on codes (next_push_at) where status = 'pending' and code is not null;

-- Codes the store must stop accepting (disabled codes, codes replaced by an edit or a suffix).
create table store_disables (
    brand_id       bigint not null,
    integration_id bigint not null,
    code           text not null,
    attempts       integer not null default 0,
    last_error     text not null default '',
    next_at        timestamptz not null default now(),
    primary key (brand_id, integration_id, code)
);

-- Creators to mint for, queued by the plan stream (triggers, backfills, profile fixes). A worker
-- claims rows for a while, mints without holding locks, then deletes the rows it settled unless
-- they were queued again meanwhile (enqueued_at moved).
create table mint_queue (
    brand_id      bigint not null,
    campaign_id   bigint not null,
    creator_id    bigint not null,
    enqueued_at   timestamptz not null default clock_timestamp(),
    claimed_until timestamptz,
    primary key (brand_id, campaign_id, creator_id)
);

create index mint_queue_order on mint_queue (enqueued_at);

-- The latest failed mint per creator and campaign, with what the brand can do about it.
create table mint_failures (
    brand_id    bigint not null,
    campaign_id bigint not null,
    creator_id  bigint not null,
    reason      text not null,
    fields      text[] not null default '{}',
    message     text not null,
    attempts    integer not null default 1,
    failed_at   timestamptz not null default now(),
    primary key (brand_id, campaign_id, creator_id)
);
