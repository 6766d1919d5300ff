-- What a plan's links are made from (the click-through URL, its UTM parameters, the end date),
-- as one key: a mint batch passes the key of the terms it made its codes' links from, and
-- roster_open_for_plans refuses the codes when the plan's terms are not those any more (the
-- projection changed them while the batch was under way, and updated the plan's codes before
-- these were written, or will not see them).
alter table plans add column links_key text generated always as (md5(
    coalesce(terms ->> 'click_url', '') || chr(31) || coalesce((terms -> 'utm')::text, '')
    || chr(31) || coalesce(terms ->> 'ends_at', ''))) stored;

-- As the four-argument roster_open_for_plans (kept for processes of the previous version while
-- a deployment rolls), and for each key whether its plan's links_key is no longer `links_keys`'
-- (a plan not projected is not).
create function roster_open_for_plans(
  brand_ids bigint[], campaign_ids bigint[], creator_ids bigint[], plan_ids bigint[],
  links_keys text[])
returns table (pos bigint, relinked boolean, stale boolean)
language plpgsql volatile as $$
begin
  perform pg_advisory_xact_lock_shared(held.key)
  from (select distinct roster_hold_key(h.b, h.c) as key
        from unnest(brand_ids, campaign_ids) as h(b, c) order by 1) held;
  return query
    with used as (
      select distinct u.b, u.p, u.links from unnest(brand_ids, plan_ids, links_keys) as u(b, p, links)),
    moved as (
      select used.b, used.p, used.links from used
      join plans pl on pl.brand_id = used.b and pl.id = used.p
      where pl.links_key is distinct from used.links)
    select k.n, coalesce((select l.plan_id <> k.p from campaigns l
                          where l.brand_id = k.b and l.id = k.c), false),
      exists (select 1 from moved s where s.b = k.b and s.p = k.p and s.links = k.links)
    from unnest(brand_ids, campaign_ids, creator_ids, plan_ids, links_keys) with ordinality
      as k(b, c, cr, p, links, n)
    cross join lateral (select 1 from roster r
      where r.brand_id = k.b and r.campaign_id = k.c and r.creator_id = k.cr
        and r.status <> 'removed' limit 1) on_roster;
end
$$;
