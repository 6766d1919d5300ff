drop table order_polls;
