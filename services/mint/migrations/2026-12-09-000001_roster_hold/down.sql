drop function roster_open(bigint[], bigint[], bigint[]);
drop function roster_hold_key(bigint, bigint);
