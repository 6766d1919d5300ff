drop table request_keys;
