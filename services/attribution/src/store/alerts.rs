//! Leaked-code evidence per code and day, and the alerts raised from it.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

/// A code's figures after counting one more order.
#[derive(Debug, Clone, QueryableByName)]
pub struct CodeCounts {
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub without_click: i64,
    #[diesel(sql_type = BigInt)]
    pub day_orders: i64,
    #[diesel(sql_type = BigInt)]
    pub baseline_orders: i64,
}

/// Counts one more order of the code on `day` and returns the code's figures.
pub async fn count_order(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    code_id: i64,
    day: NaiveDate,
    without_click: bool,
    baseline_days: i64,
) -> Result<CodeCounts, DbError> {
    diesel::sql_query(
        "insert into code_daily as c (brand_id, code_id, day, orders, orders_without_click)
         values ($1, $2, $3, 1, $4)
         on conflict (brand_id, code_id, day) do update set
             orders = c.orders + 1, orders_without_click = c.orders_without_click + excluded.orders_without_click",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(code_id)
    .bind::<Date, _>(day)
    .bind::<BigInt, _>(i64::from(without_click))
    .execute(conn)
    .await?;
    Ok(diesel::sql_query(
        "select coalesce(sum(orders), 0)::bigint as orders,
             coalesce(sum(orders_without_click), 0)::bigint as without_click,
             coalesce(sum(orders) filter (where day = $3), 0)::bigint as day_orders,
             coalesce(sum(orders) filter (where day < $3 and day >= $3 - $4::integer), 0)::bigint
                 as baseline_orders
         from code_daily where brand_id = $1 and code_id = $2",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(code_id)
    .bind::<Date, _>(day)
    .bind::<diesel::sql_types::Integer, _>(baseline_days as i32)
    .get_result(conn)
    .await?)
}

/// An alert to raise (or refresh with newer evidence).
#[derive(Debug, Clone, QueryableByName)]
pub struct AlertRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = Text)]
    pub evidence: String,
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub orders_without_click: i64,
    #[diesel(sql_type = Nullable<Date>)]
    pub day: Option<NaiveDate>,
    #[diesel(sql_type = BigInt)]
    pub day_orders: i64,
    #[diesel(sql_type = BigInt)]
    pub baseline_milli: i64,
    #[diesel(sql_type = Timestamptz)]
    pub raised_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
}

pub async fn raise(conn: &mut AsyncPgConnection, alert: &AlertRow) -> Result<(), DbError> {
    diesel::sql_query(
        "insert into code_alerts (brand_id, code_id, kind, campaign_id, creator_id, code, evidence,
             orders, orders_without_click, day, day_orders, baseline_milli)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         on conflict (brand_id, code_id, kind) do update set evidence = excluded.evidence,
             orders = excluded.orders, orders_without_click = excluded.orders_without_click,
             day = excluded.day, day_orders = excluded.day_orders,
             baseline_milli = excluded.baseline_milli",
    )
    .bind::<BigInt, _>(alert.brand_id)
    .bind::<BigInt, _>(alert.code_id)
    .bind::<Text, _>(&alert.kind)
    .bind::<BigInt, _>(alert.campaign_id)
    .bind::<BigInt, _>(alert.creator_id)
    .bind::<Text, _>(&alert.code)
    .bind::<Text, _>(&alert.evidence)
    .bind::<BigInt, _>(alert.orders)
    .bind::<BigInt, _>(alert.orders_without_click)
    .bind::<Nullable<Date>, _>(alert.day)
    .bind::<BigInt, _>(alert.day_orders)
    .bind::<BigInt, _>(alert.baseline_milli)
    .execute(conn)
    .await?;
    Ok(())
}

/// The brand's alerts (one campaign's when given), newest first, ids below `before`.
pub async fn list(
    db: &Database,
    brand_id: i64,
    campaign_id: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AlertRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(diesel::sql_query(
        "select * from code_alerts where brand_id = $1
         and ($2::bigint is null or campaign_id = $2) and ($3::bigint is null or id < $3)
         order by id desc limit $4",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Nullable<BigInt>, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}
