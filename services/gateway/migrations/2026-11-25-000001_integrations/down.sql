drop table integrations;
