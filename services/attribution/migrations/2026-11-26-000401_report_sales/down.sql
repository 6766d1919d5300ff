drop table report_sales;
