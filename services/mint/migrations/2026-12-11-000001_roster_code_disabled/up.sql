-- Whether the brand disabled the creator's code in this campaign during their stay on its roster
-- (set by the brand's disable, cleared by their removal): a trigger that asks for every creator
-- without a code does not mint again for them (a code the brand disabled stays disabled), while
-- a creator added again after a removal, whose code went with the removal, is minted for. Which
-- disable made a creator's code disabled is not recorded before this column: creators on a
-- roster now with a disabled code and no live one are taken to be the brand's doing.
alter table roster add column code_disabled boolean not null default false;
update roster r set code_disabled = true
where r.status <> 'removed'
  and exists (select 1 from codes x where x.brand_id = r.brand_id
    and x.campaign_id = r.campaign_id and x.creator_id = r.creator_id and x.disabled)
  and not exists (select 1 from codes x where x.brand_id = r.brand_id
    and x.campaign_id = r.campaign_id and x.creator_id = r.creator_id and not x.disabled);
