-- ListAmazonReportRows: one integration's rows by id (the primary key read the brand's rows of
-- every integration).
create index amazon_report_rows_by_integration on amazon_report_rows (brand_id, integration_id, id);
