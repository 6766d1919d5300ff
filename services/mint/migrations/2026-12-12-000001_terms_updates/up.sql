-- Codes whose plan's discount terms changed after they were minted: the pusher updates each
-- discount at its store in place (UpdateDiscounts with the code's own text), and retries with
-- backoff while the store cannot be reached.
create table terms_updates (
    brand_id   bigint not null,
    code_id    bigint not null,
    next_at    timestamptz not null default now(),
    attempts   integer not null default 0,
    last_error text,
    primary key (brand_id, code_id)
);
create index terms_updates_due on terms_updates (next_at);
