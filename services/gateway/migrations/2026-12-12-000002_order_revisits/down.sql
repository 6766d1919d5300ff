-- An order's revisits collapse back onto the first row of their state.
delete from orders where revisit > 0;
drop index orders_version;
create unique index orders_version
    on orders (brand_id, integration_id, store_order_id, status, refunded_minor, total_minor);
alter table orders drop column revisit;
alter table orders drop column store_updated_at;
