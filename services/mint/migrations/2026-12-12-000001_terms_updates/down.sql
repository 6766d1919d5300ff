drop table terms_updates;
