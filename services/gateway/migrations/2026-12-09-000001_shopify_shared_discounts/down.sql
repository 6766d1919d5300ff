drop table shopify_shared_discounts;
