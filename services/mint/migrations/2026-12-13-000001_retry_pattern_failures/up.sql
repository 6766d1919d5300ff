-- The pattern engine now spells Cyrillic and Greek names. Creators whose code failed as PATTERN
-- are queued once more where the plan's trigger wants their code, as a profile fix would queue
-- them; those whose values still give nothing fail again (one more attempt on their failure).
-- The entries wait ten minutes (as if claimed) so that replicas still running the engine before
-- this one, during a rolling upgrade, do not take them.
insert into mint_queue (brand_id, campaign_id, creator_id, claimed_until)
select f.brand_id, f.campaign_id, f.creator_id, now() + interval '10 minutes'
from mint_failures f
join campaigns c on c.brand_id = f.brand_id and c.id = f.campaign_id
join plans p on p.brand_id = c.brand_id and p.id = c.plan_id
join roster r on r.brand_id = f.brand_id and r.campaign_id = f.campaign_id
    and r.creator_id = f.creator_id
where f.reason = 'pattern'
  and not c.archived and not p.archived
  and (r.status = 'approved' or (r.status = 'added' and p.code_trigger = 'on_add'))
  and not r.code_disabled
  and not exists (select 1 from codes x where x.brand_id = f.brand_id
      and x.campaign_id = f.campaign_id and x.creator_id = f.creator_id and not x.disabled)
on conflict (brand_id, campaign_id, creator_id) do nothing;
