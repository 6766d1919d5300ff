-- The pattern engine now spells Cyrillic and Greek names. Creators whose code failed as PATTERN
-- on a mint the plan's trigger asked for are queued once more, as a profile fix would queue them,
-- where the trigger still wants their code; those whose values still give nothing fail again
-- (one more attempt on their failure).
insert into mint_queue (brand_id, campaign_id, creator_id)
select f.brand_id, f.campaign_id, f.creator_id
from mint_failures f
join campaigns c on c.brand_id = f.brand_id and c.id = f.campaign_id
join plans p on p.brand_id = c.brand_id and p.id = c.plan_id
join roster r on r.brand_id = f.brand_id and r.campaign_id = f.campaign_id
    and r.creator_id = f.creator_id
where f.reason = 'pattern' and f.by_trigger
  and not c.archived and not p.archived
  and (r.status = 'approved' or (r.status = 'added' and p.code_trigger = 'on_add'))
  and not r.code_disabled
  and not exists (select 1 from codes x where x.brand_id = f.brand_id
      and x.campaign_id = f.campaign_id and x.creator_id = f.creator_id and not x.disabled)
on conflict (brand_id, campaign_id, creator_id) do nothing;
