drop table stream_cursors;
drop table events;
drop sequence events_seq;
