drop table mint_failures;
drop table mint_queue;
drop table store_disables;
drop table codes;
drop table roster;
drop table campaigns;
drop table plans;
