//! Order storage: each distinct state of an order once (the `orders_version` unique index on
//! store order id, status and refunded amount), with its `WatchOrders` event in the same
//! transaction; webhook deliveries by the store's delivery id.

use std::collections::HashSet;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use tracking_api::gateway::v1 as pb;
use tracking_db::DbError;
use tracking_events::NewEvent;

use crate::domain::orders::NormalizedOrder;
use crate::intake::{Delivery, Incoming, Outcome};

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    integration_id: i64,
    #[diesel(sql_type = Text)]
    store_order_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    refunded_minor: i64,
}

type VersionKey = (i64, i64, String, &'static str, i64);

fn key(incoming: &Incoming) -> VersionKey {
    (
        incoming.brand_id,
        incoming.integration_id,
        incoming.order.store_order_id.clone(),
        incoming.order.status.as_str(),
        incoming.order.refunded_minor,
    )
}

/// Records a delivery id; false when it was recorded before (a redelivery).
pub async fn record_delivery(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    delivery: Delivery<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::sql_query(
        "insert into webhook_deliveries (brand_id, integration_id, delivery_id, topic)
         values ($1, $2, $3, $4) on conflict do nothing",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(delivery.id)
    .bind::<Text, _>(delivery.topic)
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Whether a delivery id was recorded before (checked before a thin webhook's order is fetched).
pub async fn delivery_seen(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    delivery_id: &str,
) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Seen {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        seen: bool,
    }
    let row: Seen = diesel::sql_query(
        "select exists (select 1 from webhook_deliveries
             where brand_id = $1 and integration_id = $2 and delivery_id = $3) as seen",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(delivery_id)
    .get_result(conn)
    .await?;
    Ok(row.seen)
}

/// One multi-row insert for the whole batch; rows go in sorted by their version key so that
/// concurrent batches sharing orders take the unique index in the same order (no deadlocks).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    orders: &[Incoming],
    source: pb::OrderSource,
) -> Result<Outcome, DbError> {
    if orders.is_empty() {
        return Ok(Outcome::default());
    }
    let mut sorted: Vec<&Incoming> = orders.iter().collect();
    sorted.sort_by_key(|incoming| key(incoming));
    let bodies: Vec<Vec<u8>> = sorted
        .iter()
        .map(|i| i.order.to_proto(i.integration_id).encode_to_vec())
        .collect();
    let inserted: Vec<Inserted> = diesel::sql_query(
        "insert into orders (brand_id, integration_id, store_order_id, status, refunded_minor, source, body)
         select b, i, o, s, r, $6, body
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $7::bytea[])
              as t(b, i, o, s, r, body)
         on conflict do nothing
         returning integration_id, store_order_id, status, refunded_minor",
    )
    .bind::<Array<BigInt>, _>(sorted.iter().map(|i| i.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(sorted.iter().map(|i| i.integration_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        sorted
            .iter()
            .map(|i| i.order.store_order_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        sorted
            .iter()
            .map(|i| i.order.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        sorted
            .iter()
            .map(|i| i.order.refunded_minor)
            .collect::<Vec<_>>(),
    )
    .bind::<Text, _>(source.as_str_name())
    .bind::<Array<Bytea>, _>(&bodies)
    .load(conn)
    .await?;
    let new: HashSet<(i64, String, String, i64)> = inserted
        .into_iter()
        .map(|row| {
            (
                row.integration_id,
                row.store_order_id,
                row.status,
                row.refunded_minor,
            )
        })
        .collect();
    let received_at = prost_types::Timestamp::from(std::time::SystemTime::now());
    let mut published = HashSet::new();
    let mut events = Vec::with_capacity(new.len());
    for incoming in sorted {
        let version = (
            incoming.integration_id,
            incoming.order.store_order_id.clone(),
            incoming.order.status.as_str().to_owned(),
            incoming.order.refunded_minor,
        );
        // The same state twice in one batch is inserted once: publish it once.
        if new.contains(&version) && published.insert(version) {
            let event = pb::OrderEvent {
                seq: 0,
                brand_id: incoming.brand_id,
                order: Some(incoming.order.to_proto(incoming.integration_id)),
                source: source as i32,
                received_at: Some(received_at),
            };
            events.push(NewEvent {
                brand_id: incoming.brand_id,
                kind: "order",
                payload: event.encode_to_vec(),
            });
        }
    }
    tracking_events::append(conn, &events).await?;
    Ok(Outcome {
        accepted: events.len(),
        duplicates: orders.len() - events.len(),
        redelivery: false,
    })
}

/// The most advanced stored state of an order (most refunded, then latest), for deliveries that
/// carry only a change to it (a Shopify refund).
pub async fn latest(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Option<NormalizedOrder>, DbError> {
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Bytea)]
        body: Vec<u8>,
    }
    let rows: Vec<Body> = diesel::sql_query(
        "select body from orders
         where brand_id = $1 and integration_id = $2 and store_order_id = $3
         order by refunded_minor desc, id desc limit 1",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().and_then(|row| {
        let order = pb::Order::decode(row.body.as_slice()).ok()?;
        NormalizedOrder::from_proto(order, "order").ok()
    }))
}
