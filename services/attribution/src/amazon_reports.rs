//! Applying ProviderGateway's Amazon Attribution report rows (they travel on `WatchOrders`, as
//! `OrderEvent.report_row`): a creator's attributed purchases and sales of one day count as that
//! many orders and that revenue in the creator's campaign (and every campaign sharing its plan),
//! with the plan's commission on them. A revised row replaces what its earlier revision added;
//! an older revision than the one applied changes nothing. Runs in the stream consumer's
//! transaction, so each row is applied exactly once; the approver approves the commission once
//! Amazon no longer revises the day.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use diesel_async::AsyncPgConnection;
use tracking_api::gateway::v1::AmazonReportRow;
use tracking_db::DbError;

use crate::domain::amazon_reports::{approve_on, commission};
use crate::domain::attribution::CommissionRule;
use crate::store::amazon_reports::{self as store, ReportSale, RowKey};
use crate::store::conversions::{self, SalesDelta, SalesKey};
use crate::store::projection::{self, PlanRow};

const PENDING: &str = "pending";
const APPROVED: &str = "approved";

/// Applies one report row of `brand_id`'s.
#[tracing::instrument(skip_all, fields(brand_id, row_id = row.id, revision = row.revision))]
pub async fn apply(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    row: &AmazonReportRow,
) -> Result<(), DbError> {
    let Ok(day) = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d") else {
        tracing::error!(
            day = row.day,
            "a report row without a readable day; dropped"
        );
        return Ok(());
    };
    if row.campaign_id <= 0 || row.creator_id <= 0 {
        return Ok(());
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
        return Ok(());
    }
    let plan_id = store::plan_of_campaign(conn, brand_id, row.campaign_id)
        .await?
        .unwrap_or_default();
    let plan = projection::get_plan(conn, brand_id, plan_id).await?;
    // A plan shared by several campaigns records the sales in each of them.
    let mut campaigns = if plan_id > 0 {
        projection::campaigns_of_plans(conn, &[(brand_id, plan_id)])
            .await?
            .into_iter()
            .map(|c| c.campaign_id)
            .collect()
    } else {
        Vec::new()
    };
    if !campaigns.contains(&row.campaign_id) {
        campaigns.push(row.campaign_id);
    }
    let sales = row.sales.clone().unwrap_or_default();
    let (commission_minor, commission_currency) = commission(
        plan.as_ref().and_then(rule_of).as_ref(),
        row.purchases,
        sales.amount_minor,
        &sales.currency,
    );
    let approve_on = approve_on(day, plan.as_ref().map_or(0, |p| p.holding_period_days));
    let due = approve_on <= Utc::now().date_naive();
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
                brand_id,
                integration_id: row.integration_id,
                tag_campaign_id: row.campaign_id,
                creator_id: row.creator_id,
                day,
                campaign_id,
                plan_id,
                revision: row.revision,
                currency: sales.currency.clone(),
                purchases: row.purchases,
                sales_minor: sales.amount_minor,
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
            }
        })
        .collect();
    for sale in &before {
        add_figures(conn, sale, -1).await?;
    }
    for sale in &after {
        add_figures(conn, sale, 1).await?;
    }
    store::replace(conn, &key, &after).await?;
    tracing::debug!(
        creator_id = row.creator_id,
        day = %day,
        purchases = row.purchases,
        "amazon report row applied"
    );
    Ok(())
}

/// Approves the report commissions due on `today` (at most `limit`), in the caller's
/// transaction; returns how many.
pub async fn approve_due(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
    limit: i64,
) -> Result<usize, DbError> {
    let due = store::due(conn, today, limit).await?;
    for sale in &due {
        let approved = ReportSale {
            status: APPROVED.to_owned(),
            approved_commission_minor: sale.commission_minor,
            ..sale.clone()
        };
        add_figures(conn, sale, -1).await?;
        add_figures(conn, &approved, 1).await?;
        store::save(conn, &approved).await?;
    }
    Ok(due.len())
}

fn rule_of(plan: &PlanRow) -> Option<CommissionRule> {
    if let Some(bps) = plan.commission_bps {
        return Some(CommissionRule::PercentBps(bps));
    }
    Some(CommissionRule::FixedPerOrder {
        amount_minor: plan.commission_fixed_minor?,
        currency: plan.commission_currency.clone()?,
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
    use tracking_api::common::v1::Money;
    use tracking_db::{Database, PoolOptions, SchemaSpec, TestDb};

    use super::*;

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
        diesel::sql_query(
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

    async fn setup() -> (TestDb, AsyncPgConnection) {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = Database::new(test_db.url(), crate::SCHEMA, PoolOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut conn = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        let plan = PlanRow {
            brand_id: 1,
            plan_id: 2,
            integration_id: 3,
            provider: "PROVIDER_AMAZON_ADS".to_owned(),
            commission_bps: Some(1000),
            commission_fixed_minor: None,
            commission_currency: None,
            attribution_window_days: 30,
            holding_period_days: 0,
            ends_at: None,
            report_visible: false,
        };
        projection::upsert_plan(&mut conn, &plan, chrono::Utc::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Campaign 8 shares the plan: the sales are recorded there too.
        for campaign in [7, 8] {
            projection::upsert_campaign(&mut conn, 1, campaign, 2, false)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        (test_db, conn)
    }

    #[tokio::test]
    async fn a_revised_day_replaces_its_figures_and_an_older_revision_changes_nothing() {
        let (_db, mut conn) = setup().await;
        let yesterday = Utc::now().date_naive() - chrono::Duration::days(1);
        let apply = async |conn: &mut AsyncPgConnection, row: AmazonReportRow| {
            apply(conn, 1, &row).await.unwrap_or_else(|e| panic!("{e}"))
        };
        apply(&mut conn, row(yesterday, 1, 3, 8_997)).await;
        assert_eq!(
            figures(&mut conn).await,
            [
                sums(7, 3, 8_997, (899, 0, 0)),
                sums(8, 3, 8_997, (899, 0, 0))
            ]
        );
        apply(&mut conn, row(yesterday, 2, 4, 10_997)).await;
        let revised = [
            sums(7, 4, 10_997, (1_099, 0, 0)),
            sums(8, 4, 10_997, (1_099, 0, 0)),
        ];
        assert_eq!(figures(&mut conn).await, revised);
        // Delivered again, or out of order: nothing changes.
        apply(&mut conn, row(yesterday, 2, 4, 10_997)).await;
        apply(&mut conn, row(yesterday, 1, 3, 8_997)).await;
        assert_eq!(figures(&mut conn).await, revised);
    }

    #[tokio::test]
    async fn commission_is_approved_once_amazon_no_longer_revises_the_day() {
        let (_db, mut conn) = setup().await;
        let today = Utc::now().date_naive();
        let old_day = today - chrono::Duration::days(30);
        // A backfilled old day is approved at once; a revision after that is an adjustment.
        apply(&mut conn, 1, &row(old_day, 1, 1, 2_000))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        apply(&mut conn, 1, &row(old_day, 2, 1, 1_500))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 1, 1_500, (0, 200, -50))
        );

        // A recent day waits: pending until Amazon's revisions are over.
        apply(&mut conn, 1, &row(today, 1, 2, 3_000))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 3, 4_500, (300, 200, -50))
        );
        assert_eq!(approve_due(&mut conn, today, 100).await.ok(), Some(0));
        let later = today + chrono::Duration::days(14);
        assert_eq!(approve_due(&mut conn, later, 100).await.ok(), Some(2));
        assert_eq!(
            figures(&mut conn).await[0],
            sums(7, 3, 4_500, (0, 500, -50))
        );
    }
}
