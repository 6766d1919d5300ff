drop index report_sales_due;
create index report_sales_due on report_sales (approve_on) where status = 'pending';
drop index report_sales_by_campaign_id;
drop index conversions_reversed;
drop index daily_clicks_by_day;
drop index daily_sales_by_day;
drop index code_alerts_by_campaign;
drop index code_alerts_by_id;
