//! Amazon Attribution report rows as applied to the daily figures (`report_sales`).

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::DbError;

/// A report row of one creator's tag: the integration, the tag's campaign, the creator, the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub brand_id: i64,
    pub integration_id: i64,
    pub tag_campaign_id: i64,
    pub creator_id: i64,
    pub day: NaiveDate,
}

/// What a report row added for one campaign.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ReportSale {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = BigInt)]
    pub tag_campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Integer)]
    pub revision: i32,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub purchases: i64,
    #[diesel(sql_type = BigInt)]
    pub sales_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub commission_minor: i64,
    #[diesel(sql_type = Text)]
    pub commission_currency: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub approved_commission_minor: i64,
    #[diesel(sql_type = Date)]
    pub approve_on: NaiveDate,
}

const COLUMNS: &str = "brand_id, integration_id, tag_campaign_id, creator_id, day, campaign_id, \
    plan_id, revision, currency, purchases, sales_minor, commission_minor, commission_currency, \
    status, approved_commission_minor, approve_on";

/// What a report row added so far (one row per campaign credited), locked.
pub async fn applied(
    conn: &mut AsyncPgConnection,
    key: &RowKey,
) -> Result<Vec<ReportSale>, DbError> {
    Ok(diesel::sql_query(format!(
        "select {COLUMNS} from report_sales
         where brand_id = $1 and integration_id = $2 and tag_campaign_id = $3 and creator_id = $4
           and day = $5
         order by campaign_id for update"
    ))
    .bind::<BigInt, _>(key.brand_id)
    .bind::<BigInt, _>(key.integration_id)
    .bind::<BigInt, _>(key.tag_campaign_id)
    .bind::<BigInt, _>(key.creator_id)
    .bind::<Date, _>(key.day)
    .load(conn)
    .await?)
}

/// Replaces what a report row added with `sales`.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    key: &RowKey,
    sales: &[ReportSale],
) -> Result<(), DbError> {
    diesel::sql_query(
        "delete from report_sales
         where brand_id = $1 and integration_id = $2 and tag_campaign_id = $3 and creator_id = $4
           and day = $5",
    )
    .bind::<BigInt, _>(key.brand_id)
    .bind::<BigInt, _>(key.integration_id)
    .bind::<BigInt, _>(key.tag_campaign_id)
    .bind::<BigInt, _>(key.creator_id)
    .bind::<Date, _>(key.day)
    .execute(conn)
    .await?;
    for sale in sales {
        save(conn, sale).await?;
    }
    Ok(())
}

/// Inserts `sale`, or updates the stored one of its row and campaign.
pub async fn save(conn: &mut AsyncPgConnection, sale: &ReportSale) -> Result<(), DbError> {
    diesel::sql_query(format!(
        "insert into report_sales ({COLUMNS})
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         on conflict (brand_id, integration_id, tag_campaign_id, creator_id, day, campaign_id)
         do update set status = excluded.status,
             approved_commission_minor = excluded.approved_commission_minor"
    ))
    .bind::<BigInt, _>(sale.brand_id)
    .bind::<BigInt, _>(sale.integration_id)
    .bind::<BigInt, _>(sale.tag_campaign_id)
    .bind::<BigInt, _>(sale.creator_id)
    .bind::<Date, _>(sale.day)
    .bind::<BigInt, _>(sale.campaign_id)
    .bind::<BigInt, _>(sale.plan_id)
    .bind::<Integer, _>(sale.revision)
    .bind::<Text, _>(&sale.currency)
    .bind::<BigInt, _>(sale.purchases)
    .bind::<BigInt, _>(sale.sales_minor)
    .bind::<BigInt, _>(sale.commission_minor)
    .bind::<Text, _>(&sale.commission_currency)
    .bind::<Text, _>(&sale.status)
    .bind::<BigInt, _>(sale.approved_commission_minor)
    .bind::<Date, _>(sale.approve_on)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending commissions due for approval on `today` (at most `limit`), locked; other replicas'
/// approvers skip them.
pub async fn due(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
    limit: i64,
) -> Result<Vec<ReportSale>, DbError> {
    Ok(diesel::sql_query(format!(
        "select {COLUMNS} from report_sales where status = 'pending' and approve_on <= $1
         order by approve_on limit $2 for update skip locked"
    ))
    .bind::<Date, _>(today)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// The plan linked to a campaign (0 when none is), if the campaign is known.
pub async fn plan_of_campaign(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    campaign_id: i64,
) -> Result<Option<i64>, DbError> {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = BigInt)]
        plan_id: i64,
    }
    let rows: Vec<Plan> =
        diesel::sql_query("select plan_id from campaigns where brand_id = $1 and campaign_id = $2")
            .bind::<BigInt, _>(brand_id)
            .bind::<BigInt, _>(campaign_id)
            .load(conn)
            .await?;
    Ok(rows.into_iter().next().map(|row| row.plan_id))
}
