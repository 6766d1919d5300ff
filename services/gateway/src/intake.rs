//! Order intake: the one place where orders from every path (store webhooks, AST conversions,
//! IngestOrders, backfill, the Magento poller, the sandbox store) are checked, stored and
//! published on `WatchOrders`.
//!
//! Each distinct state of an order is stored once ([`store::orders`]), in the same transaction as
//! its event, so a redelivery, the same order arriving by two topics, or a backfill over orders
//! already seen changes nothing. Webhook deliveries are recorded by the store's delivery id in
//! that transaction too: a redelivery is dropped before its order is looked at. Deliveries are
//! stored before anything else happens with them (attribution follows from the stream), so a
//! store gets its 200 as soon as the row is committed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use prost::Message;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Batching, Conflicts, Database, DbError, GroupCommit, Taken};
use tracking_events::StoredEvent;

use crate::adapters::{AdapterError, Adapters};
use crate::crypto::Sealer;
use crate::domain::orders::{NormalizedOrder, OrderStatus};
use crate::error::Error;
use crate::store::{self, IntegrationRow};
use crate::webhooks::{self, ParseError, ast, bigcommerce, shopify, woocommerce};

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

/// A webhook delivery as stored: its integration, the store's delivery id and topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryKey {
    pub brand_id: i64,
    pub integration_id: i64,
    pub id: String,
    pub topic: String,
}

impl DeliveryKey {
    /// The same delivery (the topic aside).
    pub fn same_delivery(&self, other: &Self) -> bool {
        (self.brand_id, self.integration_id, &self.id)
            == (other.brand_id, other.integration_id, &other.id)
    }
}

/// One call's orders (and, for a webhook, its delivery), stored together with other calls' in
/// one transaction.
#[derive(Debug, Clone)]
pub struct Submission {
    pub orders: Vec<Incoming>,
    pub source: pb::OrderSource,
    pub delivery: Option<DeliveryKey>,
}

impl Submission {
    fn new(
        orders: &[Incoming],
        source: pb::OrderSource,
        delivery: Option<(&IntegrationRow, Delivery<'_>)>,
    ) -> Self {
        Submission {
            orders: orders.to_vec(),
            source,
            delivery: delivery.map(|(integration, d)| DeliveryKey {
                brand_id: integration.brand_id,
                integration_id: integration.id,
                id: d.id.to_owned(),
                topic: d.topic.to_owned(),
            }),
        }
    }
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

/// Why a delivery was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 401: missing or wrong signature, or an integration that does not exist or takes no such
    /// deliveries (not distinguished, so ids cannot be probed).
    #[error("signature missing or invalid")]
    Unauthorized,
    /// 400: the body is not what the endpoint takes.
    #[error(transparent)]
    Malformed(#[from] ParseError),
    /// 503: our database or the store is unavailable; the sender should retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

/// How long a refund of an order the store no longer shows waits for the order's lock.
const ORDER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl From<diesel::result::Error> for Refusal {
    fn from(err: diesel::result::Error) -> Self {
        DbError::from(err).into()
    }
}

impl From<DbError> for Refusal {
    fn from(err: DbError) -> Self {
        tracing::error!(error = %err, "order intake failed on the database");
        Refusal::Unavailable("database".to_owned())
    }
}

/// The intake's state: the gateway's database, the sealer that opens webhook secrets, and the
/// adapters (thin webhooks and backfill fetch orders from the store).
#[derive(Clone, Debug)]
pub struct Intake {
    db: Database,
    /// A webhook's reads (its integration, whether a thin delivery came before, a deleted
    /// order's last state): a pool of their own, so that large `IngestOrders` calls and
    /// backfills holding every connection of `db` do not make stores' webhooks wait (and fail).
    /// A refund of an order the store no longer shows (rare) is taken in on `db`, under a lock
    /// that would hold one of these few connections.
    reads: Database,
    sealer: Sealer,
    adapters: Adapters,
    commits: GroupCommit<Submission, Result<Outcome, DbError>>,
    /// Order states are new unless a call is retried or a store sends one state twice (two
    /// topics, a backfill): groups insert them plainly, and skip the stored ones only when one is.
    conflicts: Conflicts,
    targets: WebhookTargets,
}

/// The integrations webhooks were delivered to, by id, so that a delivery costs no database
/// read to find its integration. A row is kept only once it passed a webhook provider's check,
/// and such a row never changes after registration (only a sandbox integration's outage switch
/// does, and sandboxes take no webhooks); ids not found are not kept (a delivery may name an
/// integration registered a moment later).
#[derive(Clone, Debug, Default)]
struct WebhookTargets(Arc<RwLock<HashMap<i64, Arc<IntegrationRow>>>>);

impl WebhookTargets {
    /// Integrations kept at most; past it the map starts over.
    const BOUND: usize = 10_000;

    fn get(&self, id: i64) -> Option<Arc<IntegrationRow>> {
        self.0.read().ok().and_then(|known| known.get(&id).cloned())
    }

    fn keep(&self, row: Arc<IntegrationRow>) {
        if let Ok(mut known) = self.0.write() {
            if known.len() >= Self::BOUND {
                known.clear();
            }
            known.insert(row.id, row);
        }
    }
}

/// At most this many orders are stored per transaction.
pub const BATCH: usize = 500;

/// Calls with at most this many orders (webhooks, conversions, sandbox orders) share
/// transactions with concurrent calls; larger ones (IngestOrders chunks, backfills) take their
/// own.
const SHARED_MAX_ORDERS: usize = 16;

/// The intake's pools: the service's own (`db`), the group commits' (`commits`) and the webhooks'
/// reads' (`reads`).
pub struct IntakePools {
    pub db: Database,
    pub commits: Database,
    pub reads: Database,
}

/// How calls share transactions: one group fills while another commits.
pub const SHARING: Batching = Batching {
    workers: 2,
    max_batch: 256,
    queue: 8192,
    linger: std::time::Duration::ZERO,
};

/// At most this many orders are listed by one backfill.
pub const BACKFILL_LIMIT: usize = 10_000;

impl Intake {
    /// Must be called inside the tokio runtime (it starts the group-commit workers). Groups are
    /// stored on `pools.commits`, a pool of [`SHARING`]`.workers` connections that plan their
    /// statements once ([`tracking_db::PoolOptions::generic_plans`]): [`store::orders::store`]
    /// only inserts rows (probing the unique indexes), so one plan is right at any table size.
    /// Large calls are stored on `pools.db`; webhooks read on `pools.reads`.
    pub fn new(pools: IntakePools, sealer: Sealer, adapters: Adapters) -> Self {
        let IntakePools { db, commits, reads } = pools;
        let conflicts = Conflicts::default();
        let shared = conflicts.clone();
        let commits = GroupCommit::start(SHARING, move |submissions: Vec<Submission>| {
            let (db, conflicts) = (commits.clone(), shared.clone());
            async move { store_together(&db, &conflicts, &submissions).await }
        });
        Self {
            db,
            reads,
            sealer,
            adapters,
            commits,
            conflicts,
            targets: WebhookTargets::default(),
        }
    }

    /// Stores `orders` (and, for a webhook, the delivery): small calls in a transaction shared
    /// with concurrent calls (group commit), large ones in their own. A redelivery stores nothing.
    #[tracing::instrument(skip_all, fields(orders = orders.len(), source = source.as_str_name()))]
    pub async fn accept(
        &self,
        orders: &[Incoming],
        source: pb::OrderSource,
        delivery: Option<(&IntegrationRow, Delivery<'_>)>,
    ) -> Result<Outcome, DbError> {
        let submission = Submission::new(orders, source, delivery);
        let outcome = if orders.len() > SHARED_MAX_ORDERS {
            store_together(&self.db, &self.conflicts, std::slice::from_ref(&submission))
                .await
                .pop()
                .unwrap_or_else(|| Err(DbError::Other("no outcome for a submission".to_owned())))
        } else {
            self.commits.submit(submission).await.unwrap_or_else(|| {
                Err(DbError::Unavailable(
                    "the gateway is shutting down".to_owned(),
                ))
            })
        }?;
        if outcome.redelivery {
            // Routine (stores retry until they see a 200); counted in
            // `tracking_order_deliveries_total{outcome="redelivery"}`.
            tracing::debug!(source = source.as_str_name(), "redelivery dropped");
        } else {
            tracing::debug!(
                accepted = outcome.accepted,
                duplicates = outcome.duplicates,
                "orders stored"
            );
        }
        Ok(outcome)
    }

    /// The integration a webhook URL names, if it is of `provider` and has a webhook secret,
    /// with that secret opened.
    async fn webhook_target(
        &self,
        integration_id: i64,
        provider: Provider,
    ) -> Result<(Arc<IntegrationRow>, Vec<u8>), Refusal> {
        let (integration, known) = match self.targets.get(integration_id) {
            Some(known) => (known, true),
            None => match store::find_integration(&self.reads, integration_id).await? {
                Some(found) => (Arc::new(found), false),
                None => return Err(Refusal::Unauthorized),
            },
        };
        if integration.provider() != provider {
            return Err(Refusal::Unauthorized);
        }
        let Some(sealed) = integration.webhook_secret_sealed.as_deref() else {
            return Err(Refusal::Unauthorized);
        };
        let secret = self
            .sealer
            .open(integration.brand_id, sealed)
            .map_err(|err| {
                tracing::error!(integration_id, error = %err, "webhook secret does not open");
                Refusal::Unauthorized
            })?;
        if !known {
            self.targets.keep(integration.clone());
        }
        Ok((integration, secret))
    }

    fn one(integration: &IntegrationRow, order: NormalizedOrder) -> Incoming {
        Incoming {
            brand_id: integration.brand_id,
            integration_id: integration.id,
            order,
        }
    }

    /// An order from a store's payload, held to the same checks as one sent over gRPC, so that
    /// everything stored reads back (refunds build on the stored order).
    fn checked(
        integration: &IntegrationRow,
        order: NormalizedOrder,
    ) -> Result<Incoming, ParseError> {
        let order = NormalizedOrder::from_proto(order.to_proto(integration.id), "order")
            .map_err(|err| ParseError::Invalid(err.to_string()))?;
        Ok(Self::one(integration, order))
    }

    /// An order from a store's payload (a webhook's, its API's): fitted to the model field by
    /// field first ([`NormalizedOrder::fitted`], logged), so that a field the store allows and
    /// the model does not keep does not lose the order; then [`Self::checked`].
    fn from_store(
        integration: &IntegrationRow,
        order: NormalizedOrder,
    ) -> Result<Incoming, ParseError> {
        let (order, changed) = order.fitted();
        if !changed.is_empty() {
            tracing::warn!(
                integration_id = integration.id,
                store_order_id = %order.store_order_id,
                changed = ?changed,
                "store order fitted to the model"
            );
        }
        Self::checked(integration, order)
    }

    /// Orders a store's API returned, without those that fail the model's checks (logged).
    fn keep_valid(integration: &IntegrationRow, orders: Vec<NormalizedOrder>) -> Vec<Incoming> {
        orders
            .into_iter()
            .filter_map(|order| match Self::from_store(integration, order) {
                Ok(incoming) => Some(incoming),
                Err(err) => {
                    tracing::error!(integration_id = integration.id, error = %err, "store order skipped: invalid");
                    None
                }
            })
            .collect()
    }

    /// `POST /webhooks/shopify/{integration}`.
    #[tracing::instrument(skip_all, fields(integration_id, topic))]
    pub async fn shopify(
        &self,
        integration_id: i64,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
    ) -> Result<Outcome, Refusal> {
        let (integration, secret) = self
            .webhook_target(integration_id, Provider::Shopify)
            .await?;
        if !webhooks::verify_signature(&secret, body, headers.signature) {
            return Err(Refusal::Unauthorized);
        }
        // One app's secret may sign for several shops (an agency's app on many brands' shops):
        // a delivery from another shop than the integration's, or from no shop named (Shopify
        // names it on every delivery), is not this brand's.
        if !headers
            .shop
            .is_some_and(|shop| shop.trim().eq_ignore_ascii_case(&integration.shop_domain))
        {
            tracing::warn!(
                integration_id,
                shop = headers.shop,
                "shopify delivery from another shop than the integration's refused"
            );
            return Err(Refusal::Unauthorized);
        }
        let topic = headers.topic.unwrap_or_default();
        let delivery_id = headers
            .delivery_id
            .filter(|id| !id.is_empty() && id.len() <= 200)
            .ok_or_else(|| webhooks::field("X-Shopify-Webhook-Id", "header is required"))?;
        let delivery = Delivery {
            id: delivery_id,
            topic,
        };
        let order = match topic {
            "orders/create" | "orders/paid" | "orders/cancelled" | "orders/updated" => {
                shopify::parse_order(body, self.sealer.customer_key())?
            }
            "refunds/create" => {
                // A refund says what went back, not what the order holds now: added to the
                // stored state, two refunds delivered at once would lose one, and a refund
                // already in it (from a backfill, an `orders/updated`) would count twice. The
                // order is fetched whole, its refunds included, as for BigCommerce's thin
                // deliveries (a failed fetch answers 503, and Shopify delivers again). Only an
                // order the store no longer shows takes the refund into its stored state
                // (`take_in_vanished_refund`).
                let refund = shopify::parse_refund(body)?;
                let order_id = refund.order_id.unwrap_or_default().to_string();
                if self.redelivered(&integration, delivery_id).await? {
                    return Ok(Outcome {
                        redelivery: true,
                        ..Outcome::default()
                    });
                }
                let take_in = async |order: Option<NormalizedOrder>| {
                    let incoming = Self::keep_valid(&integration, order.into_iter().collect());
                    self.accept(
                        &incoming,
                        pb::OrderSource::Webhook,
                        Some((&integration, delivery)),
                    )
                    .await
                    .map_err(Refusal::from)
                };
                return match self.fetch(&integration, &order_id).await? {
                    Some(order) => take_in(Some(order)).await,
                    // On a task of its own: once begun, it ends (the state stored, then the
                    // order's lock freed) even if the delivery's caller goes away.
                    None => {
                        let intake = self.clone();
                        let (integration, order_id) = (integration.clone(), order_id.clone());
                        let (id, topic) = (delivery.id.to_owned(), delivery.topic.to_owned());
                        tokio::spawn(async move {
                            let delivery = Delivery {
                                id: &id,
                                topic: &topic,
                            };
                            intake
                                .take_in_vanished_refund(&integration, &order_id, &refund, delivery)
                                .await
                        })
                        .await
                        .map_err(|err| {
                            tracing::error!(error = %err, "a refund's intake failed");
                            Refusal::Unavailable("refund intake".to_owned())
                        })?
                    }
                };
            }
            // Other topics the app may be subscribed to: acknowledged, not stored.
            _ => return Ok(Outcome::default()),
        };
        let incoming = [Self::from_store(&integration, order)?];
        Ok(self
            .accept(
                &incoming,
                pb::OrderSource::Webhook,
                Some((&integration, delivery)),
            )
            .await?)
    }

    /// `POST /webhooks/woocommerce/{integration}`.
    #[tracing::instrument(skip_all, fields(integration_id))]
    pub async fn woocommerce(
        &self,
        integration_id: i64,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
    ) -> Result<Outcome, Refusal> {
        let (integration, secret) = self
            .webhook_target(integration_id, Provider::Woocommerce)
            .await?;
        if woocommerce::is_ping(headers.topic, body) {
            return Ok(Outcome::default());
        }
        if !webhooks::verify_signature(&secret, body, headers.signature) {
            return Err(Refusal::Unauthorized);
        }
        let topic = headers.topic.unwrap_or_default();
        let order = if topic == woocommerce::DELETED {
            // A trashed or deleted order ends as cancelled: its last state, as stored, void.
            let order_id = woocommerce::deleted_order_id(body)?;
            let Some(mut order) = self.latest_stored(&integration, &order_id).await? else {
                tracing::info!(order_id, "deletion of an order never seen: nothing to void");
                return Ok(Outcome::default());
            };
            order.status = OrderStatus::Cancelled;
            order
        } else if woocommerce::is_order_topic(topic) {
            woocommerce::parse_order(body, self.sealer.customer_key())?
        } else {
            return Ok(Outcome::default());
        };
        let key = headers
            .delivery_id
            .filter(|id| !id.is_empty() && id.len() <= 200)
            .map(|id| woocommerce::delivery_key(id, body));
        let delivery = key.as_deref().map(|id| Delivery { id, topic });
        let incoming = [Self::from_store(&integration, order)?];
        Ok(self
            .accept(
                &incoming,
                pb::OrderSource::Webhook,
                delivery.map(|d| (&*integration, d)),
            )
            .await?)
    }

    /// `POST /webhooks/bigcommerce/{integration}`: a thin delivery; the order is fetched from
    /// the store before the delivery is acknowledged (a failed fetch answers 503, and BigCommerce
    /// delivers again).
    #[tracing::instrument(skip_all, fields(integration_id))]
    pub async fn bigcommerce(
        &self,
        integration_id: i64,
        secret_header: Option<&str>,
        body: &[u8],
    ) -> Result<Outcome, Refusal> {
        let (integration, secret) = self
            .webhook_target(integration_id, Provider::Bigcommerce)
            .await?;
        if !bigcommerce::verify(&secret, secret_header) {
            return Err(Refusal::Unauthorized);
        }
        let Some(notice) = bigcommerce::parse(body)? else {
            return Ok(Outcome::default());
        };
        if self.redelivered(&integration, &notice.delivery_id).await? {
            return Ok(Outcome {
                redelivery: true,
                ..Outcome::default()
            });
        }
        let order = self.fetch(&integration, &notice.order_id).await?;
        let delivery = Delivery {
            id: &notice.delivery_id,
            topic: &notice.scope,
        };
        let incoming = Self::keep_valid(&integration, order.into_iter().collect());
        Ok(self
            .accept(
                &incoming,
                pb::OrderSource::Webhook,
                Some((&integration, delivery)),
            )
            .await?)
    }

    /// `POST /ast/v1/conversions?integration=ID`.
    #[tracing::instrument(skip_all, fields(integration_id))]
    pub async fn ast_conversion(
        &self,
        integration_id: i64,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Outcome, Refusal> {
        let (integration, secret) = self.webhook_target(integration_id, Provider::Ast).await?;
        if !webhooks::verify_signature(&secret, body, signature) {
            return Err(Refusal::Unauthorized);
        }
        let order = ast::parse_conversion(body, Utc::now())?;
        let incoming = [Self::checked(&integration, order)?];
        Ok(self.accept(&incoming, pb::OrderSource::Ast, None).await?)
    }

    /// `GET /ast/v1/pixel.gif?...&sig=HEX`.
    #[tracing::instrument(skip_all)]
    pub async fn ast_pixel(&self, raw_query: &str) -> Result<Outcome, Refusal> {
        let pixel = ast::pixel_query(raw_query)?;
        let (integration, secret) = self
            .webhook_target(pixel.integration_id, Provider::Ast)
            .await?;
        if !pixel.verify(&secret) {
            return Err(Refusal::Unauthorized);
        }
        let order = pixel.conversion(Utc::now())?;
        let incoming = [Self::checked(&integration, order)?];
        Ok(self.accept(&incoming, pb::OrderSource::Ast, None).await?)
    }

    /// The order's latest stored state ([`store::orders::latest`]), if it was ever stored.
    async fn latest_stored(
        &self,
        integration: &IntegrationRow,
        order_id: &str,
    ) -> Result<Option<NormalizedOrder>, Refusal> {
        let mut conn = self.reads.conn().await?;
        let latest =
            store::orders::latest(&mut conn, integration.brand_id, integration.id, order_id)
                .await?;
        drop(conn);
        decoded(latest)
    }

    /// Takes a Shopify refund of an order the store no longer shows into the order's latest
    /// stored state ([`shopify::refunded_from_stored`]) and stores the result with the delivery,
    /// in one transaction under a lock on the order, so that the next refund of it reads this
    /// one's result: a transaction-level advisory lock (replicas share it), waited for at most
    /// [`ORDER_LOCK_WAIT`] (then 503, and Shopify delivers again). A refund added is recorded by
    /// its id in the same transaction, so it is added once however often, and in whatever order,
    /// refunds arrive. The state is stored on the lock's connection, not by group commit: the
    /// path is rare, and one transaction keeps the state and the refund's record together.
    async fn take_in_vanished_refund(
        &self,
        integration: &IntegrationRow,
        order_id: &str,
        refund: &shopify::Refund,
        delivery: Delivery<'_>,
    ) -> Result<Outcome, Refusal> {
        use diesel::sql_types::Text;
        use diesel_async::RunQueryDsl;
        let (brand_id, integration_id) = (integration.brand_id, integration.id);
        let key = format!("{brand_id}/{integration_id}/{order_id}");
        let mut conn = self.db.conn().await?;
        conn.transaction::<_, Refusal, _>(async |conn| {
            let wait = ORDER_LOCK_WAIT.as_millis();
            diesel::sql_query(format!("set local lock_timeout = '{wait}ms'"))
                .execute(conn)
                .await?;
            // The two-key form: apart from the one-key locks of the event log and consumers.
            diesel::sql_query(
                "select pg_advisory_xact_lock(hashtext(current_schema() || '.order'), hashtext($1))",
            )
            .bind::<Text, _>(&key)
            .execute(conn)
            .await?;
            let stored = decoded(
                store::orders::latest(conn, brand_id, integration_id, order_id).await?,
            )?;
            let recorded =
                store::orders::vanished_refunds(conn, brand_id, integration_id, order_id).await?;
            let refund_id = refund.id.and_then(|id| i64::try_from(id).ok());
            let taken_before = recorded.iter().any(|r| Some(r.refund_id) == refund_id);
            // The store's own last change: a state made here is known by its change time and
            // what it holds (a state of the store's changed in the same second differs).
            let store_at = stored.as_ref().and_then(|stored| {
                let at = stored.updated_at?;
                let made_here = recorded.iter().find(|r| {
                    r.state_at == at
                        && r.state_status == stored.status.as_str()
                        && r.state_refunded_minor == stored.refunded_minor
                });
                Some(made_here.map_or(at, |r| r.base_at))
            });
            let taken_in = match (stored, refund_id) {
                (Some(stored), Some(_)) => {
                    Self::taken_in(stored, order_id, refund, taken_before, store_at)
                }
                (None, _) => {
                    tracing::warn!(order_id, "refund for an order neither the store nor the suite has");
                    shopify::TakenIn::Unknown
                }
                (_, None) => {
                    tracing::warn!(order_id, "refund without an id, not taken in");
                    shopify::TakenIn::Unknown
                }
            };
            let (order, added) = match taken_in {
                shopify::TakenIn::Added(order) => (Some(order), true),
                shopify::TakenIn::AlreadyIn(order) => (Some(order), false),
                shopify::TakenIn::Unknown => (None, false),
            };
            let incoming = Self::keep_valid(integration, order.into_iter().collect());
            let made = <[Incoming]>::first(&incoming).map(|i| &i.order);
            if added
                && let (Some(refund_id), Some(base_at), Some(made)) = (refund_id, store_at, made)
                && let Some(state_at) = made.updated_at
            {
                let refund = store::orders::VanishedRefund {
                    refund_id,
                    base_at,
                    state_at,
                    state_status: made.status.as_str().to_owned(),
                    state_refunded_minor: made.refunded_minor,
                };
                store::orders::record_vanished_refund(
                    conn,
                    brand_id,
                    integration_id,
                    order_id,
                    &refund,
                )
                .await?;
            }
            let submission = Submission::new(
                &incoming,
                pb::OrderSource::Webhook,
                Some((integration, delivery)),
            );
            store::orders::store(conn, std::slice::from_ref(&submission), Taken::Skip)
                .await?
                .pop()
                .ok_or_else(|| DbError::Other("no outcome for a refund".to_owned()).into())
        })
        .await
    }

    /// What a Shopify refund of an order the store no longer shows (or sends in a shape the
    /// gateway cannot read: [`fetch`](Self::fetch) answers `None` for both) does to the order's
    /// latest stored state ([`shopify::refunded_from_stored`]), logged.
    fn taken_in(
        stored: NormalizedOrder,
        order_id: &str,
        refund: &shopify::Refund,
        taken_before: bool,
        store_at: Option<DateTime<Utc>>,
    ) -> shopify::TakenIn {
        match shopify::refunded_from_stored(stored, refund, taken_before, store_at) {
            Ok(shopify::TakenIn::Added(order)) => {
                tracing::info!(
                    order_id,
                    "refund of an order the store no longer shows, taken into its stored state"
                );
                shopify::TakenIn::Added(order)
            }
            Ok(shopify::TakenIn::Unknown) => {
                tracing::warn!(
                    order_id,
                    "refund of an order the store no longer shows, not taken in: its time or the stored state's is unknown"
                );
                shopify::TakenIn::Unknown
            }
            Ok(in_it) => in_it,
            Err(err) => {
                tracing::warn!(order_id, error = %err, "refund of an order the store no longer shows, not taken in");
                shopify::TakenIn::Unknown
            }
        }
    }

    /// Whether a thin delivery (the order to be fetched) was recorded before: a redelivery is
    /// dropped before the store is asked for the order again.
    async fn redelivered(
        &self,
        integration: &IntegrationRow,
        delivery_id: &str,
    ) -> Result<bool, DbError> {
        let mut conn = self.reads.conn().await?;
        store::orders::delivery_seen(&mut conn, integration.brand_id, integration.id, delivery_id)
            .await
    }

    async fn fetch(
        &self,
        integration: &IntegrationRow,
        order_id: &str,
    ) -> Result<Option<NormalizedOrder>, Refusal> {
        let adapter = self
            .adapters
            .orders_adapter(integration.provider())
            .map_err(|err| Refusal::Unavailable(err.to_string()))?;
        crate::adapters::http::fetching(adapter.fetch_order(integration, order_id))
            .await
            .map_err(|err| match err {
                AdapterError::Unavailable(why) => Refusal::Unavailable(why),
                AdapterError::Misconfigured(why) => {
                    tracing::error!(integration_id = integration.id, %why, "cannot fetch the order: the integration is misconfigured");
                    Refusal::Unavailable(why)
                }
                AdapterError::Db(db) => Refusal::from(db),
            })
    }

    /// Lists the store's orders changed since `since` (at most [`BACKFILL_LIMIT`]) and takes in
    /// those not seen yet.
    #[tracing::instrument(skip_all, fields(integration_id = integration.id))]
    pub async fn backfill(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        source: pb::OrderSource,
    ) -> Result<Backfilled, Error> {
        let adapter = self.adapters.orders_adapter(integration.provider())?;
        let found = adapter
            .list_orders(integration, since, BACKFILL_LIMIT)
            .await?;
        let listed = found.orders.len();
        let incoming = Self::keep_valid(integration, found.orders);
        let mut total = Outcome::default();
        for chunk in incoming.chunks(BATCH) {
            let outcome = self.accept(chunk, source, None).await?;
            total.accepted += outcome.accepted;
            total.duplicates += outcome.duplicates;
        }
        tracing::info!(
            listed,
            accepted = total.accepted,
            duplicates = total.duplicates,
            resume_from = ?found.resume_from,
            "backfill done"
        );
        Ok(Backfilled {
            listed,
            outcome: total,
            resume_from: found.resume_from,
        })
    }

    /// Places an order at a sandbox store; its webhook reaches the intake at once unless the
    /// store is down. Returns whether it was delivered.
    pub async fn place_sandbox_order(
        &self,
        integration: &IntegrationRow,
        order: NormalizedOrder,
    ) -> Result<bool, Error> {
        self.adapters
            .sandbox()
            .place_order(
                integration,
                &order.to_proto(integration.id).encode_to_vec(),
                &order.store_order_id,
            )
            .await?;
        if integration.sandbox_down {
            return Ok(false);
        }
        let incoming = [Self::one(integration, order)];
        self.accept(&incoming, pb::OrderSource::Webhook, None)
            .await?;
        Ok(true)
    }
}

/// Stores `submissions` in one transaction: one outcome each, or the transaction's error for all.
/// Their order states are inserted plainly unless `conflicts` says recent groups met stored ones;
/// a plain insert that meets one is written again, skipping them.
async fn store_together(
    db: &Database,
    conflicts: &Conflicts,
    submissions: &[Submission],
) -> Vec<Result<Outcome, DbError>> {
    let mut taken = conflicts.first();
    let stored = loop {
        let stored = async {
            let mut conn = db.conn().await?;
            conn.transaction::<_, DbError, _>(async |conn| {
                store::orders::store(conn, submissions, taken).await
            })
            .await
        }
        .await;
        if !conflicts.write_again(taken, &stored) {
            break stored;
        }
        taken = Taken::Skip;
    };
    if let Ok(outcomes) = &stored
        && outcomes.iter().any(|outcome| outcome.duplicates > 0)
    {
        conflicts.met();
    }
    match stored {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(err) => submissions.iter().map(|_| Err(err.clone())).collect(),
    }
}

/// What a backfill listed and stored.
#[derive(Debug, Default)]
pub struct Backfilled {
    pub listed: usize,
    pub outcome: Outcome,
    /// Set when the listing stopped at [`BACKFILL_LIMIT`]: a backfill from this time goes on
    /// where this one stopped.
    pub resume_from: Option<DateTime<Utc>>,
}

/// The headers a signed webhook is judged by.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebhookHeaders<'a> {
    pub signature: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
    /// The store the delivery says it is from (Shopify's `X-Shopify-Shop-Domain`).
    pub shop: Option<&'a str>,
}

/// An order state as stored, read back.
fn decoded(stored: Option<pb::Order>) -> Result<Option<NormalizedOrder>, Refusal> {
    stored
        .map(|order| NormalizedOrder::from_proto(order, "order"))
        .transpose()
        .map_err(|err| ParseError::Invalid(err.to_string()).into())
}

/// A stored event as sent on `WatchOrders`.
pub fn decode_event(stored: &StoredEvent) -> Result<pb::OrderEvent, prost::DecodeError> {
    let mut event = pb::OrderEvent::decode(stored.payload.as_slice())?;
    event.seq = stored.seq;
    Ok(event)
}
