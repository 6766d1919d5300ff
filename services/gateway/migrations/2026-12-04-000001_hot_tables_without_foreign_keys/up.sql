-- The tables written per order, per webhook delivery and per pushed sandbox code no longer check
-- their integration against `integrations` on every row: an integration is never deleted, and
-- every write names one the service has just read for the caller's brand. The check was a query
-- per row, a fifth of PostgreSQL's time in an IngestOrders run (docs/BENCHMARKS.md, eighth
-- session). Tables written rarely keep theirs.
alter table orders drop constraint orders_brand_id_integration_id_fkey;
alter table webhook_deliveries drop constraint webhook_deliveries_brand_id_integration_id_fkey;
alter table sandbox_discounts drop constraint sandbox_discounts_brand_id_integration_id_fkey;
