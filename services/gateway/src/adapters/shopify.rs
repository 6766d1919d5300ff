//! Shopify: discount codes through the Admin GraphQL API, orders through the Admin REST API.
//!
//! - Codes: `POST https://{shop_domain}/admin/api/2025-01/graphql.json` with the header
//!   `X-Shopify-Access-Token`. One `discountCodeBasicCreate` per code (amount off: a percentage
//!   or a fixed amount, products or collections, minimum subtotal, dates, usage limit, once per
//!   customer). Disabling finds the discount with `codeDiscountNodeByCode` and calls
//!   `discountCodeDeactivate` (the code stays taken, as at every store).
//! - Updating finds the previous code's discount with `codeDiscountNodeByCode` (with the products
//!   and collections it applies to) and, when its title carries the update's external ref, calls
//!   `discountCodeBasicUpdate(id, basicCodeDiscount)` with the new code and terms. The input
//!   follows Shopify's documented examples for that mutation: `endsAt: null` never expires, a
//!   removed minimum sets both `quantity.greaterThanOrEqualToQuantity` and
//!   `subtotal.greaterThanOrEqualToSubtotal` to null, and restrictions are replaced through
//!   `productsToAdd`/`productsToRemove` and `collections.add`/`remove` (`DiscountProductsInput`,
//!   `DiscountCollectionsInput`).
//! - A code Shopify reports taken (`userErrors` code `TAKEN`) is looked up: a discount whose title
//!   carries this push's external ref is our earlier push (`Created`), any other `AlreadyExists`.
//! - Codes of one plan with the same terms and no per-code limits (no usage limit, not once per
//!   customer: Shopify counts both per discount) share one discount, as the redeem codes of a
//!   "bulk" discount ([`Discount::shared_key`]): the shared discount is titled with the group's
//!   title and the key (`Summer 20 [shared plan-5 0a1b2c3d]`), found with `codeDiscountNodes`
//!   (a `title:` search, checked against the exact marker) or created with the first code through
//!   `discountCodeBasicCreate`; the other codes join it 250 at a time with
//!   `discountRedeemCodeBulkAdd`, whose asynchronous result is read with
//!   `discountRedeemCodeBulkCreation` (each code's `discountRedeemCode`, or its `errors`: `TAKEN`
//!   is resolved as above, a code held by the shared discount being our earlier push). One call
//!   then creates 250 codes instead of 250 calls against the cost bucket. Shopify's search lists
//!   a new discount only after a while, so a group's discount, once found or made, is
//!   remembered for [`SHARED_TTL`], by the process and in `shopify_shared_discounts` for every
//!   other gateway process; a push that finds none remembered searches or creates under the
//!   group's lock (a PostgreSQL advisory lock, held through the store's calls on a connection
//!   of its own, no transaction open), so two pushes close together, in one process or in two
//!   replicas, do not each create one.
//! - A shared discount's code is disabled by deleting that redeem code
//!   (`discountCodeRedeemCodeBulkDelete` with its id, read from the discount's `codes`):
//!   deactivating the discount would stop every creator's code. The text is then free at Shopify
//!   (the suite keeps it reserved). A shared code renamed by the brand joins the discount of its
//!   new terms under the new text, then its old redeem code is deleted; a shared code given new
//!   terms under the same text leaves its discount first (Shopify's codes are unique), then joins
//!   the discount of its new terms.
//! - Throttling: Shopify answers a throttled query with HTTP 200 and a `THROTTLED` error; the
//!   call waits until the cost bucket (`extensions.cost.throttleStatus`) has refilled enough for
//!   the query, then retries.
//! - Orders: REST `orders/{id}.json` and `orders.json?updated_at_min=…` (cursor pages through
//!   the `Link` header), because their JSON is exactly the webhook payload the gateway already
//!   parses ([`crate::webhooks::shopify::parse_order`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Credentials, Reply, StoreHttp, origin};
use super::mapping::{has_marker, marked_title, marker_of};
use super::{AdapterError, Listed, StoreAdapter, changed_at, each};
use crate::domain::capabilities::{SHOPIFY_COLLECTION_GID, SHOPIFY_PRODUCT_GID};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, DiscountValue, PushOutcome,
    PushResult, ToDisable,
};
use crate::domain::orders::{NormalizedOrder, format_amount};
use crate::store::IntegrationRow;
use crate::store::shared_discounts::{self, Group};
use crate::webhooks::shopify::parse_order;
use tracking_api::gateway::v1::restriction_number;
use tracking_db::Database;

const STORE: &str = "Shopify";
const API_VERSION: &str = "2025-01";
/// Shopify's limit on a discount title.
const MAX_TITLE: usize = 255;
/// Largest page of the REST orders list.
const MAX_PAGE: usize = 250;

const CREATE: &str =
    "mutation discountCodeBasicCreate($basicCodeDiscount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}";

/// The shop's currency: what its discounts' amounts are in.
const SHOP_CURRENCY: &str = "query { shop { currencyCode } }";

const BY_CODE: &str = "query codeDiscountNodeByCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      __typename
      ... on DiscountCodeBasic { title status }
      ... on DiscountCodeBxgy { title status }
      ... on DiscountCodeFreeShipping { title status }
      ... on DiscountCodeApp { title status }
    }
  }
}";

/// The previous code's discount, with the items an update replaces (at most [`MAX_ITEMS`] of each
/// kind; `hasNextPage` says there are more).
const BY_CODE_WITH_ITEMS: &str = "query codeDiscountNodeByCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      __typename
      ... on DiscountCodeBasic {
        title
        status
        customerGets {
          items {
            ... on DiscountProducts { products(first: 250) { nodes { id } pageInfo { hasNextPage } } }
            ... on DiscountCollections { collections(first: 250) { nodes { id } pageInfo { hasNextPage } } }
          }
        }
      }
    }
  }
}";

/// Shared discounts whose title matches a group key (see [`Discount::shared_key`]).
const SEARCH_SHARED: &str = "query codeDiscountNodes($query: String!) {
  codeDiscountNodes(first: 50, query: $query) {
    nodes { id codeDiscount { __typename ... on DiscountCodeBasic { title status } } }
  }
}";

const BULK_ADD: &str =
    "mutation discountRedeemCodeBulkAdd($discountId: ID!, $codes: [DiscountRedeemCodeInput!]!) {
  discountRedeemCodeBulkAdd(discountId: $discountId, codes: $codes) {
    bulkCreation { id }
    userErrors { field code message }
  }
}";

const BULK_CREATION: &str = "query discountRedeemCodeBulkCreation($id: ID!) {
  discountRedeemCodeBulkCreation(id: $id) {
    done
    codes(first: 250) { nodes { code discountRedeemCode { id } errors { field code message } } }
  }
}";

/// A page of a discount's redeem codes.
const REDEEM_CODES: &str = "query codeDiscountNode($id: ID!, $after: String) {
  codeDiscountNode(id: $id) {
    codeDiscount {
      ... on DiscountCodeBasic {
        codes(first: 250, after: $after) { nodes { id code } pageInfo { hasNextPage endCursor } }
      }
    }
  }
}";

const REDEEM_DELETE: &str =
    "mutation discountCodeRedeemCodeBulkDelete($discountId: ID!, $ids: [ID!]) {
  discountCodeRedeemCodeBulkDelete(discountId: $discountId, ids: $ids) {
    job { id }
    userErrors { field code message }
  }
}";

/// Codes one `discountRedeemCodeBulkAdd` takes (Shopify's maximum).
const MAX_BULK_CODES: usize = 250;
/// How long a bulk creation may run before its codes are answered retryable failures (a retry
/// then finds the codes the creation made as our own).
const BULK_WAIT: Duration = Duration::from_secs(30);

/// Items read with an update's lookup (`first: 250`, Shopify's largest page).
const MAX_ITEMS: usize = 250;

const UPDATE: &str =
    "mutation discountCodeBasicUpdate($id: ID!, $basicCodeDiscount: DiscountCodeBasicInput!) {
  discountCodeBasicUpdate(id: $id, basicCodeDiscount: $basicCodeDiscount) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}";

const DEACTIVATE: &str = "mutation discountCodeDeactivate($id: ID!) {
  discountCodeDeactivate(id: $id) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}";

/// The Shopify adapter.
#[derive(Clone, Debug)]
pub struct Shopify {
    http: StoreHttp,
    customer_key: Arc<[u8]>,
    /// Where shared discounts are recorded for every gateway process.
    db: Database,
    /// Shared discounts found or made by this process, by integration and group key.
    shared: Arc<Mutex<HashMap<(i64, String), SharedSlot>>>,
}

/// A group's shared discount id and when it was found or made, behind the lock this process's
/// pushes of the group take while they find or create it.
type SharedSlot = Arc<tokio::sync::Mutex<Option<(Instant, String)>>>;

/// How long a shared discount's id is used without searching for it again (a discount deleted in
/// Shopify's admin is made again after this).
const SHARED_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct GraphqlResponse {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<Value>,
}

impl GraphqlError {
    fn code(&self) -> &str {
        self.extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct UserError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

/// A discount found by its code.
struct Found {
    id: String,
    title: String,
    status: String,
}

/// A discount to update: what it is and the products and collections it applies to now.
struct Held {
    found: Found,
    products: Vec<String>,
    collections: Vec<String>,
    /// It applies to more items than one lookup reads.
    more_items: bool,
}

impl Shopify {
    pub fn new(http: StoreHttp, customer_key: Arc<[u8]>, db: Database) -> Self {
        Self {
            http,
            customer_key,
            db,
            shared: Arc::default(),
        }
    }

    fn admin(integration: &IntegrationRow) -> String {
        let origin = origin(integration, || {
            format!("https://{}", integration.shop_domain)
        });
        format!("{origin}/admin/api/{API_VERSION}")
    }

    /// Runs one GraphQL document and answers its `data`.
    async fn graphql(
        &self,
        integration: &IntegrationRow,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, AdapterError> {
        let url = format!("{}/graphql.json", Self::admin(integration));
        let body = json!({ "query": query, "variables": variables });
        let reply = self
            .http
            .send_checked(
                integration,
                STORE,
                |client| {
                    client
                        .post(&url)
                        .header("X-Shopify-Access-Token", token)
                        .json(&body)
                },
                throttle_wait,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a GraphQL call"));
        }
        let response: GraphqlResponse = reply.json(STORE)?;
        if let Some(error) = response.errors.first() {
            let message = format!("{STORE} refused the query: {}", error.message);
            return Err(if error.code() == "ACCESS_DENIED" {
                AdapterError::Misconfigured(message)
            } else {
                AdapterError::Unavailable(message)
            });
        }
        response
            .data
            .ok_or_else(|| AdapterError::Unavailable(format!("{STORE} answered without data")))
    }

    async fn find(
        &self,
        integration: &IntegrationRow,
        token: &str,
        code: &str,
    ) -> Result<Option<Found>, AdapterError> {
        let data = self
            .graphql(integration, token, BY_CODE, json!({ "code": code }))
            .await?;
        let node = &data["codeDiscountNodeByCode"];
        let Some(id) = node["id"].as_str() else {
            return Ok(None);
        };
        let discount = &node["codeDiscount"];
        Ok(Some(Found {
            id: id.to_owned(),
            title: discount["title"].as_str().unwrap_or_default().to_owned(),
            status: discount["status"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    async fn create_one(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount: &Discount,
    ) -> Result<PushOutcome, AdapterError> {
        self.create_marked(integration, token, discount, &discount.external_ref)
            .await
    }

    /// Creates `discount` as its own Shopify discount, titled with `marker` (the code's external
    /// ref, or the group key of a shared discount made with its first code).
    async fn create_marked(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount: &Discount,
        marker: &str,
    ) -> Result<PushOutcome, AdapterError> {
        let input = match discount_input(discount, marker) {
            Ok(input) => input,
            Err(message) => {
                return Ok(PushOutcome::Failed {
                    message,
                    retryable: false,
                });
            }
        };
        let data = self
            .graphql(
                integration,
                token,
                CREATE,
                json!({ "basicCodeDiscount": input }),
            )
            .await?;
        self.outcome(
            integration,
            token,
            &discount.code,
            marker,
            &data["discountCodeBasicCreate"],
        )
        .await
    }

    /// What a create or update mutation's `payload` means for `code`, pushed under `marker`.
    async fn outcome(
        &self,
        integration: &IntegrationRow,
        token: &str,
        code: &str,
        marker: &str,
        payload: &Value,
    ) -> Result<PushOutcome, AdapterError> {
        if let Some(id) = payload["codeDiscountNode"]["id"].as_str() {
            return Ok(PushOutcome::Created {
                store_discount_id: id.to_owned(),
            });
        }
        let errors: Vec<UserError> =
            serde_json::from_value(payload["userErrors"].clone()).unwrap_or_default();
        self.refusal(integration, token, code, marker, &errors)
            .await
    }

    /// What Shopify's `errors` for `code`, pushed under `marker`, mean. A code Shopify reports
    /// taken is ours when the discount holding it carries `marker` in its title.
    async fn refusal(
        &self,
        integration: &IntegrationRow,
        token: &str,
        code: &str,
        marker: &str,
        errors: &[UserError],
    ) -> Result<PushOutcome, AdapterError> {
        if errors.iter().any(is_taken) {
            return Ok(match self.find(integration, token, code).await? {
                Some(found) if has_marker(&found.title, marker) => PushOutcome::Created {
                    store_discount_id: found.id,
                },
                _ => PushOutcome::AlreadyExists {
                    message: format!("code {code} already exists in the store"),
                },
            });
        }
        let message = if errors.is_empty() {
            "Shopify changed no discount and gave no reason".to_owned()
        } else {
            messages(errors)
        };
        Ok(PushOutcome::Failed {
            message: format!("{STORE} refused code {code}: {message}"),
            retryable: false,
        })
    }

    /// Creates `discount` where it belongs: in its group's shared discount when it may share one,
    /// else as its own discount.
    async fn create_for(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount: &Discount,
    ) -> Result<PushOutcome, AdapterError> {
        match discount.shared_key() {
            Some(key) => Ok(self
                .create_shared(integration, token, &key, &[discount])
                .await?
                .pop()
                .unwrap_or_else(|| PushOutcome::Failed {
                    message: format!("{STORE} answered nothing for code {}", discount.code),
                    retryable: true,
                })),
            None => self.create_one(integration, token, discount).await,
        }
    }

    /// Creates `members` (codes with the group key `key`) as redeem codes of their shared
    /// discount, making it with the first code that Shopify takes when there is none yet.
    /// Outcomes in member order.
    async fn create_shared(
        &self,
        integration: &IntegrationRow,
        token: &str,
        key: &str,
        members: &[&Discount],
    ) -> Result<Vec<PushOutcome>, AdapterError> {
        let mut outcomes = Vec::with_capacity(members.len());
        let slot = self.shared_slot(integration.id, key);
        let mut known = slot.lock().await;
        let remembered = known
            .as_ref()
            .filter(|(at, _)| at.elapsed() < SHARED_TTL)
            .map(|(_, id)| id.clone());
        let group = Group {
            brand_id: integration.brand_id,
            integration_id: integration.id,
            key,
        };
        let mut shared = match remembered {
            Some(id) => Some(id),
            None => self.recorded(group, &mut known).await?,
        };
        // Held while this push searches or creates the discount, until it is recorded.
        let mut group_lock = None;
        if shared.is_none() {
            let lock = shared_discounts::lock_group(&self.db, group).await?;
            // Another process may have made it while this one waited for the lock.
            shared = self.recorded(group, &mut known).await?;
            if shared.is_none() {
                shared = self.find_shared(integration, token, key).await?;
                group_lock = Some(lock);
            }
        }
        let mut rest = members;
        while shared.is_none()
            && let Some((first, others)) = rest.split_first()
        {
            rest = others;
            let outcome = self.create_marked(integration, token, first, key).await?;
            if let PushOutcome::Created { store_discount_id } = &outcome {
                shared = Some(store_discount_id.clone());
            }
            outcomes.push(outcome);
        }
        if let Some(lock) = group_lock {
            // Found by a search or made just now: every process may use it from here on. The
            // discount exists whatever the database says, so its pushes go on: a process that
            // finds no record searches Shopify again (under the lock), as before this record.
            if let Some(discount_id) = &shared {
                *known = Some((Instant::now(), discount_id.clone()));
                if let Err(err) = shared_discounts::record(&self.db, group, discount_id).await {
                    tracing::warn!(integration_id = integration.id, key, error = %err,
                        "shared discount not recorded for other gateway processes");
                }
            }
            // On failure the lock goes with its connection, dropped here.
            if let Err(err) = lock.release().await {
                tracing::warn!(integration_id = integration.id, key, error = %err,
                    "shared discount lock released by closing its connection");
            }
        }
        let Some(discount_id) = shared else {
            return Ok(outcomes);
        };
        // The discount exists: the group's other pushes may join it meanwhile.
        drop(known);
        for chunk in rest.chunks(MAX_BULK_CODES) {
            let added = self
                .add_codes(integration, token, &discount_id, key, chunk)
                .await?;
            outcomes.extend(added);
        }
        Ok(outcomes)
    }

    /// The group's discount as recorded by any gateway process within [`SHARED_TTL`], then
    /// remembered by this one for the rest of that time.
    async fn recorded(
        &self,
        group: Group<'_>,
        known: &mut Option<(Instant, String)>,
    ) -> Result<Option<String>, AdapterError> {
        let Some(recorded) = shared_discounts::recorded(&self.db, group, SHARED_TTL).await? else {
            return Ok(None);
        };
        // Remembered until the record expires (not at all if this clock cannot go back that far).
        if let Some(found_at) = Instant::now().checked_sub(recorded.age) {
            *known = Some((found_at, recorded.store_discount_id.clone()));
        }
        Ok(Some(recorded.store_discount_id))
    }

    /// The lock and memory of the shared discount of group `key` at integration `integration_id`.
    fn shared_slot(&self, integration_id: i64, key: &str) -> SharedSlot {
        let mut slots = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry((integration_id, key.to_owned()))
            .or_default()
            .clone()
    }

    /// The shared discount titled with the group key `key`, if Shopify has one.
    async fn find_shared(
        &self,
        integration: &IntegrationRow,
        token: &str,
        key: &str,
    ) -> Result<Option<String>, AdapterError> {
        let data = self
            .graphql(
                integration,
                token,
                SEARCH_SHARED,
                json!({ "query": format!("title:\"{key}\"") }),
            )
            .await?;
        // The search matches words; only the exact marker is ours.
        Ok(data["codeDiscountNodes"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|node| {
                node["codeDiscount"]["title"]
                    .as_str()
                    .is_some_and(|title| has_marker(title, key))
            })
            .and_then(|node| node["id"].as_str())
            .map(str::to_owned))
    }

    /// Adds `chunk` (at most [`MAX_BULK_CODES`]) to the shared discount `discount_id` in one
    /// `discountRedeemCodeBulkAdd`, and reads each code's outcome from the finished creation.
    async fn add_codes(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount_id: &str,
        key: &str,
        chunk: &[&Discount],
    ) -> Result<Vec<PushOutcome>, AdapterError> {
        let codes: Vec<Value> = chunk.iter().map(|d| json!({ "code": d.code })).collect();
        let data = self
            .graphql(
                integration,
                token,
                BULK_ADD,
                json!({ "discountId": discount_id, "codes": codes }),
            )
            .await?;
        let payload = &data["discountRedeemCodeBulkAdd"];
        let Some(creation) = payload["bulkCreation"]["id"].as_str() else {
            let errors: Vec<UserError> =
                serde_json::from_value(payload["userErrors"].clone()).unwrap_or_default();
            let message = messages(&errors);
            return Ok(chunk
                .iter()
                .map(|d| PushOutcome::Failed {
                    message: format!("{STORE} refused code {}: {message}", d.code),
                    retryable: false,
                })
                .collect());
        };
        let Some(results) = self.bulk_results(integration, token, creation).await? else {
            return Ok(chunk
                .iter()
                .map(|d| PushOutcome::Failed {
                    message: format!(
                        "{STORE} is still adding code {} ({creation}): try again later",
                        d.code
                    ),
                    retryable: true,
                })
                .collect());
        };
        let mut outcomes = Vec::with_capacity(chunk.len());
        for discount in chunk {
            let result = results.iter().find(|r| {
                r["code"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&discount.code))
            });
            let outcome = match result {
                Some(r) if r["discountRedeemCode"]["id"].is_string() => PushOutcome::Created {
                    store_discount_id: discount_id.to_owned(),
                },
                Some(r) => {
                    let errors: Vec<UserError> =
                        serde_json::from_value(r["errors"].clone()).unwrap_or_default();
                    self.refusal(integration, token, &discount.code, key, &errors)
                        .await?
                }
                None => PushOutcome::Failed {
                    message: format!(
                        "{STORE}'s bulk creation {creation} did not report code {}",
                        discount.code
                    ),
                    retryable: true,
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The per-code results of the bulk creation `id` once it is done; `None` when it is still
    /// running after [`BULK_WAIT`]. Polls at 100 ms, doubling up to 2 s.
    async fn bulk_results(
        &self,
        integration: &IntegrationRow,
        token: &str,
        id: &str,
    ) -> Result<Option<Vec<Value>>, AdapterError> {
        let deadline = tokio::time::Instant::now() + BULK_WAIT;
        let mut pause = Duration::from_millis(100);
        loop {
            let data = self
                .graphql(integration, token, BULK_CREATION, json!({ "id": id }))
                .await?;
            let creation = &data["discountRedeemCodeBulkCreation"];
            if creation["done"] == true {
                return Ok(Some(
                    creation["codes"]["nodes"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                ));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Deletes `code` from the shared discount `discount_id` (its other codes stay active).
    async fn remove_redeem_code(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount_id: &str,
        code: &str,
    ) -> Result<DisableOutcome, AdapterError> {
        let mut after = Value::Null;
        let redeem_id = loop {
            let data = self
                .graphql(
                    integration,
                    token,
                    REDEEM_CODES,
                    json!({ "id": discount_id, "after": after }),
                )
                .await?;
            let codes = &data["codeDiscountNode"]["codeDiscount"]["codes"];
            let found = codes["nodes"].as_array().into_iter().flatten().find(|n| {
                n["code"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(code))
            });
            if let Some(id) = found.and_then(|n| n["id"].as_str()) {
                break id.to_owned();
            }
            match codes["pageInfo"]["endCursor"].as_str() {
                Some(cursor) if codes["pageInfo"]["hasNextPage"] == true => {
                    after = json!(cursor);
                }
                _ => {
                    return Ok(DisableOutcome::NotFound {
                        message: format!("the store holds no code {code}"),
                    });
                }
            }
        };
        let data = self
            .graphql(
                integration,
                token,
                REDEEM_DELETE,
                json!({ "discountId": discount_id, "ids": [redeem_id] }),
            )
            .await?;
        let errors: Vec<UserError> =
            serde_json::from_value(data["discountCodeRedeemCodeBulkDelete"]["userErrors"].clone())
                .unwrap_or_default();
        Ok(if errors.is_empty() {
            DisableOutcome::Disabled
        } else {
            DisableOutcome::Failed {
                message: format!("{STORE} did not delete {code}: {}", messages(&errors)),
                retryable: false,
            }
        })
    }

    /// The discount holding `code`, with its items, for an update.
    async fn find_held(
        &self,
        integration: &IntegrationRow,
        token: &str,
        code: &str,
    ) -> Result<Option<Held>, AdapterError> {
        let data = self
            .graphql(
                integration,
                token,
                BY_CODE_WITH_ITEMS,
                json!({ "code": code }),
            )
            .await?;
        let node = &data["codeDiscountNodeByCode"];
        let Some(id) = node["id"].as_str() else {
            return Ok(None);
        };
        let discount = &node["codeDiscount"];
        let items = &discount["customerGets"]["items"];
        let ids = |connection: &Value| -> Vec<String> {
            connection["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["id"].as_str().map(str::to_owned))
                .collect()
        };
        let more = |connection: &Value| connection["pageInfo"]["hasNextPage"] == true;
        Ok(Some(Held {
            found: Found {
                id: id.to_owned(),
                title: discount["title"].as_str().unwrap_or_default().to_owned(),
                status: discount["status"].as_str().unwrap_or_default().to_owned(),
            },
            products: ids(&items["products"]),
            collections: ids(&items["collections"]),
            more_items: more(&items["products"]) || more(&items["collections"]),
        }))
    }

    async fn update_one(
        &self,
        integration: &IntegrationRow,
        token: &str,
        update: &DiscountUpdate,
    ) -> Result<PushOutcome, AdapterError> {
        let discount = &update.discount;
        let held = match self
            .find_held(integration, token, &update.previous_code)
            .await?
        {
            Some(held) if has_marker(&held.found.title, &discount.external_ref) => held,
            Some(held) if in_group(&held.found.title, discount) => {
                if !update.renames() {
                    let key = discount.shared_key();
                    if key.is_some_and(|key| has_marker(&held.found.title, &key)) {
                        // Same text, same terms: the store already holds what was asked.
                        return Ok(PushOutcome::Created {
                            store_discount_id: held.found.id,
                        });
                    }
                    // Same text, other terms: the text is unique at Shopify, so the redeem code
                    // leaves its old discount first and joins the one of its new terms.
                    let removed = self
                        .remove_redeem_code(
                            integration,
                            token,
                            &held.found.id,
                            &update.previous_code,
                        )
                        .await?;
                    if let DisableOutcome::Failed { message, .. } = removed {
                        return Ok(PushOutcome::Failed {
                            message,
                            retryable: true,
                        });
                    }
                    return self.create_for(integration, token, discount).await;
                }
                // A redeem code of the plan's shared discount renamed: the new code is created
                // where it belongs, then the old one leaves (a retry finds the new code ours).
                let outcome = self.create_for(integration, token, discount).await?;
                if matches!(outcome, PushOutcome::Created { .. }) {
                    let removed = self
                        .remove_redeem_code(
                            integration,
                            token,
                            &held.found.id,
                            &update.previous_code,
                        )
                        .await?;
                    if let DisableOutcome::Failed { message, .. } = removed {
                        return Ok(PushOutcome::Failed {
                            message,
                            retryable: true,
                        });
                    }
                }
                return Ok(outcome);
            }
            // Not ours, or gone (an earlier try renamed it): created as a push would be.
            _ => return self.create_for(integration, token, discount).await,
        };
        if held.more_items {
            return Ok(PushOutcome::Failed {
                message: format!(
                    "{STORE} discount {} applies to more than {MAX_ITEMS} products or collections: \
                     change its items in the Shopify admin",
                    update.previous_code
                ),
                retryable: false,
            });
        }
        let input = match update_input(discount, &held) {
            Ok(input) => input,
            Err(message) => {
                return Ok(PushOutcome::Failed {
                    message,
                    retryable: false,
                });
            }
        };
        let data = self
            .graphql(
                integration,
                token,
                UPDATE,
                json!({ "id": held.found.id, "basicCodeDiscount": input }),
            )
            .await?;
        self.outcome(
            integration,
            token,
            &discount.code,
            &discount.external_ref,
            &data["discountCodeBasicUpdate"],
        )
        .await
    }

    async fn disable_one(
        &self,
        integration: &IntegrationRow,
        token: &str,
        target: &ToDisable,
    ) -> Result<DisableOutcome, AdapterError> {
        let code = target.code.as_str();
        let Some(found) = self.find(integration, token, code).await? else {
            return Ok(DisableOutcome::NotFound {
                message: format!("the store holds no code {code}"),
            });
        };
        match marker_of(&found.title) {
            // A shared discount holds the codes of a plan: the redeem code is this one's.
            Some(marker) if marker.starts_with(SHARED) => {
                return self
                    .remove_redeem_code(integration, token, &found.id, code)
                    .await;
            }
            marker if !target.owns(marker) => return Ok(DisableOutcome::not_ours(code)),
            _ => {}
        }
        if found.status == "EXPIRED" {
            return Ok(DisableOutcome::Disabled);
        }
        let data = self
            .graphql(integration, token, DEACTIVATE, json!({ "id": found.id }))
            .await?;
        let errors: Vec<UserError> =
            serde_json::from_value(data["discountCodeDeactivate"]["userErrors"].clone())
                .unwrap_or_default();
        Ok(if errors.is_empty() {
            DisableOutcome::Disabled
        } else {
            DisableOutcome::Failed {
                message: format!("{STORE} did not deactivate {code}: {}", messages(&errors)),
                retryable: false,
            }
        })
    }

    fn order(&self, value: &Value) -> Result<NormalizedOrder, String> {
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        parse_order(&body, &self.customer_key).map_err(|e| e.to_string())
    }

    fn token(credentials: &Credentials) -> Result<&str, AdapterError> {
        credentials.get("access_token")
    }
}

/// How a shared discount's marker starts (see [`Discount::shared_key`]).
const SHARED: &str = "shared ";

/// Whether a discount titled `title` is a shared discount of `discount`'s group.
fn in_group(title: &str, discount: &Discount) -> bool {
    let (Some(marker), Some(group)) = (marker_of(title), discount.group.as_ref()) else {
        return false;
    };
    marker
        .strip_prefix(SHARED)
        .and_then(|rest| rest.strip_prefix(group.group_ref.as_str()))
        .is_some_and(|rest| rest.starts_with(' '))
}

fn messages(errors: &[UserError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_taken(error: &UserError) -> bool {
    error.code.as_deref() == Some("TAKEN")
        || error.message.contains("must be unique")
        || error.message.contains("already")
}

/// How long to wait before retrying a throttled GraphQL call: until the bucket holds the query's
/// cost again (`requestedQueryCost - currentlyAvailable`) at `restoreRate` points a second.
fn throttle_wait(reply: &Reply) -> Option<Duration> {
    if !reply.status.is_success() {
        return None;
    }
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    let throttled = body["errors"].as_array()?.iter().any(|e| {
        e["extensions"]["code"].as_str() == Some("THROTTLED")
            || e["message"].as_str() == Some("Throttled")
    });
    if !throttled {
        return None;
    }
    let cost = &body["extensions"]["cost"];
    let requested = cost["requestedQueryCost"].as_f64().unwrap_or(0.0);
    let available = cost["throttleStatus"]["currentlyAvailable"]
        .as_f64()
        .unwrap_or(0.0);
    let rate = cost["throttleStatus"]["restoreRate"]
        .as_f64()
        .filter(|r| *r > 0.0)
        .unwrap_or(50.0);
    let seconds = ((requested - available).max(0.0) / rate).min(60.0);
    Some(Duration::from_secs_f64(seconds))
}

/// `DiscountCodeBasicInput` for one discount, titled with `marker` (see [`create_marked`]);
/// `Err` names what Shopify cannot take.
///
/// [`create_marked`]: Shopify::create_marked
fn discount_input(discount: &Discount, marker: &str) -> Result<Value, String> {
    let terms = &discount.terms;
    let value = match &terms.value {
        Some(DiscountValue::PercentBps(bps)) => json!({ "percentage": f64::from(*bps) / 10_000.0 }),
        Some(DiscountValue::Fixed(money)) => json!({
            "discountAmount": {
                "amount": format_amount(money.amount_minor, &money.currency),
                "appliesOnEachItem": false,
            }
        }),
        None => return Err("the discount has no value".to_owned()),
    };
    let items = if terms.product_ids.is_empty() && terms.category_ids.is_empty() {
        json!({ "all": true })
    } else {
        let mut items = serde_json::Map::new();
        if !terms.product_ids.is_empty() {
            let ids = gids(SHOPIFY_PRODUCT_GID, &terms.product_ids)?;
            items.insert("products".to_owned(), json!({ "productsToAdd": ids }));
        }
        if !terms.category_ids.is_empty() {
            let ids = gids(SHOPIFY_COLLECTION_GID, &terms.category_ids)?;
            items.insert("collections".to_owned(), json!({ "add": ids }));
        }
        Value::Object(items)
    };
    let starts_at = terms.starts_at.unwrap_or_else(Utc::now);
    let mut input = json!({
        "title": title(discount, marker),
        "code": discount.code,
        "startsAt": starts_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "endsAt": terms.ends_at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "usageLimit": (terms.usage_limit > 0).then_some(terms.usage_limit),
        "appliesOncePerCustomer": terms.once_per_customer,
        "customerSelection": { "all": true },
        "customerGets": { "value": value, "items": items },
    });
    if let Some(minimum) = &terms.minimum_purchase {
        input["minimumRequirement"] = json!({
            "subtotal": {
                "greaterThanOrEqualToSubtotal": format_amount(minimum.amount_minor, &minimum.currency),
            }
        });
    }
    Ok(input)
}

/// A discount's title in Shopify's admin: the code's own, or its group's for a shared discount,
/// with `marker` at the end.
fn title(discount: &Discount, marker: &str) -> String {
    let title = match &discount.group {
        Some(group) if marker.starts_with(SHARED) => &group.title,
        _ => &discount.title,
    };
    marked_title(title, marker, MAX_TITLE)
}

/// `DiscountCodeBasicInput` for an update of `held` into `discount`: the create input with the
/// documented ways to clear what the new terms no longer have. A missing start keeps the
/// discount's own; `endsAt: null` never expires (also ending a deactivation, which set an end).
fn update_input(discount: &Discount, held: &Held) -> Result<Value, String> {
    let mut input = discount_input(discount, &discount.external_ref)?;
    let terms = &discount.terms;
    if terms.starts_at.is_none()
        && let Some(fields) = input.as_object_mut()
    {
        fields.remove("startsAt");
    }
    if terms.minimum_purchase.is_none() {
        input["minimumRequirement"] = json!({
            "quantity": { "greaterThanOrEqualToQuantity": null },
            "subtotal": { "greaterThanOrEqualToSubtotal": null },
        });
    }
    let removed = |held: &[String], kept: &Value| -> Vec<String> {
        held.iter()
            .filter(|id| {
                !kept
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == id.as_str()))
            })
            .cloned()
            .collect()
    };
    let items = &mut input["customerGets"]["items"];
    if items.get("products").is_some() {
        let gone = removed(&held.products, &items["products"]["productsToAdd"]);
        items["products"]["productsToRemove"] = json!(gone);
    }
    if items.get("collections").is_some() {
        let gone = removed(&held.collections, &items["collections"]["add"]);
        items["collections"]["remove"] = json!(gone);
    }
    Ok(input)
}

/// Store ids as GraphQL ids under `prefix` (`SHOPIFY_PRODUCT_GID`): `123` →
/// `gid://shopify/Product/123`; gids of that kind pass as they are.
fn gids(prefix: &str, ids: &[String]) -> Result<Vec<String>, String> {
    let kind = prefix
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    ids.iter()
        .map(|id| match restriction_number(id, prefix) {
            Some(number) => Ok(format!("{prefix}{number}")),
            None => Err(format!("{:?} is not a Shopify {kind} id", id.trim())),
        })
        .collect()
}

/// The next page's URL in a REST `Link` header (`<…>; rel="next"`).
fn next_link(reply: &Reply) -> Option<String> {
    let header = reply.headers.get("link")?.to_str().ok()?;
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[tonic::async_trait]
impl StoreAdapter for Shopify {
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        // Codes that may share a discount go together, by group key; the rest one by one.
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut singles = Vec::new();
        for (i, discount) in discounts.iter().enumerate() {
            match discount.shared_key() {
                Some(key) => groups.entry(key).or_default().push(i),
                None => singles.push(i),
            }
        }
        let single_calls = futures::future::join_all(
            singles
                .iter()
                .map(|&i| self.create_one(integration, token, &discounts[i])),
        );
        let shared = futures::future::join_all(groups.iter().map(|(key, members)| {
            let members: Vec<&Discount> = members.iter().map(|&i| &discounts[i]).collect();
            async move { self.create_shared(integration, token, key, &members).await }
        }));
        let (single_outcomes, shared_outcomes) = futures::future::join(single_calls, shared).await;
        let mut outcomes: Vec<Option<PushOutcome>> = vec![None; discounts.len()];
        for (outcome, &i) in single_outcomes.into_iter().zip(&singles) {
            outcomes[i] = Some(outcome?);
        }
        for (group, members) in shared_outcomes.into_iter().zip(groups.values()) {
            for (outcome, &i) in group?.into_iter().zip(members) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(discounts
            .iter()
            .zip(outcomes)
            .map(|(d, outcome)| PushResult {
                code: d.code.clone(),
                outcome: outcome.unwrap_or_else(|| PushOutcome::Failed {
                    message: format!("{STORE} answered nothing for code {}", d.code),
                    retryable: true,
                }),
            })
            .collect())
    }

    async fn update_discounts(
        &self,
        integration: &IntegrationRow,
        updates: &[DiscountUpdate],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        each(
            updates,
            |u| self.update_one(integration, token, u),
            |u, outcome| PushResult {
                code: u.discount.code.clone(),
                outcome,
            },
        )
        .await
    }

    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[ToDisable],
    ) -> Result<Vec<DisableResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        each(
            codes,
            |target| self.disable_one(integration, token, target),
            |target, outcome| DisableResult {
                code: target.code.clone(),
                outcome,
            },
        )
        .await
    }

    async fn shop_currency(
        &self,
        integration: &IntegrationRow,
    ) -> Result<Option<String>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        let data = self
            .graphql(integration, token, SHOP_CURRENCY, json!({}))
            .await?;
        Ok(data["shop"]["currencyCode"].as_str().map(str::to_owned))
    }

    async fn fetch_order(
        &self,
        integration: &IntegrationRow,
        store_order_id: &str,
    ) -> Result<Option<NormalizedOrder>, AdapterError> {
        let id = store_order_id
            .trim()
            .trim_start_matches("gid://shopify/Order/");
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        let url = format!("{}/orders/{id}.json", Self::admin(integration));
        let reply = self
            .http
            .send(integration, STORE, |client| {
                client.get(&url).header("X-Shopify-Access-Token", token)
            })
            .await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "an order fetch"));
        }
        let body: Value = reply.json(STORE)?;
        Ok(super::readable(
            integration,
            &id,
            self.order(&body["order"]),
        ))
    }

    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        let page = limit.clamp(1, MAX_PAGE).to_string();
        let admin = Self::admin(integration);
        let mut next = Some(format!("{admin}/orders.json"));
        let mut first = true;
        let mut listed = Listed::new(limit);
        while let Some(url) = next.take() {
            let since_text = since.to_rfc3339_opts(SecondsFormat::Secs, true);
            let reply = self
                .http
                .send(integration, STORE, |client| {
                    let request = client.get(&url).header("X-Shopify-Access-Token", token);
                    if first {
                        request.query(&[
                            ("status", "any"),
                            ("updated_at_min", since_text.as_str()),
                            ("order", "updated_at asc"),
                            ("limit", page.as_str()),
                        ])
                    } else {
                        // A next-page URL carries its own cursor and limit.
                        request
                    }
                })
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(STORE, "an order list"));
            }
            let body: Value = reply.json(STORE)?;
            for value in body["orders"].as_array().into_iter().flatten() {
                if listed.full(limit) {
                    break;
                }
                let changed = changed_at(value, "updated_at");
                listed.take(integration, &value["id"], self.order(value), changed);
            }
            first = false;
            if !listed.full(limit) {
                // The token goes only to the shop itself, whatever a header says.
                next = next_link(&reply).filter(|url| url.starts_with(&format!("{admin}/")));
            }
        }
        Ok(listed.finish(limit))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::adapters::mock::{self, MockStore, Recorded};
    use crate::adapters::{test_discount, test_update};
    use crate::domain::discount::Money;
    use crate::domain::orders::OrderStatus;

    const ORDER: &[u8] =
        include_bytes!("../../../../tests/fixtures/shopify/orders_create_percentage_code.json");

    const SCHEMAS: &[tracking_db::SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];

    /// An adapter as one gateway process has it, recording shared discounts in `db`.
    fn adapter(db: &Database, sealer: &crate::crypto::Sealer) -> Shopify {
        let http =
            StoreHttp::new(mock::fast_http(), sealer.clone()).unwrap_or_else(|e| panic!("{e}"));
        Shopify::new(http, Arc::from(mock::CUSTOMER_KEY), db.clone())
    }

    /// An integration, stored in `db`, whose store is the mock `store`, its credentials sealed
    /// by `sealer`.
    async fn shop(
        db: &Database,
        store: &MockStore,
        sealer: &crate::crypto::Sealer,
    ) -> IntegrationRow {
        let row = mock::integration(
            sealer,
            Provider::Shopify,
            &store.origin,
            &[("access_token", "shpat_test")],
        );
        let new = crate::store::NewIntegrationRow {
            brand_id: row.brand_id,
            provider: &row.provider,
            name: &row.name,
            shop_domain: &row.shop_domain,
            base_url: &row.base_url,
            credential_fields: row.credential_fields.clone(),
            credentials_sealed: row.credentials_sealed.clone(),
            webhook_secret_sealed: None,
        };
        match crate::store::insert_integration(db, new, None).await {
            Ok(crate::store::Registered::Created(stored)) => stored,
            _ => panic!("integration not stored"),
        }
    }

    /// An adapter, an integration at `store`, and the database they are stored in (kept while
    /// the test runs).
    async fn setup(store: &MockStore) -> (Shopify, IntegrationRow, tracking_db::TestDb) {
        let test_db = tracking_db::TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let sealer = mock::sealer();
        let integration = shop(&db, store, &sealer).await;
        (adapter(&db, &sealer), integration, test_db)
    }

    fn cost() -> Value {
        json!({ "cost": { "requestedQueryCost": 10, "actualQueryCost": 10,
            "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0 } } })
    }

    /// `mutation` (`discountCodeBasicCreate` or `…Update`) went through for discount `id`.
    fn mutated(mutation: &str, id: u64) -> mock::Reply {
        mock::Reply::json(
            200,
            json!({
                "data": { mutation: {
                    "codeDiscountNode": { "id": format!("gid://shopify/DiscountCodeNode/{id}") },
                    "userErrors": [] } },
                "extensions": cost(),
            }),
        )
    }

    fn created(id: u64) -> mock::Reply {
        mutated("discountCodeBasicCreate", id)
    }

    /// `mutation` refused: the code is taken.
    fn taken(mutation: &str) -> mock::Reply {
        mock::Reply::json(
            200,
            json!({
                "data": { mutation: {
                    "codeDiscountNode": null,
                    "userErrors": [{ "field": ["basicCodeDiscount", "code"], "code": "TAKEN",
                        "message": "Code must be unique. Please try a different code." }] } },
                "extensions": cost(),
            }),
        )
    }

    /// A throttled query (HTTP 200), with the bucket 10 points short at 100 points a second.
    fn throttled() -> mock::Reply {
        mock::Reply::json(
            200,
            json!({
                "errors": [{ "message": "Throttled",
                    "extensions": { "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits" } }],
                "extensions": { "cost": { "requestedQueryCost": 20, "actualQueryCost": null,
                    "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 10, "restoreRate": 100.0 } } }
            }),
        )
    }

    /// The discount `gid://shopify/DiscountCodeNode/77` as an update's lookup reads it, applying
    /// to `products`.
    fn held(title: &str, status: &str, products: &[u64]) -> mock::Reply {
        let nodes: Vec<Value> = products
            .iter()
            .map(|id| json!({ "id": format!("gid://shopify/Product/{id}") }))
            .collect();
        mock::Reply::json(
            200,
            json!({
                "data": { "codeDiscountNodeByCode": {
                    "id": "gid://shopify/DiscountCodeNode/77",
                    "codeDiscount": { "__typename": "DiscountCodeBasic", "title": title, "status": status,
                        "customerGets": { "items": { "products": {
                            "nodes": nodes, "pageInfo": { "hasNextPage": false } } } } } } },
                "extensions": cost(),
            }),
        )
    }

    fn node(title: &str, status: &str) -> mock::Reply {
        mock::Reply::json(
            200,
            json!({
                "data": { "codeDiscountNodeByCode": {
                    "id": "gid://shopify/DiscountCodeNode/77",
                    "codeDiscount": { "__typename": "DiscountCodeBasic", "title": title, "status": status } } },
                "extensions": cost(),
            }),
        )
    }

    fn query_of(request: &Recorded) -> String {
        request.json()["query"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn creates_a_code_with_its_terms() {
        let store = MockStore::start(|_| created(1001)).await;
        let (shopify, integration, _db) = setup(&store).await;
        let mut discount = test_discount("MIA20", "code-1");
        discount.terms.usage_limit = 100;
        discount.terms.once_per_customer = true;
        discount.terms.minimum_purchase = Some(Money {
            amount_minor: 5000,
            currency: "USD".to_owned(),
        });
        discount.terms.product_ids = vec!["123".to_owned()];
        discount.terms.category_ids = vec!["gid://shopify/Collection/9".to_owned()];
        discount.terms.ends_at = DateTime::from_timestamp(1_900_000_000, 0);
        let results = shopify
            .create_discounts(&integration, &[discount])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/1001".to_owned()
            }
        );
        let requests = store.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.route(), "POST /admin/api/2025-01/graphql.json");
        assert_eq!(request.header("x-shopify-access-token"), Some("shpat_test"));
        assert!(query_of(request).contains("discountCodeBasicCreate"));
        let input = &request.json()["variables"]["basicCodeDiscount"];
        assert_eq!(input["code"], "MIA20");
        assert_eq!(input["title"], "Summer 20 / MIA20 [code-1]");
        assert_eq!(input["usageLimit"], 100);
        assert_eq!(input["appliesOncePerCustomer"], true);
        assert_eq!(input["endsAt"], "2030-03-17T17:46:40Z");
        assert_eq!(
            input["minimumRequirement"]["subtotal"]["greaterThanOrEqualToSubtotal"],
            "50.00"
        );
        assert_eq!(input["customerGets"]["value"]["percentage"], 0.2);
        assert_eq!(
            input["customerGets"]["items"]["products"]["productsToAdd"],
            json!(["gid://shopify/Product/123"])
        );
        assert_eq!(
            input["customerGets"]["items"]["collections"]["add"],
            json!(["gid://shopify/Collection/9"])
        );
    }

    #[tokio::test]
    async fn fixed_amounts_and_bad_ids() {
        let store = MockStore::start(|_| created(5)).await;
        let (shopify, integration, _db) = setup(&store).await;
        let mut fixed = test_discount("FIVE", "code-2");
        fixed.terms.value = Some(DiscountValue::Fixed(Money {
            amount_minor: 500,
            currency: "EUR".to_owned(),
        }));
        let mut bad = test_discount("BAD", "code-3");
        bad.terms.product_ids = vec!["sku-1".to_owned()];
        let results = shopify
            .create_discounts(&integration, &[fixed, bad])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert!(matches!(
            results[1].outcome,
            PushOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        let requests = store.requests();
        assert_eq!(requests.len(), 1, "the bad one never reaches the store");
        let value = &requests[0].json()["variables"]["basicCodeDiscount"]["customerGets"]["value"];
        assert_eq!(value["discountAmount"]["amount"], "5.00");
        assert_eq!(value["discountAmount"]["appliesOnEachItem"], false);
    }

    #[tokio::test]
    async fn a_taken_code_is_someone_elses_unless_it_is_our_retry() {
        let store = MockStore::start(|request| {
            if query_of(request).contains("codeDiscountNodeByCode") {
                let code = request.json()["variables"]["code"].clone();
                if code == "MINE" {
                    node("Summer 20 / MINE [code-1]", "ACTIVE")
                } else {
                    node("Someone else's code", "ACTIVE")
                }
            } else {
                taken("discountCodeBasicCreate")
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let results = shopify
            .create_discounts(
                &integration,
                &[
                    test_discount("MINE", "code-1"),
                    test_discount("THEIRS", "code-2"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/77".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::AlreadyExists { .. }
        ));
    }

    #[tokio::test]
    async fn disables_by_code() {
        let store = MockStore::start(|request| {
            let query = query_of(request);
            if query.contains("codeDiscountNodeByCode") {
                match request.json()["variables"]["code"].as_str() {
                    Some("MIA20") => node("t [r]", "ACTIVE"),
                    Some("OLD") => node("t [r]", "EXPIRED"),
                    // The brand's own discount: no marker of the suite's.
                    Some("BRANDS") => node("Spring sale", "ACTIVE"),
                    _ => mock::Reply::json(
                        200,
                        json!({ "data": { "codeDiscountNodeByCode": null } }),
                    ),
                }
            } else {
                mock::Reply::json(
                    200,
                    json!({ "data": { "discountCodeDeactivate": {
                        "codeDiscountNode": { "id": "gid://shopify/DiscountCodeNode/77" },
                        "userErrors": [] } } }),
                )
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let codes = ["MIA20", "OLD", "GONE", "BRANDS"].map(ToDisable::any);
        let results = shopify
            .disable_discounts(&integration, &codes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        assert_eq!(results[1].outcome, DisableOutcome::Disabled);
        assert!(matches!(
            results[2].outcome,
            DisableOutcome::NotFound { .. }
        ));
        assert_eq!(results[3].outcome, DisableOutcome::not_ours("BRANDS"));
        let deactivations: Vec<_> = store
            .requests()
            .into_iter()
            .filter(|r| query_of(r).contains("discountCodeDeactivate"))
            .collect();
        assert_eq!(
            deactivations.len(),
            1,
            "only the active code is deactivated"
        );
        assert_eq!(
            deactivations[0].json()["variables"]["id"],
            "gid://shopify/DiscountCodeNode/77"
        );
        // With the ref the code was pushed with: another code's discount of the text (or a
        // brand's name ending in brackets) is left alone.
        let another = ToDisable {
            code: "MIA20".to_owned(),
            external_ref: "code-9".to_owned(),
        };
        let mine = ToDisable {
            external_ref: "r".to_owned(),
            ..another.clone()
        };
        let results = shopify
            .disable_discounts(&integration, &[another, mine])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::not_ours("MIA20"));
        assert_eq!(results[1].outcome, DisableOutcome::Disabled);
        let deactivated = store
            .requests()
            .into_iter()
            .filter(|r| query_of(r).contains("discountCodeDeactivate"))
            .count();
        assert_eq!(deactivated, 2, "only the ref's own discount");
    }

    #[tokio::test]
    async fn throttled_calls_wait_for_the_bucket_and_succeed() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let store = MockStore::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
            0 => throttled(),
            1 => mock::Reply::json(429, json!({ "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service." }))
                .header("Retry-After", "0.05"),
            _ => created(9),
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let started = Instant::now();
        let results = shopify
            .create_discounts(&integration, &[test_discount("MIA20", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // (20 - 10) points at 100 a second: at least 0.1 s before the second attempt.
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_shop_that_is_not_there_is_the_integrations_to_fix_not_retried_as_an_outage() {
        // A closed shop (404), a frozen one (402): asking again changes nothing.
        for status in [404, 402] {
            let store = MockStore::start(move |_| {
                mock::Reply::json(status, json!({ "errors": "Not Found" }))
            })
            .await;
            let (shopify, integration, _db) = setup(&store).await;
            let answer = shopify
                .create_discounts(&integration, &[test_discount("MIA20", "code-1")])
                .await;
            assert!(
                matches!(&answer, Err(AdapterError::Misconfigured(why)) if why.contains(&status.to_string())),
                "{status}: {answer:?}"
            );
            assert_eq!(store.requests().len(), 1, "{status}: asked once");
        }
    }

    #[tokio::test]
    async fn a_store_slower_than_the_timeout_is_unavailable_promptly() {
        let store = MockStore::start(|_| created(1).after(mock::SLOWER_THAN_TIMEOUT)).await;
        let (shopify, integration, _db) = setup(&store).await;
        mock::assert_unavailable_promptly(
            shopify.create_discounts(&integration, &[test_discount("MIA20", "code-1")]),
        )
        .await;
        mock::assert_unavailable_promptly(
            shopify.update_discounts(&integration, &[test_update("MIA20", "MIA25", "code-1")]),
        )
        .await;
    }

    #[tokio::test]
    async fn updates_the_discount_in_place_with_the_documented_input() {
        let store = MockStore::start(|request| {
            if query_of(request).contains("codeDiscountNodeByCode") {
                held("Summer 20 / MIA20 [code-1]", "EXPIRED", &[1, 2])
            } else {
                mutated("discountCodeBasicUpdate", 77)
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let mut update = test_update("mia20", "MIA25", "code-1");
        update.discount.title = "Autumn 15 / MIA25".to_owned();
        update.discount.terms.value = Some(DiscountValue::PercentBps(1500));
        update.discount.terms.product_ids = vec!["2".to_owned(), "3".to_owned()];
        let results = shopify
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].code, "MIA25");
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/77".to_owned()
            }
        );
        let requests = store.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].json()["variables"]["code"], "mia20");
        assert!(query_of(&requests[1]).contains("discountCodeBasicUpdate(id: $id"));
        let variables = requests[1].json()["variables"].clone();
        assert_eq!(variables["id"], "gid://shopify/DiscountCodeNode/77");
        let input = &variables["basicCodeDiscount"];
        assert_eq!(input["code"], "MIA25");
        assert_eq!(input["title"], "Autumn 15 / MIA25 [code-1]");
        assert_eq!(input["customerGets"]["value"]["percentage"], 0.15);
        assert_eq!(
            input["customerGets"]["items"]["products"],
            json!({ "productsToAdd": ["gid://shopify/Product/2", "gid://shopify/Product/3"],
                "productsToRemove": ["gid://shopify/Product/1"] })
        );
        assert_eq!(
            input["minimumRequirement"],
            json!({ "quantity": { "greaterThanOrEqualToQuantity": null },
                "subtotal": { "greaterThanOrEqualToSubtotal": null } })
        );
        // Never expires (a deactivated discount is active again); keeps its own start.
        assert_eq!(input["endsAt"], Value::Null);
        assert!(input.get("startsAt").is_none(), "{input}");
        assert_eq!(input["usageLimit"], Value::Null);
    }

    #[tokio::test]
    async fn an_update_to_a_taken_code_changes_nothing_and_a_previous_code_not_ours_is_created() {
        let store = MockStore::start(|request| {
            let query = query_of(request);
            if query.contains("discountCodeBasicUpdate") {
                taken("discountCodeBasicUpdate")
            } else if query.contains("discountCodeBasicCreate") {
                created(5)
            } else {
                match request.json()["variables"]["code"].as_str() {
                    Some("OLD") => held("Summer 20 / OLD [code-1]", "ACTIVE", &[]),
                    Some("BRANDS" | "THEIRS") => held("The brand's own sale", "ACTIVE", &[]),
                    _ => mock::Reply::json(
                        200,
                        json!({ "data": { "codeDiscountNodeByCode": null }, "extensions": cost() }),
                    ),
                }
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let results = shopify
            .update_discounts(
                &integration,
                &[
                    test_update("OLD", "THEIRS", "code-1"),
                    test_update("GONE", "NEW1", "code-2"),
                    test_update("BRANDS", "NEW2", "code-3"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            ["THEIRS", "NEW1", "NEW2"]
        );
        assert!(
            matches!(results[0].outcome, PushOutcome::AlreadyExists { .. }),
            "{results:?}"
        );
        for result in &results[1..] {
            assert_eq!(
                result.outcome,
                PushOutcome::Created {
                    store_discount_id: "gid://shopify/DiscountCodeNode/5".to_owned()
                }
            );
        }
        let mutations: Vec<_> = store
            .requests()
            .into_iter()
            .filter(|r| query_of(r).starts_with("mutation"))
            .collect();
        assert_eq!(mutations.len(), 3);
        let updates: Vec<_> = mutations
            .iter()
            .filter(|r| query_of(r).contains("discountCodeBasicUpdate"))
            .collect();
        assert_eq!(updates.len(), 1, "only our own discount is updated");
    }

    #[tokio::test]
    async fn throttled_updates_wait_for_the_bucket_and_succeed() {
        let store = MockStore::start(|request| match request.seq {
            0 => throttled(),
            _ if query_of(request).contains("codeDiscountNodeByCode") => {
                held("Summer 20 / MIA20 [code-1]", "ACTIVE", &[])
            }
            _ => mutated("discountCodeBasicUpdate", 77),
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let started = Instant::now();
        let results = shopify
            .update_discounts(&integration, &[test_update("MIA20", "MIA25", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(store.requests().len(), 3);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn refused_credentials_are_misconfiguration() {
        let store = MockStore::start(|_| {
            mock::Reply::json(401, json!({ "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)" }))
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let result = shopify
            .create_discounts(&integration, &[test_discount("MIA20", "code-1")])
            .await;
        assert!(matches!(result, Err(AdapterError::Misconfigured(_))));
        assert_eq!(store.requests().len(), 1, "not retried");
    }

    #[tokio::test]
    async fn fetches_and_lists_orders() {
        let order: Value = serde_json::from_slice(ORDER).unwrap_or_default();
        let order_id = order["id"].as_u64().unwrap_or_default();
        let second = {
            let mut o = order.clone();
            o["id"] = json!(order_id + 1);
            o["email"] = json!("Buyer@Example.com");
            o["shipping_address"] = json!({ "country_code": "DE" });
            o
        };
        let (first_page, second_page) = (order.clone(), second.clone());
        let store = MockStore::start(move |request| match request.path.as_str() {
            p if p == format!("/admin/api/2025-01/orders/{order_id}.json") => {
                mock::Reply::json(200, json!({ "order": first_page }))
            }
            "/admin/api/2025-01/orders/1.json" => {
                mock::Reply::json(404, json!({ "errors": "Not Found" }))
            }
            "/admin/api/2025-01/orders.json" if request.param("page_info").is_none() => {
                mock::Reply::json(200, json!({ "orders": [first_page] })).header(
                    "Link",
                    "<http://127.0.0.1:1/admin/api/2025-01/orders.json?limit=50&page_info=abc>; rel=\"next\"",
                )
            }
            _ => mock::Reply::json(200, json!({ "orders": [second_page] })),
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let fetched = shopify
            .fetch_order(&integration, &order_id.to_string())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the order exists"));
        assert_eq!(fetched.codes, vec!["0124D"]);
        assert_eq!(
            (
                fetched.subtotal_minor,
                fetched.discount_minor,
                fetched.total_minor
            ),
            (19_900, 3_410, 18_690)
        );
        assert_eq!(fetched.status, OrderStatus::Paid);
        assert_eq!(
            shopify.fetch_order(&integration, "1").await.ok(),
            Some(None),
            "a missing order is None"
        );

        let since = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let listed = shopify.list_orders(&integration, since, 1).await;
        let listed = listed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.orders.len(), 1);
        assert_eq!(
            listed.resume_from.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-01-24T04:10:16+00:00"),
            "cut at its limit: on from the last order's change"
        );
        let list_request = &store.requests_to("GET /admin/api/2025-01/orders.json")[0];
        assert_eq!(
            list_request.param("updated_at_min"),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(list_request.param("status"), Some("any"));
        assert_eq!(list_request.param("order"), Some("updated_at asc"));
        assert_eq!(list_request.param("limit"), Some("1"));
    }

    #[tokio::test]
    async fn lists_follow_the_link_header() {
        let order: Value = serde_json::from_slice(ORDER).unwrap_or_default();
        let mut second = order.clone();
        second["id"] = json!(42);
        second["email"] = json!("Buyer@Example.com");
        second["shipping_address"] = json!({ "country_code": "DE" });
        let origin = Arc::new(std::sync::Mutex::new(String::new()));
        let link_origin = origin.clone();
        let store = MockStore::start(move |request| {
            if request.param("page_info").is_none() {
                let origin = link_origin
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                mock::Reply::json(200, json!({ "orders": [order] })).header(
                    "Link",
                    &format!(
                        "<{origin}/admin/api/2025-01/orders.json?limit=2&page_info=abc>; rel=\"next\""
                    ),
                )
            } else {
                mock::Reply::json(200, json!({ "orders": [second] }))
            }
        })
        .await;
        *origin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = store.origin.clone();
        let (shopify, integration, _db) = setup(&store).await;
        let listed = shopify
            .list_orders(&integration, Utc::now(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let listed = listed.orders;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].store_order_id, "42");
        assert_eq!(listed[1].country.as_deref(), Some("DE"));
        assert_eq!(
            listed[1].customer_hash,
            crate::webhooks::customer_hash(mock::CUSTOMER_KEY, "buyer@example.com")
        );
        let pages = store.requests();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].param("page_info"), Some("abc"));
        assert_eq!(pages[1].param("updated_at_min"), None);
    }

    /// A discount of plan 5's group (no per-code limits, so it may share a discount).
    fn grouped(code: &str, external_ref: &str) -> Discount {
        let mut discount = test_discount(code, external_ref);
        discount.group = Some(crate::domain::discount::DiscountGroup {
            group_ref: "plan-5".to_owned(),
            title: "Summer 20".to_owned(),
        });
        discount
    }

    fn shared_title() -> String {
        let key = grouped("X", "x")
            .shared_key()
            .unwrap_or_else(|| panic!("a grouped code without limits shares"));
        format!("Summer 20 [{key}]")
    }

    fn reply(data: Value) -> mock::Reply {
        mock::Reply::json(200, json!({ "data": data, "extensions": cost() }))
    }

    /// `codeDiscountNodes` finding `titles` (ids 900, 901, …).
    fn search_found(titles: &[&str]) -> mock::Reply {
        let nodes: Vec<Value> = titles
            .iter()
            .enumerate()
            .map(|(i, title)| json!({ "id": format!("gid://shopify/DiscountCodeNode/{}", 900 + i),
                "codeDiscount": { "__typename": "DiscountCodeBasic", "title": title, "status": "ACTIVE" } }))
            .collect();
        reply(json!({ "codeDiscountNodes": { "nodes": nodes } }))
    }

    fn bulk_added() -> mock::Reply {
        reply(json!({ "discountRedeemCodeBulkAdd": {
            "bulkCreation": { "id": "gid://shopify/DiscountRedeemCodeBulkCreation/42" },
            "userErrors": [] } }))
    }

    /// The finished bulk creation: each code added, except `taken`, refused as Shopify does.
    fn bulk_done(added: &[&str], taken: &[&str]) -> mock::Reply {
        let mut nodes: Vec<Value> = added
            .iter()
            .enumerate()
            .map(|(i, code)| json!({ "code": code,
                "discountRedeemCode": { "id": format!("gid://shopify/DiscountRedeemCode/{}", 3000 + i) },
                "errors": [] }))
            .collect();
        nodes.extend(taken.iter().map(|code| json!({ "code": code, "discountRedeemCode": null,
            "errors": [{ "field": ["code"], "code": "TAKEN", "message": "Code must be unique. Please try a different code." }] })));
        reply(
            json!({ "discountRedeemCodeBulkCreation": { "done": true, "codes": { "nodes": nodes } } }),
        )
    }

    fn requests_with(store: &MockStore, operation: &str) -> Vec<Recorded> {
        store
            .requests()
            .into_iter()
            .filter(|r| query_of(r).contains(operation))
            .collect()
    }

    /// A store whose search never lists the shared discount, which makes it slowly (so that two
    /// pushes overlap) as discount 500, and whose bulk creations add the codes of the last bulk add
    /// (the adds of these tests come one after the other).
    async fn shared_store() -> MockStore {
        let added = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        MockStore::start(move |request| {
            let query = query_of(request);
            let mut last = added.lock().unwrap_or_else(|e| e.into_inner());
            if query.contains("codeDiscountNodes(") {
                search_found(&[])
            } else if query.contains("discountCodeBasicCreate") {
                created(500).after(Duration::from_millis(200))
            } else if query.contains("discountRedeemCodeBulkAdd") {
                *last = request.json()["variables"]["codes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["code"].as_str().map(str::to_owned))
                    .collect();
                bulk_added()
            } else if query.contains("discountRedeemCodeBulkCreation") {
                let codes: Vec<&str> = last.iter().map(String::as_str).collect();
                bulk_done(&codes, &[])
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await
    }

    /// Pushes the first codes of a group through `first` and `second` at once; both join the
    /// shared discount of [`shared_store`], whose outcome this returns.
    async fn push_together(
        first: &Shopify,
        second: &Shopify,
        integration: &IntegrationRow,
    ) -> PushOutcome {
        let (a, b) = futures::future::join(
            first.create_discounts(integration, &[grouped("A", "code-1")]),
            second.create_discounts(integration, &[grouped("B", "code-2")]),
        )
        .await;
        let shared = PushOutcome::Created {
            store_discount_id: "gid://shopify/DiscountCodeNode/500".to_owned(),
        };
        for results in [a, b] {
            let results = results.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(results[0].outcome, shared);
        }
        shared
    }

    #[tokio::test]
    async fn pushes_close_together_make_one_shared_discount() {
        let store = shared_store().await;
        let (shopify, integration, _db) = setup(&store).await;
        let shared = push_together(&shopify, &shopify, &integration).await;
        let later = shopify
            .create_discounts(&integration, &[grouped("C", "code-3")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(later[0].outcome, shared);
        assert_eq!(
            requests_with(&store, "discountCodeBasicCreate").len(),
            1,
            "one shared discount"
        );
        assert_eq!(
            requests_with(&store, "codeDiscountNodes(").len(),
            1,
            "searched once, then remembered"
        );
        assert_eq!(requests_with(&store, "discountRedeemCodeBulkAdd").len(), 2);
    }

    #[tokio::test]
    async fn two_gateway_processes_make_one_shared_discount() {
        let store = shared_store().await;
        let test_db = tracking_db::TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let sealer = mock::sealer();
        let integration = shop(&db, &store, &sealer).await;
        let first_process = adapter(&db, &sealer);
        // Another replica: its own memory, the same database.
        let second_process = adapter(&db, &sealer);
        let shared = push_together(&first_process, &second_process, &integration).await;
        assert_eq!(
            requests_with(&store, "discountCodeBasicCreate").len(),
            1,
            "one shared discount for both processes"
        );
        let searches = requests_with(&store, "codeDiscountNodes(").len();
        assert_eq!(
            searches, 1,
            "the second process read the first one's record"
        );

        // A process started later finds the record: no search, no new discount.
        let third_process = adapter(&db, &sealer);
        let later = third_process
            .create_discounts(&integration, &[grouped("C", "code-3")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(later[0].outcome, shared);
        assert_eq!(requests_with(&store, "codeDiscountNodes(").len(), 1);
        assert_eq!(requests_with(&store, "discountCodeBasicCreate").len(), 1);

        // A record older than SHARED_TTL is checked again at Shopify (a discount deleted in its
        // admin is made again): here the search finds nothing, so a new process makes one.
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel_async::RunQueryDsl::execute(
            tracking_db::prepared(
                "update shopify_shared_discounts set found_at = found_at - interval '10 minutes'",
            ),
            &mut conn,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        drop(conn);
        let fourth_process = adapter(&db, &sealer);
        fourth_process
            .create_discounts(&integration, &[grouped("D", "code-4")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(requests_with(&store, "codeDiscountNodes(").len(), 2);
        assert_eq!(requests_with(&store, "discountCodeBasicCreate").len(), 2);
        let group = Group {
            brand_id: integration.brand_id,
            integration_id: integration.id,
            key: &grouped("X", "x").shared_key().unwrap_or_default(),
        };
        // The old record was ten minutes old: one from the last minute is the new one.
        let recorded = shared_discounts::recorded(&db, group, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|r| r.store_discount_id);
        assert_eq!(
            recorded.as_deref(),
            Some("gid://shopify/DiscountCodeNode/500"),
            "recorded again when made again"
        );
    }

    #[tokio::test]
    async fn a_shared_discount_made_but_not_recorded_still_takes_its_codes() {
        let store = shared_store().await;
        let test_db = tracking_db::TestDb::new(SCHEMAS).await;
        let sealer = mock::sealer();
        // Not stored: recording its discount breaks the table's foreign key.
        let integration = mock::integration(
            &sealer,
            Provider::Shopify,
            &store.origin,
            &[("access_token", "shpat_test")],
        );
        let shopify = adapter(&test_db.pool(crate::SCHEMA), &sealer);
        let shared = push_together(&shopify, &shopify, &integration).await;
        let later = shopify
            .create_discounts(&integration, &[grouped("C", "code-3")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(later[0].outcome, shared, "remembered by the process");
        assert_eq!(requests_with(&store, "discountCodeBasicCreate").len(), 1);
    }

    #[tokio::test]
    async fn codes_of_one_plan_share_a_discount_and_join_it_in_bulk() {
        let polls = Arc::new(AtomicUsize::new(0));
        let seen = polls.clone();
        let store = MockStore::start(move |request| {
            let query = query_of(request);
            let code = request.json()["variables"]["code"].clone();
            if query.contains("codeDiscountNodes(") {
                search_found(&["Summer 20 [shared plan-50 0a0a0a0a]"])
            } else if query.contains("discountCodeBasicCreate") {
                let input = &request.json()["variables"]["basicCodeDiscount"];
                created(if input["usageLimit"].is_null() {
                    500
                } else {
                    600
                })
            } else if query.contains("discountRedeemCodeBulkAdd") {
                bulk_added()
            } else if query.contains("discountRedeemCodeBulkCreation") {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    reply(json!({ "discountRedeemCodeBulkCreation": { "done": false,
                        "codes": { "nodes": [] } } }))
                } else {
                    bulk_done(&["B"], &["C"])
                }
            } else if code == "C" {
                node("Their sale", "ACTIVE")
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let mut limited = grouped("D", "code-4");
        limited.terms.usage_limit = 5;
        let discounts = [
            grouped("A", "code-1"),
            grouped("B", "code-2"),
            grouped("C", "code-3"),
            limited,
        ];
        let results = shopify
            .create_discounts(&integration, &discounts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let shared = PushOutcome::Created {
            store_discount_id: "gid://shopify/DiscountCodeNode/500".to_owned(),
        };
        assert_eq!(
            results[0].outcome, shared,
            "the first code makes the discount"
        );
        assert_eq!(results[1].outcome, shared, "the next joins it");
        assert!(
            matches!(results[2].outcome, PushOutcome::AlreadyExists { .. }),
            "{:?}",
            results[2].outcome
        );
        assert_eq!(
            results[3].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/600".to_owned()
            },
            "a code with its own usage limit is its own discount"
        );
        let creates = requests_with(&store, "discountCodeBasicCreate");
        assert_eq!(creates.len(), 2);
        let titles: Vec<Value> = creates
            .iter()
            .map(|r| r.json()["variables"]["basicCodeDiscount"]["title"].clone())
            .collect();
        assert!(titles.contains(&json!(shared_title())), "{titles:?}");
        assert!(
            titles.contains(&json!("Summer 20 / D [code-4]")),
            "{titles:?}"
        );
        let searches = requests_with(&store, "codeDiscountNodes(");
        let key = grouped("X", "x").shared_key().unwrap_or_default();
        assert_eq!(
            searches[0].json()["variables"]["query"],
            format!("title:\"{key}\"")
        );
        let adds = requests_with(&store, "discountRedeemCodeBulkAdd");
        assert_eq!(adds.len(), 1, "one call for the rest of the group");
        assert_eq!(
            adds[0].json()["variables"],
            json!({ "discountId": "gid://shopify/DiscountCodeNode/500",
                "codes": [{ "code": "B" }, { "code": "C" }] })
        );
        assert_eq!(polls.load(Ordering::SeqCst), 2, "polled until done");
    }

    #[tokio::test]
    async fn a_later_push_joins_the_shared_discount_and_a_retry_is_ours() {
        let shared = shared_title();
        let store = MockStore::start(move |request| {
            let query = query_of(request);
            if query.contains("codeDiscountNodes(") {
                // The search matches words: a look-alike of another plan comes back too.
                search_found(&["Summer 20 [shared plan-50 0a0a0a0a]", &shared])
            } else if query.contains("discountRedeemCodeBulkAdd") {
                bulk_added()
            } else if query.contains("discountRedeemCodeBulkCreation") {
                bulk_done(&["NEW"], &["AGAIN"])
            } else if query.contains("codeDiscountNodeByCode") {
                node(&shared, "ACTIVE")
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let results = shopify
            .create_discounts(
                &integration,
                &[grouped("NEW", "code-7"), grouped("AGAIN", "code-8")],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/901".to_owned()
            }
        );
        assert_eq!(
            results[1].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/77".to_owned()
            },
            "taken by the shared discount itself: our earlier push"
        );
        assert!(requests_with(&store, "discountCodeBasicCreate").is_empty());
        let adds = requests_with(&store, "discountRedeemCodeBulkAdd");
        assert_eq!(
            adds[0].json()["variables"]["discountId"],
            "gid://shopify/DiscountCodeNode/901"
        );
    }

    /// A shared discount's codes, 250 a page: `MIA20` on the second page.
    fn redeem_codes(request: &Recorded) -> mock::Reply {
        let (nodes, next) = if request.json()["variables"]["after"].is_null() {
            (
                json!([{ "id": "gid://shopify/DiscountRedeemCode/1", "code": "ANA10" }]),
                true,
            )
        } else {
            (
                json!([{ "id": "gid://shopify/DiscountRedeemCode/2", "code": "MIA20" }]),
                false,
            )
        };
        reply(json!({ "codeDiscountNode": { "codeDiscount": { "codes": {
            "nodes": nodes, "pageInfo": { "hasNextPage": next, "endCursor": "c1" } } } } }))
    }

    #[tokio::test]
    async fn disabling_a_shared_code_deletes_only_that_redeem_code() {
        let shared = shared_title();
        let store = MockStore::start(move |request| {
            let query = query_of(request);
            if query.contains("codeDiscountNodeByCode") {
                node(&shared, "ACTIVE")
            } else if query.contains("codeDiscountNode(") {
                redeem_codes(request)
            } else if query.contains("discountCodeRedeemCodeBulkDelete") {
                reply(json!({ "discountCodeRedeemCodeBulkDelete": {
                    "job": { "id": "gid://shopify/Job/1" }, "userErrors": [] } }))
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let codes = ["mia20", "GONE"].map(ToDisable::any);
        let results = shopify
            .disable_discounts(&integration, &codes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        assert!(matches!(
            results[1].outcome,
            DisableOutcome::NotFound { .. }
        ));
        assert!(
            requests_with(&store, "discountCodeDeactivate").is_empty(),
            "the other creators' codes stay active"
        );
        let deletes = requests_with(&store, "discountCodeRedeemCodeBulkDelete");
        assert_eq!(deletes.len(), 1);
        assert_eq!(
            deletes[0].json()["variables"],
            json!({ "discountId": "gid://shopify/DiscountCodeNode/77",
                "ids": ["gid://shopify/DiscountRedeemCode/2"] })
        );
    }

    #[tokio::test]
    async fn renaming_a_shared_code_adds_the_new_one_then_deletes_the_old() {
        let shared = shared_title();
        let store = MockStore::start(move |request| {
            let query = query_of(request);
            if query.contains("codeDiscountNodeByCode") {
                held(&shared, "ACTIVE", &[])
            } else if query.contains("codeDiscountNodes(") {
                search_found(&[&shared])
            } else if query.contains("discountRedeemCodeBulkAdd") {
                bulk_added()
            } else if query.contains("discountRedeemCodeBulkCreation") {
                bulk_done(&["MIA25"], &[])
            } else if query.contains("codeDiscountNode(") {
                redeem_codes(request)
            } else if query.contains("discountCodeRedeemCodeBulkDelete") {
                reply(json!({ "discountCodeRedeemCodeBulkDelete": {
                    "job": { "id": "gid://shopify/Job/2" }, "userErrors": [] } }))
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let update = DiscountUpdate {
            previous_code: "MIA20".to_owned(),
            discount: grouped("MIA25", "code-1"),
        };
        let results = shopify
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/900".to_owned()
            }
        );
        assert!(requests_with(&store, "discountCodeBasicUpdate").is_empty());
        let adds = requests_with(&store, "discountRedeemCodeBulkAdd");
        assert_eq!(
            adds[0].json()["variables"]["codes"],
            json!([{ "code": "MIA25" }])
        );
        let deletes = requests_with(&store, "discountCodeRedeemCodeBulkDelete");
        assert_eq!(
            deletes[0].json()["variables"]["ids"],
            json!(["gid://shopify/DiscountRedeemCode/2"])
        );
        let order: Vec<String> = store.requests().iter().map(query_of).collect();
        let added = order
            .iter()
            .position(|q| q.contains("discountRedeemCodeBulkAdd"));
        let deleted = order
            .iter()
            .position(|q| q.contains("discountCodeRedeemCodeBulkDelete"));
        assert!(
            added < deleted,
            "the new code exists before the old one goes"
        );
    }

    #[tokio::test]
    async fn new_terms_for_a_shared_code_move_it_to_the_discount_of_those_terms() {
        let old = shared_title();
        let store = MockStore::start(move |request| {
            let query = query_of(request);
            if query.contains("codeDiscountNodeByCode") {
                held(&old, "ACTIVE", &[])
            } else if query.contains("codeDiscountNodes(") {
                search_found(&[])
            } else if query.contains("discountCodeBasicCreate") {
                created(700)
            } else if query.contains("codeDiscountNode(") {
                redeem_codes(request)
            } else if query.contains("discountCodeRedeemCodeBulkDelete") {
                reply(json!({ "discountCodeRedeemCodeBulkDelete": {
                    "job": { "id": "gid://shopify/Job/3" }, "userErrors": [] } }))
            } else {
                mock::Reply::json(500, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        let mut same = grouped("MIA20", "code-1");
        let unchanged = DiscountUpdate {
            previous_code: "MIA20".to_owned(),
            discount: same.clone(),
        };
        same.terms.value = Some(DiscountValue::PercentBps(1500));
        let new_terms = DiscountUpdate {
            previous_code: "MIA20".to_owned(),
            discount: same,
        };
        let results = shopify
            .update_discounts(&integration, &[unchanged])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/77".to_owned()
            },
            "nothing to change"
        );
        assert_eq!(store.requests().len(), 1, "only the lookup");
        let results = shopify
            .update_discounts(&integration, &[new_terms])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "gid://shopify/DiscountCodeNode/700".to_owned()
            }
        );
        let order: Vec<String> = store.requests().iter().map(query_of).collect();
        let deleted = order
            .iter()
            .position(|q| q.contains("discountCodeRedeemCodeBulkDelete"));
        let created = order
            .iter()
            .position(|q| q.contains("discountCodeBasicCreate"));
        assert!(
            deleted.is_some() && deleted < created,
            "the text leaves its old discount before it is created again: {order:?}"
        );
        let create = requests_with(&store, "discountCodeBasicCreate");
        let title = create[0].json()["variables"]["basicCodeDiscount"]["title"].clone();
        assert_ne!(title, json!(shared_title()), "a discount of the new terms");
    }

    #[tokio::test]
    async fn the_shops_currency_is_its_currency_code() {
        let store = MockStore::start(|request| {
            if request.json()["query"]
                .as_str()
                .unwrap_or_default()
                .contains("currencyCode")
            {
                mock::Reply::json(
                    200,
                    json!({ "data": { "shop": { "currencyCode": "EUR" } }, "extensions": cost() }),
                )
            } else {
                mock::Reply::json(400, json!({ "errors": "unexpected" }))
            }
        })
        .await;
        let (shopify, integration, _db) = setup(&store).await;
        assert_eq!(
            shopify.shop_currency(&integration).await.ok(),
            Some(Some("EUR".to_owned()))
        );
        let request = &store.requests()[0];
        assert_eq!(request.route(), "POST /admin/api/2025-01/graphql.json");
        assert_eq!(request.header("x-shopify-access-token"), Some("shpat_test"));
    }
}
