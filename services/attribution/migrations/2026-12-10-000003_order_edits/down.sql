alter table conversions drop column order_updated_at;
