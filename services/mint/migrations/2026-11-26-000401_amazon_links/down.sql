drop index codes_to_link;
