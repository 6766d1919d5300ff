-- ListRoster with a status filter: a campaign's entries of one status by creator id (the primary
-- key read the campaign's entries of every status and dropped the others).
create index roster_by_status on roster (brand_id, campaign_id, status, creator_id);
