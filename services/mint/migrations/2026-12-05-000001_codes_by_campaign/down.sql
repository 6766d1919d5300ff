drop index codes_by_campaign;
