//! Orders waiting for their code or click to become known (see the migration's comment).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::DbError;

use crate::store::conversions::OrderKey;

/// A pending order handed back to be attributed: its latest order event (protobuf-encoded) and
/// when it was first seen paid.
#[derive(QueryableByName)]
pub struct Waited {
    #[diesel(sql_type = Bytea)]
    pub event: Vec<u8>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub paid_at: Option<DateTime<Utc>>,
}

/// Serializes matching in the caller's transaction: an order looking for its code (or click) and
/// a code (or click) looking for its waiting orders must not pass each other unseen in two
/// concurrent transactions. Held until commit.
pub async fn lock_matching(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    tracking_db::prepared(
        "select pg_advisory_xact_lock(hashtext(current_schema() || '.matching'))",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A pending order: its latest order event (protobuf-encoded), when it was first seen paid (its
/// approval is due from then), and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct PendingOrder {
    #[diesel(sql_type = Bytea)]
    pub event: Vec<u8>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub paid_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Array<Text>)]
    pub codes_lower: Vec<String>,
    #[diesel(sql_type = Text)]
    pub click_id: String,
}

#[derive(QueryableByName)]
struct Keyed {
    #[diesel(sql_type = BigInt)]
    brand_id: i64,
    #[diesel(sql_type = BigInt)]
    integration_id: i64,
    #[diesel(sql_type = Text)]
    store_order_id: String,
    #[diesel(embed)]
    pending: PendingOrder,
}

/// Those of `orders` that are pending.
pub async fn get(
    conn: &mut AsyncPgConnection,
    orders: &[OrderKey],
) -> Result<Vec<(OrderKey, PendingOrder)>, DbError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Keyed> = tracking_db::prepared(
        "select brand_id, integration_id, store_order_id, event, paid_at, codes_lower, click_id
         from pending_orders
         where (brand_id, integration_id, store_order_id) in
             (select * from unnest($1::bigint[], $2::bigint[], $3::text[]))",
    )
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(orders.iter().map(|k| k.2.as_str()).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.brand_id, r.integration_id, r.store_order_id), r.pending))
        .collect())
}

/// Keeps (or replaces with a newer state) orders no one could be matched to yet; each order
/// at most once.
pub async fn keep(
    conn: &mut AsyncPgConnection,
    orders: &[(&OrderKey, &PendingOrder)],
) -> Result<(), DbError> {
    if orders.is_empty() {
        return Ok(());
    }
    // Codes travel as one text per order (unnest cannot return arrays of arrays).
    let codes: Vec<String> = orders
        .iter()
        .map(|(_, p)| encode_codes(&p.codes_lower))
        .collect();
    tracking_db::prepared(
        "insert into pending_orders
             (brand_id, integration_id, store_order_id, event, paid_at, codes_lower, click_id)
         select b, i, s, e, t, c::text[], k
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::timestamptz[],
                     $6::text[], $7::text[])
             with ordinality as p(b, i, s, e, t, c, k, n)
         order by n
         on conflict (brand_id, integration_id, store_order_id)
         do update set event = excluded.event, paid_at = excluded.paid_at,
             codes_lower = excluded.codes_lower, click_id = excluded.click_id,
             received_at = now()",
    )
    .bind::<Array<BigInt>, _>(orders.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(orders.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(orders.iter().map(|(k, _)| k.2.as_str()).collect::<Vec<_>>())
    .bind::<Array<Bytea>, _>(
        orders
            .iter()
            .map(|(_, p)| p.event.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(
        orders.iter().map(|(_, p)| p.paid_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(codes)
    .bind::<Array<Text>, _>(
        orders
            .iter()
            .map(|(_, p)| p.click_id.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A text[] literal of `codes` (each quoted, quotes and backslashes escaped).
fn encode_codes(codes: &[String]) -> String {
    let quoted: Vec<String> = codes
        .iter()
        .map(|c| format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Forgets pending orders (attributed, or cancelled before they could be).
pub async fn drop(conn: &mut AsyncPgConnection, orders: &[&OrderKey]) -> Result<(), DbError> {
    if orders.is_empty() {
        return Ok(());
    }
    tracking_db::prepared(
        "delete from pending_orders
         where (brand_id, integration_id, store_order_id) in
             (select * from unnest($1::bigint[], $2::bigint[], $3::text[]))",
    )
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(orders.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(orders.iter().map(|k| k.2.as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets up to `limit` of the pending orders whose latest state arrived before `before`, the
/// oldest first, skipping any a consumer holds; returns how many.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    Ok(tracking_db::prepared(
        "delete from pending_orders p
         using (select brand_id, integration_id, store_order_id from pending_orders
                where received_at < $1 order by received_at limit $2
                for update skip locked) o
         where p.brand_id = o.brand_id and p.integration_id = o.integration_id
             and p.store_order_id = o.store_order_id",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await?)
}

/// Removes and returns the pending orders of each (brand, integration) that used its
/// lower-cased code; an order waiting for several of them is returned once.
pub async fn take_for_codes(
    conn: &mut AsyncPgConnection,
    codes: &[(i64, i64, String)],
) -> Result<Vec<Waited>, DbError> {
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tracking_db::prepared(
        "delete from pending_orders p
         using unnest($1::bigint[], $2::bigint[], $3::text[]) as w(brand_id, integration_id, code)
         where p.brand_id = w.brand_id and p.integration_id = w.integration_id
             and p.codes_lower @> array[w.code]
         returning p.event, p.paid_at",
    )
    .bind::<Array<BigInt>, _>(codes.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(codes.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(codes.iter().map(|c| c.2.clone()).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// Removes and returns the pending orders of `brand_id` that one of plan `plan_id`'s codes (by
/// its text now or a text it had before an edit, within its integration) or one of its clicks
/// claims: orders that waited for the plan. Read once, when the plan first reaches attribution:
/// the brand's pending orders are probed one by one.
pub async fn take_for_plan(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    plan_id: i64,
) -> Result<Vec<Waited>, DbError> {
    Ok(tracking_db::prepared(
        "delete from pending_orders p
         where p.brand_id = $1
           and (exists (select 1 from unnest(p.codes_lower) as t(code)
                  join codes c on c.brand_id = p.brand_id and c.integration_id = p.integration_id
                    and lower(c.code) = t.code and c.code <> ''
                  where c.plan_id = $2)
             or exists (select 1 from unnest(p.codes_lower) as t(code)
                  join code_texts x on x.brand_id = p.brand_id
                    and x.integration_id = p.integration_id and x.code_lower = t.code
                  join codes c on c.brand_id = x.brand_id and c.code_id = x.code_id
                  where c.plan_id = $2)
             or (p.click_id <> '' and exists (select 1 from clicks k
                  where k.brand_id = p.brand_id and k.click_id = p.click_id
                    and k.plan_id = $2)))
         returning p.event, p.paid_at",
    )
    .planned_each_time()
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(plan_id)
    .load(conn)
    .await?)
}

/// Removes and returns the pending orders carrying one of `click_ids` of `brand_id`. The ids are
/// joined as keys, the brand repeated per id: as `brand_id = $1 and click_id = any($2)`, a
/// planner whose statistics have not seen the brand yet reads all of its pending orders for
/// every batch of clicks.
pub async fn take_for_clicks(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    click_ids: &[&str],
) -> Result<Vec<Waited>, DbError> {
    // A join: planned at each execution, also on the click writer's connection, which plans
    // its statements once (`PoolOptions::generic_plans`).
    Ok(tracking_db::prepared(
        "delete from pending_orders p
         using unnest($1::bigint[], $2::text[]) as k(key_brand, click_id)
         where p.brand_id = k.key_brand and p.click_id = k.click_id and p.click_id <> ''
         returning p.event, p.paid_at",
    )
    .planned_each_time()
    .bind::<Array<BigInt>, _>(vec![brand_id; click_ids.len()])
    .bind::<Array<Text>, _>(click_ids)
    .load(conn)
    .await?)
}
