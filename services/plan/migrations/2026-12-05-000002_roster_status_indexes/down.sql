drop index roster_added;
drop index roster_approved;
drop index roster_removed;
create index roster_by_status on roster (brand_id, campaign_id, status, creator_id);
