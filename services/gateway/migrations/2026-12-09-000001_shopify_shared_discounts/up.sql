-- A Shopify group's shared discount (see `adapters/shopify.rs`), as a gateway process last found
-- or made it. Shopify's search lists a new discount only after a while, so a process that does
-- not remember a group's discount reads it here before it searches; whoever makes one records it
-- here, under a lock on the group (`shared_discounts::lock_group`), so that two replicas do not
-- each make one. Written once per group every few minutes, so it keeps its foreign key.
create table shopify_shared_discounts (
    brand_id          bigint not null,
    integration_id    bigint not null,
    group_key         text not null,
    store_discount_id text not null,
    found_at          timestamptz not null,
    primary key (brand_id, integration_id, group_key),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);
