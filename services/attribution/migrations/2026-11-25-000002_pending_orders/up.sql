-- Orders that carried codes or a click id nobody could be matched to yet. The three streams are
-- consumed independently, so an order may arrive before its code (or a click before its batch
-- is written); when the code or click shows up, the order is attributed then. Holds the most
-- advanced state seen of each order.
create table pending_orders (
    brand_id       bigint not null,
    integration_id bigint not null,
    store_order_id text not null,
    -- The order event (tracking.gateway.v1.OrderEvent, protobuf-encoded).
    event          bytea not null,
    codes_lower    text[] not null default '{}',
    click_id       text not null default '',
    received_at    timestamptz not null default now(),
    primary key (brand_id, integration_id, store_order_id)
);

create index pending_orders_codes on pending_orders using gin (codes_lower);
create index pending_orders_click on pending_orders (brand_id, click_id) where click_id <> '';
