-- Amazon Ads (Amazon Attribution) has no codes: each creator of a campaign gets an attribution
-- tag, made once from the publisher's non-macro template and kept here, so asking again answers
-- the same tag. The ids it carries are what Amazon's reports name the creator's rows by.
create table attribution_tags (
    brand_id        bigint not null,
    integration_id  bigint not null,
    campaign_id     bigint not null,
    creator_id      bigint not null,
    tag_campaign_id text not null,
    tag_ad_group_id text not null,
    tag_creative_id text not null,
    -- The query string to append to an Amazon product or Store page URL.
    tag             text not null,
    created_at      timestamptz not null default now(),
    primary key (brand_id, integration_id, campaign_id, creator_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

create unique index attribution_tags_ids
    on attribution_tags (brand_id, integration_id, tag_campaign_id, tag_ad_group_id, tag_creative_id);

-- Amazon Attribution's PERFORMANCE report: attributed purchases and sales per tag (creative) and
-- day, as last imported. Amazon revises recent days: an import that changes a day's figures
-- replaces them and bumps the revision, and publishes the row (creators' tags only) on
-- WatchOrders in the same transaction.
create table amazon_report_rows (
    brand_id        bigint not null,
    integration_id  bigint not null,
    id              bigserial not null,
    tag_campaign_id text not null,
    tag_ad_group_id text not null,
    tag_creative_id text not null,
    day             date not null,
    purchases       bigint not null,
    sales_minor     bigint not null,
    currency        text not null,
    -- The campaign and creator whose tag it is; null for tags the suite did not make.
    campaign_id     bigint,
    creator_id      bigint,
    revision        integer not null default 1,
    imported_at     timestamptz not null default now(),
    primary key (brand_id, id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

create unique index amazon_report_rows_day
    on amazon_report_rows (brand_id, integration_id, tag_campaign_id, tag_ad_group_id,
                           tag_creative_id, day);

-- The report importer's progress per Amazon integration: the last day imported, and a lease so
-- that one replica imports an integration at a time.
create table amazon_report_imports (
    brand_id         bigint not null,
    integration_id   bigint not null,
    imported_through date,
    leased_until     timestamptz,
    primary key (brand_id, integration_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);
