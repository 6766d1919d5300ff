//! WooCommerce: coupons and orders through the REST API v3 (`{base_url}/wp-json/wc/v3`), with the
//! store's consumer key and secret as HTTP basic auth (WooCommerce accepts it over HTTPS).
//!
//! - Codes: `POST /coupons/batch` (up to 100 coupons a call): `percent` or `fixed_cart`, the
//!   amount as decimal text, usage limits, minimum amount, product and category ids, expiry
//!   (WooCommerce coupons have no start date). The external ref is kept in the coupon's
//!   `meta_data` (`tracking_external_ref`), so a code the store reports taken
//!   (`woocommerce_rest_coupon_code_already_exists`) is our retry when the coupon carries the
//!   same ref.
//! - Updating finds the previous code's coupon (`GET /coupons?code=`) and, when it carries the
//!   update's ref, changes it in the same batch endpoint's `update` list (`{"id": …, "code": …}`,
//!   as `PUT /coupons/{id}` takes it; WooCommerce refuses a code another coupon holds with
//!   `woocommerce_rest_coupon_code_already_exists`). The REST controller skips null fields
//!   (`WC_REST_Coupons_V2_Controller::prepare_object_for_database`), so an update clears with
//!   values instead: usage limits 0 (no limit), `date_expires: ""` (no expiry), `status: publish`
//!   (active again).
//! - Disabling sets the coupon's status to `draft` (found with `GET /coupons?code=`): a draft
//!   coupon cannot be applied, keeps its code taken and its usage history, and the brand can see
//!   it in the admin. Deleting would lose that history.
//! - Orders: `GET /orders/{id}` and `GET /orders?modified_after=…&orderby=modified&order=asc`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Credentials, Reply, StoreHttp, origin};
use super::mapping::{numeric_ids, percent_text};
use super::{AdapterError, ChangeKey, Listed, StoreAdapter, changed_at};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, DiscountValue, PushOutcome,
    PushResult, ToDisable,
};
use crate::domain::orders::{NormalizedOrder, format_amount};
use crate::store::IntegrationRow;

const STORE: &str = "WooCommerce";
/// WooCommerce's limit on objects in one batch call.
const BATCH: usize = 100;
/// WooCommerce's largest page.
const MAX_PAGE: usize = 100;
/// How many pages of a coupon search are read before giving up (a store answering full pages
/// for ever, as one ignoring `page` would, must not hold a push for good).
const MAX_SEARCH_PAGES: usize = 50;
/// Most order ids one listing request leaves out by `exclude` (about 3 KB of URL: far below what
/// web servers take).
const MAX_EXCLUDE: usize = 300;
const REF_KEY: &str = "tracking_external_ref";
const TAKEN: &str = "woocommerce_rest_coupon_code_already_exists";

/// The WooCommerce adapter.
#[derive(Clone, Debug)]
pub struct WooCommerce {
    http: StoreHttp,
    customer_key: Arc<[u8]>,
}

/// The REST API's error body, alone or as a batch item's `error`.
#[derive(Deserialize, Default)]
struct WcError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

impl WcError {
    fn status(&self) -> u64 {
        self.data
            .as_ref()
            .and_then(|d| d.get("status"))
            .and_then(Value::as_u64)
            .unwrap_or(400)
    }
}

#[derive(Deserialize)]
struct Coupon {
    id: u64,
    #[serde(default)]
    code: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    meta_data: Vec<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    key: String,
    #[serde(default)]
    value: Value,
}

impl Coupon {
    fn has_ref(&self, external_ref: &str) -> bool {
        self.meta_data
            .iter()
            .any(|m| m.key == REF_KEY && m.value.as_str() == Some(external_ref))
    }

    /// The ref the suite made it with, if it did (not the brand's own).
    fn our_ref(&self) -> Option<&str> {
        self.meta_data
            .iter()
            .find(|m| m.key == REF_KEY)
            .and_then(|m| m.value.as_str())
    }
}

struct Api<'a> {
    base: String,
    key: &'a str,
    secret: &'a str,
}

impl WooCommerce {
    pub fn new(http: StoreHttp, customer_key: Arc<[u8]>) -> Self {
        Self { http, customer_key }
    }

    fn api<'a>(
        integration: &IntegrationRow,
        credentials: &'a Credentials,
    ) -> Result<Api<'a>, AdapterError> {
        let base = origin(integration, String::new);
        if base.is_empty() {
            return Err(AdapterError::Misconfigured(format!(
                "integration {} has no store base URL",
                integration.id
            )));
        }
        Ok(Api {
            base: format!("{base}/wp-json/wc/v3"),
            key: credentials.get("consumer_key")?,
            secret: credentials.get("consumer_secret")?,
        })
    }

    async fn call(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Reply, AdapterError> {
        let url = format!("{}{path}", api.base);
        self.http
            .send(integration, STORE, |client| {
                let request = client
                    .request(method.clone(), &url)
                    .basic_auth(api.key, Some(api.secret))
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await
    }

    /// The coupons holding `code` (WooCommerce matches codes whatever their case), drafts (our
    /// disabled codes) included: WooCommerce's `code` filter finds published coupons only
    /// (`wc_get_coupon_id_by_code`), so the list is searched (a coupon's code is its title) and
    /// matched exactly here. The search matches within titles and texts too, newest first, so
    /// every page of it is read: in a store with many coupons containing the code (JOANNA15 for
    /// ANNA), ours may be far down.
    async fn coupons_by_code(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        code: &str,
    ) -> Result<Vec<Coupon>, AdapterError> {
        let mut held = Vec::new();
        for page in 1..=MAX_SEARCH_PAGES {
            let reply = self
                .call(
                    integration,
                    api,
                    reqwest::Method::GET,
                    "/coupons",
                    &[
                        ("search", code.to_owned()),
                        ("status", "any".to_owned()),
                        ("per_page", MAX_PAGE.to_string()),
                        ("page", page.to_string()),
                    ],
                    None,
                )
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(STORE, "a coupon search"));
            }
            let coupons: Vec<Coupon> = reply.json(STORE)?;
            let last = coupons.len() < MAX_PAGE;
            held.extend(
                coupons
                    .into_iter()
                    .filter(|c| c.code.eq_ignore_ascii_case(code)),
            );
            if last {
                return Ok(held);
            }
        }
        Err(AdapterError::Unavailable(format!(
            "{STORE}: more than {} coupons match {code:?}; the search was not finished",
            MAX_SEARCH_PAGES * MAX_PAGE
        )))
    }

    async fn create_batch(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        discounts: &[&Discount],
    ) -> Result<Vec<PushOutcome>, AdapterError> {
        let bodies = discounts
            .iter()
            .map(|d| coupon_body(d).unwrap_or(Value::Null))
            .collect();
        self.batch(integration, api, "create", bodies, discounts)
            .await
    }

    /// Changes the coupons `edits` names (`(discount, coupon id)`) in one batch call.
    async fn update_batch(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        edits: &[(&Discount, u64)],
    ) -> Result<Vec<PushOutcome>, AdapterError> {
        let bodies = edits
            .iter()
            .map(|(d, id)| update_body(d, *id).unwrap_or(Value::Null))
            .collect();
        let discounts: Vec<&Discount> = edits.iter().map(|(d, _)| *d).collect();
        self.batch(integration, api, "update", bodies, &discounts)
            .await
    }

    /// One `POST /coupons/batch` call doing `action` (`create` or `update`) with `bodies`, one
    /// per discount, and what each answer item means for its discount.
    async fn batch(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        action: &str,
        bodies: Vec<Value>,
        discounts: &[&Discount],
    ) -> Result<Vec<PushOutcome>, AdapterError> {
        let body = json!({ action: bodies });
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::POST,
                "/coupons/batch",
                &[],
                Some(&body),
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a coupon batch"));
        }
        let answer: Value = reply.json(STORE)?;
        let items = answer[action].as_array().cloned().unwrap_or_default();
        if items.len() != discounts.len() {
            return Err(AdapterError::Unavailable(format!(
                "{STORE} answered {} results for {} coupons",
                items.len(),
                discounts.len()
            )));
        }
        let mut outcomes = Vec::with_capacity(discounts.len());
        for (discount, item) in discounts.iter().zip(items) {
            outcomes.push(self.item_outcome(integration, api, discount, &item).await?);
        }
        Ok(outcomes)
    }

    /// What one item of a batch answer (a coupon, or `{"id", "error"}`) means for `discount`. A
    /// code WooCommerce reports taken is ours when the coupon holding it carries our ref.
    async fn item_outcome(
        &self,
        integration: &IntegrationRow,
        api: &Api<'_>,
        discount: &Discount,
        item: &Value,
    ) -> Result<PushOutcome, AdapterError> {
        let error: Option<WcError> = item
            .get("error")
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        Ok(match (error, item["id"].as_u64()) {
            (None, Some(id)) if id > 0 => PushOutcome::Created {
                store_discount_id: id.to_string(),
            },
            (Some(error), _) if error.code == TAKEN => {
                let held = self
                    .coupons_by_code(integration, api, &discount.code)
                    .await?;
                match held.iter().find(|c| c.has_ref(&discount.external_ref)) {
                    Some(ours) => PushOutcome::Created {
                        store_discount_id: ours.id.to_string(),
                    },
                    None => PushOutcome::AlreadyExists {
                        message: format!("code {} already exists in the store", discount.code),
                    },
                }
            }
            (Some(error), _) => PushOutcome::Failed {
                message: format!(
                    "{STORE} refused code {}: {} ({})",
                    discount.code, error.message, error.code
                ),
                retryable: error.status() >= 500,
            },
            (None, _) => PushOutcome::Failed {
                message: format!("{STORE} did not confirm code {}", discount.code),
                retryable: true,
            },
        })
    }

    /// A REST v3 order, read as a webhook's body is (the same shape).
    fn order(&self, value: Value) -> Result<NormalizedOrder, String> {
        let body = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        crate::webhooks::woocommerce::parse_order(&body, &self.customer_key)
            .map_err(|e| e.to_string())
    }
}

/// The coupon as WooCommerce takes it; `Err` names what it cannot take.
fn coupon_body(discount: &Discount) -> Result<Value, String> {
    let terms = &discount.terms;
    let (discount_type, amount) = match &terms.value {
        Some(DiscountValue::PercentBps(bps)) => ("percent", percent_text(*bps)),
        Some(DiscountValue::Fixed(money)) => (
            "fixed_cart",
            format_amount(money.amount_minor, &money.currency),
        ),
        None => return Err("the discount has no value".to_owned()),
    };
    let products = numeric_ids(&terms.product_ids)
        .map_err(|id| format!("{id:?} is not a WooCommerce product id"))?;
    let categories = numeric_ids(&terms.category_ids)
        .map_err(|id| format!("{id:?} is not a WooCommerce category id"))?;
    Ok(json!({
        "code": discount.code,
        "discount_type": discount_type,
        "amount": amount,
        "description": discount.title,
        "usage_limit": (terms.usage_limit > 0).then_some(terms.usage_limit),
        "usage_limit_per_user": terms.once_per_customer.then_some(1),
        "minimum_amount": terms.minimum_purchase.as_ref()
            .map(|m| format_amount(m.amount_minor, &m.currency))
            .unwrap_or_default(),
        "product_ids": products,
        "product_categories": categories,
        // `date_expires` with its offset: WooCommerce takes the `_gmt` field of the schema
        // into no setter of the coupon, and ignores it.
        "date_expires": terms.ends_at
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "meta_data": [{ "key": REF_KEY, "value": discount.external_ref }],
    }))
}

/// The coupon `id` as an update makes it: `coupon_body`'s fields, with values instead of the
/// nulls the REST controller would skip, and published (a disabled coupon is a draft).
fn update_body(discount: &Discount, id: u64) -> Result<Value, String> {
    let mut body = coupon_body(discount)?;
    let terms = &discount.terms;
    body["id"] = json!(id);
    body["status"] = json!("publish");
    body["usage_limit"] = json!(terms.usage_limit.max(0));
    body["usage_limit_per_user"] = json!(i32::from(terms.once_per_customer));
    if terms.ends_at.is_none() {
        body["date_expires"] = json!("");
    }
    Ok(body)
}

#[tonic::async_trait]
impl StoreAdapter for WooCommerce {
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let api = Self::api(integration, &credentials)?;
        let mut outcomes: Vec<Option<PushOutcome>> = vec![None; discounts.len()];
        let mut sendable = Vec::new();
        for (i, discount) in discounts.iter().enumerate() {
            match coupon_body(discount) {
                Ok(_) => sendable.push(i),
                Err(message) => {
                    outcomes[i] = Some(PushOutcome::Failed {
                        message,
                        retryable: false,
                    })
                }
            }
        }
        for chunk in sendable.chunks(BATCH) {
            let batch: Vec<&Discount> = chunk.iter().map(|&i| &discounts[i]).collect();
            let answers = self.create_batch(integration, &api, &batch).await?;
            for (&i, outcome) in chunk.iter().zip(answers) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(discounts
            .iter()
            .zip(outcomes)
            .map(|(d, outcome)| PushResult {
                code: d.code.clone(),
                outcome: outcome.unwrap_or(PushOutcome::Failed {
                    message: format!("{STORE} did not confirm code {}", d.code),
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
        let api = Self::api(integration, &credentials)?;
        let mut outcomes: Vec<Option<PushOutcome>> = vec![None; updates.len()];
        let mut edits: Vec<(usize, u64)> = Vec::new();
        let mut creates: Vec<usize> = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            if let Err(message) = coupon_body(&update.discount) {
                outcomes[i] = Some(PushOutcome::Failed {
                    message,
                    retryable: false,
                });
                continue;
            }
            let held = self
                .coupons_by_code(integration, &api, &update.previous_code)
                .await?;
            match held
                .iter()
                .find(|c| c.has_ref(&update.discount.external_ref))
            {
                Some(ours) => edits.push((i, ours.id)),
                // Not ours, or gone (an earlier try renamed it): created as a push would be.
                None => creates.push(i),
            }
        }
        for chunk in edits.chunks(BATCH) {
            let batch: Vec<(&Discount, u64)> = chunk
                .iter()
                .map(|&(i, id)| (&updates[i].discount, id))
                .collect();
            let answers = self.update_batch(integration, &api, &batch).await?;
            for (&(i, _), outcome) in chunk.iter().zip(answers) {
                outcomes[i] = Some(outcome);
            }
        }
        for chunk in creates.chunks(BATCH) {
            let batch: Vec<&Discount> = chunk.iter().map(|&i| &updates[i].discount).collect();
            let answers = self.create_batch(integration, &api, &batch).await?;
            for (&i, outcome) in chunk.iter().zip(answers) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(updates
            .iter()
            .zip(outcomes)
            .map(|(u, outcome)| PushResult {
                code: u.discount.code.clone(),
                outcome: outcome.unwrap_or(PushOutcome::Failed {
                    message: format!("{STORE} did not confirm code {}", u.discount.code),
                    retryable: true,
                }),
            })
            .collect())
    }

    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[ToDisable],
    ) -> Result<Vec<DisableResult>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let api = Self::api(integration, &credentials)?;
        let mut outcomes = Vec::with_capacity(codes.len());
        let mut drafts: Vec<(usize, u64)> = Vec::new();
        for (i, target) in codes.iter().enumerate() {
            let code = target.code.as_str();
            let held = self.coupons_by_code(integration, &api, code).await?;
            let owned = |c: &&Coupon| target.owns(c.our_ref());
            outcomes.push(if held.is_empty() {
                DisableOutcome::NotFound {
                    message: format!("the store holds no code {code}"),
                }
            } else if !held.iter().any(|c| owned(&c)) {
                DisableOutcome::not_ours(code)
            } else {
                drafts.extend(
                    held.iter()
                        .filter(|c| owned(c) && c.status != "draft")
                        .map(|c| (i, c.id)),
                );
                DisableOutcome::Disabled
            });
        }
        for chunk in drafts.chunks(BATCH) {
            let body = json!({
                "update": chunk.iter().map(|(_, id)| json!({ "id": id, "status": "draft" })).collect::<Vec<_>>()
            });
            let reply = self
                .call(
                    integration,
                    &api,
                    reqwest::Method::POST,
                    "/coupons/batch",
                    &[],
                    Some(&body),
                )
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(STORE, "a coupon batch"));
            }
            let answer: Value = reply.json(STORE)?;
            let items = answer["update"].as_array().cloned().unwrap_or_default();
            for (n, &(i, _)) in chunk.iter().enumerate() {
                let error: Option<WcError> = items
                    .get(n)
                    .and_then(|item| item.get("error"))
                    .and_then(|e| serde_json::from_value(e.clone()).ok());
                if let Some(error) = error {
                    outcomes[i] = DisableOutcome::Failed {
                        message: format!(
                            "{STORE} did not set {} to draft: {}",
                            codes[i].code, error.message
                        ),
                        retryable: error.status() >= 500,
                    };
                }
            }
        }
        Ok(codes
            .iter()
            .zip(outcomes)
            .map(|(target, outcome)| DisableResult {
                code: target.code.clone(),
                outcome,
            })
            .collect())
    }

    /// `GET /data/currencies/current`: the store's currency, `code`.
    async fn shop_currency(
        &self,
        integration: &IntegrationRow,
    ) -> Result<Option<String>, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let api = Self::api(integration, &credentials)?;
        let reply = self
            .call(
                integration,
                &api,
                reqwest::Method::GET,
                "/data/currencies/current",
                &[],
                None,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "the store's currency"));
        }
        let current: Value = reply.json(STORE)?;
        Ok(current["code"].as_str().map(str::to_owned))
    }

    async fn fetch_order(
        &self,
        integration: &IntegrationRow,
        store_order_id: &str,
    ) -> Result<Option<NormalizedOrder>, AdapterError> {
        let id = store_order_id.trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let credentials = self.http.credentials(integration)?;
        let api = Self::api(integration, &credentials)?;
        let reply = self
            .call(
                integration,
                &api,
                reqwest::Method::GET,
                &format!("/orders/{id}"),
                &[],
                None,
            )
            .await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "an order fetch"));
        }
        Ok(super::readable(
            integration,
            &id,
            self.order(reply.json(STORE)?),
        ))
    }

    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let api = Self::api(integration, &credentials)?;
        // Two at least: a walk's pages must overlap.
        let per_page = limit.clamp(2, MAX_PAGE);
        let mut listed = Listed::new(limit);
        let mut key = ChangeKey::new(since);
        // The walk of the second `from` by id, when more orders changed in it than `exclude`
        // can name in a URL.
        let mut walking: Option<Walk> = None;
        loop {
            // `modified_after` and `modified_before` are strict (WordPress's date query): a
            // second earlier lists the orders changed at `from` too, as the listing promises;
            // those listed already are left out by id.
            let after = key.from - chrono::Duration::seconds(1);
            let mut query = vec![
                (
                    "modified_after",
                    after.to_rfc3339_opts(SecondsFormat::Secs, true),
                ),
                ("dates_are_gmt", "true".to_owned()),
                ("order", "asc".to_owned()),
                ("per_page", per_page.to_string()),
            ];
            match walking {
                None => {
                    query.push(("orderby", "modified".to_owned()));
                    if !key.ids.is_empty() {
                        query.push(("exclude", key.ids.join(",")));
                    }
                }
                Some(walk) => {
                    let before = key.from + chrono::Duration::seconds(1);
                    query.extend([
                        (
                            "modified_before",
                            before.to_rfc3339_opts(SecondsFormat::Secs, true),
                        ),
                        ("orderby", "id".to_owned()),
                        ("offset", walk.offset.to_string()),
                    ]);
                }
            }
            let reply = self
                .call(
                    integration,
                    &api,
                    reqwest::Method::GET,
                    "/orders",
                    &query,
                    None,
                )
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(STORE, "an order list"));
            }
            let values: Vec<Value> = reply.json(STORE)?;
            let full_page = values.len() == per_page;
            let ids: Vec<u64> = values.iter().filter_map(|v| v["id"].as_u64()).collect();
            let mut fresh = 0;
            for value in values {
                if listed.full(limit) {
                    break;
                }
                let id = value["id"].clone();
                let changed = changed_at(&value, "date_modified_gmt");
                if key.take(&id, changed) {
                    fresh += 1;
                    listed.take(integration, &id, self.order(value), changed);
                }
            }
            if listed.full(limit) {
                return Ok(listed.finish(limit));
            }
            walking = match (walking, full_page) {
                (None, false) => return Ok(listed.finish(limit)),
                // Nothing new on a full page: the store did not leave out what it was asked to.
                (None, true) if fresh == 0 => {
                    return Err(AdapterError::Unavailable(format!(
                        "{STORE} listed the same orders again despite `exclude`"
                    )));
                }
                (None, true) if key.ids.len() > MAX_EXCLUDE => Some(Walk::default()),
                (None, true) => None,
                (Some(walk), true) => Some(walk.next(&ids, per_page)?),
                (Some(walk), false) => match walk.ended(&ids)? {
                    Some(again) => Some(again),
                    None => {
                        key.past_second();
                        None
                    }
                },
            };
        }
    }
}

/// A walk of one second's orders by id, in pages by offset that overlap by [`Walk::OVERLAP`]:
/// an order of that second changed during the walk leaves it, and the orders after it move
/// back one place, so a page starting at an order already read shows nothing was skipped. One
/// starting past it (more orders left than the overlap) starts the walk over.
#[derive(Clone, Copy, Debug, Default)]
struct Walk {
    offset: usize,
    /// The highest id read.
    last_id: u64,
    restarts: u32,
}

impl Walk {
    const OVERLAP: usize = 20;
    const RESTARTS: u32 = 5;

    /// The walk after a full page of `ids`.
    fn next(self, ids: &[u64], per_page: usize) -> Result<Walk, AdapterError> {
        let last = ids.iter().copied().max().unwrap_or_default();
        if self.skipped(ids) {
            return self.again();
        }
        if self.offset > 0 && last <= self.last_id {
            return Err(AdapterError::Unavailable(format!(
                "{STORE} listed the same orders again despite `offset`"
            )));
        }
        // At least one order of overlap (pages hold two at least).
        let step = per_page
            .saturating_sub(Self::OVERLAP)
            .max(per_page / 2)
            .clamp(1, per_page.saturating_sub(1).max(1));
        Ok(Walk {
            offset: self.offset + step,
            last_id: last.max(self.last_id),
            restarts: self.restarts,
        })
    }

    /// After the last, short page of `ids`: the walk over (`None`), or started again when
    /// orders left the second since the page before (the page starts past the orders read, or
    /// is empty).
    fn ended(self, ids: &[u64]) -> Result<Option<Walk>, AdapterError> {
        if self.skipped(ids) {
            return self.again().map(Some);
        }
        Ok(None)
    }

    /// Whether a page after the first starts past the orders read: orders left the second
    /// before it, more than the overlap, and some were skipped.
    fn skipped(self, ids: &[u64]) -> bool {
        self.offset > 0 && ids.first().is_none_or(|first| *first > self.last_id)
    }

    /// The walk from its start again, a bounded number of times.
    fn again(self) -> Result<Walk, AdapterError> {
        if self.restarts >= Self::RESTARTS {
            return Err(AdapterError::Unavailable(format!(
                "{STORE}'s orders of one second kept changing while they were listed"
            )));
        }
        Ok(Walk {
            restarts: self.restarts + 1,
            ..Walk::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::orders::OrderStatus;
    use crate::webhooks::customer_hash;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::adapters::mock::{self, MockStore, Recorded};
    use crate::adapters::{test_discount, test_update};
    use crate::domain::discount::Money;

    fn setup(store: &MockStore) -> (WooCommerce, IntegrationRow) {
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::Woocommerce,
            &store.origin,
            &[("consumer_key", "ck_test"), ("consumer_secret", "cs_test")],
        );
        let http = StoreHttp::new(mock::fast_http(), sealer).unwrap_or_else(|e| panic!("{e}"));
        (
            WooCommerce::new(http, Arc::from(mock::CUSTOMER_KEY)),
            integration,
        )
    }

    fn coupon(id: u64, code: &str, external_ref: &str, status: &str) -> Value {
        json!({
            "id": id, "code": code.to_ascii_lowercase(), "amount": "20.00", "status": status,
            "discount_type": "percent", "description": "", "date_expires": null,
            "usage_count": 0, "individual_use": false, "product_ids": [], "usage_limit": null,
            "meta_data": [{ "id": 9, "key": REF_KEY, "value": external_ref }],
        })
    }

    fn taken_item() -> Value {
        json!({ "id": 0, "error": { "code": TAKEN, "message": "The coupon code already exists", "data": { "status": 400 } } })
    }

    #[tokio::test]
    async fn creates_coupons_in_one_batch() {
        let store = MockStore::start(|request| {
            let items = request.json()["create"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let created: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    coupon(
                        100 + i as u64,
                        c["code"].as_str().unwrap_or_default(),
                        "r",
                        "publish",
                    )
                })
                .collect();
            mock::Reply::json(200, json!({ "create": created }))
        })
        .await;
        let (woo, integration) = setup(&store);
        let mut fixed = test_discount("FIVE", "code-2");
        fixed.terms.value = Some(DiscountValue::Fixed(Money {
            amount_minor: 550,
            currency: "EUR".to_owned(),
        }));
        fixed.terms.usage_limit = 10;
        fixed.terms.once_per_customer = true;
        fixed.terms.product_ids = vec!["15".to_owned()];
        fixed.terms.category_ids = vec!["9".to_owned()];
        fixed.terms.ends_at = DateTime::from_timestamp(1_900_000_000, 0);
        let mut bad = test_discount("BAD", "code-3");
        bad.terms.product_ids = vec!["sku-1".to_owned()];
        let results = woo
            .create_discounts(
                &integration,
                &[test_discount("MIA20", "code-1"), bad, fixed],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "100".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            results[2].outcome,
            PushOutcome::Created {
                store_discount_id: "101".to_owned()
            }
        );
        let requests = store.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].route(), "POST /wp-json/wc/v3/coupons/batch");
        assert_eq!(
            requests[0].header("authorization"),
            Some("Basic Y2tfdGVzdDpjc190ZXN0")
        );
        let body = requests[0].json();
        let percent = &body["create"][0];
        assert_eq!(percent["discount_type"], "percent");
        assert_eq!(percent["amount"], "20");
        assert_eq!(percent["usage_limit"], Value::Null);
        assert_eq!(percent["meta_data"][0]["value"], "code-1");
        let fixed = &body["create"][1];
        assert_eq!(fixed["discount_type"], "fixed_cart");
        assert_eq!(fixed["amount"], "5.50");
        assert_eq!(fixed["usage_limit"], 10);
        assert_eq!(fixed["usage_limit_per_user"], 1);
        assert_eq!(fixed["product_ids"], json!([15]));
        assert_eq!(fixed["product_categories"], json!([9]));
        assert_eq!(fixed["date_expires"], "2030-03-17T17:46:40Z");
    }

    /// Between the gateway and the store, a fault-injecting proxy: a stalled store makes the
    /// push unavailable within the adapter's timeouts; latency only slows it; once the fault
    /// ends the next push goes through.
    #[tokio::test]
    async fn store_faults_through_a_proxy() {
        let store = MockStore::start(|request| {
            let items = request.json()["create"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let created: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    coupon(
                        100 + i as u64,
                        c["code"].as_str().unwrap_or_default(),
                        "r",
                        "publish",
                    )
                })
                .collect();
            mock::Reply::json(200, json!({ "create": created }))
        })
        .await;
        let upstream: std::net::SocketAddr = store
            .origin
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let proxy = tracking_testkit::proxy::FaultProxy::start(upstream)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::Woocommerce,
            &format!("http://{}", proxy.addr),
            &[("consumer_key", "ck_test"), ("consumer_secret", "cs_test")],
        );
        let woo = WooCommerce::new(
            StoreHttp::new(mock::fast_http(), sealer).unwrap_or_else(|e| panic!("{e}")),
            Arc::from(mock::CUSTOMER_KEY),
        );
        let push = |code: &'static str| {
            let woo = woo.clone();
            let integration = integration.clone();
            async move {
                woo.create_discounts(&integration, &[test_discount(code, code)])
                    .await
            }
        };

        proxy.set(tracking_testkit::proxy::Fault::Stall);
        let started = Instant::now();
        let stalled = push("STALL1").await;
        assert!(
            matches!(stalled, Err(AdapterError::Unavailable(_))),
            "{stalled:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        proxy.set(tracking_testkit::proxy::Fault::Latency(
            Duration::from_millis(100),
        ));
        let slow = push("SLOW1").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(slow[0].outcome, PushOutcome::Created { .. }),
            "{slow:?}"
        );

        proxy.set(tracking_testkit::proxy::Fault::None);
        proxy.cut_all();
        let back = push("BACK1").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(back[0].outcome, PushOutcome::Created { .. }),
            "{back:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_code_is_someone_elses_unless_it_carries_our_ref() {
        let store = MockStore::start(|request| match request.route().as_str() {
            "POST /wp-json/wc/v3/coupons/batch" => {
                mock::Reply::json(200, json!({ "create": [taken_item(), taken_item()] }))
            }
            _ => match request.param("search") {
                Some("MINE") => {
                    mock::Reply::json(200, json!([coupon(7, "mine", "code-1", "publish")]))
                }
                _ => mock::Reply::json(200, json!([coupon(8, "theirs", "other", "publish")])),
            },
        })
        .await;
        let (woo, integration) = setup(&store);
        let results = woo
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
                store_discount_id: "7".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::AlreadyExists { .. }
        ));
    }

    #[tokio::test]
    async fn a_code_far_down_a_coupon_search_is_found() {
        // WordPress searches within titles, newest first: 150 newer coupons containing "anna"
        // come before the suite's ANNA.
        let store = MockStore::start(|request| match request.route().as_str() {
            "POST /wp-json/wc/v3/coupons/batch" => {
                let updates = request.json()["update"].clone();
                mock::Reply::json(200, json!({ "update": updates }))
            }
            _ => {
                let page: usize = request
                    .param("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(1);
                let hits: Vec<Value> = (0..150)
                    .map(|i| coupon(1000 + i, &format!("joanna{i}"), "", "publish"))
                    .chain([coupon(7, "anna", "r", "publish")])
                    .skip((page - 1) * MAX_PAGE)
                    .take(MAX_PAGE)
                    .collect();
                mock::Reply::json(200, json!(hits))
            }
        })
        .await;
        let (woo, integration) = setup(&store);
        let results = woo
            .disable_discounts(&integration, &[ToDisable::any("ANNA")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        let searches = store.requests_to("GET /wp-json/wc/v3/coupons");
        assert_eq!(searches.len(), 2, "two pages, the second short");
        let updates = store.requests_to("POST /wp-json/wc/v3/coupons/batch");
        assert_eq!(
            updates[0].json()["update"],
            json!([{ "id": 7, "status": "draft" }])
        );
    }

    #[tokio::test]
    async fn a_store_that_ignores_the_search_page_fails_the_lookup() {
        let store = MockStore::start(|_| {
            let hits: Vec<Value> = (0..MAX_PAGE as u64)
                .map(|i| coupon(1000 + i, &format!("joanna{i}"), "", "publish"))
                .collect();
            mock::Reply::json(200, json!(hits))
        })
        .await;
        let (woo, integration) = setup(&store);
        let result = woo
            .disable_discounts(&integration, &[ToDisable::any("ANNA")])
            .await;
        assert!(
            matches!(result, Err(AdapterError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(
            store.requests_to("GET /wp-json/wc/v3/coupons").len(),
            MAX_SEARCH_PAGES
        );
    }

    #[tokio::test]
    async fn disables_as_drafts() {
        let store = MockStore::start(|request| match request.route().as_str() {
            "POST /wp-json/wc/v3/coupons/batch" => {
                let updates = request.json()["update"].clone();
                mock::Reply::json(200, json!({ "update": updates }))
            }
            _ => match request.param("search") {
                Some("MIA20") => {
                    mock::Reply::json(200, json!([coupon(7, "mia20", "r", "publish")]))
                }
                Some("OLD") => mock::Reply::json(200, json!([coupon(8, "old", "r", "draft")])),
                // The brand's own coupon: no ref of the suite's.
                Some("BRANDS") => {
                    let mut theirs = coupon(9, "brands", "", "publish");
                    theirs["meta_data"] = json!([]);
                    mock::Reply::json(200, json!([theirs]))
                }
                _ => mock::Reply::json(200, json!([])),
            },
        })
        .await;
        let (woo, integration) = setup(&store);
        let codes = ["MIA20", "OLD", "GONE", "BRANDS"].map(ToDisable::any);
        let results = woo
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
        let updates = store.requests_to("POST /wp-json/wc/v3/coupons/batch");
        assert_eq!(updates.len(), 1);
        assert_eq!(
            updates[0].json()["update"],
            json!([{ "id": 7, "status": "draft" }]),
            "the brand's own coupon is left alone"
        );
    }

    #[tokio::test]
    async fn rate_limits_are_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let store = MockStore::start(move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                mock::Reply::json(
                    429,
                    json!({ "code": "too_many_requests", "message": "Too many requests" }),
                )
                .header("Retry-After", "0")
            } else {
                mock::Reply::json(
                    200,
                    json!({ "create": [coupon(5, "mia20", "code-1", "publish")] }),
                )
            }
        })
        .await;
        let (woo, integration) = setup(&store);
        let results = woo
            .create_discounts(&integration, &[test_discount("MIA20", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_slow_or_failing_store_is_unavailable() {
        let store = MockStore::start(|_| {
            mock::Reply::json(200, json!({ "create": [] })).after(mock::SLOWER_THAN_TIMEOUT)
        })
        .await;
        let (woo, integration) = setup(&store);
        mock::assert_unavailable_promptly(
            woo.create_discounts(&integration, &[test_discount("MIA20", "code-1")]),
        )
        .await;
        mock::assert_unavailable_promptly(
            woo.update_discounts(&integration, &[test_update("MIA20", "MIA25", "code-1")]),
        )
        .await;

        let down = MockStore::start(|_| mock::Reply::json(503, json!({}))).await;
        let (woo, integration) = setup(&down);
        let result = woo.fetch_order(&integration, "1").await;
        assert!(matches!(result, Err(AdapterError::Unavailable(_))));
        assert_eq!(down.requests().len(), 3, "every attempt was made");
    }

    /// A store holding `mia20` (coupon 7) and `old` (coupon 8) under `code-1`, `brands` (9) under
    /// another ref, and `theirs` (10) under another ref; it applies batch updates and creates
    /// (coupon 100), refusing `THEIRS` as taken.
    fn coupons_api(request: &Recorded) -> mock::Reply {
        if request.route() == "POST /wp-json/wc/v3/coupons/batch" {
            let body = request.json();
            let answer = |items: &Value, id: Option<u64>| -> Vec<Value> {
                items
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| match c["code"].as_str() {
                        Some("THEIRS") => taken_item(),
                        code => coupon(
                            id.or(c["id"].as_u64()).unwrap_or_default(),
                            code.unwrap_or_default(),
                            "code-1",
                            c["status"].as_str().unwrap_or("publish"),
                        ),
                    })
                    .collect()
            };
            return mock::Reply::json(
                200,
                json!({ "update": answer(&body["update"], None), "create": answer(&body["create"], Some(100)) }),
            );
        }
        let held = match request.param("search") {
            Some("mia20") => vec![coupon(7, "mia20", "code-1", "draft")],
            Some("OLD") => vec![coupon(8, "old", "code-1", "publish")],
            Some("BRANDS") => vec![coupon(9, "brands", "brand-sale", "publish")],
            Some("THEIRS") => vec![coupon(10, "theirs", "other", "publish")],
            _ => Vec::new(),
        };
        mock::Reply::json(200, json!(held))
    }

    #[tokio::test]
    async fn updates_a_coupon_in_place_clearing_with_values() {
        let store = MockStore::start(coupons_api).await;
        let (woo, integration) = setup(&store);
        let mut update = test_update("mia20", "MIA25", "code-1");
        update.discount.terms.value = Some(DiscountValue::Fixed(Money {
            amount_minor: 550,
            currency: "EUR".to_owned(),
        }));
        update.discount.terms.category_ids = vec!["9".to_owned()];
        let results = woo
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].code, "MIA25");
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "7".to_owned()
            }
        );
        let lookup = &store.requests_to("GET /wp-json/wc/v3/coupons")[0];
        assert_eq!(lookup.param("search"), Some("mia20"));
        assert_eq!(lookup.param("status"), Some("any"));
        let batches = store.requests_to("POST /wp-json/wc/v3/coupons/batch");
        assert_eq!(batches.len(), 1);
        let body = batches[0].json();
        assert!(body.get("create").is_none(), "{body}");
        let coupon = &body["update"][0];
        assert_eq!(coupon["id"], 7);
        assert_eq!(coupon["code"], "MIA25");
        assert_eq!(coupon["status"], "publish");
        assert_eq!(coupon["discount_type"], "fixed_cart");
        assert_eq!(coupon["amount"], "5.50");
        assert_eq!(coupon["product_categories"], json!([9]));
        assert_eq!(coupon["product_ids"], json!([]));
        assert_eq!(coupon["usage_limit"], 0);
        assert_eq!(coupon["usage_limit_per_user"], 0);
        assert_eq!(coupon["minimum_amount"], "");
        assert_eq!(coupon["date_expires"], "");
        assert_eq!(coupon["meta_data"][0]["value"], "code-1");
    }

    #[tokio::test]
    async fn an_update_to_a_taken_code_is_already_exists_and_a_missing_code_is_created() {
        let store = MockStore::start(coupons_api).await;
        let (woo, integration) = setup(&store);
        let results = woo
            .update_discounts(
                &integration,
                &[
                    test_update("OLD", "THEIRS", "code-1"),
                    test_update("GONE", "NEW1", "code-1"),
                    test_update("BRANDS", "NEW2", "code-1"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(results[0].outcome, PushOutcome::AlreadyExists { .. }),
            "{results:?}"
        );
        for result in &results[1..] {
            assert_eq!(
                result.outcome,
                PushOutcome::Created {
                    store_discount_id: "100".to_owned()
                }
            );
        }
        let batches = store.requests_to("POST /wp-json/wc/v3/coupons/batch");
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[0].json()["update"]
                .as_array()
                .map(|items| items.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()),
            Some(vec![json!(8)]),
            "only our own coupon is changed"
        );
        assert_eq!(
            batches[1].json()["create"]
                .as_array()
                .map(|items| items.iter().map(|c| c["code"].clone()).collect::<Vec<_>>()),
            Some(vec![json!("NEW1"), json!("NEW2")])
        );
    }

    #[tokio::test]
    async fn rate_limited_updates_are_retried() {
        let store = MockStore::start(|request| {
            if request.seq == 0 {
                mock::Reply::json(
                    429,
                    json!({ "code": "too_many_requests", "message": "Too many requests" }),
                )
                .header("Retry-After", "0")
            } else {
                coupons_api(request)
            }
        })
        .await;
        let (woo, integration) = setup(&store);
        let results = woo
            .update_discounts(&integration, &[test_update("mia20", "MIA25", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(store.requests().len(), 3);
    }

    fn order_json(id: u64, status: &str) -> Value {
        json!({
            "id": id, "parent_id": 0, "status": status, "currency": "EUR",
            "date_created": "2025-03-01T10:15:00", "date_created_gmt": "2025-03-01T09:15:00",
            "date_modified_gmt": "2025-03-02T08:00:00",
            "discount_total": "9.00", "discount_tax": "0.00", "shipping_total": "4.90",
            "total": "40.90", "total_tax": "0.00",
            "billing": { "first_name": "Ana", "email": "Ana@Example.com", "country": "ES" },
            "shipping": { "first_name": "Ana", "country": "PT" },
            "line_items": [
                { "id": 1, "name": "Mug", "product_id": 93, "variation_id": 0, "quantity": 3,
                  "subtotal": "30.00", "total": "24.00", "price": 8 },
                { "id": 2, "name": "Tee", "product_id": 22, "variation_id": 23, "quantity": 1,
                  "subtotal": "15.00", "total": "12.00", "price": 12 }
            ],
            "coupon_lines": [{ "id": 5, "code": "mia20", "discount": "9.00", "discount_tax": "0.00" }],
            "refunds": [{ "id": 8, "reason": "", "total": "-12.00" }],
            "meta_data": [{ "id": 3, "key": "click_id", "value": "clk_123" }],
        })
    }

    #[tokio::test]
    async fn maps_orders() {
        let store = MockStore::start(|request| match request.path.as_str() {
            "/wp-json/wc/v3/orders/727" => {
                mock::Reply::json(200, order_json(727, "completed"))
            }
            "/wp-json/wc/v3/orders" => mock::Reply::json(
                200,
                json!([order_json(727, "completed"), order_json(728, "cancelled")]),
            ),
            _ => mock::Reply::json(
                404,
                json!({ "code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.", "data": { "status": 404 } }),
            ),
        })
        .await;
        let (woo, integration) = setup(&store);
        let order = woo
            .fetch_order(&integration, "727")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the order exists"));
        assert_eq!(order.store_order_id, "727");
        assert_eq!(order.status, OrderStatus::PartiallyRefunded);
        assert_eq!(order.codes, vec!["mia20"]);
        assert_eq!(order.currency, "EUR");
        assert_eq!(
            (
                order.subtotal_minor,
                order.discount_minor,
                order.total_minor,
                order.refunded_minor
            ),
            (4500, 900, 4090, 1200)
        );
        assert_eq!(order.country.as_deref(), Some("PT"));
        assert_eq!(
            order.customer_hash,
            customer_hash(mock::CUSTOMER_KEY, "ana@example.com")
        );
        assert_eq!(order.click_id.as_deref(), Some("clk_123"));
        assert_eq!(order.occurred_at.to_rfc3339(), "2025-03-01T09:15:00+00:00");
        assert_eq!(
            order.updated_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-03-02T08:00:00+00:00"),
            "date_modified_gmt"
        );
        assert_eq!(
            (
                order.lines[0].amount_minor,
                order.lines[0].discount_minor,
                order.lines[0].quantity
            ),
            (3000, 600, 3)
        );
        assert_eq!(order.lines[0].codes, vec!["mia20"]);
        assert_eq!(woo.fetch_order(&integration, "1").await.ok(), Some(None));

        let since = DateTime::from_timestamp(1_740_000_000, 0).unwrap_or_default();
        let listed = woo
            .list_orders(&integration, since, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.orders.len(), 2);
        assert_eq!(listed.orders[1].status, OrderStatus::Cancelled);
        assert_eq!(listed.resume_from, None, "the whole list");
        let request = &store.requests_to("GET /wp-json/wc/v3/orders")[0];
        assert_eq!(
            request.param("modified_after"),
            Some("2025-02-19T21:19:59Z")
        );
        assert_eq!(request.param("orderby"), Some("modified"));
        assert_eq!(request.param("order"), Some("asc"));
        assert_eq!(request.param("per_page"), Some("10"));
    }

    /// A WooCommerce holding orders `changes` (their change second and id), listing them as
    /// `GET /orders` does (`modified_after` and `modified_before` strict, `exclude`, `orderby`
    /// modified or id, pages by number or offset), where order `moving` changes again once a
    /// page showing it was read (`on_walk`: a page of a walk by id).
    async fn changing_store(changes: Vec<(i64, u64)>, moving: u64, on_walk: bool) -> MockStore {
        let held = Arc::new(std::sync::Mutex::new(changes));
        let at = |second: i64| DateTime::from_timestamp(second, 0).unwrap_or_default();
        MockStore::start(move |request| {
            let param = |name: &str| request.param(name).unwrap_or_default().to_owned();
            let after = DateTime::parse_from_rfc3339(&param("modified_after"))
                .map(|t| t.timestamp())
                .unwrap_or_default();
            let before = DateTime::parse_from_rfc3339(&param("modified_before"))
                .map(|t| t.timestamp())
                .unwrap_or(i64::MAX);
            let excluded: Vec<u64> = param("exclude")
                .split(',')
                .filter_map(|id| id.parse().ok())
                .collect();
            let size: usize = param("per_page").parse().unwrap_or(10);
            let page: usize = param("page").parse().unwrap_or(1);
            let offset: usize = param("offset").parse().unwrap_or((page - 1) * size);
            let walk = param("orderby") == "id";
            let mut changes = held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut matching: Vec<(i64, u64)> = changes
                .iter()
                .filter(|(second, id)| {
                    *second > after && *second < before && !excluded.contains(id)
                })
                .copied()
                .collect();
            if param("orderby") == "id" {
                matching.sort_by_key(|(_, id)| *id);
            } else {
                matching.sort();
            }
            let rows: Vec<(i64, u64)> = matching.into_iter().skip(offset).take(size).collect();
            if rows.iter().any(|(_, id)| *id == moving)
                && (walk || !on_walk)
                && let Some(change) = changes.iter_mut().find(|(_, id)| *id == moving)
            {
                change.0 += 86_400;
            }
            let orders: Vec<Value> = rows
                .iter()
                .map(|(second, id)| {
                    let mut order = order_json(*id, "processing");
                    order["date_modified_gmt"] =
                        json!(at(*second).format("%Y-%m-%dT%H:%M:%S").to_string());
                    order
                })
                .collect();
            mock::Reply::json(200, json!(orders))
        })
        .await
    }

    #[tokio::test]
    async fn an_order_changed_during_a_listing_shifts_no_other_out_of_it() {
        let start = 1_743_500_000;
        // 250 orders changed a second apart, then 250 changed in one second (more than a
        // page); an order on the first page, then one on the second, changes once its page is
        // read.
        // Left out by id as listed at its first change, the second order's later change is the
        // next poll's (which starts from before it); but more orders in one second than a
        // request leaves out by id are walked by id, and the listing then goes on past that
        // second, to the order's change. A poll starting within the orders' second (its start
        // has a fraction) reads them as that second's. An order of that second that changes
        // while the second is walked moves the others back a place: the walk's pages overlap.
        let count = |scenario: &str| -> usize {
            if scenario.starts_with("more") {
                450
            } else {
                250
            }
        };
        for (scenario, moving, listed_twice, since, on_walk) in [
            ("a second apart", 1_004, true, start - 60, false),
            ("in one second", 1_150, false, start - 60, false),
            (
                "more than exclude takes in one second",
                1_150,
                true,
                start - 60,
                false,
            ),
            (
                "more than exclude takes in one second, one changing during the walk",
                1_050,
                true,
                start - 60,
                true,
            ),
            ("in the poll's first second", 1_150, false, start, false),
        ] {
            let changes: Vec<(i64, u64)> = (0..count(scenario) as u64)
                .map(|n| {
                    let second = if scenario == "a second apart" {
                        n as i64
                    } else {
                        0
                    };
                    (start + second, 1_000 + n)
                })
                .collect();
            let store = changing_store(changes, moving, on_walk).await;
            let (woo, integration) = setup(&store);
            let since = DateTime::from_timestamp(since, 500_000_000).unwrap_or_default();
            let listed = woo
                .list_orders(&integration, since, 1_000)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            mock::assert_listed(&listed, count(scenario), moving, listed_twice, scenario);
            let most_left_out = store
                .requests_to("GET /wp-json/wc/v3/orders")
                .iter()
                .map(|r| r.param("exclude").map_or(0, |ids| ids.split(',').count()))
                .max();
            assert!(most_left_out <= Some(MAX_EXCLUDE), "{scenario}");
        }
    }

    #[test]
    fn a_walk_starts_over_when_a_page_starts_past_the_orders_read() {
        let read = Walk {
            offset: 80,
            last_id: 1_099,
            restarts: 0,
        };
        // The last, short page overlaps what was read: the walk is over.
        assert!(matches!(read.ended(&[1_085, 1_100, 1_101]), Ok(None)));
        // It starts past it, or is empty: orders left the second and some were skipped.
        for ids in [&[1_125u64, 1_126][..], &[][..]] {
            let again = read.ended(ids).ok().flatten();
            assert!(
                again.is_some_and(|w| w.offset == 0 && w.restarts == 1),
                "{ids:?}: {again:?}"
            );
        }
        // A full page the same way.
        assert!(matches!(read.next(&[1_125, 1_126], 2), Ok(w) if w.offset == 0));
        // Bounded: a second that keeps changing fails the listing.
        let tired = Walk {
            restarts: Walk::RESTARTS,
            ..read
        };
        assert!(matches!(
            tired.ended(&[]),
            Err(AdapterError::Unavailable(_))
        ));
        // Pages of two overlap by one.
        assert!(matches!(Walk::default().next(&[1, 2], 2), Ok(w) if w.offset == 1));
        assert!(matches!(Walk::default().next(&[1; 100], 100), Ok(w) if w.offset == 80));
    }

    #[tokio::test]
    async fn a_store_that_ignores_exclude_fails_the_listing_instead_of_repeating_it() {
        // Every full page the same, whatever it is asked to leave out.
        let store = MockStore::start(|request| {
            let size: u64 = request
                .param("per_page")
                .unwrap_or("10")
                .parse()
                .unwrap_or(10);
            let orders: Vec<Value> = (1..=size).map(|id| order_json(id, "processing")).collect();
            mock::Reply::json(200, json!(orders))
        })
        .await;
        let (woo, integration) = setup(&store);
        let since = DateTime::from_timestamp(1_740_000_000, 0).unwrap_or_default();
        let listed = woo.list_orders(&integration, since, 10).await;
        assert!(matches!(listed, Ok(ref l) if l.orders.len() == 10));
        let listed = woo.list_orders(&integration, since, 1_000).await;
        assert!(
            matches!(listed, Err(AdapterError::Unavailable(_))),
            "{:?}",
            listed.map(|l| l.orders.len())
        );
    }

    #[tokio::test]
    async fn the_stores_currency_is_the_current_one() {
        let store = MockStore::start(|request| match request.route().as_str() {
            "GET /wp-json/wc/v3/data/currencies/current" => mock::Reply::json(
                200,
                json!({ "code": "EUR", "name": "Euro", "symbol": "&euro;",
                    "_links": { "self": [{ "href": "https://shop.example/wp-json/wc/v3/data/currencies/eur" }] } }),
            ),
            _ => mock::Reply::json(404, json!({ "code": "rest_no_route", "message": "No route was found matching the URL and request method.", "data": { "status": 404 } })),
        })
        .await;
        let (woo, integration) = setup(&store);
        assert_eq!(
            woo.shop_currency(&integration).await.ok(),
            Some(Some("EUR".to_owned()))
        );
    }
}
