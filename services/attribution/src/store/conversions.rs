//! Conversions, their adjustments, and the daily aggregates kept current with them.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Date, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

/// A conversion row.
#[derive(Debug, Clone, QueryableByName)]
pub struct ConversionRow {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub store_order_id: String,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub matched: String,
    #[diesel(sql_type = Text)]
    pub split_rule: String,
    #[diesel(sql_type = Integer)]
    pub share_bps: i32,
    #[diesel(sql_type = Bool)]
    pub shared: bool,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub order_status: String,
    #[diesel(sql_type = Integer)]
    pub order_rank: i32,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub order_total_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub order_refunded_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub base_revenue_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub base_discount_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub base_commission_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub discount_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub commission_minor: i64,
    #[diesel(sql_type = Text)]
    pub commission_currency: String,
    #[diesel(sql_type = BigInt)]
    pub adjusted_revenue_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub adjusted_commission_minor: i64,
    #[diesel(sql_type = Timestamptz)]
    pub ordered_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub approve_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// The conversions of one order, locked for update.
pub async fn of_order(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Vec<ConversionRow>, DbError> {
    Ok(diesel::sql_query(
        "select * from conversions where brand_id = $1 and integration_id = $2
         and store_order_id = $3 order by id for update",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await?)
}

/// Inserts a new conversion; `None` when the order already has one for that campaign and
/// creator (a duplicate event).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    row: &ConversionRow,
) -> Result<Option<ConversionRow>, DbError> {
    let rows: Vec<ConversionRow> = diesel::sql_query(
        "insert into conversions (brand_id, integration_id, store_order_id, campaign_id,
             creator_id, code_id, plan_id, method, matched, split_rule, share_bps, shared, status,
             order_status, order_rank, currency, order_total_minor, order_refunded_minor,
             base_revenue_minor, base_discount_minor, base_commission_minor, revenue_minor,
             discount_minor, commission_minor, commission_currency, ordered_at, approve_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $25, $26, $27)
         on conflict do nothing returning *",
    )
    .bind::<BigInt, _>(row.brand_id)
    .bind::<BigInt, _>(row.integration_id)
    .bind::<Text, _>(&row.store_order_id)
    .bind::<BigInt, _>(row.campaign_id)
    .bind::<BigInt, _>(row.creator_id)
    .bind::<BigInt, _>(row.code_id)
    .bind::<BigInt, _>(row.plan_id)
    .bind::<Text, _>(&row.method)
    .bind::<Text, _>(&row.matched)
    .bind::<Text, _>(&row.split_rule)
    .bind::<Integer, _>(row.share_bps)
    .bind::<Bool, _>(row.shared)
    .bind::<Text, _>(&row.status)
    .bind::<Text, _>(&row.order_status)
    .bind::<Integer, _>(row.order_rank)
    .bind::<Text, _>(&row.currency)
    .bind::<BigInt, _>(row.order_total_minor)
    .bind::<BigInt, _>(row.order_refunded_minor)
    .bind::<BigInt, _>(row.base_revenue_minor)
    .bind::<BigInt, _>(row.base_discount_minor)
    .bind::<BigInt, _>(row.base_commission_minor)
    .bind::<BigInt, _>(row.revenue_minor)
    .bind::<BigInt, _>(row.discount_minor)
    .bind::<BigInt, _>(row.commission_minor)
    .bind::<Text, _>(&row.commission_currency)
    .bind::<Timestamptz, _>(row.ordered_at)
    .bind::<Nullable<Timestamptz>, _>(row.approve_at)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next())
}

/// Writes the changing fields of a conversion back.
pub async fn update(
    conn: &mut AsyncPgConnection,
    row: &ConversionRow,
) -> Result<ConversionRow, DbError> {
    Ok(diesel::sql_query(
        "update conversions set status = $3, order_status = $4, order_rank = $5,
             order_refunded_minor = $6, revenue_minor = $7, discount_minor = $8,
             commission_minor = $9, adjusted_revenue_minor = $10, adjusted_commission_minor = $11,
             approve_at = $12, updated_at = now()
         where brand_id = $1 and id = $2 returning *",
    )
    .bind::<BigInt, _>(row.brand_id)
    .bind::<BigInt, _>(row.id)
    .bind::<Text, _>(&row.status)
    .bind::<Text, _>(&row.order_status)
    .bind::<Integer, _>(row.order_rank)
    .bind::<BigInt, _>(row.order_refunded_minor)
    .bind::<BigInt, _>(row.revenue_minor)
    .bind::<BigInt, _>(row.discount_minor)
    .bind::<BigInt, _>(row.commission_minor)
    .bind::<BigInt, _>(row.adjusted_revenue_minor)
    .bind::<BigInt, _>(row.adjusted_commission_minor)
    .bind::<Nullable<Timestamptz>, _>(row.approve_at)
    .get_result(conn)
    .await?)
}

pub async fn add_adjustment(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    conversion_id: i64,
    revenue_minor: i64,
    commission_minor: i64,
    reason: &str,
) -> Result<(), DbError> {
    diesel::sql_query(
        "insert into adjustments (brand_id, conversion_id, revenue_minor, commission_minor, reason)
         values ($1, $2, $3, $4, $5)",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(conversion_id)
    .bind::<BigInt, _>(revenue_minor)
    .bind::<BigInt, _>(commission_minor)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// An adjustment as read back.
#[derive(Debug, Clone, QueryableByName)]
pub struct AdjustmentRow {
    #[diesel(sql_type = BigInt)]
    pub conversion_id: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_minor: i64,
    #[diesel(sql_type = BigInt)]
    pub commission_minor: i64,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
}

pub async fn adjustments(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    conversion_ids: &[i64],
) -> Result<Vec<AdjustmentRow>, DbError> {
    Ok(diesel::sql_query(
        "select conversion_id, revenue_minor, commission_minor, reason, at from adjustments
         where brand_id = $1 and conversion_id = any($2) order by conversion_id, id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<diesel::sql_types::Array<BigInt>, _>(conversion_ids)
    .load(conn)
    .await?)
}

/// A change to one day's sales figures of a creator in a campaign, in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesDelta {
    pub orders: i64,
    pub code_uses: i64,
    pub revenue_minor: i64,
    pub discount_minor: i64,
    pub pending_minor: i64,
    pub approved_minor: i64,
    pub reversed_minor: i64,
    pub adjusted_minor: i64,
}

impl SalesDelta {
    pub fn is_zero(&self) -> bool {
        *self == SalesDelta::default()
    }
}

pub async fn add_sales(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, i64),
    day: NaiveDate,
    currency: &str,
    delta: &SalesDelta,
) -> Result<(), DbError> {
    if delta.is_zero() {
        return Ok(());
    }
    let (brand_id, campaign_id, creator_id) = key;
    diesel::sql_query(
        "insert into daily_sales as d (brand_id, campaign_id, creator_id, day, currency, orders,
             code_uses, revenue_minor, discount_minor, commission_pending_minor,
             commission_approved_minor, commission_reversed_minor, commission_adjusted_minor)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         on conflict (brand_id, campaign_id, creator_id, day, currency) do update set
             orders = d.orders + excluded.orders,
             code_uses = d.code_uses + excluded.code_uses,
             revenue_minor = d.revenue_minor + excluded.revenue_minor,
             discount_minor = d.discount_minor + excluded.discount_minor,
             commission_pending_minor = d.commission_pending_minor + excluded.commission_pending_minor,
             commission_approved_minor = d.commission_approved_minor + excluded.commission_approved_minor,
             commission_reversed_minor = d.commission_reversed_minor + excluded.commission_reversed_minor,
             commission_adjusted_minor = d.commission_adjusted_minor + excluded.commission_adjusted_minor",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<BigInt, _>(creator_id)
    .bind::<Date, _>(day)
    .bind::<Text, _>(currency)
    .bind::<BigInt, _>(delta.orders)
    .bind::<BigInt, _>(delta.code_uses)
    .bind::<BigInt, _>(delta.revenue_minor)
    .bind::<BigInt, _>(delta.discount_minor)
    .bind::<BigInt, _>(delta.pending_minor)
    .bind::<BigInt, _>(delta.approved_minor)
    .bind::<BigInt, _>(delta.reversed_minor)
    .bind::<BigInt, _>(delta.adjusted_minor)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending conversions whose holding period is over, locked (other replicas skip them).
pub async fn due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ConversionRow>, DbError> {
    Ok(diesel::sql_query(
        "select * from conversions where status = 'pending' and approve_at <= $1
         order by approve_at limit $2 for update skip locked",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Filters of ListConversions and the export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub creator_id: Option<i64>,
    pub status: Option<&'static str>,
    pub method: Option<&'static str>,
}

/// A campaign's conversions, newest first, with ids below `before`.
pub async fn list(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ConversionRow>, DbError> {
    let mut conn = db.conn().await?;
    Ok(diesel::sql_query(
        "select * from conversions where brand_id = $1 and campaign_id = $2
         and ($3::bigint is null or creator_id = $3) and ($4::text is null or status = $4)
         and ($5::text is null or method = $5) and ($6::bigint is null or id < $6)
         order by id desc limit $7",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(filter.creator_id)
    .bind::<Nullable<Text>, _>(filter.status)
    .bind::<Nullable<Text>, _>(filter.method)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}
