//! Conversions, their adjustments, and the daily aggregates kept current with them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Date, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

use crate::store::amazon_reports::{self, ReportSale};

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
    /// When the store last changed the order this was priced from, when it said.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub order_updated_at: Option<DateTime<Utc>>,
}

/// An order, as conversions and pending orders are keyed: (brand, integration, store order id).
pub type OrderKey = (i64, i64, String);

/// The conversions of `orders` (sorted, each key once), locked for update, oldest first.
pub async fn of_orders(
    conn: &mut AsyncPgConnection,
    orders: &[OrderKey],
) -> Result<Vec<ConversionRow>, DbError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(
        orders.windows(2).all(|w| w[0] < w[1]),
        "order keys unsorted or repeated"
    );
    // A join rather than `in (select ...)`: the keys are distinct already, and the semi-join's
    // hashing of every key was a fifth of this read (docs/BENCHMARKS.md, tenth session).
    Ok(tracking_db::prepared(
        "select c.* from unnest($1::bigint[], $2::bigint[], $3::text[]) as k(b, i, o)
         join conversions c on c.brand_id = k.b and c.integration_id = k.i
             and c.store_order_id = k.o
         order by c.id for update of c",
    )
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(orders.iter().map(|k| k.2.as_str()).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// A text a code held only while it waited for its push: the store turned it down as another
/// discount's (the brand's own), and the code was renamed.
#[derive(Debug, Clone)]
pub struct Collided {
    pub brand_id: i64,
    pub code_id: i64,
    pub creator_id: i64,
    pub campaign_id: i64,
    pub plan_id: i64,
    /// The text, lower-cased.
    pub text_lower: String,
    /// Since when the code had it (orders before that were never matched to it by it).
    pub since: DateTime<Utc>,
    /// When the rename was made.
    pub renamed_at: DateTime<Utc>,
}

/// The code conversions not yet reversed that each of `collided` matched by its turned-down
/// text, from when the code had it: in any campaign of its plan (a shared plan records the sale
/// in each) and its own. Locked, in id order, as [`of_orders`] locks them.
pub async fn matched_on(
    conn: &mut AsyncPgConnection,
    collided: &[Collided],
) -> Result<Vec<ConversionRow>, DbError> {
    if collided.is_empty() {
        return Ok(Vec::new());
    }
    let int8 = |f: fn(&Collided) -> i64| collided.iter().map(f).collect::<Vec<i64>>();
    Ok(tracking_db::prepared(
        "select c.* from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                 $5::bigint[], $6::text[], $7::timestamptz[])
             as k(b, code, cr, ca, p, text, since)
         cross join lateral (select array_append(array(select campaign_id from campaigns
             where brand_id = k.b and plan_id = k.p), k.ca) as ids) recorded_in
         join conversions c on c.brand_id = k.b and c.campaign_id = any(recorded_in.ids)
             and c.creator_id = k.cr
         where c.code_id = k.code and c.method = 'code' and c.status <> 'reversed'
             and lower(btrim(c.matched)) = k.text and c.ordered_at >= k.since
         order by c.id for update of c",
    )
    .bind::<Array<BigInt>, _>(int8(|c| c.brand_id))
    .bind::<Array<BigInt>, _>(int8(|c| c.code_id))
    .bind::<Array<BigInt>, _>(int8(|c| c.creator_id))
    .bind::<Array<BigInt>, _>(int8(|c| c.campaign_id))
    .bind::<Array<BigInt>, _>(int8(|c| c.plan_id))
    .bind::<Array<Text>, _>(
        collided
            .iter()
            .map(|c| c.text_lower.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(collided.iter().map(|c| c.since).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// What the database gave a conversion it stored: its id and times, with its unique key
/// (brand, integration, store order id, campaign, creator) to tell which one it is.
#[derive(Debug, Clone, QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub integration_id: i64,
    #[diesel(sql_type = Text)]
    pub store_order_id: String,
    #[diesel(sql_type = BigInt)]
    pub campaign_id: i64,
    #[diesel(sql_type = BigInt)]
    pub creator_id: i64,
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// Inserts new conversions in the order given (ids follow it). A plain insert: the caller has
/// read the orders' conversions under the stream's single consumer, so a row that already
/// exists is a fault that fails the statement (and the batch), where `on conflict do nothing`
/// would make every row pay for a speculative insertion (a quarter of this statement's time).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    rows: &[&ConversionRow],
) -> Result<Vec<Stored>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let int8 = |f: fn(&ConversionRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
    let int4 = |f: fn(&ConversionRow) -> i32| rows.iter().map(|r| f(r)).collect::<Vec<i32>>();
    let text = |f: fn(&ConversionRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<&str>>();
    Ok(tracking_db::prepared(
        "insert into conversions (brand_id, integration_id, store_order_id, campaign_id,
             creator_id, code_id, plan_id, method, matched, split_rule, share_bps, shared, status,
             order_status, order_rank, currency, order_total_minor, order_refunded_minor,
             base_revenue_minor, base_discount_minor, base_commission_minor, revenue_minor,
             discount_minor, commission_minor, commission_currency, adjusted_revenue_minor,
             adjusted_commission_minor, ordered_at, approve_at, order_updated_at)
         select brand_id, integration_id, store_order_id, campaign_id, creator_id, code_id,
             plan_id, method, matched, split_rule, share_bps, shared, status, order_status,
             order_rank, currency, order_total_minor, order_refunded_minor, base_revenue_minor,
             base_discount_minor, base_commission_minor, revenue_minor, discount_minor,
             commission_minor, commission_currency, adjusted_revenue_minor,
             adjusted_commission_minor, ordered_at, approve_at, order_updated_at
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
             $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::integer[],
             $12::boolean[], $13::text[], $14::text[], $15::integer[], $16::text[],
             $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[],
             $22::bigint[], $23::bigint[], $24::bigint[], $25::text[], $26::bigint[],
             $27::bigint[], $28::timestamptz[], $29::timestamptz[], $30::timestamptz[])
             with ordinality as r(brand_id, integration_id, store_order_id, campaign_id,
             creator_id, code_id, plan_id, method, matched, split_rule, share_bps, shared, status,
             order_status, order_rank, currency, order_total_minor, order_refunded_minor,
             base_revenue_minor, base_discount_minor, base_commission_minor, revenue_minor,
             discount_minor, commission_minor, commission_currency, adjusted_revenue_minor,
             adjusted_commission_minor, ordered_at, approve_at, order_updated_at, n)
         order by n
         returning brand_id, integration_id, store_order_id, campaign_id, creator_id, id,
             created_at, updated_at",
    )
    .bind::<Array<BigInt>, _>(int8(|r| r.brand_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.integration_id))
    .bind::<Array<Text>, _>(text(|r| &r.store_order_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.campaign_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.creator_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.code_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.plan_id))
    .bind::<Array<Text>, _>(text(|r| &r.method))
    .bind::<Array<Text>, _>(text(|r| &r.matched))
    .bind::<Array<Text>, _>(text(|r| &r.split_rule))
    .bind::<Array<Integer>, _>(int4(|r| r.share_bps))
    .bind::<Array<Bool>, _>(rows.iter().map(|r| r.shared).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|r| &r.status))
    .bind::<Array<Text>, _>(text(|r| &r.order_status))
    .bind::<Array<Integer>, _>(int4(|r| r.order_rank))
    .bind::<Array<Text>, _>(text(|r| &r.currency))
    .bind::<Array<BigInt>, _>(int8(|r| r.order_total_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.order_refunded_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.base_revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.base_discount_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.base_commission_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.discount_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.commission_minor))
    .bind::<Array<Text>, _>(text(|r| &r.commission_currency))
    .bind::<Array<BigInt>, _>(int8(|r| r.adjusted_revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.adjusted_commission_minor))
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.ordered_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.approve_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        rows.iter().map(|r| r.order_updated_at).collect::<Vec<_>>(),
    )
    .load(conn)
    .await?)
}

/// Writes the changing fields of conversions back.
pub async fn update(
    conn: &mut AsyncPgConnection,
    rows: &[&ConversionRow],
) -> Result<Vec<Stored>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let int8 = |f: fn(&ConversionRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
    let text = |f: fn(&ConversionRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<&str>>();
    Ok(tracking_db::prepared(
        "update conversions c set status = u.status, order_status = u.order_status,
             order_rank = u.order_rank, order_refunded_minor = u.order_refunded_minor,
             revenue_minor = u.revenue_minor, discount_minor = u.discount_minor,
             commission_minor = u.commission_minor,
             adjusted_revenue_minor = u.adjusted_revenue_minor,
             adjusted_commission_minor = u.adjusted_commission_minor,
             approve_at = u.approve_at, order_total_minor = u.order_total_minor,
             order_updated_at = u.order_updated_at, split_rule = u.split_rule,
             share_bps = u.share_bps, base_revenue_minor = u.base_revenue_minor,
             base_discount_minor = u.base_discount_minor,
             base_commission_minor = u.base_commission_minor,
             commission_currency = u.commission_currency, currency = u.currency,
             updated_at = now()
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::integer[],
             $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
             $11::bigint[], $12::timestamptz[], $13::bigint[], $14::timestamptz[], $15::text[],
             $16::integer[], $17::bigint[], $18::bigint[], $19::bigint[], $20::text[],
             $21::text[])
             as u(brand_id, id, status, order_status, order_rank, order_refunded_minor,
             revenue_minor, discount_minor, commission_minor, adjusted_revenue_minor,
             adjusted_commission_minor, approve_at, order_total_minor, order_updated_at,
             split_rule, share_bps, base_revenue_minor, base_discount_minor,
             base_commission_minor, commission_currency, currency)
         where c.brand_id = u.brand_id and c.id = u.id
         returning c.brand_id, c.integration_id, c.store_order_id, c.campaign_id, c.creator_id,
             c.id, c.created_at, c.updated_at",
    )
    .bind::<Array<BigInt>, _>(int8(|r| r.brand_id))
    .bind::<Array<BigInt>, _>(int8(|r| r.id))
    .bind::<Array<Text>, _>(text(|r| &r.status))
    .bind::<Array<Text>, _>(text(|r| &r.order_status))
    .bind::<Array<Integer>, _>(rows.iter().map(|r| r.order_rank).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(int8(|r| r.order_refunded_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.discount_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.commission_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.adjusted_revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.adjusted_commission_minor))
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.approve_at).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(int8(|r| r.order_total_minor))
    .bind::<Array<Nullable<Timestamptz>>, _>(
        rows.iter().map(|r| r.order_updated_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(text(|r| &r.split_rule))
    .bind::<Array<Integer>, _>(rows.iter().map(|r| r.share_bps).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(int8(|r| r.base_revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.base_discount_minor))
    .bind::<Array<BigInt>, _>(int8(|r| r.base_commission_minor))
    .bind::<Array<Text>, _>(text(|r| &r.commission_currency))
    .bind::<Array<Text>, _>(text(|r| &r.currency))
    .load(conn)
    .await?)
}

/// A change after approval, recorded next to its conversion.
#[derive(Debug, Clone)]
pub struct NewAdjustment {
    pub brand_id: i64,
    pub conversion_id: i64,
    pub revenue_minor: i64,
    pub commission_minor: i64,
    pub reason: String,
}

/// Records adjustments in the order given.
pub async fn add_adjustments(
    conn: &mut AsyncPgConnection,
    adjustments: &[NewAdjustment],
) -> Result<(), DbError> {
    if adjustments.is_empty() {
        return Ok(());
    }
    let int8 = |f: fn(&NewAdjustment) -> i64| adjustments.iter().map(f).collect::<Vec<i64>>();
    tracking_db::prepared(
        "insert into adjustments (brand_id, conversion_id, revenue_minor, commission_minor, reason)
         select brand_id, conversion_id, revenue_minor, commission_minor, reason
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])
             with ordinality as a(brand_id, conversion_id, revenue_minor, commission_minor, reason, n)
         order by n",
    )
    .bind::<Array<BigInt>, _>(int8(|a| a.brand_id))
    .bind::<Array<BigInt>, _>(int8(|a| a.conversion_id))
    .bind::<Array<BigInt>, _>(int8(|a| a.revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|a| a.commission_minor))
    .bind::<Array<Text>, _>(adjustments.iter().map(|a| a.reason.as_str()).collect::<Vec<_>>())
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

/// The adjustments of these conversions of `brand_id`, oldest first per conversion. The ids are
/// joined as keys, the brand repeated per id (see [`crate::store::pending::take_for_clicks`]).
pub async fn adjustments(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    conversion_ids: &[i64],
) -> Result<Vec<AdjustmentRow>, DbError> {
    Ok(tracking_db::prepared(
        "select a.conversion_id, a.revenue_minor, a.commission_minor, a.reason, a.at
         from unnest($1::bigint[], $2::bigint[]) as k(key_brand, key_conversion)
         join adjustments a on a.brand_id = k.key_brand and a.conversion_id = k.key_conversion
         order by a.conversion_id, a.id",
    )
    .bind::<Array<BigInt>, _>(vec![brand_id; conversion_ids.len()])
    .bind::<Array<BigInt>, _>(conversion_ids)
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

    /// Adds (`sign` 1) or takes away (-1) `d`.
    pub fn add(&mut self, d: &SalesDelta, sign: i64) {
        self.orders += sign * d.orders;
        self.code_uses += sign * d.code_uses;
        self.revenue_minor += sign * d.revenue_minor;
        self.discount_minor += sign * d.discount_minor;
        self.pending_minor += sign * d.pending_minor;
        self.approved_minor += sign * d.approved_minor;
        self.reversed_minor += sign * d.reversed_minor;
        self.adjusted_minor += sign * d.adjusted_minor;
    }
}

/// Which daily figures a [`SalesDelta`] changes: (brand, campaign, creator, day, currency).
pub type SalesKey = (i64, i64, i64, NaiveDate, String);

/// Adds each delta to its day's figures (creating the row when it is the first), in key order so
/// that concurrent writers take the rows' locks in the same order.
pub async fn add_sales(
    conn: &mut AsyncPgConnection,
    deltas: &BTreeMap<SalesKey, SalesDelta>,
) -> Result<(), DbError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let int8 = |f: fn(&SalesDelta) -> i64| deltas.values().map(f).collect::<Vec<i64>>();
    let key = |f: fn(&SalesKey) -> i64| deltas.keys().map(f).collect::<Vec<i64>>();
    tracking_db::prepared(
        "insert into daily_sales as d (brand_id, campaign_id, creator_id, day, currency, orders,
             code_uses, revenue_minor, discount_minor, commission_pending_minor,
             commission_approved_minor, commission_reversed_minor, commission_adjusted_minor)
         select b, c, r, day, cur, o, u, rev, dis, p, a, x, adj
         from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::date[], $5::text[],
             $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
             $11::bigint[], $12::bigint[], $13::bigint[])
             with ordinality as s(b, c, r, day, cur, o, u, rev, dis, p, a, x, adj, n)
         order by n
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
    .bind::<Array<BigInt>, _>(key(|k| k.0))
    .bind::<Array<BigInt>, _>(key(|k| k.1))
    .bind::<Array<BigInt>, _>(key(|k| k.2))
    .bind::<Array<Date>, _>(deltas.keys().map(|k| k.3).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(deltas.keys().map(|k| k.4.as_str()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(int8(|d| d.orders))
    .bind::<Array<BigInt>, _>(int8(|d| d.code_uses))
    .bind::<Array<BigInt>, _>(int8(|d| d.revenue_minor))
    .bind::<Array<BigInt>, _>(int8(|d| d.discount_minor))
    .bind::<Array<BigInt>, _>(int8(|d| d.pending_minor))
    .bind::<Array<BigInt>, _>(int8(|d| d.approved_minor))
    .bind::<Array<BigInt>, _>(int8(|d| d.reversed_minor))
    .bind::<Array<BigInt>, _>(int8(|d| d.adjusted_minor))
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
    Ok(tracking_db::prepared(
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
    /// `None` for every kind.
    pub kind: Option<Kind>,
}

/// What an entry of a campaign's conversions is a sale of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Order,
    AmazonReportDay,
}

/// An entry of a campaign's conversions: an order's conversion, or an Amazon report day
/// credited to the campaign. Both take their ids from the conversions' sequence.
#[derive(Debug, Clone)]
pub enum Entry {
    Order(Box<ConversionRow>),
    AmazonReportDay(ReportSale),
}

impl Entry {
    pub fn id(&self) -> i64 {
        match self {
            Entry::Order(row) => row.id,
            Entry::AmazonReportDay(sale) => sale.id,
        }
    }
}

/// A campaign's entries of both kinds, newest (highest id) first, with ids below `before`.
pub async fn entries(
    db: &Database,
    brand_id: i64,
    campaign_id: i64,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, DbError> {
    let orders = if filter.kind == Some(Kind::AmazonReportDay) {
        Vec::new()
    } else {
        list(db, brand_id, campaign_id, filter, before, limit).await?
    };
    // Report days have no order method and are never reversed.
    let days = if filter.kind == Some(Kind::Order)
        || filter.method.is_some()
        || filter.status == Some("reversed")
    {
        Vec::new()
    } else {
        amazon_reports::list(
            db,
            brand_id,
            campaign_id,
            filter.creator_id,
            filter.status,
            before,
            limit,
        )
        .await?
    };
    // Both lists are newest first: the first `limit` of their merge are the page.
    let mut entries: Vec<Entry> = orders
        .into_iter()
        .map(|row| Entry::Order(Box::new(row)))
        .chain(days.into_iter().map(Entry::AmazonReportDay))
        .collect();
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.id()));
    entries.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(entries)
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
    // A creator's page reads conversions_campaign, which holds the creator's conversions by id.
    // The brand and campaign are joined as keys and the creator stays a constant
    // (tracking_db::stale_statistics): with a brand constant the statistics had not seen, the
    // primary key looked as cheap, and the page read the brand's every conversion. A campaign's
    // page keeps the constants: no index holds a campaign's conversions by id, and the primary
    // key, read newest first, is the best of them when the brand's statistics are right.
    let sql = if filter.creator_id.is_some() {
        "select c.* from unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_campaign)
         cross join lateral (select * from conversions x
             where x.brand_id = k.key_brand and x.campaign_id = k.key_campaign
               and x.creator_id = $3::bigint and ($4::text is null or x.status = $4)
               and ($5::text is null or x.method = $5) and ($6::bigint is null or x.id < $6)
             order by x.id desc limit $7) c
         order by c.id desc"
    } else {
        "select * from conversions where brand_id = $1 and campaign_id = $2
         and ($3::bigint is null or creator_id = $3) and ($4::text is null or status = $4)
         and ($5::text is null or method = $5) and ($6::bigint is null or id < $6)
         order by id desc limit $7"
    };
    Ok(tracking_db::prepared(sql)
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
