-- An edit can bring an order back to a state it had before (a total of 100, edited to 120, then
-- back to 100): the same status, refund and total as an earlier row, but newer than the order's
-- latest state. It is stored as a revisit of that state (`revisit`, counted from 0 for the first
-- time the state is seen) and published, so attribution prices the order as it is now. The
-- store's change time (`store_updated_at`, the order's `updated_at`; null where the store gives
-- none) tells a return from an old state arriving late, which stays a duplicate. Rows stored
-- before have no time, and are never taken as the latest.
alter table orders add column store_updated_at timestamptz;
alter table orders add column revisit integer not null default 0;
drop index orders_version;
create unique index orders_version
    on orders (brand_id, integration_id, store_order_id, status, refunded_minor, total_minor,
               revisit);
