alter table request_keys drop column fingerprint;
