//! Order intake: the one place where orders from every path (webhooks, AST conversions,
//! IngestOrders, backfill, pollers, the sandbox store) are stored and published.
//!
//! Each distinct state of an order is stored once (the `orders_version` unique index on store
//! order id, status and refunded amount), in the same transaction as its `WatchOrders` event, so
//! a redelivery, the same order reaching us by two topics, or a backfill over orders already seen
//! changes nothing. Webhook deliveries are also recorded by the store's delivery id, in the same
//! transaction, so a redelivery is dropped before its order is even looked at.

use std::collections::HashSet;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Database, DbError};
use tracking_events::{NewEvent, StoredEvent};

use crate::domain::orders::{NormalizedOrder, OrderStatus};

/// An order to store, for one integration of `brand_id`.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub brand_id: i64,
    pub integration_id: i64,
    pub order: NormalizedOrder,
}

/// A webhook delivery's identity: the store's delivery id and topic.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub id: &'a str,
    pub topic: &'a str,
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// New order states, stored and streamed.
    pub accepted: usize,
    /// Order states already stored: nothing changed.
    pub duplicates: usize,
    /// The delivery was seen before: nothing was looked at.
    pub redelivery: bool,
}

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

/// Stores `orders` (and, for a webhook, the delivery) in one transaction: new order states are
/// inserted and published, states already stored are counted as duplicates.
#[tracing::instrument(skip_all, fields(orders = orders.len(), source = source.as_str_name()))]
pub async fn accept(
    db: &Database,
    orders: &[Incoming],
    source: pb::OrderSource,
    delivery: Option<(i64, i64, Delivery<'_>)>,
) -> Result<Outcome, DbError> {
    let mut conn = db.conn().await?;
    let outcome = conn
        .transaction::<_, DbError, _>(async |conn| {
            if let Some((brand_id, integration_id, delivery)) = delivery
                && !record_delivery(conn, brand_id, integration_id, delivery).await?
            {
                return Ok(Outcome {
                    redelivery: true,
                    ..Outcome::default()
                });
            }
            insert(conn, orders, source).await
        })
        .await?;
    metrics_note(source, &outcome);
    Ok(outcome)
}

fn metrics_note(source: pb::OrderSource, outcome: &Outcome) {
    if outcome.redelivery {
        tracing::debug!(source = source.as_str_name(), "redelivery dropped");
    } else if outcome.accepted > 0 {
        tracing::debug!(
            source = source.as_str_name(),
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            "orders stored"
        );
    }
}

/// Records a delivery id; false when it was recorded before (a redelivery).
async fn record_delivery(
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

/// One multi-row insert for the whole batch; rows go in sorted by their version key so that
/// concurrent batches sharing orders take the unique index in the same order (no deadlocks).
async fn insert(
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
    db: &Database,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Option<NormalizedOrder>, DbError> {
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Bytea)]
        body: Vec<u8>,
    }
    let mut conn = db.conn().await?;
    let rows: Vec<Body> = diesel::sql_query(
        "select body from orders
         where brand_id = $1 and integration_id = $2 and store_order_id = $3
         order by refunded_minor desc, id desc limit 1",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next().and_then(|row| {
        let order = pb::Order::decode(row.body.as_slice()).ok()?;
        NormalizedOrder::from_proto(order, "order").ok()
    }))
}

/// `order` after a refund of `amount_minor` more: refunded in full once the total is reached.
pub fn refunded(mut order: NormalizedOrder, amount_minor: i64) -> NormalizedOrder {
    order.refunded_minor = order
        .refunded_minor
        .saturating_add(amount_minor)
        .min(order.total_minor);
    order.status = if order.refunded_minor >= order.total_minor {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    order
}

/// A stored event as sent on `WatchOrders`.
pub fn decode_event(stored: &StoredEvent) -> Result<pb::OrderEvent, prost::DecodeError> {
    let mut event = pb::OrderEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
