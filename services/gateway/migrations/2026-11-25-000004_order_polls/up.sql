-- Stores without webhooks (Magento) are polled: per integration, the time up to which its orders
-- have been taken in, and a lease so that one replica polls an integration at a time.
create table order_polls (
    brand_id       bigint not null,
    integration_id bigint not null,
    polled_until   timestamptz not null,
    leased_until   timestamptz,
    primary key (brand_id, integration_id),
    foreign key (brand_id, integration_id) references integrations (brand_id, id)
);
