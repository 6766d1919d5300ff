//! Store adapters: the one interface through which the gateway creates and disables discount
//! codes at a store. Each provider with discount codes gets one adapter speaking that store's API;
//! the sandbox provider's store is simulated inside the gateway ([`sandbox::SandboxStore`]).

pub mod sandbox;

use chrono::{DateTime, Utc};
use tracking_api::common::v1::Provider;
use tracking_db::{Database, DbError};

use crate::domain::capabilities::{Capabilities, capabilities};
use crate::domain::discount::{DisableResult, Discount, PushResult};
use crate::domain::orders::NormalizedOrder;
use crate::error::Error;
use crate::store::IntegrationRow;

/// A failure of a whole store call (per-code refusals are outcomes in the results instead).
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The store is down or refuses every call for now: the same call may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The gateway's own database failed (the sandbox store lives in it).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One store's discount-code API. Calls take validated input (codes fit the provider's
/// [`Capabilities`]) and answer one result per input, in input order.
#[tonic::async_trait]
pub trait StoreAdapter: Send + Sync {
    /// Creates `discounts` at the integration's store. A code the store already holds under the
    /// same external ref is `Created` (a retried push), under another ref `AlreadyExists`.
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError>;

    /// Deactivates `codes` (matched case-insensitively) at the integration's store. A code the
    /// store does not hold is `NotFound`; one already inactive is `Disabled`.
    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[String],
    ) -> Result<Vec<DisableResult>, AdapterError>;

    /// One order, fetched from the store by its id (thin webhooks that carry only the id).
    /// `None` when the store has no such order.
    async fn fetch_order(
        &self,
        integration: &IntegrationRow,
        store_order_id: &str,
    ) -> Result<Option<NormalizedOrder>, AdapterError>;

    /// Orders created or changed at `since` or later, oldest first, at most `limit` of them
    /// (backfill after missed webhooks, pollers for stores without webhooks). An order's current
    /// state is returned once; the caller pages by calling again with the last `occurred_at`.
    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedOrder>, AdapterError>;
}

/// Every adapter the gateway has.
#[derive(Clone, Debug)]
pub struct Adapters {
    sandbox: sandbox::SandboxStore,
}

impl Adapters {
    pub fn new(db: Database) -> Self {
        Self {
            sandbox: sandbox::SandboxStore::new(db),
        }
    }

    /// The sandbox store, for what only it offers: listing its codes and simulating an outage.
    pub fn sandbox(&self) -> &sandbox::SandboxStore {
        &self.sandbox
    }

    /// The adapter that reads `provider`'s orders (thin webhooks, backfill, pollers).
    /// FAILED_PRECONDITION for providers whose orders do not come from a store API.
    pub fn orders_adapter(&self, provider: Provider) -> Result<&dyn StoreAdapter, Error> {
        match provider {
            Provider::Sandbox => Ok(&self.sandbox),
            Provider::Ast => Err(Error::FailedPrecondition(
                "PROVIDER_AST has no store to read orders from: conversions arrive at /ast/v1/conversions".to_owned(),
            )),
            other => Err(Error::FailedPrecondition(format!(
                "no store adapter for {} yet",
                other.as_str_name()
            ))),
        }
    }

    /// The adapter serving `provider`'s store, with the provider's capabilities (which the
    /// discounts must fit). FAILED_PRECONDITION for a provider without discount codes, and for one
    /// whose adapter is not written yet.
    pub fn adapter_for(
        &self,
        provider: Provider,
    ) -> Result<(&dyn StoreAdapter, Capabilities), Error> {
        let name = provider.as_str_name();
        match capabilities(provider) {
            Some(caps) if !caps.discount_codes => Err(Error::FailedPrecondition(format!(
                "{name} has no discount codes"
            ))),
            Some(caps) if provider == Provider::Sandbox => Ok((&self.sandbox, caps)),
            _ => Err(Error::FailedPrecondition(format!(
                "no store adapter for {name} yet"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sandbox_has_an_adapter_so_far() {
        let db = Database::new(
            "postgres://postgres@127.0.0.1:5432/unused",
            "gateway",
            tracking_db::PoolOptions::default(),
        );
        let Ok(db) = db else {
            panic!("a lazy pool needs no server")
        };
        let adapters = Adapters::new(db);
        let message = |provider| match adapters.adapter_for(provider) {
            Ok(_) => "adapter".to_owned(),
            Err(err) => err.to_string(),
        };
        assert_eq!(message(Provider::Sandbox), "adapter");
        assert_eq!(message(Provider::Ast), "PROVIDER_AST has no discount codes");
        assert_eq!(
            message(Provider::AmazonAds),
            "PROVIDER_AMAZON_ADS has no discount codes"
        );
        for provider in [
            Provider::Shopify,
            Provider::Woocommerce,
            Provider::Bigcommerce,
            Provider::Magento,
        ] {
            assert_eq!(
                message(provider),
                format!("no store adapter for {} yet", provider.as_str_name())
            );
        }
    }
}
