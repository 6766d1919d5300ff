alter table code_texts drop column valid_from;
alter table codes drop column text_since;
