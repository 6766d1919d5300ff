-- What a created resource lives under when its id alone does not name it: AddCreator creates a
-- roster entry, named by its campaign and creator, so a retry answers that campaign's entry.
alter table request_keys add column scope_id bigint;
