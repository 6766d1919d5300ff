//! Applying ProviderGateway's Amazon Attribution report rows (they travel on `WatchOrders`, as
//! `OrderEvent.report_row`): a creator's attributed purchases and sales of one day count as that
//! many orders and that revenue in the creator's campaign (and every campaign sharing its plan),
//! with the plan's commission on them. A revised row replaces what its earlier revision added;
//! an older revision than the one applied changes nothing. Runs in the stream consumer's
//! transaction, so each row is applied exactly once; the approver approves the commission once
//! Amazon no longer revises the day.
//!
//! A row that arrives before its campaign or the campaign's plan (the streams are independent)
//! is applied without a commission rule: its figures count, its commission is 0 and it is not
//! approved. When the plan stream brings the campaign or the plan, [`reprice`] applies it again
//! with the plan, in that consumer's transaction; [`lock_pricing`](store::lock_pricing) keeps
//! the two from passing each other.
//!
//! Each credited campaign's row is also an entry of ListConversions, the creator's report and
//! StreamConversions (`CONVERSION_KIND_AMAZON_REPORT_DAY`): every change here returns the entries
//! changed, for the caller to publish.
//!
//! The day is the advertiser profile's calendar day, as Amazon reports it, and stays that day
//! (see `domain::amazon_reports`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use diesel_async::AsyncPgConnection;
use tracking_api::gateway::v1::AmazonReportRow;
use tracking_db::DbError;

use crate::domain::amazon_reports::{approve_on, commission, payable_through};
use crate::domain::attribution::{CommissionRule, rule_in_effect};
use crate::store::amazon_reports::{self as store, ReportSale, RowKey};
use crate::store::conversions::{self, SalesDelta, SalesKey};
use crate::store::projection::{self, PlanRow};

const PENDING: &str = "pending";
const APPROVED: &str = "approved";

/// A report row's own figures (the same for every campaign credited).
struct Reported {
    revision: i32,
    purchases: i64,
    sales_minor: i64,
    currency: String,
}

/// Applies report rows of (brand id, row), in order; returns the entries changed.
pub async fn apply_rows(
    conn: &mut AsyncPgConnection,
    rows: &[(i64, &AmazonReportRow)],
) -> Result<Vec<ReportSale>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    store::lock_pricing(conn).await?;
    let now = Utc::now();
    let mut changed = Vec::new();
    for (brand_id, row) in rows {
        changed.extend(apply(conn, *brand_id, row, now).await?);
    }
    Ok(changed)
}

/// Applies one report row of `brand_id`'s (the caller holds the pricing lock).
#[tracing::instrument(skip_all, fields(brand_id, row_id = row.id, revision = row.revision))]
async fn apply(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    row: &AmazonReportRow,
    now: DateTime<Utc>,
) -> Result<Vec<ReportSale>, DbError> {
    let Ok(day) = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d") else {
        tracing::error!(
            day = row.day,
            "a report row without a readable day; dropped"
        );
        return Ok(Vec::new());
    };
    if row.campaign_id <= 0 || row.creator_id <= 0 {
        return Ok(Vec::new());
    }
    let key = RowKey {
        brand_id,
        integration_id: row.integration_id,
        tag_campaign_id: row.campaign_id,
        creator_id: row.creator_id,
        day,
    };
    let before = store::applied(conn, &key).await?;
    if before.first().is_some_and(|b| b.revision >= row.revision) {
        return Ok(Vec::new());
    }
    let sales = row.sales.clone().unwrap_or_default();
    let reported = Reported {
        revision: row.revision,
        purchases: row.purchases,
        sales_minor: sales.amount_minor,
        currency: sales.currency,
    };
    let changed = credit(conn, &key, &before, &reported, now).await?;
    tracing::debug!(
        creator_id = row.creator_id,
        day = %day,
        purchases = row.purchases,
        "amazon report row applied"
    );
    Ok(changed)
}

/// Prices again the rows of `brand_id` applied without a commission rule whose campaign and
/// plan are known now, in the plan consumer's transaction; returns the entries changed. A row
/// priced once is not priced again, so a redelivered plan event changes nothing.
pub async fn reprice(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
) -> Result<Vec<ReportSale>, DbError> {
    store::lock_pricing(conn).await?;
    let now = Utc::now();
    let mut changed = Vec::new();
    for key in store::unpriced(conn, brand_id).await? {
        let before = store::applied(conn, &key).await?;
        let Some(first) = before.first() else {
            continue;
        };
        let reported = Reported {
            revision: first.revision,
            purchases: first.purchases,
            sales_minor: first.sales_minor,
            currency: first.currency.clone(),
        };
        changed.extend(credit(conn, &key, &before, &reported, now).await?);
        tracing::info!(
            brand_id,
            campaign_id = key.tag_campaign_id,
            creator_id = key.creator_id,
            day = %key.day,
            "amazon report row priced with its plan"
        );
    }
    Ok(changed)
}

/// Replaces what `before` credited for the row `key` with `reported`, priced by the plan of the
/// row's campaign as known now; returns the entries as stored.
async fn credit(
    conn: &mut AsyncPgConnection,
    key: &RowKey,
    before: &[ReportSale],
    reported: &Reported,
    now: DateTime<Utc>,
) -> Result<Vec<ReportSale>, DbError> {
    let brand_id = key.brand_id;
    let plan_id = projection::plan_of_campaign(conn, brand_id, key.tag_campaign_id)
        .await?
        .unwrap_or_default();
    let plan = if plan_id > 0 {
        projection::get_plan(conn, brand_id, plan_id).await?
    } else {
        None
    };
    // A plan shared by several campaigns records the sales in each of them.
    let mut campaigns = if plan.is_some() {
        projection::campaigns_of_plans(conn, &[(brand_id, plan_id)])
            .await?
            .into_iter()
            .map(|c| c.campaign_id)
            .collect()
    } else {
        Vec::new()
    };
    if !campaigns.contains(&key.tag_campaign_id) {
        campaigns.push(key.tag_campaign_id);
    }
    let priced = plan.is_some();
    let shared = campaigns.len() > 1;
    let rule = match &plan {
        Some(plan) => rule_on(conn, plan, key.day).await?,
        None => None,
    };
    let (commission_minor, commission_currency) = commission(
        rule.as_ref(),
        reported.purchases,
        reported.sales_minor,
        &reported.currency,
    );
    let approve_on = approve_on(key.day, plan.as_ref().map_or(0, |p| p.holding_period_days));
    // Without its plan a row's commission is unknown: it waits, unapproved, to be priced.
    let due = priced && approve_on <= payable_through(now);
    let after: Vec<ReportSale> = campaigns
        .into_iter()
        .map(|campaign_id| {
            // An approved commission stays approved: what a revision changes is an adjustment.
            let approved = before
                .iter()
                .find(|b| b.campaign_id == campaign_id && b.status == APPROVED)
                .map(|b| b.approved_commission_minor)
                .or(due.then_some(commission_minor));
            ReportSale {
                id: 0,
                brand_id,
                integration_id: key.integration_id,
                tag_campaign_id: key.tag_campaign_id,
                creator_id: key.creator_id,
                day: key.day,
                campaign_id,
                plan_id,
                revision: reported.revision,
                currency: reported.currency.clone(),
                purchases: reported.purchases,
                sales_minor: reported.sales_minor,
                commission_minor,
                commission_currency: commission_currency.clone(),
                status: if approved.is_some() {
                    APPROVED
                } else {
                    PENDING
                }
                .to_owned(),
                approved_commission_minor: approved.unwrap_or_default(),
                approve_on,
                shared,
                priced,
                updated_at: now,
            }
        })
        .collect();
    for sale in before {
        add_figures(conn, sale, -1).await?;
    }
    for sale in &after {
        add_figures(conn, sale, 1).await?;
    }
    store::replace(conn, key, &after).await
}

/// Approves the report commissions due at `now` (at most `limit`), in the caller's
/// transaction; returns the entries approved.
pub async fn approve_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ReportSale>, DbError> {
    let due = store::due(conn, payable_through(now), limit).await?;
    let mut approved = Vec::with_capacity(due.len());
    for sale in &due {
        let next = ReportSale {
            status: APPROVED.to_owned(),
            approved_commission_minor: sale.commission_minor,
            ..sale.clone()
        };
        add_figures(conn, sale, -1).await?;
        add_figures(conn, &next, 1).await?;
        approved.push(store::save(conn, &next).await?);
    }
    Ok(approved)
}

/// The plan's commission rule on `day` (in effect when the day began, UTC): a change of
/// commission applies from the next day on, however late a day's row or its revision arrives.
/// A plan the projection has no history of pays what it says now.
async fn rule_on(
    conn: &mut AsyncPgConnection,
    plan: &PlanRow,
    day: NaiveDate,
) -> Result<Option<CommissionRule>, DbError> {
    let key = (plan.brand_id, plan.plan_id);
    let histories = projection::commission_histories(conn, &[key]).await?;
    Ok(match histories.get(&key) {
        Some(history) => rule_in_effect(history, day.and_time(NaiveTime::MIN).and_utc()).cloned(),
        None => CommissionRule::from_columns(
            plan.commission_bps,
            plan.commission_fixed_minor,
            plan.commission_currency.as_deref(),
        ),
    })
}

/// Adds (`sign` 1) or takes away (-1) what `sale` counts in the campaign's daily figures: the
/// purchases as orders (no code uses: Amazon has no codes), the sales as revenue, and the
/// commission, pending or approved (with what changed since approval as an adjustment).
async fn add_figures(
    conn: &mut AsyncPgConnection,
    sale: &ReportSale,
    sign: i64,
) -> Result<(), DbError> {
    let key = |currency: &str| {
        (
            sale.brand_id,
            sale.campaign_id,
            sale.creator_id,
            sale.day,
            currency.to_owned(),
        )
    };
    let sales = SalesDelta {
        orders: sign * sale.purchases,
        revenue_minor: sign * sale.sales_minor,
        ..SalesDelta::default()
    };
    let commission = if sale.status == APPROVED {
        SalesDelta {
            approved_minor: sign * sale.approved_commission_minor,
            adjusted_minor: sign * (sale.commission_minor - sale.approved_commission_minor),
            ..SalesDelta::default()
        }
    } else {
        SalesDelta {
            pending_minor: sign * sale.commission_minor,
            ..SalesDelta::default()
        }
    };
    // The sales and the commission may be in different currencies (a fixed commission's own).
    let mut deltas: BTreeMap<SalesKey, SalesDelta> = BTreeMap::new();
    for (currency, delta) in [
        (&sale.currency, sales),
        (&sale.commission_currency, commission),
    ] {
        deltas.entry(key(currency)).or_default().add(&delta, 1);
    }
    conversions::add_sales(conn, &deltas).await
}

#[cfg(test)]
mod tests {
    use diesel::QueryableByName;
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    use tracking_api::common::v1::{Money, Provider};
    use tracking_api::plan::v1::plan_event::Subject;
    use tracking_api::plan::v1::{Commission, PlanEvent, commission};
    use tracking_db::{SchemaSpec, TestDb};
    use tracking_events::Apply;

    use super::*;
    use crate::projection::Plans;

    const SCHEMAS: &[SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];

    #[derive(QueryableByName, Debug, PartialEq, Eq)]
    struct Figures {
        #[diesel(sql_type = BigInt)]
        campaign_id: i64,
        #[diesel(sql_type = BigInt)]
        orders: i64,
        #[diesel(sql_type = BigInt)]
        revenue: i64,
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = BigInt)]
        approved: i64,
        #[diesel(sql_type = BigInt)]
        adjusted: i64,
    }

    /// Creator 42's daily figures per campaign (every day and currency added up).
    async fn figures(conn: &mut AsyncPgConnection) -> Vec<Figures> {
        tracking_db::prepared(
            "select campaign_id, sum(orders)::bigint as orders, sum(revenue_minor)::bigint as revenue,
                 sum(commission_pending_minor)::bigint as pending,
                 sum(commission_approved_minor)::bigint as approved,
                 sum(commission_adjusted_minor)::bigint as adjusted
             from daily_sales where brand_id = 1 and creator_id = 42
             group by campaign_id order by campaign_id",
        )
        .load(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn row(day: NaiveDate, revision: i32, purchases: i64, sales_minor: i64) -> AmazonReportRow {
        AmazonReportRow {
            id: 5,
            integration_id: 3,
            tag_campaign_id: "campaign-7".to_owned(),
            tag_ad_group_id: "creator-42".to_owned(),
            tag_creative_id: "campaign-7-creator-42".to_owned(),
            day: day.format("%Y-%m-%d").to_string(),
            purchases,
            sales: Some(Money {
                amount_minor: sales_minor,
                currency: "USD".to_owned(),
            }),
            campaign_id: 7,
            creator_id: 42,
            revision,
            imported_at: None,
        }
    }

    fn sums(
        campaign_id: i64,
        orders: i64,
        revenue: i64,
        (pending, approved, adjusted): (i64, i64, i64),
    ) -> Figures {
        Figures {
            campaign_id,
            orders,
            revenue,
            pending,
            approved,
            adjusted,
        }
    }

    fn plan_event(commission_bps: i32) -> PlanEvent {
        PlanEvent {
            brand_id: 1,
            subject: Some(Subject::Plan(tracking_api::plan::v1::Plan {
                id: 2,
                integration_id: 3,
                provider: Provider::AmazonAds as i32,
                commission: Some(Commission {
                    kind: Some(commission::Kind::PercentBps(commission_bps)),
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn campaign_event(campaign_id: i64) -> PlanEvent {
        PlanEvent {
            brand_id: 1,
            subject: Some(Subject::Campaign(tracking_api::plan::v1::Campaign {
                id: campaign_id,
                plan_id: 2,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// Applies plan events as the plan stream's consumer does.
    async fn plan_stream(conn: &mut AsyncPgConnection, events: &[PlanEvent]) {
        for (seq, event) in events.iter().enumerate() {
            Plans
                .apply(conn, seq as i64 + 1, event)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    async fn test_conn() -> (TestDb, AsyncPgConnection) {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let conn = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        (test_db, conn)
    }

    /// Plan 2 (10 %) on campaigns 7 and 8 (campaign 8 shares it: the sales are recorded there
    /// too).
    async fn setup() -> (TestDb, AsyncPgConnection) {
        let (test_db, mut conn) = test_conn().await;
        plan_stream(
            &mut conn,
            &[plan_event(1000), campaign_event(7), campaign_event(8)],
        )
        .await;
        (test_db, conn)
    }

    async fn apply_one(conn: &mut AsyncPgConnection, row: AmazonReportRow) -> Vec<ReportSale> {
        apply_rows(conn, &[(1, &row)])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_day_earns_the_commission_in_effect_when_it_began() {
        let (_db, mut conn) = setup().await;
        let today = Utc::now().date_naive();
        let day = |ago: i64| today - chrono::Duration::days(ago);
        // Two days ago at noon the brand raised plan 2's commission from 10 % to 20 %.
        let mut raise = plan_event(2000);
        if let Some(Subject::Plan(plan)) = raise.subject.as_mut() {
            let noon = day(2).and_hms_opt(12, 0, 0).unwrap_or_default().and_utc();
            plan.updated_at = Some(crate::convert::timestamp(noon));
        }
        plan_stream(&mut conn, &[raise]).await;
        // Rows (and a revision) reported after the raise: the days before it and the day it
        // happened keep 10 %, the day after earns 20 %.
        let mut commissions = Vec::new();
        for (ago, revision) in [(3, 1), (2, 1), (1, 1), (3, 2)] {
            let sales = apply_one(&mut conn, row(day(ago), revision, 1, 10_000)).await;
            commissions.push(sales.iter().map(|s| s.commission_minor).next());
        }
        assert_eq!(
            commissions,
            [Some(1_000), Some(1_000), Some(2_000), Some(1_000)]
        );
    }

    #[tokio::test]
    async fn a_revised_day_replaces_its_figures_and_an_older_revision_changes_nothing() {
        let (_db, mut conn) = setup().await;
        let yesterday = Utc::now().date_naive() - chrono::Duration::days(1);
        let first = apply_one(&mut conn, row(yesterday, 1, 3, 8_997)).await;
        assert_eq!(
            figures(&mut conn).await,
            [
                sums(7, 3, 8_997, (899, 0, 0)),
                sums(8, 3, 8_997, (899, 0, 0))
            ]
        );
        let revised = apply_one(&mut conn, row(yesterday, 2, 4, 10_997)).await;
        let ids = |sales: &[ReportSale]| sales.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&revised),
            ids(&first),
            "a revision keeps each entry's id"
        );
        assert!(revised.iter().all(|s| s.shared && s.priced));
        let figures_revised = [
            sums(7, 4, 10_997, (1_099, 0, 0)),
            sums(8, 4, 10_997, (1_099, 0, 0)),
        ];
        assert_eq!(figures(&mut conn).await, figures_revised);
        // Delivered again, or out of order: nothing changes.
        assert!(
            apply_one(&mut conn, row(yesterday, 2, 4, 10_997))
                .await
                .is_empty()
        );
        assert!(
            apply_one(&mut conn, row(yesterday, 1, 3, 8_997))
                .await
                .is_empty()
        );
        assert_eq!(figures(&mut conn).await, figures_revised);
    }

    #[tokio::test]
    async fn commission_is_approved_once_amazon_no_longer_revises_the_day() {
        let (_db, mut conn) = setup().await;
        let now = Utc::now();
        let today = now.date_naive();
        let old_day = today - chrono::Duration::days(30);
        // A backfilled old day is approved at once; a revision after that is an adjustment.
        apply_one(&mut conn, row(old_day, 1, 1, 2_000)).await;
        apply_one(&mut conn, row(old_day, 2, 1, 1_500)).await;
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 1, 1_500, (0, 200, -50))
        );

        // A recent day waits: pending until Amazon's revisions are over.
        apply_one(&mut conn, row(today, 1, 2, 3_000)).await;
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 3, 4_500, (300, 200, -50))
        );
        let approve = async |conn: &mut AsyncPgConnection, days: i64| {
            approve_due(conn, now + chrono::Duration::days(days), 100)
                .await
                .map(|approved| approved.len())
                .ok()
        };
        assert_eq!(approve(&mut conn, 0).await, Some(0));
        // The day is a profile's calendar day: 14 days on, UTC's today may still be the 13th
        // day where the profile is (west of UTC).
        assert_eq!(approve(&mut conn, 14).await, Some(0));
        assert_eq!(approve(&mut conn, 15).await, Some(2));
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 3, 4_500, (0, 500, -50))
        );
    }

    #[tokio::test]
    async fn a_row_before_its_campaign_and_plan_is_priced_once_they_arrive() {
        let (_db, mut conn) = test_conn().await;
        let old_day = Utc::now().date_naive() - chrono::Duration::days(30);
        let recent = Utc::now().date_naive() - chrono::Duration::days(2);
        // Neither the campaign nor its plan is known: the figures count, the commission is 0
        // and an old day is not approved while unpriced.
        let applied = apply_one(&mut conn, row(old_day, 1, 2, 5_000)).await;
        apply_one(&mut conn, row(recent, 1, 1, 1_000)).await;
        assert_eq!(figures(&mut conn).await, [sums(7, 3, 6_000, (0, 0, 0))]);
        assert!(applied.iter().all(|s| !s.priced && s.status == PENDING));
        assert_eq!(
            approve_due(&mut conn, Utc::now(), 100)
                .await
                .map(|a| a.len())
                .ok(),
            Some(0)
        );

        // The plan alone prices nothing: the campaign's link is still unknown.
        plan_stream(&mut conn, &[plan_event(1000)]).await;
        assert_eq!(figures(&mut conn).await, [sums(7, 3, 6_000, (0, 0, 0))]);

        // The campaign's link arrives: both days are priced with the plan's 10 % (the old one
        // approved at once).
        plan_stream(&mut conn, &[campaign_event(7)]).await;
        assert_eq!(figures(&mut conn).await, [sums(7, 3, 6_000, (100, 500, 0))]);
        // Delivered again, or another plan event of the brand: priced only once.
        plan_stream(&mut conn, &[campaign_event(7), plan_event(1000)]).await;
        assert_eq!(figures(&mut conn).await, [sums(7, 3, 6_000, (100, 500, 0))]);
        let entries = store::applied(&mut conn, &key(old_day)).await;
        assert_eq!(
            entries.ok().map(|e| e
                .iter()
                .map(|s| (
                    s.id,
                    s.priced,
                    s.status.clone(),
                    s.approved_commission_minor
                ))
                .collect::<Vec<_>>()),
            Some(vec![(applied[0].id, true, APPROVED.to_owned(), 500)]),
            "the entry keeps its id"
        );
    }

    #[tokio::test]
    async fn a_row_before_its_plan_is_priced_when_the_plan_arrives() {
        let (_db, mut conn) = test_conn().await;
        let recent = Utc::now().date_naive() - chrono::Duration::days(2);
        // The campaign's link to plan 2 is known, the plan itself not yet.
        plan_stream(&mut conn, &[campaign_event(7), campaign_event(8)]).await;
        apply_one(&mut conn, row(recent, 1, 3, 8_997)).await;
        assert_eq!(figures(&mut conn).await, [sums(7, 3, 8_997, (0, 0, 0))]);
        plan_stream(&mut conn, &[plan_event(1000)]).await;
        assert_eq!(
            figures(&mut conn).await,
            [
                sums(7, 3, 8_997, (899, 0, 0)),
                sums(8, 3, 8_997, (899, 0, 0))
            ]
        );
        // A later commission change is no re-pricing: what is priced stays.
        plan_stream(&mut conn, &[plan_event(2000)]).await;
        assert_eq!(figures(&mut conn).await[0], sums(7, 3, 8_997, (899, 0, 0)));
    }

    fn key(day: NaiveDate) -> RowKey {
        RowKey {
            brand_id: 1,
            integration_id: 3,
            tag_campaign_id: 7,
            creator_id: 42,
            day,
        }
    }
}
