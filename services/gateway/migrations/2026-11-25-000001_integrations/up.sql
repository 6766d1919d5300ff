-- A brand's store integrations. Credentials and webhook secrets are sealed (ChaCha20-Poly1305,
-- bound to the brand) before they reach this table; only the names of credential fields are clear.
create table integrations (
    brand_id              bigint not null,
    id                    bigserial not null,
    provider              text not null,
    name                  text not null,
    shop_domain           text not null default '',
    base_url              text not null default '',
    credential_fields     text[] not null default '{}',
    credentials_sealed    bytea not null,
    webhook_secret_sealed bytea,
    created_at            timestamptz not null default now(),
    primary key (brand_id, id)
);

create unique index integrations_brand_name on integrations (brand_id, lower(name));
