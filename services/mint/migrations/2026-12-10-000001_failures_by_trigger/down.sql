alter table mint_failures drop column by_trigger;
