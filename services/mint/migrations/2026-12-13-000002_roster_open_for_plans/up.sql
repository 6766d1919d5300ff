-- As roster_open, for codes of plans: the positions (1-based) of the `(brand, campaign, creator,
-- plan)` keys whose creator is on the campaign's roster, each with whether the campaign is now
-- linked to another plan than the code's (a campaign without a plan, or not projected, is not).
-- The projection holds a relinked campaign's roster alone while it retires the codes of the plan
-- it left, so a code of that plan written after it is refused here rather than left live. Each
-- key's campaign is probed on its own, as its roster entry is, whatever the statistics say.
create function roster_open_for_plans(
  brand_ids bigint[], campaign_ids bigint[], creator_ids bigint[], plan_ids bigint[])
returns table (pos bigint, relinked boolean)
language plpgsql volatile as $$
begin
  perform pg_advisory_xact_lock_shared(held.key)
  from (select distinct roster_hold_key(h.b, h.c) as key
        from unnest(brand_ids, campaign_ids) as h(b, c) order by 1) held;
  return query
    select k.n, coalesce((select l.plan_id <> k.p from campaigns l
                          where l.brand_id = k.b and l.id = k.c), false)
    from unnest(brand_ids, campaign_ids, creator_ids, plan_ids) with ordinality
      as k(b, c, cr, p, n)
    cross join lateral (select 1 from roster r
      where r.brand_id = k.b and r.campaign_id = k.c and r.creator_id = k.cr
        and r.status <> 'removed' limit 1) on_roster;
end
$$;
