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
    // The brand, campaign and days are joined as keys, the creator stays a constant
    // (tracking_db::stale_statistics): with constants, a campaign and days the statistics had not
    // seen made daily_sales_by_day look as cheap as the primary key, and a creator's days read
    // every creator's.
    Ok(tracking_db::prepared(
        "select d.day, d.currency, sum(d.orders)::bigint as orders,
             sum(d.code_uses)::bigint as code_uses, sum(d.revenue_minor)::bigint as revenue_minor,
             sum(d.discount_minor)::bigint as discount_minor,
             sum(d.commission_pending_minor)::bigint as pending_minor,
             sum(d.commission_approved_minor)::bigint as approved_minor,
             sum(d.commission_reversed_minor)::bigint as reversed_minor,
             sum(d.commission_adjusted_minor)::bigint as adjusted_minor
         from unnest(array[$1::bigint], array[$2::bigint], array[$4::date], array[$5::date])
             as k(key_brand, key_campaign, key_from, key_to)
         join daily_sales d on d.brand_id = k.key_brand
             and d.campaign_id = k.key_campaign and ($3::bigint is null or d.creator_id = $3)
             and d.day between k.key_from and k.key_to
         group by d.day, d.currency order by d.day, d.currency",
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
    // Keys joined as in `sales`.
    Ok(tracking_db::prepared(
        "select d.day, sum(d.clicks)::bigint as clicks
         from unnest(array[$1::bigint], array[$2::bigint], array[$4::date], array[$5::date])
             as k(key_brand, key_campaign, key_from, key_to)
         join daily_clicks d on d.brand_id = k.key_brand
             and d.campaign_id = k.key_campaign and ($3::bigint is null or d.creator_id = $3)
             and d.day between k.key_from and k.key_to
         group by d.day order by d.day",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(creator_id)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(&mut conn)
    .await?)
}
