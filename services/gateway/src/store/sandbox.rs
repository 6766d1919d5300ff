//! The sandbox store's queries: the discount codes a sandbox integration's simulated store holds.
//! Codes are matched by their lower-case form, which is what the unique index holds; callers pass
//! codes already lower-cased (they are ASCII, so Rust and PostgreSQL agree on it).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::DbError;

use super::schema::sandbox_discounts;

/// A code as the store holds it, from the push path's queries.
#[derive(Debug, Clone, QueryableByName)]
pub struct HeldCode {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = Text)]
    pub external_ref: String,
    #[diesel(sql_type = Bool)]
    pub active: bool,
}

/// A code to create, with its terms as the store keeps them.
#[derive(Debug)]
pub struct NewCode<'a> {
    pub code: &'a str,
    pub external_ref: &'a str,
    pub title: &'a str,
    pub terms: serde_json::Value,
}

/// A row for ListStoreDiscounts.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sandbox_discounts)]
pub struct StoredDiscount {
    pub id: i64,
    pub code: String,
    pub external_ref: String,
    pub title: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Inserts every code the store does not hold yet, in one statement, and returns those it
/// inserted. A code already held (also earlier in the same batch) is skipped, not an error.
/// Rows go in sorted by their lower-case code so that concurrent batches sharing codes take the
/// unique index's entries in the same order and wait for each other instead of deadlocking.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id, codes = codes.len()))]
pub async fn insert_new(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    codes: Vec<NewCode<'_>>,
) -> Result<Vec<HeldCode>, DbError> {
    let mut texts = Vec::with_capacity(codes.len());
    let mut refs = Vec::with_capacity(codes.len());
    let mut titles = Vec::with_capacity(codes.len());
    let mut terms = Vec::with_capacity(codes.len());
    for code in codes {
        texts.push(code.code);
        refs.push(code.external_ref);
        titles.push(code.title);
        terms.push(code.terms);
    }
    Ok(tracking_db::prepared(
        "insert into sandbox_discounts (brand_id, integration_id, code, external_ref, title, terms) \
         select $1, $2, d.code, d.external_ref, d.title, d.terms \
         from unnest($3::text[], $4::text[], $5::text[], $6::jsonb[]) \
              with ordinality as d(code, external_ref, title, terms, n) \
         order by lower(d.code), d.n \
         on conflict (brand_id, integration_id, lower(code)) do nothing \
         returning id, code, external_ref, active",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Array<Text>, _>(texts)
    .bind::<Array<Text>, _>(refs)
    .bind::<Array<Text>, _>(titles)
    .bind::<Array<Jsonb>, _>(terms)
    .load(conn)
    .await?)
}

/// The held rows `h` of the lower-case codes `$3` of integration `$2` of brand `$1`, each looked up
/// on its own in `sandbox_discounts_code` with the integration repeated per code (bound by
/// [`by_code`]): as `lower(code) = any($3)`, or next to a constant `brand_id = $1`, a planner
/// whose statistics have not seen the integration's codes yet reads and filters all of them.
const HELD_BY_CODE: &str = "unnest($1::bigint[], $2::bigint[], $3::text[]) \
       as k(key_brand, key_integration, code) \
     cross join lateral (select * from sandbox_discounts \
       where brand_id = k.key_brand and integration_id = k.key_integration \
         and lower(code) = k.code limit 1) h";

/// Binds [`HELD_BY_CODE`]'s parameters.
fn by_code<'f>(
    sql: String,
    brand_id: i64,
    integration_id: i64,
    lower_codes: &'f [String],
) -> tracking_db::Prepared<'f> {
    tracking_db::prepared(sql)
        .bind::<Array<BigInt>, _>(vec![brand_id; lower_codes.len()])
        .bind::<Array<BigInt>, _>(vec![integration_id; lower_codes.len()])
        .bind::<Array<Text>, _>(lower_codes)
}

/// The codes the store holds among `lower_codes`.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id, codes = lower_codes.len()))]
pub async fn held(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    lower_codes: &[String],
) -> Result<Vec<HeldCode>, DbError> {
    let sql = format!("select h.id, h.code, h.external_ref, h.active from {HELD_BY_CODE}");
    Ok(by_code(sql, brand_id, integration_id, lower_codes)
        .load(conn)
        .await?)
}

#[derive(QueryableByName)]
struct RenamedCode {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Changes the held code `lower_previous` that carries `code.external_ref` into `code` (its text,
/// title and terms), active again, and returns its id; `None` when the store holds no such code
/// under that ref. A new text held by another row is [`DbError::UniqueViolation`] on
/// `sandbox_discounts_code`, and changes nothing.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id))]
pub async fn rename(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    lower_previous: &str,
    code: NewCode<'_>,
) -> Result<Option<i64>, DbError> {
    let rows: Vec<RenamedCode> = tracking_db::prepared(
        "update sandbox_discounts \
         set code = $4, title = $5, terms = $6, active = true, disabled_at = null \
         where brand_id = $1 and integration_id = $2 and lower(code) = $3 and external_ref = $7 \
         returning id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(lower_previous)
    .bind::<Text, _>(code.code)
    .bind::<Text, _>(code.title)
    .bind::<Jsonb, _>(code.terms)
    .bind::<Text, _>(code.external_ref)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.id))
}

/// Makes disabled codes active again.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id, codes = ids.len()))]
pub async fn reactivate(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    ids: &[i64],
) -> Result<(), DbError> {
    // Keys joined, the brand and integration repeated per id: with them as constants, the planner
    // took sandbox_discounts_code for an integration its statistics had not seen and read every
    // code of it (tracking_db::stale_statistics).
    tracking_db::prepared(
        "update sandbox_discounts d set active = true, disabled_at = null
         from unnest($1::bigint[], $2::bigint[], $3::bigint[])
             as k(key_brand, key_integration, key_id)
         where d.brand_id = k.key_brand and d.integration_id = k.key_integration
             and d.id = k.key_id and not d.active",
    )
    .bind::<Array<BigInt>, _>(vec![brand_id; ids.len()])
    .bind::<Array<BigInt>, _>(vec![integration_id; ids.len()])
    .bind::<Array<BigInt>, _>(ids)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct DisabledCode {
    #[diesel(sql_type = Text)]
    code: String,
}

/// Deactivates the held codes among `lower_codes` (keeping the first disable time of those that
/// already were) and returns the lower-case codes it found. Each is found as [`held`] finds it
/// and updated by the key found (with `d.brand_id = $1` again, the planner may read the whole
/// integration once per code).
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id, codes = lower_codes.len()))]
pub async fn disable(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    lower_codes: &[String],
) -> Result<Vec<String>, DbError> {
    let sql = format!(
        "update sandbox_discounts d \
         set active = false, disabled_at = coalesce(d.disabled_at, now()) \
         from {HELD_BY_CODE} \
         where d.brand_id = h.brand_id and d.integration_id = h.integration_id and d.id = h.id \
         returning lower(d.code) as code"
    );
    let rows: Vec<DisabledCode> = by_code(sql, brand_id, integration_id, lower_codes)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|row| row.code).collect())
}

/// The store's codes, oldest first, after the key `after`.
#[tracing::instrument(skip_all, fields(brand_id = brand_id, integration_id = integration_id))]
pub async fn list(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredDiscount>, DbError> {
    Ok(sandbox_discounts::table
        .filter(sandbox_discounts::brand_id.eq(brand_id))
        .filter(sandbox_discounts::integration_id.eq(integration_id))
        .filter(sandbox_discounts::id.gt(after.unwrap_or(0)))
        .order(sandbox_discounts::id.asc())
        .limit(limit)
        .select(StoredDiscount::as_select())
        .load(conn)
        .await?)
}

#[derive(QueryableByName)]
struct OrderBody {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    body: Vec<u8>,
}

/// Places or replaces an order at the sandbox store (its body is an encoded `Order`).
pub async fn put_order(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
    body: &[u8],
) -> Result<(), DbError> {
    tracking_db::prepared(
        "insert into sandbox_orders (brand_id, integration_id, store_order_id, body)
         values ($1, $2, $3, $4)
         on conflict (brand_id, integration_id, store_order_id)
         do update set body = excluded.body, updated_at = clock_timestamp()",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .bind::<diesel::sql_types::Bytea, _>(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// One order of the sandbox store.
pub async fn order(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    let rows: Vec<OrderBody> = tracking_db::prepared(
        // The key joined (see tracking_db::stale_statistics): with constants, the index by change
        // looked as cheap as the primary key for an integration the statistics had not seen.
        "select o.body
         from unnest(array[$1::bigint], array[$2::bigint], array[$3::text])
             as k(key_brand, key_integration, key_order)
         join sandbox_orders o on o.brand_id = k.key_brand
             and o.integration_id = k.key_integration and o.store_order_id = k.key_order",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.body))
}

/// The sandbox store's orders changed at `since` or later, oldest change first.
pub async fn orders_since(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Vec<u8>, DateTime<Utc>)>, DbError> {
    #[derive(QueryableByName)]
    struct Changed {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        body: Vec<u8>,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        updated_at: DateTime<Utc>,
    }
    let rows: Vec<Changed> = tracking_db::prepared(
        // The key joined (see tracking_db::stale_statistics): with constants, for an integration
        // the statistics had not seen, the planner expected a handful of rows, and a page read and
        // sorted all of the integration's orders changed since. The index holds the page's order
        // (`sandbox_orders_by_change`), so no sort can be cheaper than reading its first entries.
        "select o.body, o.updated_at
         from unnest(array[$1::bigint], array[$2::bigint]) as k(key_brand, key_integration)
         cross join lateral (select body, updated_at, store_order_id from sandbox_orders
             where brand_id = k.key_brand and integration_id = k.key_integration
               and updated_at >= $3
             order by updated_at, store_order_id limit $4) o
         order by o.updated_at, o.store_order_id",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.body, row.updated_at))
        .collect())
}
