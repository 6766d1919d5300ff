-- ListRoster with a status filter reads a campaign's entries of that status by creator id. One
-- index per status, not (brand_id, campaign_id, status, creator_id): a lookup of one entry by its
-- key cannot use a partial index, so it always takes the primary key. With the wider index, a
-- campaign the statistics had not seen yet (a brand's first big roster, added faster than
-- autovacuum analyzes) made both indexes look as cheap, the newer one won, and each lookup read
-- the campaign's whole range: AddCreators slowed down as the roster grew.
drop index roster_by_status;
create index roster_added on roster (brand_id, campaign_id, creator_id) where status = 'added';
create index roster_approved on roster (brand_id, campaign_id, creator_id)
    where status = 'approved';
create index roster_removed on roster (brand_id, campaign_id, creator_id) where status = 'removed';
