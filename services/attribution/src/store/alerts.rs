//! Leaked-code evidence per code and day, and the alerts raised from it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Date, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, DbError};

/// A code's order counts: its totals (`day` is `None`), or one day's.
#[derive(Debug, Clone, QueryableByName)]
pub struct CodeCount {
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = Nullable<Date>)]
    pub day: Option<NaiveDate>,
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub without_click: i64,
}

/// For each (brand, code, first day, last day): the code's totals over all days, and its
/// counts of each day in `[first, last]`.
pub async fn code_counts(
    conn: &mut AsyncPgConnection,
    codes: &[(i64, i64, NaiveDate, NaiveDate)],
) -> Result<Vec<CodeCount>, DbError> {
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "with k as (select * from unnest($1::bigint[], $2::bigint[], $3::date[], $4::date[])
                 as k(brand_id, code_id, first_day, last_day))
         select c.brand_id, c.code_id, null::date as day, sum(c.orders)::bigint as orders,
             sum(c.orders_without_click)::bigint as without_click
         from code_daily c join k using (brand_id, code_id)
         group by c.brand_id, c.code_id
         union all
         select c.brand_id, c.code_id, c.day, c.orders, c.orders_without_click as without_click
         from code_daily c join k using (brand_id, code_id)
         where c.day between k.first_day and k.last_day",
    )
    .bind::<Array<BigInt>, _>(codes.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(codes.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind::<Array<Date>, _>(codes.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind::<Array<Date>, _>(codes.iter().map(|c| c.3).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// Adds orders to codes' days: (brand, code, day) → (orders, orders without a click).
pub async fn count_orders(
    conn: &mut AsyncPgConnection,
    counts: &BTreeMap<(i64, i64, NaiveDate), (i64, i64)>,
) -> Result<(), DbError> {
    if counts.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "insert into code_daily as c (brand_id, code_id, day, orders, orders_without_click)
         select b, k, d, o, w
         from unnest($1::bigint[], $2::bigint[], $3::date[], $4::bigint[], $5::bigint[])
             with ordinality as n(b, k, d, o, w, n)
         order by n
         on conflict (brand_id, code_id, day) do update set
             orders = c.orders + excluded.orders,
             orders_without_click = c.orders_without_click + excluded.orders_without_click",
    )
    .bind::<Array<BigInt>, _>(counts.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(counts.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Date>, _>(counts.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(counts.values().map(|v| v.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(counts.values().map(|v| v.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
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

/// Raises alerts (or refreshes them with newer evidence and the code's text now, which a brand's
/// edit may have changed), in the order given; at most one per (brand, code, kind).
pub async fn raise(conn: &mut AsyncPgConnection, alerts: &[AlertRow]) -> Result<(), DbError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let int8 = |f: fn(&AlertRow) -> i64| alerts.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&AlertRow) -> &str| alerts.iter().map(f).collect::<Vec<&str>>();
    tracking_db::prepared(
        "insert into code_alerts (brand_id, code_id, kind, campaign_id, creator_id, code, evidence,
             orders, orders_without_click, day, day_orders, baseline_milli)
         select b, k, kind, c, r, code, e, o, w, d, dor, bm
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
             $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::date[], $11::bigint[],
             $12::bigint[])
             with ordinality as a(b, k, kind, c, r, code, e, o, w, d, dor, bm, n)
         order by n
         on conflict (brand_id, code_id, kind) do update set code = excluded.code,
             evidence = excluded.evidence,
             orders = excluded.orders, orders_without_click = excluded.orders_without_click,
             day = excluded.day, day_orders = excluded.day_orders,
             baseline_milli = excluded.baseline_milli",
    )
    .bind::<Array<BigInt>, _>(int8(|a| a.brand_id))
    .bind::<Array<BigInt>, _>(int8(|a| a.code_id))
    .bind::<Array<Text>, _>(text(|a| &a.kind))
    .bind::<Array<BigInt>, _>(int8(|a| a.campaign_id))
    .bind::<Array<BigInt>, _>(int8(|a| a.creator_id))
    .bind::<Array<Text>, _>(text(|a| &a.code))
    .bind::<Array<Text>, _>(text(|a| &a.evidence))
    .bind::<Array<BigInt>, _>(int8(|a| a.orders))
    .bind::<Array<BigInt>, _>(int8(|a| a.orders_without_click))
    .bind::<Array<Nullable<Date>>, _>(alerts.iter().map(|a| a.day).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(int8(|a| a.day_orders))
    .bind::<Array<BigInt>, _>(int8(|a| a.baseline_milli))
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
    // The brand is joined as a key, the campaign stays a constant (tracking_db::stale_statistics):
    // with a brand constant the statistics had not seen, code_alerts_by_id looked as cheap as
    // code_alerts_by_campaign, and a campaign's page read the brand's every alert.
    Ok(tracking_db::prepared(
        "select a.* from unnest(array[$1::bigint]) as k(key_brand)
         cross join lateral (select * from code_alerts x where x.brand_id = k.key_brand
             and ($2::bigint is null or x.campaign_id = $2) and ($3::bigint is null or x.id < $3)
             order by x.id desc limit $4) a
         order by a.id desc",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Nullable<BigInt>, _>(campaign_id)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(&mut conn)
    .await?)
}
