drop index integrations_id;
drop table sandbox_orders;
drop table orders;
drop table webhook_deliveries;
