alter table pending_orders drop column paid_at;
