//! Order storage: each distinct state of an order once (the `orders_version` unique index on
//! store order id, status, refunded amount and total: an edit of the total is a state of its
//! own), and again when an edit brings the order back to an earlier state ([`revisits`]), with
//! its `WatchOrders` event in the same transaction; webhook deliveries by the store's delivery
//! id.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use tracking_api::gateway::v1 as pb;
use tracking_db::{ByTaken, DbError, Taken};
use tracking_events::NewEvent;

use crate::intake::{DeliveryKey, Incoming, Outcome, Submission};

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
    #[diesel(sql_type = BigInt)]
    total_minor: i64,
}

type VersionKey = (i64, i64, String, &'static str, i64, i64);

fn key(incoming: &Incoming) -> VersionKey {
    (
        incoming.brand_id,
        incoming.integration_id,
        incoming.order.store_order_id.clone(),
        incoming.order.status.as_str(),
        incoming.order.refunded_minor,
        incoming.order.total_minor,
    )
}

/// Stores a group of submissions in the caller's transaction: their deliveries, then the orders
/// of those that are not redeliveries, with one event per new order state. An order state stored
/// before is skipped or fails the statement ([`Taken`], for [`tracking_db::Conflicts`]); a
/// redelivery is always skipped. One outcome per submission, in order.
pub async fn store(
    conn: &mut AsyncPgConnection,
    submissions: &[Submission],
    taken: Taken,
) -> Result<Vec<Outcome>, DbError> {
    let fresh = record_deliveries(conn, submissions).await?;
    let rows: Vec<(usize, &Incoming, pb::OrderSource)> = submissions
        .iter()
        .enumerate()
        .filter(|(n, _)| fresh[*n])
        .flat_map(|(n, s)| s.orders.iter().map(move |o| (n, o, s.source)))
        .collect();
    let published = insert(
        conn,
        &rows.iter().map(|(_, o, s)| (*o, *s)).collect::<Vec<_>>(),
        taken,
    )
    .await?;
    let mut outcomes: Vec<Outcome> = fresh
        .iter()
        .map(|fresh| Outcome {
            redelivery: !fresh,
            ..Outcome::default()
        })
        .collect();
    for ((n, _, _), new) in rows.iter().zip(published) {
        if new {
            outcomes[*n].accepted += 1;
        } else {
            outcomes[*n].duplicates += 1;
        }
    }
    Ok(outcomes)
}

/// Records the submissions' delivery ids; per submission, false when its delivery was recorded
/// before (a redelivery, also the second of two in one group) and true otherwise.
async fn record_deliveries(
    conn: &mut AsyncPgConnection,
    submissions: &[Submission],
) -> Result<Vec<bool>, DbError> {
    #[derive(QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = BigInt)]
        brand_id: i64,
        #[diesel(sql_type = BigInt)]
        integration_id: i64,
        #[diesel(sql_type = Text)]
        delivery_id: String,
    }
    // Sorted, so that concurrent groups take the unique index in the same order.
    let mut keys: Vec<&DeliveryKey> = submissions
        .iter()
        .filter_map(|s| s.delivery.as_ref())
        .collect();
    if keys.is_empty() {
        return Ok(vec![true; submissions.len()]);
    }
    keys.sort();
    keys.dedup_by(|a, b| a.same_delivery(b));
    let recorded: Vec<Recorded> = tracking_db::prepared(
        "insert into webhook_deliveries (brand_id, integration_id, delivery_id, topic)
         select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
         on conflict do nothing
         returning brand_id, integration_id, delivery_id",
    )
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.brand_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.integration_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.topic.as_str()).collect::<Vec<_>>())
    .load(conn)
    .await?;
    let mut new: HashSet<(i64, i64, String)> = recorded
        .into_iter()
        .map(|r| (r.brand_id, r.integration_id, r.delivery_id))
        .collect();
    Ok(submissions
        .iter()
        .map(|s| match &s.delivery {
            None => true,
            // The first submission of a new delivery takes it; any later one is a redelivery.
            Some(k) => new.remove(&(k.brand_id, k.integration_id, k.id.clone())),
        })
        .collect())
}

/// The order's latest state (its `tracking.gateway.v1.Order`), if any: the one the store changed
/// last, else (no store times) the one stored last.
pub async fn latest(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Option<pb::Order>, DbError> {
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Bytea)]
        body: Vec<u8>,
    }
    let rows: Vec<Body> = tracking_db::prepared(
        "select body from orders
         where brand_id = $1 and integration_id = $2 and store_order_id = $3
         order by store_updated_at desc nulls last, id desc limit 1",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await?;
    rows.into_iter()
        .next()
        .map(|row| pb::Order::decode(row.body.as_slice()))
        .transpose()
        .map_err(|err| DbError::Other(format!("a stored order does not decode: {err}")))
}

/// A refund taken into the stored state of an order the store no longer shows (the table
/// `vanished_refunds` says what each column means).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct VanishedRefund {
    #[diesel(sql_type = BigInt)]
    pub refund_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub base_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub state_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub state_status: String,
    #[diesel(sql_type = BigInt)]
    pub state_refunded_minor: i64,
}

/// The refunds taken into the stored state of an order the store no longer shows.
pub async fn vanished_refunds(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
) -> Result<Vec<VanishedRefund>, DbError> {
    tracking_db::prepared(
        "select refund_id, base_at, state_at, state_status, state_refunded_minor
         from vanished_refunds
         where brand_id = $1 and integration_id = $2 and store_order_id = $3",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .load(conn)
    .await
    .map_err(DbError::from)
}

/// Records `refund` as taken into the stored state of an order the store no longer shows.
pub async fn record_vanished_refund(
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    integration_id: i64,
    store_order_id: &str,
    refund: &VanishedRefund,
) -> Result<(), DbError> {
    tracking_db::prepared(
        "insert into vanished_refunds (brand_id, integration_id, store_order_id, refund_id,
           base_at, state_at, state_status, state_refunded_minor)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind::<BigInt, _>(brand_id)
    .bind::<BigInt, _>(integration_id)
    .bind::<Text, _>(store_order_id)
    .bind::<BigInt, _>(refund.refund_id)
    .bind::<Timestamptz, _>(refund.base_at)
    .bind::<Timestamptz, _>(refund.state_at)
    .bind::<Text, _>(&refund.state_status)
    .bind::<BigInt, _>(refund.state_refunded_minor)
    .execute(conn)
    .await?;
    Ok(())
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
    let row: Seen = tracking_db::prepared(
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

/// One multi-row insert for the whole group; rows go in sorted by their version key so that
/// concurrent groups sharing orders take the unique index in the same order (no deadlocks).
/// Per input order, whether it was a new state (stored and published): the same state twice in
/// one group is new the first time, and again only as a return to it ([`revisits`]).
async fn insert(
    conn: &mut AsyncPgConnection,
    orders: &[(&Incoming, pb::OrderSource)],
    taken: Taken,
) -> Result<Vec<bool>, DbError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    static SQL: LazyLock<ByTaken> = LazyLock::new(|| ByTaken::new(inserting));
    let mut sorted: Vec<usize> = (0..orders.len()).collect();
    sorted.sort_by_key(|n| key(orders[*n].0));
    let rows: Vec<(&Incoming, pb::OrderSource)> = sorted.iter().map(|n| orders[*n]).collect();
    let bodies: Vec<Vec<u8>> = rows
        .iter()
        .map(|(i, _)| i.order.to_proto(i.integration_id).encode_to_vec())
        .collect();
    let inserted: Vec<Inserted> = tracking_db::prepared(SQL.get(taken))
        .bind::<Array<BigInt>, _>(rows.iter().map(|(i, _)| i.brand_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(
            rows.iter()
                .map(|(i, _)| i.integration_id)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|(i, _)| i.order.store_order_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|(i, _)| i.order.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(
            rows.iter()
                .map(|(i, _)| i.order.refunded_minor)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(
            rows.iter()
                .map(|(i, _)| i.order.total_minor)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|(_, source)| source.as_str_name())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bytea>, _>(&bodies)
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter()
                .map(|(i, _)| i.order.updated_at)
                .collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    let version = |row: Inserted| {
        (
            row.integration_id,
            row.store_order_id,
            row.status,
            row.refunded_minor,
            row.total_minor,
        )
    };
    let tuple = |incoming: &Incoming| {
        (
            incoming.integration_id,
            incoming.order.store_order_id.clone(),
            incoming.order.status.as_str().to_owned(),
            incoming.order.refunded_minor,
            incoming.order.total_minor,
        )
    };
    // Which rows (sorted) were stored: of the same state twice in the group, the first (the sort
    // is stable, so the first to come).
    let mut new: HashSet<(i64, String, String, i64, i64)> =
        inserted.into_iter().map(version).collect();
    let mut stored: Vec<bool> = rows.iter().map(|(i, _)| new.remove(&tuple(i))).collect();
    // A row not stored (its state was, before or earlier in the group) that the store changed
    // later than the order's latest state may be a return to it. Only the latest such row of
    // each order is looked at: the statement cannot see its own rows, and the order's state is
    // its latest one.
    let mut latest_per_order: HashMap<(i64, &str), usize> = HashMap::new();
    for (n, (incoming, _)) in rows.iter().enumerate() {
        let Some(at) = incoming.order.updated_at.filter(|_| !stored[n]) else {
            continue;
        };
        let order = (
            incoming.integration_id,
            incoming.order.store_order_id.as_str(),
        );
        let later = latest_per_order
            .get(&order)
            .is_none_or(|&m| rows[m].0.order.updated_at.is_some_and(|seen| at >= seen));
        if later {
            latest_per_order.insert(order, n);
        }
    }
    let mut returning: Vec<usize> = latest_per_order.into_values().collect();
    returning.sort_unstable();
    if !returning.is_empty() {
        let revisited: HashSet<_> = revisits(conn, &returning, &rows, &bodies)
            .await?
            .into_iter()
            .map(version)
            .collect();
        for n in returning {
            stored[n] = revisited.contains(&tuple(rows[n].0));
        }
    }
    let received_at = prost_types::Timestamp::from(std::time::SystemTime::now());
    let mut published = vec![false; orders.len()];
    for (sorted_at, &n) in sorted.iter().enumerate() {
        published[n] = stored[sorted_at];
    }
    // Published in the order they came (sorted only to be inserted): without the store's time,
    // attribution takes the later of two edits of an order by arrival.
    let events: Vec<NewEvent> = orders
        .iter()
        .zip(&published)
        .filter(|(_, published)| **published)
        .map(|((incoming, source), _)| {
            let event = pb::OrderEvent {
                seq: 0,
                brand_id: incoming.brand_id,
                order: Some(incoming.order.to_proto(incoming.integration_id)),
                source: *source as i32,
                received_at: Some(received_at),
                report_row: None,
            };
            NewEvent {
                brand_id: incoming.brand_id,
                kind: "order",
                payload: event.encode_to_vec(),
            }
        })
        .collect();
    tracking_events::append(conn, &events).await?;
    Ok(published)
}

/// Stores again, as a revisit, each of `rows[n]` for `n` in `returning` (states stored before,
/// or earlier in the group; at most one row of an order) that brings its order back to that
/// state: the store changed it later than the order's latest state (by the store's time), which
/// is another state. An old state arriving late, or a row without the store's time, is no
/// revisit. What it stored.
async fn revisits(
    conn: &mut AsyncPgConnection,
    returning: &[usize],
    rows: &[(&Incoming, pb::OrderSource)],
    bodies: &[Vec<u8>],
) -> Result<Vec<Inserted>, DbError> {
    let pick = |n: &usize| rows[*n].0;
    let stored = tracking_db::prepared(
        "insert into orders (brand_id, integration_id, store_order_id, status, refunded_minor,
                             total_minor, source, body, store_updated_at, revisit)
         select k.*, 1 + (select max(o.revisit) from orders o
                          where o.brand_id = k.brand_id and o.integration_id = k.integration_id
                            and o.store_order_id = k.store_order_id and o.status = k.status
                            and o.refunded_minor = k.refunded_minor
                            and o.total_minor = k.total_minor)
         from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::bytea[], $9::timestamptz[])
              as k(brand_id, integration_id, store_order_id, status, refunded_minor, total_minor,
                   source, body, store_updated_at)
         cross join lateral (
             select o.status, o.refunded_minor, o.total_minor, o.store_updated_at from orders o
             where o.brand_id = k.brand_id and o.integration_id = k.integration_id
               and o.store_order_id = k.store_order_id and o.store_updated_at is not null
             order by o.store_updated_at desc, o.id desc limit 1) latest
         where latest.store_updated_at < k.store_updated_at
           and (latest.status, latest.refunded_minor, latest.total_minor)
               <> (k.status, k.refunded_minor, k.total_minor)
         on conflict do nothing
         returning integration_id, store_order_id, status, refunded_minor, total_minor",
    )
    .bind::<Array<BigInt>, _>(
        returning
            .iter()
            .map(|n| pick(n).brand_id)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        returning
            .iter()
            .map(|n| pick(n).integration_id)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        returning
            .iter()
            .map(|n| pick(n).order.store_order_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        returning
            .iter()
            .map(|n| pick(n).order.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        returning
            .iter()
            .map(|n| pick(n).order.refunded_minor)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        returning
            .iter()
            .map(|n| pick(n).order.total_minor)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        returning
            .iter()
            .map(|n| rows[*n].1.as_str_name())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bytea>, _>(
        returning
            .iter()
            .map(|n| bodies[*n].as_slice())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(
        returning
            .iter()
            .map(|n| pick(n).order.updated_at)
            .collect::<Vec<_>>(),
    )
    .load(conn)
    .await?;
    Ok(stored)
}

/// [`insert`]'s statement.
fn inserting(taken: Taken) -> String {
    format!(
        "insert into orders (brand_id, integration_id, store_order_id, status, refunded_minor,
                             total_minor, source, body, store_updated_at)
         select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                              $6::bigint[], $7::text[], $8::bytea[], $9::timestamptz[])
         {}
         returning integration_id, store_order_id, status, refunded_minor, total_minor",
        taken.on_conflict()
    )
}
