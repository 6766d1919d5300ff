drop trigger codes_updated_mirror_pending on codes;
drop trigger codes_inserted_mirror_pending on codes;
drop function mirror_pending_codes();
drop table code_pushes;

alter table codes reset (fillfactor);

create index codes_to_link on codes (next_push_at) where status = 'pending' and code is null;
create index codes_to_push on codes (next_push_at) where status = 'pending' and code is not null;

drop index codes_by_campaign;
create index codes_by_campaign on codes (brand_id, campaign_id, status, id);

drop index codes_live_creator;
create unique index codes_live_creator on codes (brand_id, campaign_id, creator_id)
    where status <> 'disabled';

alter table codes drop column disabled;
