create index sandbox_orders_updated on sandbox_orders (brand_id, integration_id, updated_at);
drop index sandbox_orders_by_change;
