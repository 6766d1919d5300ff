-- ListCodes pages through a campaign's codes by id, optionally of one status. Without an index
-- leading with the campaign, a page read the brand's codes in id order (a small campaign of a big
-- brand scanned them all; a status filter skipped every code of the other statuses). A page now
-- reads each status's range of this index in id order and merges them.
create index codes_by_campaign on codes (brand_id, campaign_id, status, id);
