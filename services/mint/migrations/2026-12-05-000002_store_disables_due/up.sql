-- The pusher looks for due deactivations every second (`order by next_at limit 500`). While a
-- store stays down the table keeps every code waiting for its retry; without an index each look
-- reads and sorts all of them.
create index store_disables_due on store_disables (next_at);
