-- An order's edits collapse back onto its first row in each status and refund.
delete from orders a using orders b
 where a.brand_id = b.brand_id and a.integration_id = b.integration_id
   and a.store_order_id = b.store_order_id and a.status = b.status
   and a.refunded_minor = b.refunded_minor and a.id > b.id;
drop index orders_version;
create unique index orders_version
    on orders (brand_id, integration_id, store_order_id, status, refunded_minor);
alter table orders drop column total_minor;
