-- An order's edit (its total changing while its status and refunds stay) is a state of its own,
-- passed on to attribution. Rows stored before have total_minor -1 (their total is in their body
-- only): the same state arriving again is stored once more, with its total, and attribution,
-- which already priced it, changes nothing.
alter table orders add column total_minor bigint not null default -1;
drop index orders_version;
create unique index orders_version
    on orders (brand_id, integration_id, store_order_id, status, refunded_minor, total_minor);
