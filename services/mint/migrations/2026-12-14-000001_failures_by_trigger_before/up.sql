-- Failures recorded before `by_trigger` existed all took its default, the brand's, so a profile
-- fix queued them whether or not the plan's trigger still wanted the creator's code: a creator
-- only added under a plan switched to minting at approval could get a code. Those failures,
-- untouched since, whose creator the trigger wants now are taken as the trigger's (a profile fix
-- retries them while it still does, as for failures recorded since); the others stay the
-- brand's (the trigger did not want those creators, so the brand's own MintCode failed).
update mint_failures f set by_trigger = true
from roster r, campaigns c, plans p
where r.brand_id = f.brand_id and r.campaign_id = f.campaign_id and r.creator_id = f.creator_id
  and c.brand_id = f.brand_id and c.id = f.campaign_id
  and p.brand_id = c.brand_id and p.id = c.plan_id
  and not f.by_trigger
  and f.failed_at < (select run_on from __diesel_schema_migrations where version = '20261210000001')
  and (r.status = 'approved' or (r.status = 'added' and p.code_trigger = 'on_add'));
