drop index store_disables_due;
