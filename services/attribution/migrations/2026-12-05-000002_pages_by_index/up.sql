-- Operator-facing reads that scanned more than their page (docs/BENCHMARKS.md, eleventh session).
-- Every table here is written rarely, or these indexes take entries only for rare rows, so the
-- order path pays next to nothing for them.

-- ListCodeAlerts: the brand's alerts, or one campaign's, newest first (the only index was the
-- primary key on code and kind: every page read and sorted all the brand's alerts).
create index code_alerts_by_id on code_alerts (brand_id, id);
create index code_alerts_by_campaign on code_alerts (brand_id, campaign_id, id);

-- GetCampaignPerformance: a campaign's days in a range, every creator (the primary keys lead with
-- the creator, so the range read every day of every creator of the campaign).
create index daily_sales_by_day on daily_sales (brand_id, campaign_id, day);
create index daily_clicks_by_day on daily_clicks (brand_id, campaign_id, day);

-- ListConversions of reversed conversions (rare: a page read the campaign's, or the brand's,
-- conversions to find them). Other statuses are common enough to be found as the rows go by.
create index conversions_reversed on conversions (brand_id, campaign_id, id)
    where status = 'reversed';

-- ListConversions and the creator's report, every creator: a campaign's report days by id.
create index report_sales_by_campaign_id on report_sales (brand_id, campaign_id, id);

-- The approver takes priced rows only; unpriced overdue rows were read again every round.
drop index report_sales_due;
create index report_sales_due on report_sales (approve_on) where status = 'pending' and priced;
