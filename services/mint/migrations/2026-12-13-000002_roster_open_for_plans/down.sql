drop function roster_open_for_plans(bigint[], bigint[], bigint[], bigint[]);
