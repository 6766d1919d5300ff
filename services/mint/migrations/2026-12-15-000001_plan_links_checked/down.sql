drop function roster_open_for_plans(bigint[], bigint[], bigint[], bigint[], text[]);
alter table plans drop column links_key;
