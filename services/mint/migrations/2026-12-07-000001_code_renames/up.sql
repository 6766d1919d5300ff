-- A brand's edit of a code while the store renames its discount (`UpdateCode`, `edits.rs`). The
-- code already has its new text (the unique index keeps it from anyone else) and is pushed by the
-- edit, not by the pusher (`next_push_at` is infinity); this row keeps what the code had, to be
-- put back if the store refuses the new text. The store is called with no transaction open, so
-- the edit is held, not locked: an edit whose process stopped before the store answered is
-- finished by the pusher once `held_until` has passed.
create table code_renames (
    brand_id               bigint not null,
    code_id                bigint not null,
    previous_code          text not null,
    previous_affiliate_url text not null,
    previous_status        text not null,
    held_until             timestamptz not null,
    primary key (brand_id, code_id)
);

create index code_renames_due on code_renames (held_until);
