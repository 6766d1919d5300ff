-- Orders find their codes by (brand_id, integration_id, lower(code)) through codes_by_code. That
-- index is partial, and the planner does not use a partial index's statistics, so it knew nothing
-- of lower(code), took 200 codes per distinct text (its default), and expected each probe to
-- return a campaign's worth of rows: every batch of orders hashed the whole table instead
-- (docs/BENCHMARKS.md, thirteenth session). Statistics on the expression itself give the planner
-- its real number of distinct values.
create statistics codes_lower_code on (lower(code)) from codes;
-- Filled now: on a big table that changes slowly, autovacuum might not analyze it for a long time.
analyze codes;
