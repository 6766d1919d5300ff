-- Webhook deliveries seen, by the store's delivery id (X-Shopify-Webhook-Id, X-WC-Webhook-Delivery-ID,
-- ...): a redelivery is acknowledged and dropped.
create table webhook_deliveries (
    brand_id       bigint not null,
    integration_id bigint not null,
    delivery_id    text not null,
    topic          text not null,
    received_at    timestamptz not null default now(),
    primary key (brand_id, integration_id, delivery_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

-- Every distinct state of every order (a version). The same store order in the same state
-- arriving again (another topic, a redelivery under a new id, a backfill, an IngestOrders retry)
-- collapses onto the existing row and produces no event.
create table orders (
    brand_id       bigint not null,
    integration_id bigint not null,
    id             bigserial not null,
    store_order_id text not null,
    status         text not null,
    refunded_minor bigint not null default 0,
    source         text not null,
    -- The normalized order (tracking.gateway.v1.Order, protobuf-encoded).
    body           bytea not null,
    received_at    timestamptz not null default now(),
    primary key (brand_id, id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

create unique index orders_version
    on orders (brand_id, integration_id, store_order_id, status, refunded_minor);

-- The sandbox store's orders (PlaceSandboxOrder): what BackfillOrders lists for a sandbox
-- integration. One row per order, in its latest state.
create table sandbox_orders (
    brand_id       bigint not null,
    integration_id bigint not null,
    store_order_id text not null,
    body           bytea not null,
    updated_at     timestamptz not null default clock_timestamp(),
    primary key (brand_id, integration_id, store_order_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

create index sandbox_orders_updated on sandbox_orders (brand_id, integration_id, updated_at);

-- Webhook and AST URLs name the integration by id alone (ids are unique across brands).
create unique index integrations_id on integrations (id);
