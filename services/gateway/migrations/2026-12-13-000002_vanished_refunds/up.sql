-- Shopify refunds taken into the stored state of an order the store no longer shows, by the
-- refund's id: a refund taken in once is not added again, whatever order refunds arrive in.
create table vanished_refunds (
    brand_id       bigint not null,
    integration_id bigint not null,
    store_order_id text not null,
    refund_id      bigint not null,
    taken_at       timestamptz not null default now(),
    primary key (brand_id, integration_id, store_order_id, refund_id)
);
