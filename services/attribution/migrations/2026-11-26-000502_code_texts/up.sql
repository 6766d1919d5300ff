-- The texts a code had before a brand renamed it, each until the rename: an order placed with
-- a code's former text, whose event arrives after the rename, still belongs to that code.
create table code_texts (
    brand_id       bigint not null,
    integration_id bigint not null,
    code_lower     text not null,
    code_id        bigint not null,
    valid_until    timestamptz not null,
    primary key (brand_id, code_id, valid_until)
);
create index code_texts_lookup on code_texts (brand_id, integration_id, code_lower);
