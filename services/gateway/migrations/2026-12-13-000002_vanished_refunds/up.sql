-- Shopify refunds taken into the stored state of an order the store no longer shows, by the
-- refund's id: a refund taken in once is not added again, whatever order refunds arrive in.
-- `base_at` is the store's own last change of the order the refund was checked against (a refund
-- made by then is in the store's state already); `state_at`, `state_status` and
-- `state_refunded_minor`, the state made with the refund (changed at the later of the state it
-- was added to and the refund), by which a latest state is known for one made here, with
-- `base_at` still the store's own (a state of the store's changed in the same second differs).
create table vanished_refunds (
    brand_id       bigint not null,
    integration_id bigint not null,
    store_order_id text not null,
    refund_id      bigint not null,
    base_at        timestamptz not null,
    state_at       timestamptz not null,
    state_status   text not null,
    state_refunded_minor bigint not null,
    taken_at       timestamptz not null default now(),
    primary key (brand_id, integration_id, store_order_id, refund_id)
);
