-- Client idempotency keys of creating calls: the same (brand, rpc, request_id) returns the same
-- resource. The key is claimed first in the creating transaction, so a concurrent duplicate waits
-- for the first and then reads its result.
create table request_keys (
    brand_id    bigint not null,
    rpc         text not null,
    request_id  text not null,
    resource_id bigint,
    created_at  timestamptz not null default now(),
    primary key (brand_id, rpc, request_id)
);
