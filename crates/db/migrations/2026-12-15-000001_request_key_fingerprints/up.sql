-- A digest of the request a request id first came with: the same id with a different request is
-- refused instead of answered with what the first one created. Keys recorded before have none
-- and answer as before.
alter table request_keys add column fingerprint bytea;
