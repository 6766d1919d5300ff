-- Activation (a code going from pending to active) rewrote the code's row and added an entry to
-- five of this table's seven indexes: `status` was in `codes_by_campaign` and in the predicates
-- of `codes_live_creator`, `codes_to_push` and `codes_to_link`, and so was `next_push_at`.
-- PostgreSQL updates a row in place (HOT: no index entry) only when no indexed or predicate
-- column changes and the page has room. So:
-- - whether a code is disabled is a generated column, which activation leaves unchanged, for the
--   live code of a creator and for a campaign's pages (`ListCodes`);
-- - the pending codes and when each is due for a push are mirrored, by the trigger below, into
--   `code_pushes`, which the pusher's scans and `ListCodes` of pending codes read;
-- - the table's pages are left half empty, so that a code's new version finds room on its page.
alter table codes add column disabled boolean generated always as (status = 'disabled') stored;

drop index codes_live_creator;
create unique index codes_live_creator on codes (brand_id, campaign_id, creator_id)
    where not disabled;

-- For ListCodes only, which always reads ids past a point (`id > $n`, which implies the
-- predicate). No lookup of a creator's live code implies it, so none can take this index instead
-- of codes_live_creator: planned without statistics (a new deployment's table, or a batch
-- statement planned once while the table was empty), the two looked equally cheap, and a plan
-- that took this one read the creator's whole campaign for every key (9 s for a batch of 500 in
-- a campaign of 100,000 codes).
drop index codes_by_campaign;
create index codes_by_campaign on codes (brand_id, campaign_id, disabled, id)
    where id is not null;

drop index codes_to_push;
drop index codes_to_link;

alter table codes set (fillfactor = 50);

-- A pending code, due for a push at `due_at` (`with_code`), or, without a code, for its store-made
-- link: `codes.status` and `codes.next_push_at`, kept here by `mirror_pending_codes` alone. Short
-- lived: a row goes when its code is active or disabled. Keyed by campaign for `ListCodes`.
create table code_pushes (
    brand_id    bigint not null,
    campaign_id bigint not null,
    code_id     bigint not null,
    with_code   boolean not null,
    due_at      timestamptz not null,
    primary key (brand_id, campaign_id, code_id)
);

create index code_pushes_due on code_pushes (due_at) where with_code;
create index code_pushes_links_due on code_pushes (due_at) where not with_code;

insert into code_pushes (brand_id, campaign_id, code_id, with_code, due_at)
select brand_id, campaign_id, id, code is not null, next_push_at from codes
where status = 'pending';

-- After every statement that inserts or updates codes, for the rows it wrote: a code no longer
-- pending leaves the queue, a pending one is queued or its due time set. Codes are never
-- deleted. The queue's statements are planned at each run (`execute`): a plan cached by the
-- connection would keep the table sizes it saw first, and the queue grows from empty to hundreds
-- of thousands of rows in a bulk mint. Each runs only when the rows call for it (a mint inserts
-- pending codes, an activation leaves none), which halves the planning.
create function mirror_pending_codes() returns trigger language plpgsql as $$
begin
    if exists (select from written where status <> 'pending') then
        execute 'delete from code_pushes q using written w
                 where q.brand_id = w.brand_id and q.campaign_id = w.campaign_id
                   and q.code_id = w.id and w.status <> ''pending''';
    end if;
    if exists (select from written where status = 'pending') then
        execute 'insert into code_pushes (brand_id, campaign_id, code_id, with_code, due_at)
                 select brand_id, campaign_id, id, code is not null, next_push_at from written
                 where status = ''pending''
                 on conflict (brand_id, campaign_id, code_id) do update
                   set with_code = excluded.with_code, due_at = excluded.due_at
                   where (code_pushes.with_code, code_pushes.due_at)
                     is distinct from (excluded.with_code, excluded.due_at)';
    end if;
    return null;
end
$$;

create trigger codes_inserted_mirror_pending after insert on codes
    referencing new table as written for each statement execute function mirror_pending_codes();
create trigger codes_updated_mirror_pending after update on codes
    referencing new table as written for each statement execute function mirror_pending_codes();
