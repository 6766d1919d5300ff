-- The sandbox provider's store, simulated inside the gateway so the suite runs and demos with no
-- real store. It behaves like one: codes are unique per integration whatever their case, and a
-- disabled code stays (a store keeps it, so it cannot be handed to someone else).
create table sandbox_discounts (
    brand_id       bigint not null,
    integration_id bigint not null,
    id             bigserial not null,
    code           text not null,
    -- The pusher's id for the code: the same code pushed again with the same ref is a retry.
    external_ref   text not null,
    title          text not null default '',
    -- The discount's rules as pushed (value, limits, restrictions, dates).
    terms          jsonb not null,
    active         boolean not null default true,
    created_at     timestamptz not null default now(),
    disabled_at    timestamptz,
    -- Leads with the integration so ListStoreDiscounts pages by id on the primary key.
    primary key (brand_id, integration_id, id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);

create unique index sandbox_discounts_code on sandbox_discounts (brand_id, integration_id, lower(code));

-- A simulated outage of a sandbox integration's store: pushes and disables answer UNAVAILABLE.
alter table integrations add column sandbox_down boolean not null default false;
