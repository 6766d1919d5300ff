//! Performance reads: from the daily aggregates only (never by scanning conversions or clicks).

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Nullable, Text};
use diesel_async::RunQueryDsl;
use tracking_db::{Database, DbError};

/// One day's sales of the selection in one currency.
#[derive(Debug, Clone, QueryableByName)]
pub struct SalesDay {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub code_uses: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub discount_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub pending_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub approved_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub reversed_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub adjusted_minor: i64,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct ClicksDay {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub clicks: i64,
}

/// A campaign's (or one creator's) sales per day and currency in `[from, to]`.
pub async fn sales(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
    creator_id: Option<i64>,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<Vec<SalesDay>, DbError> {
    let mut conn = db.conn().await?;
    Ok(tracking_db::prepared(
        "select day, currency, sum(orders)::bigint as orders, sum(code_uses)::bigint as code_uses,
             sum(revenue_minor)::bigint as revenue_minor, sum(discount_minor)::bigint as discount_minor,
             sum(commission_pending_minor)::bigint as pending_minor,
             sum(commission_approved_minor)::bigint as approved_minor,
             sum(commission_reversed_minor)::bigint as reversed_minor,
             sum(commission_adjusted_minor)::bigint as adjusted_minor
         from daily_sales
         where brand_id = $1 and campaign_id = $2 and ($3::bigint is null or creator_id = $3)
           and day between $4 and $5
         group by day, currency order by day, currency",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(creator_id)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(&mut conn)
    .await?)
}

/// A campaign's (or one creator's) clicks per day in `[from, to]`.
pub async fn clicks(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
    creator_id: Option<i64>,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<Vec<ClicksDay>, DbError> {
    let mut conn = db.conn().await?;
    Ok(tracking_db::prepared(
        "select day, sum(clicks)::bigint as clicks from daily_clicks
         where brand_id = $1 and campaign_id = $2 and ($3::bigint is null or creator_id = $3)
           and day between $4 and $5
         group by day order by day",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(creator_id)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(&mut conn)
    .await?)
}
