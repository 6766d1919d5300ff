//! Store adapters: the one interface through which the gateway creates, updates and disables
//! discount codes at a store and reads its orders. Each provider with discount codes gets one adapter
//! speaking that store's API ([`shopify`], [`woocommerce`], [`bigcommerce`], [`magento`]); the
//! sandbox provider's store is simulated inside the gateway ([`sandbox::SandboxStore`]). Amazon
//! Ads has no codes: its [`amazon::AmazonAttribution`] client makes creators' attribution tags
//! and imports attributed sales.
//!
//! The HTTP mechanics (timeouts, retries, throttling, concurrency, credentials) are written once,
//! in [`http`]. Every real adapter calls the integration's `base_url` when it is set instead of
//! the store's usual origin (`https://{shop_domain}` for Shopify, `https://api.bigcommerce.com`,
//! `https://advertising-api.amazon.com`), keeping the API paths: tests and local runs point an
//! adapter at `http://127.0.0.1:PORT` that way.

pub mod amazon;
pub mod bigcommerce;
pub mod http;
pub mod magento;
mod mapping;
#[cfg(test)]
pub(crate) mod mock;
pub mod sandbox;
pub mod shopify;
pub mod woocommerce;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracking_api::common::v1::Provider;
use tracking_db::{Database, DbError};

use crate::crypto::Sealer;
use crate::domain::capabilities::{Capabilities, capabilities};
use crate::domain::discount::{DisableResult, Discount, DiscountUpdate, PushResult, ToDisable};
use crate::domain::orders::NormalizedOrder;
use crate::error::Error;
use crate::store::IntegrationRow;

/// A failure of a whole store call (per-code refusals are outcomes in the results instead).
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The store is down or refuses every call for now: the same call may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The integration cannot work as registered: credentials missing, unreadable or refused by
    /// the store. The brand must fix the integration; retrying changes nothing.
    #[error("{0}")]
    Misconfigured(String),
    /// The gateway's own database failed (the sandbox store lives in it).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// An order a store sent (fetched or listed): read, or unreadable, logged with the store's id for
/// it and skipped. Asking again would read it no better: a thin webhook answered 503 for it would
/// be delivered again until the store gave up on the webhook, and missed every later order.
pub(crate) fn readable<E: std::fmt::Display>(
    integration: &IntegrationRow,
    order_id: &dyn std::fmt::Display,
    order: Result<NormalizedOrder, E>,
) -> Option<NormalizedOrder> {
    order
        .inspect_err(|err| {
            tracing::error!(
                brand_id = integration.brand_id,
                integration_id = integration.id,
                provider = integration.provider().as_str_name(),
                order_id = %order_id,
                error = %err,
                "order skipped: unreadable"
            );
        })
        .ok()
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

    /// Changes codes the store holds in place: the discount holding `previous_code`
    /// (case-insensitively) under the update's external ref takes the new code, title and terms,
    /// and is active. One result per update, in input order, with the outcomes of a push for the
    /// new code (stores may apply the updates of one call concurrently, so one call should not
    /// rename a code into one that another of its updates frees):
    /// - `Created`: the store holds the new code with the new terms (the store id is the updated
    ///   discount's).
    /// - `AlreadyExists`: the new code is someone else's at the store; nothing was changed.
    /// - A previous code the store does not hold under that ref (never pushed, deleted, someone
    ///   else's, or already renamed by an earlier try of the same update) is no failure: the new
    ///   code is created as [`create_discounts`](Self::create_discounts) would, so a retried
    ///   update answers `Created` and the store ends up holding the new code either way. The
    ///   previous code, if held by someone else, is left alone.
    async fn update_discounts(
        &self,
        integration: &IntegrationRow,
        updates: &[DiscountUpdate],
    ) -> Result<Vec<PushResult>, AdapterError>;

    /// Deactivates `codes` (matched case-insensitively) at the integration's store, touching only
    /// discounts the suite made, and made for each code's ref when it is given (where the store
    /// keeps refs: [`ToDisable::owns`]). A code the store does not hold, or not in such a
    /// discount, is `NotFound`; one already inactive is `Disabled`.
    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[ToDisable],
    ) -> Result<Vec<DisableResult>, AdapterError>;

    /// The currency the store keeps its prices and discounts in (ISO 4217, upper case): a fixed
    /// amount off or a minimum purchase in another would be taken as that many units of it.
    /// `None` where there is no store to ask (the sandbox).
    async fn shop_currency(
        &self,
        _integration: &IntegrationRow,
    ) -> Result<Option<String>, AdapterError> {
        Ok(None)
    }

    /// One order, fetched from the store by its id (thin webhooks that carry only the id).
    /// `None` when the store has no such order, or sends one the gateway cannot read
    /// ([`readable`]).
    async fn fetch_order(
        &self,
        integration: &IntegrationRow,
        store_order_id: &str,
    ) -> Result<Option<NormalizedOrder>, AdapterError>;

    /// Orders changed at `since` or later, in the order the store changed them, at most `limit`
    /// of them (backfill after missed webhooks, pollers for stores without webhooks), and where
    /// to go on from when the limit cut the list short. An order's current state is returned
    /// once. The adapter pages through the store's API itself.
    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError>;
}

/// Orders listed by [`StoreAdapter::list_orders`].
#[derive(Debug, Default)]
pub struct Listed {
    pub orders: Vec<NormalizedOrder>,
    /// Set when the list stopped at its limit: when the last order listed changed. A listing
    /// from this time goes on where this one stopped (that order again among the first).
    pub resume_from: Option<DateTime<Utc>>,
}

impl Listed {
    /// Takes in the store's orders one by one, in the order they changed, up to `limit`.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            orders: Vec::with_capacity(limit.min(1_000)),
            resume_from: None,
        }
    }

    /// Whether the list holds `limit` orders already.
    pub(crate) fn full(&self, limit: usize) -> bool {
        self.orders.len() >= limit
    }

    /// The next order of the store's list, which changed at `changed_at`: read, or unreadable
    /// (logged with the store's id for it, and skipped). The list ends with it so far, so a
    /// listing cut here resumes from its time.
    pub(crate) fn take<E: std::fmt::Display>(
        &mut self,
        integration: &IntegrationRow,
        order_id: &serde_json::Value,
        order: Result<NormalizedOrder, E>,
        changed_at: Option<DateTime<Utc>>,
    ) {
        self.push(readable(integration, order_id, order), changed_at);
    }

    /// The next order of the list (if it was read), which changed at `changed_at`.
    pub(crate) fn push(
        &mut self,
        order: Option<NormalizedOrder>,
        changed_at: Option<DateTime<Utc>>,
    ) {
        self.orders.extend(order);
        if changed_at.is_some() {
            self.resume_from = changed_at;
        }
    }

    /// The listing as it ends: `resume_from` kept only when the limit cut it.
    pub(crate) fn finish(mut self, limit: usize) -> Self {
        if !self.full(limit) {
            self.resume_from = None;
        }
        self
    }
}

/// Where a listing of a store's orders by change time stands, for stores that page only by
/// number. Paged by number, an order changed during the listing moves to the end, and the order
/// after a page's end shifts onto the page already read: it would not be listed, and the next
/// poll, starting from about when this one started, would not reach back to it. So each page
/// starts again from the latest change listed (`from`), leaving out the orders of that second
/// listed already (`ids`), by the store's own means (WooCommerce's `exclude`; BigCommerce walks
/// the second by id). An order listed twice (it came back the same) is taken once.
pub(crate) struct ChangeKey {
    /// The latest change listed: the listing goes on from it.
    pub from: DateTime<Utc>,
    /// The ids of the orders listed that changed at `from`.
    pub ids: Vec<String>,
    taken: std::collections::HashSet<(String, Option<DateTime<Utc>>)>,
}

impl ChangeKey {
    pub(crate) fn new(since: DateTime<Utc>) -> Self {
        use chrono::SubsecRound;
        Self {
            // Stores keep whole seconds: an order of `since`'s own second is of `from`.
            from: since.trunc_subsecs(0),
            ids: Vec::new(),
            taken: std::collections::HashSet::new(),
        }
    }

    /// The listing goes on after `from`'s second, read whole.
    pub(crate) fn past_second(&mut self) {
        self.from += chrono::Duration::seconds(1);
        self.ids.clear();
    }

    /// Notes the store's order `id`, changed at `changed_at`; whether it is new to the listing
    /// (not the same order at the same change).
    pub(crate) fn take(
        &mut self,
        id: &serde_json::Value,
        changed_at: Option<DateTime<Utc>>,
    ) -> bool {
        let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
        if let Some(at) = changed_at
            && at > self.from
        {
            self.from = at;
            self.ids.clear();
        }
        if changed_at.is_none_or(|at| at == self.from) && !self.ids.contains(&id) {
            self.ids.push(id.clone());
        }
        self.taken.insert((id, changed_at))
    }
}

/// When a store says an order changed: `field` of its JSON (see [`store_time`]).
pub(crate) fn changed_at(value: &serde_json::Value, field: &str) -> Option<DateTime<Utc>> {
    store_time(value[field].as_str()?)
}

/// A store's time, in RFC 3339 (Shopify), RFC 2822 (BigCommerce) or UTC `YYYY-MM-DD HH:MM:SS` /
/// `YYYY-MM-DDTHH:MM:SS` (Magento, WooCommerce's `_gmt` fields).
pub(crate) fn store_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(text))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
                .iter()
                .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
                .map(|t| t.and_utc())
        })
}

/// Runs `one` for every item concurrently (as far as the integration's limit in
/// [`http::StoreHttp`] lets them run) and answers `result(item, outcome)` in item order; a
/// failure of a whole call fails them all.
pub(crate) async fn each<'a, T, O, R, Fut>(
    items: &'a [T],
    one: impl Fn(&'a T) -> Fut,
    result: impl Fn(&T, O) -> R,
) -> Result<Vec<R>, AdapterError>
where
    Fut: std::future::Future<Output = Result<O, AdapterError>>,
{
    let outcomes = futures::future::join_all(items.iter().map(one)).await;
    items
        .iter()
        .zip(outcomes)
        .map(|(item, outcome)| Ok(result(item, outcome?)))
        .collect()
}

/// What the adapters are built with.
#[derive(Clone, Debug)]
pub struct AdapterConfig {
    pub http: http::HttpConfig,
    /// Keys the hash of customers' emails in orders read from stores (see
    /// [`customer_hash`](crate::webhooks::customer_hash)); webhooks must use the same key.
    pub customer_key: Vec<u8>,
    /// Whether stores on this machine or a private network may be registered (test stores, a
    /// local proxy): see [`NewIntegration::validate`](crate::domain::integration::NewIntegration::validate).
    pub local_stores: bool,
}

impl AdapterConfig {
    /// Default HTTP settings (10 s timeout, 4 attempts, 4 calls at once per integration and 2 more
    /// for thin webhooks' order fetches), no local stores.
    pub fn new(customer_key: Vec<u8>) -> Self {
        Self {
            http: http::HttpConfig::default(),
            customer_key,
            local_stores: false,
        }
    }
}

/// Every adapter the gateway has.
#[derive(Clone, Debug)]
pub struct Adapters {
    sandbox: sandbox::SandboxStore,
    shopify: shopify::Shopify,
    woocommerce: woocommerce::WooCommerce,
    bigcommerce: bigcommerce::BigCommerce,
    magento: magento::Magento,
    amazon: amazon::AmazonAttribution,
    currencies: Arc<Mutex<Currencies>>,
    /// The stores being asked their currency for [`Adapters::shop_currency_within`], one
    /// question per integration at a time.
    asking: Arc<Mutex<Asking>>,
    local_stores: bool,
}

/// A question to a store about its currency, shared by every caller waiting for its answer.
type Asking = HashMap<i64, Shared<BoxFuture<'static, Option<String>>>>;

/// Each integration's currency as its store last gave it (`None`: it has none, or could not be
/// asked), and until when that stands.
type Currencies = HashMap<i64, (Option<String>, Instant)>;

/// How long a store's currency is taken as known before it is asked again.
pub const CURRENCY_KEPT: Duration = Duration::from_secs(600);
/// How long a store that could not tell its currency is not asked again (each push would
/// otherwise wait on it first).
pub const CURRENCY_UNKNOWN_KEPT: Duration = Duration::from_secs(60);

impl Adapters {
    /// Every adapter, sharing one HTTP client; `sealer` opens the integrations' credentials.
    pub fn new(db: Database, sealer: Sealer, config: AdapterConfig) -> Result<Self, AdapterError> {
        let http = http::StoreHttp::new(
            http::HttpConfig {
                local_stores: config.local_stores,
                ..config.http
            },
            sealer,
        )?;
        let customer_key: Arc<[u8]> = Arc::from(config.customer_key);
        Ok(Self {
            sandbox: sandbox::SandboxStore::new(db.clone()),
            shopify: shopify::Shopify::new(http.clone(), customer_key.clone(), db),
            woocommerce: woocommerce::WooCommerce::new(http.clone(), customer_key.clone()),
            bigcommerce: bigcommerce::BigCommerce::new(http.clone(), customer_key.clone()),
            magento: magento::Magento::new(http.clone(), customer_key),
            amazon: amazon::AmazonAttribution::new(http),
            currencies: Arc::default(),
            asking: Arc::default(),
            local_stores: config.local_stores,
        })
    }

    /// Whether stores on this machine or a private network may be registered.
    pub fn local_stores(&self) -> bool {
        self.local_stores
    }

    /// The currency `integration`'s store keeps its prices in ([`StoreAdapter::shop_currency`]),
    /// asked at most every [`CURRENCY_KEPT`]. `None` when the store has none to give or cannot
    /// be asked now (logged, and not asked again for [`CURRENCY_UNKNOWN_KEPT`]): pushes go on
    /// unchecked rather than be held up by the question.
    pub async fn shop_currency(
        &self,
        adapter: &dyn StoreAdapter,
        integration: &IntegrationRow,
    ) -> Option<String> {
        if let Some(known) = self.known_currency(integration.id) {
            return known;
        }
        let (currency, kept) = match adapter.shop_currency(integration).await {
            // An empty answer says nothing: every amount would be refused against it.
            Ok(currency) => (
                currency
                    .map(|code| code.trim().to_ascii_uppercase())
                    .filter(|code| !code.is_empty()),
                CURRENCY_KEPT,
            ),
            Err(err) => {
                tracing::warn!(integration_id = integration.id, error = %err,
                    "the store's currency is unknown: amounts pushed unchecked");
                (None, CURRENCY_UNKNOWN_KEPT)
            }
        };
        let mut cache = self.currencies.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(integration.id, (currency.clone(), Instant::now() + kept));
        currency
    }

    /// The currency `integration`'s store keeps its prices in ([`Adapters::shop_currency`]),
    /// waiting at most `wait` for the store; `None` also for a provider with no store to ask.
    /// A store that cannot tell by then is still asked to the end, on a task of its own, and its
    /// answer kept as any other: so the next call (or push) finds it, and a store slow to answer
    /// does not leave pushes unchecked. Callers meanwhile wait for the same question.
    pub async fn shop_currency_within(
        &self,
        integration: &IntegrationRow,
        wait: Duration,
    ) -> Option<String> {
        if let Some(known) = self.known_currency(integration.id) {
            return known;
        }
        let asking = {
            let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
            let question = asking.entry(integration.id).or_insert_with(|| {
                let (adapters, asked_for) = (self.clone(), integration.clone());
                let question = async move {
                    let currency = match adapters.adapter_for(asked_for.provider()) {
                        Ok((adapter, _)) => adapters.shop_currency(adapter, &asked_for).await,
                        Err(_) => None,
                    };
                    let mut asking = adapters.asking.lock().unwrap_or_else(|e| e.into_inner());
                    asking.remove(&asked_for.id);
                    currency
                }
                .boxed()
                .shared();
                // Asked to the end whoever waits for it.
                tokio::spawn(question.clone());
                question
            });
            question.clone()
        };
        match tokio::time::timeout(wait, asking).await {
            Ok(currency) => currency,
            Err(_) => {
                tracing::info!(
                    integration_id = integration.id,
                    waited_ms = wait.as_millis(),
                    "the store did not tell its currency in time; its answer is kept when it comes"
                );
                None
            }
        }
    }

    /// The currency an integration's store gave, while it stands (`Some(None)`: it has none, or
    /// could not be asked); `None` when it is to be asked.
    fn known_currency(&self, integration_id: i64) -> Option<Option<String>> {
        let cache = self.currencies.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&integration_id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(currency, _)| currency.clone())
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
            Provider::Shopify => Ok(&self.shopify),
            Provider::Woocommerce => Ok(&self.woocommerce),
            Provider::Bigcommerce => Ok(&self.bigcommerce),
            Provider::Magento => Ok(&self.magento),
            Provider::Ast => Err(Error::FailedPrecondition(
                "PROVIDER_AST has no store to read orders from: conversions arrive at /ast/v1/conversions".to_owned(),
            )),
            other => Err(Error::FailedPrecondition(format!(
                "{} reports aggregated sales, not orders",
                other.as_str_name()
            ))),
        }
    }

    /// The Amazon Attribution client: creators' attribution tags and attributed sales (Amazon
    /// Ads has no codes and reports aggregates, not orders, so it has no [`StoreAdapter`]).
    pub fn amazon(&self) -> &amazon::AmazonAttribution {
        &self.amazon
    }

    /// The adapter serving `provider`'s store, with the provider's capabilities (which the
    /// discounts must fit). FAILED_PRECONDITION for a provider without discount codes (Amazon
    /// Ads, AST).
    pub fn adapter_for(
        &self,
        provider: Provider,
    ) -> Result<(&dyn StoreAdapter, Capabilities), Error> {
        let name = provider.as_str_name();
        let caps = match capabilities(provider) {
            Some(caps) if caps.discount_codes => caps,
            Some(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "{name} has no discount codes"
                )));
            }
            None => {
                return Err(Error::FailedPrecondition(format!(
                    "{name} is not a store provider"
                )));
            }
        };
        let adapter: &dyn StoreAdapter = match provider {
            Provider::Sandbox => &self.sandbox,
            Provider::Shopify => &self.shopify,
            Provider::Woocommerce => &self.woocommerce,
            Provider::Bigcommerce => &self.bigcommerce,
            Provider::Magento => &self.magento,
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "no store adapter for {name} yet"
                )));
            }
        };
        Ok((adapter, caps))
    }
}

/// A discount as the adapter tests push it: 20 % off, no limits.
#[cfg(test)]
fn test_discount(code: &str, external_ref: &str) -> Discount {
    use crate::domain::discount::{DiscountValue, Terms};
    Discount {
        code: code.to_owned(),
        external_ref: external_ref.to_owned(),
        title: format!("Summer 20 / {code}"),
        group: None,
        terms: Terms {
            value: Some(DiscountValue::PercentBps(2000)),
            usage_limit: 0,
            once_per_customer: false,
            minimum_purchase: None,
            product_ids: Vec::new(),
            category_ids: Vec::new(),
            starts_at: None,
            ends_at: None,
        },
    }
}

/// An update of `previous` into a [`test_discount`] with `code` under `external_ref`.
#[cfg(test)]
fn test_update(previous: &str, code: &str, external_ref: &str) -> DiscountUpdate {
    DiscountUpdate {
        previous_code: previous.to_owned(),
        discount: test_discount(code, external_ref),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_with_codes_has_an_adapter() {
        let db = Database::new(
            "postgres://postgres@127.0.0.1:5432/unused",
            "gateway",
            tracking_db::PoolOptions::default(),
        );
        let Ok(db) = db else {
            panic!("a lazy pool needs no server")
        };
        let adapters = Adapters::new(db, mock::sealer(), AdapterConfig::new(b"k".to_vec()))
            .unwrap_or_else(|e| panic!("{e}"));
        let message = |provider| match adapters.adapter_for(provider) {
            Ok(_) => "adapter".to_owned(),
            Err(err) => err.to_string(),
        };
        for provider in [Provider::Sandbox, Provider::Shopify] {
            assert_eq!(message(provider), "adapter", "{provider:?}");
        }
        assert_eq!(message(Provider::Ast), "PROVIDER_AST has no discount codes");
        assert_eq!(
            message(Provider::AmazonAds),
            "PROVIDER_AMAZON_ADS has no discount codes"
        );
    }
}
