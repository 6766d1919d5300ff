drop index pending_orders_received;
