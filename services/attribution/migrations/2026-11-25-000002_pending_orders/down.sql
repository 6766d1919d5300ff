drop table pending_orders;
