drop index roster_by_status;
