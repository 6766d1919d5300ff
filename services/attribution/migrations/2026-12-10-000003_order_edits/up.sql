-- When the store last changed the order a conversion was priced from (unknown for conversions
-- priced before, and for orders whose store does not say): an edit of the order's total is
-- priced again only when it is later.
alter table conversions add column order_updated_at timestamptz;
