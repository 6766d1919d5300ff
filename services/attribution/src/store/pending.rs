//! Orders waiting for their code or click to become known (see the migration's comment).

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::DbError;

#[derive(QueryableByName)]
pub struct Pending {
    #[diesel(sql_type = Bytea)]
    pub event: Vec<u8>,
}

/// Serializes matching in the caller's transaction: an order looking for its code (or click) and
/// a code (or click) looking for its waiting orders must not pass each other unseen in two
/// concurrent transactions. Held until commit.
pub async fn lock_matching(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query("select pg_advisory_xact_lock(hashtext(current_schema() || '.matching'))")
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps (or replaces with a newer state) an order no one could be matched to yet.
pub async fn keep(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, &str),
    event: &[u8],
    codes_lower: &[String],
    click_id: &str,
) -> Result<(), DbError> {
    let (brand_id, integration_id, store_order_id) = key;
    diesel::sql_query(
        "insert into pending_orders (brand_id, integration_id, store_order_id, event, codes_lower, click_id)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (brand_id, integration_id, store_order_id)
         do update set event = excluded.event, codes_lower = excluded.codes_lower,
             click_id = excluded.click_id, received_at = now()",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .bind::<Bytea, _>(event)
    .bind::<Array<Text>, _>(codes_lower)
    .bind::<Text, _>(click_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a pending order (attributed, or cancelled before it could be).
pub async fn drop(conn: &mut AsyncPgConnection, key: (i64, i64, &str)) -> Result<(), DbError> {
    let (brand_id, integration_id, store_order_id) = key;
    diesel::sql_query(
        "delete from pending_orders
         where brand_id = $1 and integration_id = $2 and store_order_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The pending order's stored event, if it is pending.
pub async fn get(
    conn: &mut AsyncPgConnection,
    key: (i64, i64, &str),
) -> Result<Option<Vec<u8>>, DbError> {
    let (brand_id, integration_id, store_order_id) = key;
    let rows: Vec<Pending> = diesel::sql_query(
        "select event from pending_orders
         where brand_id = $1 and integration_id = $2 and store_order_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.event))
}

/// Removes and returns the pending orders that used `code_lower` in the integration.
pub async fn take_for_code(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    code_lower: &str,
) -> Result<Vec<Vec<u8>>, DbError> {
    let rows: Vec<Pending> = diesel::sql_query(
        "delete from pending_orders
         where brand_id = $1 and integration_id = $2 and codes_lower @> array[$3]
         returning event",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(code_lower)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.event).collect())
}

/// Removes and returns the pending orders carrying one of `click_ids` of `brand_id`.
pub async fn take_for_clicks(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    click_ids: &[&str],
) -> Result<Vec<Vec<u8>>, DbError> {
    let rows: Vec<Pending> = diesel::sql_query(
        "delete from pending_orders
         where brand_id = $1 and click_id <> '' and click_id = any($2)
         returning event",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<Array<Text>, _>(click_ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.event).collect())
}
