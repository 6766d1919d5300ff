-- When a waiting order was first seen paid. A pending order keeps only its latest state, so
-- without this an order paid, then partly refunded before its code arrived, would have its
-- approval due from the refund, not from the payment.
alter table pending_orders add column paid_at timestamptz;
