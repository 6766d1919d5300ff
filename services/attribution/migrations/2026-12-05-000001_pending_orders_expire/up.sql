-- Pending orders wait for their code or click a bounded time (domain::attribution::PENDING_WAIT):
-- an order whose codes nobody holds (a brand's own discount code, say) would otherwise be kept
-- forever. The expirer finds the oldest by when their latest state arrived.
create index pending_orders_received on pending_orders (received_at);
