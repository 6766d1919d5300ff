drop table roster;
drop table campaigns;
drop table plans;
