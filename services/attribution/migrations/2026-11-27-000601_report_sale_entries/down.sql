drop index report_sales_unpriced;
drop index report_sales_by_campaign;
drop index report_sales_id;
alter table report_sales drop column priced, drop column shared, drop column updated_at,
    drop column id;
