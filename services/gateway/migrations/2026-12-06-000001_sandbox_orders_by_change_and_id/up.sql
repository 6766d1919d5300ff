-- A page of a sandbox store's changed orders is read in (updated_at, store_order_id) order: with
-- the id in the index, the page is the index's first entries, whatever the planner believes
-- about the integration's rows. Without it, a planner pricing random reads low (the services'
-- random_page_cost=1.1) sorted all of a new integration's orders changed since to return 50.
create index sandbox_orders_by_change on sandbox_orders (brand_id, integration_id, updated_at, store_order_id);
drop index sandbox_orders_updated;
