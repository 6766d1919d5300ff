drop table code_texts;
