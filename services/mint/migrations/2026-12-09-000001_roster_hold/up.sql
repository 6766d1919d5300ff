-- A campaign's roster is held by codes being written for it (shared) and by the projection
-- applying a removal from it (alone), as a transaction-scoped advisory lock under this key: a
-- removal and the codes minted meanwhile take turns, and no row is written for it.
create function roster_hold_key(brand bigint, campaign bigint) returns bigint
language sql stable as $$
  select hashtextextended(current_schema() || '.roster.' || brand || '.' || campaign, 0)
$$;

-- The positions (1-based) of the `(brand, campaign, creator)` keys whose creator is on the
-- campaign's roster (not removed), read after holding the campaigns' rosters shared until the
-- transaction ends. Volatile, so its read takes a snapshot of its own, after the hold: a removal
-- committed while the caller's statement waited for the hold is seen.
create function roster_open(brands bigint[], campaigns bigint[], creators bigint[])
returns setof bigint
language plpgsql volatile as $$
begin
  perform pg_advisory_xact_lock_shared(held.key)
  from (select distinct roster_hold_key(h.b, h.c) as key
        from unnest(brands, campaigns) as h(b, c) order by 1) held;
  return query
    select k.pos
    from unnest(brands, campaigns, creators) with ordinality as k(b, c, cr, pos)
    cross join lateral (select 1 from roster r
      where r.brand_id = k.b and r.campaign_id = k.c and r.creator_id = k.cr
        and r.status <> 'removed' limit 1) on_roster;
end
$$;
