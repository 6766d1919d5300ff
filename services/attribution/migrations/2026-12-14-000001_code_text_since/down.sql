alter table codes drop column text_since;
