alter table request_keys drop column scope_id;
