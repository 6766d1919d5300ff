alter table roster drop column code_disabled;
