//! The sandbox provider's store: simulated inside the gateway and persisted in its schema, so the
//! whole suite runs and demos with no real store. It answers as a store does: codes are unique per
//! integration whatever their case, a code taken by another owner is refused, a retried push is
//! not a collision, disabled codes stay taken, a code is changed in place (the same row keeps its
//! id), and while an outage is simulated every call fails.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use prost::Message;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Database, DbError};

use super::{AdapterError, Listed, StoreAdapter};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, PushOutcome, PushResult, ToDisable,
};
use crate::domain::orders::NormalizedOrder;
use crate::error::Error;
use crate::store::sandbox::{self as queries, HeldCode, NewCode, StoredDiscount};
use crate::store::{self, IntegrationRow};

const OUTAGE: &str = "sandbox store is down (simulated outage)";

/// The simulated store of every sandbox integration.
#[derive(Clone, Debug)]
pub struct SandboxStore {
    db: Database,
}

/// FAILED_PRECONDITION unless `integration` is a sandbox one: only its store lives in the gateway
/// (a real store is the brand's own, seen in its admin).
fn require_sandbox(integration: &IntegrationRow, rpc: &str) -> Result<(), Error> {
    if integration.provider() == Provider::Sandbox {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(format!(
            "integration {} is {}: {rpc} works only for sandbox integrations",
            integration.id, integration.provider
        )))
    }
}

impl SandboxStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The codes the integration's store holds, oldest first, after the key `after`. Served also
    /// during a simulated outage, so a demo or a test can see that nothing was written.
    pub async fn list(
        &self,
        integration: &IntegrationRow,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredDiscount>, Error> {
        require_sandbox(integration, "ListStoreDiscounts")?;
        let mut conn = self.db.conn().await?;
        Ok(queries::list(
            &mut conn,
            integration.brand_id,
            integration.id,
            after,
            limit,
        )
        .await?)
    }

    /// Starts (`down`) or ends a simulated outage of the integration's store.
    pub async fn set_outage(
        &self,
        integration: &IntegrationRow,
        down: bool,
    ) -> Result<IntegrationRow, Error> {
        require_sandbox(integration, "SetSandboxOutage")?;
        let updated = store::set_sandbox_down(&self.db, integration.brand_id, integration.id, down)
            .await?
            .ok_or_else(|| Error::NotFound(format!("integration {} not found", integration.id)))?;
        let (brand_id, integration_id) = (updated.brand_id, updated.id);
        if down {
            tracing::warn!(
                brand_id,
                integration_id,
                "sandbox store outage started (simulated)"
            );
        } else {
            tracing::info!(
                brand_id,
                integration_id,
                "sandbox store outage ended (simulated)"
            );
        }
        Ok(updated)
    }

    /// Places (or changes) an order at the integration's simulated store; it is what
    /// `list_orders` and `fetch_order` answer from. Works during an outage too (the shop is open,
    /// only its API and webhooks are down).
    pub async fn place_order(
        &self,
        integration: &IntegrationRow,
        body: &[u8],
        store_order_id: &str,
    ) -> Result<(), Error> {
        require_sandbox(integration, "PlaceSandboxOrder")?;
        let mut conn = self.db.conn().await?;
        queries::put_order(
            &mut conn,
            integration.brand_id,
            integration.id,
            store_order_id,
            body,
        )
        .await?;
        Ok(())
    }

    /// Creates `discounts` on `conn` (see [`StoreAdapter::create_discounts`]).
    async fn create_on(
        conn: &mut AsyncPgConnection,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let (brand_id, integration_id) = (integration.brand_id, integration.id);
        let rows = discounts
            .iter()
            .map(new_code)
            .collect::<Result<Vec<_>, _>>()?;

        // One statement inserts every new code; only the codes it skipped (held already) cost a
        // second one, to compare their refs.
        let mut held: HashMap<String, HeldCode> =
            queries::insert_new(conn, brand_id, integration_id, rows)
                .await?
                .into_iter()
                .map(|row| (row.code.to_ascii_lowercase(), row))
                .collect();
        let mut skipped: Vec<String> = discounts
            .iter()
            .map(|d| d.code.to_ascii_lowercase())
            .filter(|code| !held.contains_key(code))
            .collect();
        skipped.sort_unstable();
        skipped.dedup();
        if !skipped.is_empty() {
            for row in queries::held(conn, brand_id, integration_id, &skipped).await? {
                held.insert(row.code.to_ascii_lowercase(), row);
            }
        }

        // A retry of a code disabled since its first push brings it back, as re-creating it would.
        let mut revived: Vec<i64> = discounts
            .iter()
            .filter_map(|d| held.get(&d.code.to_ascii_lowercase()).map(|row| (d, row)))
            .filter(|(d, row)| !row.active && row.external_ref == d.external_ref)
            .map(|(_, row)| row.id)
            .collect();
        revived.sort_unstable();
        revived.dedup();
        if !revived.is_empty() {
            queries::reactivate(conn, brand_id, integration_id, &revived).await?;
        }

        Ok(discounts
            .iter()
            .map(|d| {
                let outcome = match held.get(&d.code.to_ascii_lowercase()) {
                    Some(row) if row.external_ref == d.external_ref => PushOutcome::Created {
                        store_discount_id: row.id.to_string(),
                    },
                    Some(_) => PushOutcome::AlreadyExists {
                        message: format!("code {} already exists in the store", d.code),
                    },
                    // Rows are never deleted, so a skipped code is always found; should that ever
                    // break, the pusher must not take the code as created.
                    None => PushOutcome::Failed {
                        message: format!("the store did not confirm code {}", d.code),
                        retryable: true,
                    },
                };
                PushResult {
                    code: d.code.clone(),
                    outcome,
                }
            })
            .collect())
    }

    /// Changes one code (see [`StoreAdapter::update_discounts`]).
    async fn update_on(
        conn: &mut AsyncPgConnection,
        integration: &IntegrationRow,
        update: &DiscountUpdate,
    ) -> Result<PushOutcome, AdapterError> {
        let (brand_id, integration_id) = (integration.brand_id, integration.id);
        let discount = &update.discount;
        let previous = update.previous_code.to_ascii_lowercase();
        match queries::rename(
            conn,
            brand_id,
            integration_id,
            &previous,
            new_code(discount)?,
        )
        .await
        {
            Ok(Some(id)) => Ok(PushOutcome::Created {
                store_discount_id: id.to_string(),
            }),
            // Not held under this ref: created as a push would be (also a retry of a rename that
            // went through, which finds the new code under its own ref).
            Ok(None) => Self::create_on(conn, integration, std::slice::from_ref(discount))
                .await?
                .pop()
                .map(|result| result.outcome)
                .ok_or_else(|| {
                    AdapterError::Db(DbError::Other("a push answered no result".to_owned()))
                }),
            // The new code is another row's: the rename changed nothing.
            Err(DbError::UniqueViolation { .. }) => {
                let held = queries::held(
                    conn,
                    brand_id,
                    integration_id,
                    &[discount.code.to_ascii_lowercase()],
                )
                .await?;
                Ok(match held.first() {
                    Some(row) if row.external_ref == discount.external_ref => {
                        PushOutcome::Created {
                            store_discount_id: row.id.to_string(),
                        }
                    }
                    _ => PushOutcome::AlreadyExists {
                        message: format!("code {} already exists in the store", discount.code),
                    },
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    fn ensure_up(integration: &IntegrationRow, call: &str) -> Result<(), AdapterError> {
        if integration.sandbox_down {
            tracing::info!(
                brand_id = integration.brand_id,
                integration_id = integration.id,
                call,
                "sandbox store is down (simulated outage), call refused"
            );
            return Err(AdapterError::Unavailable(OUTAGE.to_owned()));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl StoreAdapter for SandboxStore {
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        Self::ensure_up(integration, "push")?;
        let mut conn = self.db.conn().await.map_err(AdapterError::Db)?;
        Self::create_on(&mut conn, integration, discounts).await
    }

    async fn update_discounts(
        &self,
        integration: &IntegrationRow,
        updates: &[DiscountUpdate],
    ) -> Result<Vec<PushResult>, AdapterError> {
        Self::ensure_up(integration, "update")?;
        let mut conn = self.db.conn().await.map_err(AdapterError::Db)?;
        // One code at a time, in request order: a rename frees or takes a code a later update
        // of the same call may name.
        let mut results = Vec::with_capacity(updates.len());
        for update in updates {
            results.push(PushResult {
                code: update.discount.code.clone(),
                outcome: Self::update_on(&mut conn, integration, update).await?,
            });
        }
        Ok(results)
    }

    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[ToDisable],
    ) -> Result<Vec<DisableResult>, AdapterError> {
        Self::ensure_up(integration, "disable")?;
        let codes: Vec<&String> = codes.iter().map(|target| &target.code).collect();
        let lower: Vec<String> = codes.iter().map(|c| c.to_ascii_lowercase()).collect();
        let mut conn = self.db.conn().await.map_err(AdapterError::Db)?;
        let found: HashSet<String> =
            queries::disable(&mut conn, integration.brand_id, integration.id, &lower)
                .await?
                .into_iter()
                .collect();
        Ok(codes
            .iter()
            .zip(&lower)
            .map(|(code, lower)| DisableResult {
                code: (*code).clone(),
                outcome: if found.contains(lower) {
                    DisableOutcome::Disabled
                } else {
                    DisableOutcome::NotFound {
                        message: format!("the store holds no code {code}"),
                    }
                },
            })
            .collect())
    }

    async fn fetch_order(
        &self,
        integration: &IntegrationRow,
        store_order_id: &str,
    ) -> Result<Option<NormalizedOrder>, AdapterError> {
        Self::ensure_up(integration, "fetch an order")?;
        let mut conn = self.db.conn().await?;
        queries::order(
            &mut conn,
            integration.brand_id,
            integration.id,
            store_order_id,
        )
        .await?
        .map(|body| decode_order(&body))
        .transpose()
    }

    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError> {
        Self::ensure_up(integration, "list orders")?;
        let mut conn = self.db.conn().await?;
        let rows = queries::orders_since(
            &mut conn,
            integration.brand_id,
            integration.id,
            since,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await?;
        let mut listed = Listed::new(limit);
        for (body, changed) in rows {
            listed.push(Some(decode_order(&body)?), Some(changed));
        }
        Ok(listed.finish(limit))
    }
}

/// An order as the sandbox store keeps it (validated when it was placed).
fn decode_order(body: &[u8]) -> Result<NormalizedOrder, AdapterError> {
    let order = pb::Order::decode(body)
        .map_err(|e| AdapterError::Unavailable(format!("sandbox order unreadable: {e}")))?;
    NormalizedOrder::from_proto(order, "order")
        .map_err(|e| AdapterError::Unavailable(format!("sandbox order invalid: {e}")))
}

/// A discount as the sandbox store keeps it.
fn new_code(discount: &Discount) -> Result<NewCode<'_>, AdapterError> {
    Ok(NewCode {
        code: &discount.code,
        external_ref: &discount.external_ref,
        title: &discount.title,
        terms: serde_json::to_value(&discount.terms)
            .map_err(|err| DbError::Other(format!("discount terms: {err}")))?,
    })
}
