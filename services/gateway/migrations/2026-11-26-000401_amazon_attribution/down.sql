drop table amazon_report_imports;
drop table amazon_report_rows;
drop table attribution_tags;
