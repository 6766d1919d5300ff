alter table store_disables drop column external_ref;
