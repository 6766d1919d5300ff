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
//! - Throttling: Shopify answers a throttled query with HTTP 200 and a `THROTTLED` error; the
//!   call waits until the cost bucket (`extensions.cost.throttleStatus`) has refilled enough for
//!   the query, then retries.
//! - Orders: REST `orders/{id}.json` and `orders.json?updated_at_min=…` (cursor pages through
//!   the `Link` header), because their JSON is exactly the webhook payload the gateway already
//!   parses ([`crate::webhooks::shopify::parse_order`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Credentials, Reply, StoreHttp, origin};
use super::mapping::{has_marker, marked_title};
use super::{AdapterError, StoreAdapter, each};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, DiscountValue, PushOutcome, PushResult,
};
use crate::domain::orders::{NormalizedOrder, format_amount};
use crate::store::IntegrationRow;
use crate::webhooks::shopify::parse_order;

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
}

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
    pub fn new(http: StoreHttp, customer_key: Arc<[u8]>) -> Self {
        Self { http, customer_key }
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
        let input = match discount_input(discount) {
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
            discount,
            &data["discountCodeBasicCreate"],
        )
        .await
    }

    /// What a create or update mutation's `payload` means for `discount`. A code Shopify reports
    /// taken is ours when the discount holding it carries our external ref in its title.
    async fn outcome(
        &self,
        integration: &IntegrationRow,
        token: &str,
        discount: &Discount,
        payload: &Value,
    ) -> Result<PushOutcome, AdapterError> {
        if let Some(id) = payload["codeDiscountNode"]["id"].as_str() {
            return Ok(PushOutcome::Created {
                store_discount_id: id.to_owned(),
            });
        }
        let errors: Vec<UserError> =
            serde_json::from_value(payload["userErrors"].clone()).unwrap_or_default();
        if errors.iter().any(is_taken) {
            return Ok(match self.find(integration, token, &discount.code).await? {
                Some(found) if has_marker(&found.title, &discount.external_ref) => {
                    PushOutcome::Created {
                        store_discount_id: found.id,
                    }
                }
                _ => PushOutcome::AlreadyExists {
                    message: format!("code {} already exists in the store", discount.code),
                },
            });
        }
        let message = if errors.is_empty() {
            "Shopify changed no discount and gave no reason".to_owned()
        } else {
            errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        Ok(PushOutcome::Failed {
            message: format!("{STORE} refused code {}: {message}", discount.code),
            retryable: false,
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
            // Not ours, or gone (an earlier try renamed it): created as a push would be.
            _ => return self.create_one(integration, token, discount).await,
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
            discount,
            &data["discountCodeBasicUpdate"],
        )
        .await
    }

    async fn disable_one(
        &self,
        integration: &IntegrationRow,
        token: &str,
        code: &str,
    ) -> Result<DisableOutcome, AdapterError> {
        let Some(found) = self.find(integration, token, code).await? else {
            return Ok(DisableOutcome::NotFound {
                message: format!("the store holds no code {code}"),
            });
        };
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
                message: format!(
                    "{STORE} did not deactivate {code}: {}",
                    errors
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                retryable: false,
            }
        })
    }

    fn order(&self, value: &Value) -> Result<NormalizedOrder, String> {
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        parse_order("", &body, &self.customer_key).map_err(|e| e.to_string())
    }

    fn token(credentials: &Credentials) -> Result<&str, AdapterError> {
        credentials.get("access_token")
    }
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

/// `DiscountCodeBasicInput` for one discount; `Err` names what Shopify cannot take.
fn discount_input(discount: &Discount) -> Result<Value, String> {
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
            let ids = gids("Product", &terms.product_ids)?;
            items.insert("products".to_owned(), json!({ "productsToAdd": ids }));
        }
        if !terms.category_ids.is_empty() {
            let ids = gids("Collection", &terms.category_ids)?;
            items.insert("collections".to_owned(), json!({ "add": ids }));
        }
        Value::Object(items)
    };
    let starts_at = terms.starts_at.unwrap_or_else(Utc::now);
    let mut input = json!({
        "title": marked_title(&discount.title, &discount.external_ref, MAX_TITLE),
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

/// `DiscountCodeBasicInput` for an update of `held` into `discount`: the create input with the
/// documented ways to clear what the new terms no longer have. A missing start keeps the
/// discount's own; `endsAt: null` never expires (also ending a deactivation, which set an end).
fn update_input(discount: &Discount, held: &Held) -> Result<Value, String> {
    let mut input = discount_input(discount)?;
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

/// Store ids as GraphQL ids: `123` → `gid://shopify/Product/123`; gids pass as they are.
fn gids(kind: &str, ids: &[String]) -> Result<Vec<String>, String> {
    let prefix = format!("gid://shopify/{kind}/");
    ids.iter()
        .map(|id| {
            let id = id.trim();
            let number = id.strip_prefix(&prefix).unwrap_or(id);
            if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) {
                Ok(format!("{prefix}{number}"))
            } else {
                Err(format!(
                    "{id:?} is not a Shopify {} id",
                    kind.to_ascii_lowercase()
                ))
            }
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
        each(
            discounts,
            |d| self.create_one(integration, token, d),
            |d, outcome| PushResult {
                code: d.code.clone(),
                outcome,
            },
        )
        .await
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
        codes: &[String],
    ) -> Result<Vec<DisableResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        each(
            codes,
            |code| self.disable_one(integration, token, code),
            |code, outcome| DisableResult {
                code: code.clone(),
                outcome,
            },
        )
        .await
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
        self.order(&body["order"])
            .map(Some)
            .map_err(|e| AdapterError::Unavailable(format!("{STORE} order {id}: {e}")))
    }

    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<NormalizedOrder>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let token = Self::token(&credentials)?;
        let page = limit.clamp(1, MAX_PAGE).to_string();
        let admin = Self::admin(integration);
        let mut next = Some(format!("{admin}/orders.json"));
        let mut first = true;
        let mut orders = Vec::new();
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
                if orders.len() == limit {
                    break;
                }
                match self.order(value) {
                    Ok(order) => orders.push(order),
                    Err(err) => tracing::error!(
                        brand_id = integration.brand_id,
                        integration_id = integration.id,
                        order_id = %value["id"],
                        error = %err,
                        "shopify order skipped: unreadable"
                    ),
                }
            }
            first = false;
            if orders.len() < limit {
                // The token goes only to the shop itself, whatever a header says.
                next = next_link(&reply).filter(|url| url.starts_with(&format!("{admin}/")));
            }
        }
        Ok(orders)
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

    fn adapter(sealer: &crate::crypto::Sealer) -> Shopify {
        let http =
            StoreHttp::new(mock::fast_http(), sealer.clone()).unwrap_or_else(|e| panic!("{e}"));
        Shopify::new(http, Arc::from(mock::CUSTOMER_KEY))
    }

    fn setup(store: &MockStore) -> (Shopify, IntegrationRow) {
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::Shopify,
            &store.origin,
            &[("access_token", "shpat_test")],
        );
        (adapter(&sealer), integration)
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
        let codes = ["MIA20", "OLD", "GONE"].map(str::to_owned);
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
        let (shopify, integration) = setup(&store);
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
    async fn a_store_slower_than_the_timeout_is_unavailable_promptly() {
        let store = MockStore::start(|_| created(1).after(mock::SLOWER_THAN_TIMEOUT)).await;
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
        let (shopify, integration) = setup(&store);
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
            (16_490, 3_410, 18_690)
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
        assert_eq!(listed.len(), 1);
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
        let (shopify, integration) = setup(&store);
        let listed = shopify
            .list_orders(&integration, Utc::now(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
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
}
