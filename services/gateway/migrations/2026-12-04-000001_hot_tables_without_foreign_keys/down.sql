alter table orders add constraint orders_brand_id_integration_id_fkey
    foreign key (brand_id, integration_id) references integrations (brand_id, id);
alter table webhook_deliveries add constraint webhook_deliveries_brand_id_integration_id_fkey
    foreign key (brand_id, integration_id) references integrations (brand_id, id);
alter table sandbox_discounts add constraint sandbox_discounts_brand_id_integration_id_fkey
    foreign key (brand_id, integration_id) references integrations (brand_id, id);
