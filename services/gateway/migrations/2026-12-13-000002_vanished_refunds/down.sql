drop table vanished_refunds;
