drop table code_renames;
