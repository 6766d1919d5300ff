drop table sandbox_discounts;
alter table integrations drop column sandbox_down;
