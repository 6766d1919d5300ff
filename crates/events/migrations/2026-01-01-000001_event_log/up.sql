-- The transactional outbox of one service: an event row is written in the same transaction as the
-- state change it describes. seq is taken under a per-schema advisory transaction lock, so seq
-- order is commit order and a reader that has seen seq N has seen everything before it.
create sequence events_seq;

create table events (
    seq        bigint primary key,
    brand_id   bigint not null,
    kind       text not null,
    payload    bytea not null,
    created_at timestamptz not null default now()
);

create index events_brand_seq on events (brand_id, seq);

-- How far each consumer of an upstream stream has applied it; written in the same transaction as
-- the applied changes.
create table stream_cursors (
    stream     text primary key,
    seq        bigint not null,
    updated_at timestamptz not null default now()
);
