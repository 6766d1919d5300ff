//! BigCommerce: coupon promotions through the v3 Promotions API, orders through the v2 Orders API,
//! at `https://api.bigcommerce.com/stores/{store_hash}` with the header `X-Auth-Token`.
//!
//! - Codes: one promotion per code (`redemption_type: COUPON`, a `cart_value` action, or
//!   `cart_items` restricted to products/categories), named with the discount's title and the
//!   push's external ref, then `POST /v3/promotions/{id}/codes` with the code (50 characters at
//!   most), `max_uses` and `max_uses_per_customer`. A code create refused with 409 or 422 (the
//!   reference documents no body for a taken code) is looked up with `GET /v3/promotions?code=`:
//!   no holder means the refusal was about something else (`Failed`); a promotion named with our
//!   ref is our earlier push (`Created`, the promotion id); any other is `AlreadyExists`, and the
//!   promotion just made for it is deleted again.
//! - Updating finds our promotion (named with the update's ref) holding the previous code, or the
//!   new one when an earlier try got that far, and follows the v3 Promotions reference
//!   (`promotions.v3.yml`): coupon codes cannot be edited, so a new code text or new limits is a
//!   new code under the same promotion (`POST /v3/promotions/{id}/codes`; taken elsewhere is
//!   `AlreadyExists` with nothing changed) and the old code goes
//!   (`DELETE /v3/promotions/{id}/codes/{code_id}`; a recreated code's use count starts again);
//!   then `PUT /v3/promotions/{id}` (`PatchCouponPromotion`) sets the name, rules and dates
//!   (`end_date: null` never expires, `currency_code: "*"` for a percentage) and enables it.
//! - Disabling sets the code's promotion to `status: DISABLED`.
//! - Orders: `GET /v2/orders/{id}` with its `products` and `coupons` subresources, and
//!   `GET /v2/orders?min_date_modified=…&sort=date_modified:asc`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Reply, StoreHttp, origin};
use super::mapping::{has_marker, json_amount, marked_title, marker_of, numeric_ids, percent_text};
use super::{AdapterError, ChangeKey, Listed, StoreAdapter, changed_at, each};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, DiscountValue, PushOutcome,
    PushResult, ToDisable,
};
use crate::domain::orders::{NormalizedOrder, OrderLine, OrderStatus, format_amount};
use crate::store::IntegrationRow;
use crate::webhooks::customer_hash;

const STORE: &str = "BigCommerce";
/// Rows of a v2 order sub-resource asked for a page (BigCommerce's most).
const V2_PAGE: usize = 250;
/// Pages of one order's sub-resource read before giving up (a store that ignores `page`).
const V2_MAX_PAGES: usize = 40;
const MAX_NAME: usize = 255;
const MAX_PAGE: usize = 250;

/// The BigCommerce adapter.
#[derive(Clone, Debug)]
pub struct BigCommerce {
    http: StoreHttp,
    customer_key: Arc<[u8]>,
}

struct Api {
    base: String,
    token: String,
}

#[derive(Deserialize)]
struct Promotion {
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
}

/// A coupon code of a promotion (`CouponCode`); limits of 0 are unlimited.
#[derive(Deserialize)]
struct PromotionCode {
    id: u64,
    #[serde(default)]
    code: String,
    #[serde(default)]
    max_uses: Option<i64>,
    #[serde(default)]
    max_uses_per_customer: Option<i64>,
}

impl PromotionCode {
    /// Whether this code is `body` (the code and limits `code_body` makes).
    fn matches(&self, body: &Value) -> bool {
        self.code
            .eq_ignore_ascii_case(body["code"].as_str().unwrap_or_default())
            && self.max_uses.unwrap_or(0) == body["max_uses"].as_i64().unwrap_or(0)
            && self.max_uses_per_customer.unwrap_or(0)
                == body["max_uses_per_customer"].as_i64().unwrap_or(0)
    }
}

impl BigCommerce {
    pub fn new(http: StoreHttp, customer_key: Arc<[u8]>) -> Self {
        Self { http, customer_key }
    }

    fn api(&self, integration: &IntegrationRow) -> Result<Api, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let hash = credentials.get("store_hash")?;
        let origin = origin(integration, || "https://api.bigcommerce.com".to_owned());
        Ok(Api {
            base: format!("{origin}/stores/{hash}"),
            token: credentials.get("access_token")?.to_owned(),
        })
    }

    async fn call(
        &self,
        integration: &IntegrationRow,
        api: &Api,
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
                    .header("X-Auth-Token", &api.token)
                    .header("Accept", "application/json")
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await
    }

    async fn promotions(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        filter: (&str, &str),
    ) -> Result<Vec<Promotion>, AdapterError> {
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::GET,
                "/v3/promotions",
                &[(filter.0, filter.1.to_owned())],
                None,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a promotion search"));
        }
        let body: Value = reply.json(STORE)?;
        Ok(serde_json::from_value(body["data"].clone()).unwrap_or_default())
    }

    /// The promotions holding `code` when `reply` (a refused code create) may mean it is taken.
    /// BigCommerce's promotions.v3 reference documents only `201` for creating a coupon code;
    /// stores answer a taken code with 422 (what bulk coupon importers treat as "duplicate code")
    /// or 409 (the v2 coupons API's conflict), with no documented body. So the body is not read:
    /// the code is looked up, and it is taken only when some promotion holds it. `None`: not
    /// taken, the refusal is about something else.
    async fn holders_if_taken(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        reply: &Reply,
        code: &str,
    ) -> Result<Option<Vec<Promotion>>, AdapterError> {
        if !matches!(
            reply.status,
            reqwest::StatusCode::CONFLICT | reqwest::StatusCode::UNPROCESSABLE_ENTITY
        ) {
            return Ok(None);
        }
        let holders = self.promotions(integration, api, ("code", code)).await?;
        Ok((!holders.is_empty()).then_some(holders))
    }

    async fn create_one(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        discount: &Discount,
    ) -> Result<PushOutcome, AdapterError> {
        let promotion = match promotion_body(discount) {
            Ok(body) => body,
            Err(message) => {
                return Ok(PushOutcome::Failed {
                    message,
                    retryable: false,
                });
            }
        };
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::POST,
                "/v3/promotions",
                &[],
                Some(&promotion),
            )
            .await?;
        let (promotion_id, made_now) = if reply.status.is_success() {
            let body: Value = reply.json(STORE)?;
            match body["data"]["id"].as_u64() {
                Some(id) => (id, true),
                None => return Err(reply.unexpected(STORE, "a promotion")),
            }
        } else if reply.status == reqwest::StatusCode::CONFLICT {
            // A promotion with this name (so with our ref) exists: an earlier push got this far.
            let name = promotion["name"].as_str().unwrap_or_default();
            match self
                .promotions(integration, api, ("name", name))
                .await?
                .into_iter()
                .find(|p| p.name == name)
            {
                Some(p) => (p.id, false),
                None => return Ok(refused(discount, &reply)),
            }
        } else {
            return Ok(refused(discount, &reply));
        };

        let code = code_body(discount);
        let reply = match self
            .call(
                integration,
                api,
                reqwest::Method::POST,
                &format!("/v3/promotions/{promotion_id}/codes"),
                &[],
                Some(&code),
            )
            .await
        {
            Ok(reply) => reply,
            Err(err) => {
                // The retry makes its own: a promotion without its code would stay enabled at the
                // store, holding nothing.
                if made_now {
                    self.delete_promotion(integration, api, promotion_id).await;
                }
                return Err(err);
            }
        };
        if reply.status.is_success() {
            return Ok(PushOutcome::Created {
                store_discount_id: promotion_id.to_string(),
            });
        }
        // Who holds the code is asked before the promotion made now goes: a code POST retried
        // after its answer was lost finds the code in that very promotion, ours.
        let holders = self
            .holders_if_taken(integration, api, &reply, &discount.code)
            .await;
        let ours = holders.as_ref().ok().and_then(|holders| {
            holders
                .iter()
                .flatten()
                .find(|p| has_marker(&p.name, &discount.external_ref))
                .map(|p| p.id)
        });
        if let Some(id) = ours {
            if made_now && id != promotion_id {
                self.delete_promotion(integration, api, promotion_id).await;
            }
            return Ok(PushOutcome::Created {
                store_discount_id: id.to_string(),
            });
        }
        if made_now {
            self.delete_promotion(integration, api, promotion_id).await;
        }
        Ok(match holders? {
            None => refused(discount, &reply),
            Some(_) => PushOutcome::AlreadyExists {
                message: format!("code {} already exists in the store", discount.code),
            },
        })
    }

    /// Our promotion (named with `external_ref`) holding `code`.
    async fn ours_holding(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        code: &str,
        external_ref: &str,
    ) -> Result<Option<Promotion>, AdapterError> {
        Ok(self
            .promotions(integration, api, ("code", code))
            .await?
            .into_iter()
            .find(|p| has_marker(&p.name, external_ref)))
    }

    async fn update_one(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        update: &DiscountUpdate,
    ) -> Result<PushOutcome, AdapterError> {
        let discount = &update.discount;
        let mut changes = match promotion_body(discount) {
            Ok(body) => body,
            Err(message) => {
                return Ok(PushOutcome::Failed {
                    message,
                    retryable: false,
                });
            }
        };
        let mut holder = self
            .ours_holding(
                integration,
                api,
                &update.previous_code,
                &discount.external_ref,
            )
            .await?;
        if holder.is_none() && update.renames() {
            holder = self
                .ours_holding(integration, api, &discount.code, &discount.external_ref)
                .await?;
        }
        // Not ours, or gone: created as a push would be.
        let Some(holder) = holder else {
            return self.create_one(integration, api, discount).await;
        };
        let codes_path = format!("/v3/promotions/{}/codes", holder.id);
        let codes = self.codes_of(integration, api, holder.id).await?;
        let wanted = code_body(discount);
        if !codes.iter().any(|c| c.matches(&wanted)) {
            // Same text, other limits: the old code must go first, the text being unique.
            for same in codes
                .iter()
                .filter(|c| c.code.eq_ignore_ascii_case(&discount.code))
            {
                self.delete_code(integration, api, holder.id, same).await?;
            }
            let reply = self
                .call(
                    integration,
                    api,
                    reqwest::Method::POST,
                    &codes_path,
                    &[],
                    Some(&wanted),
                )
                .await?;
            // Taken by this promotion itself is a POST retried after its answer was lost: done.
            if let Some(holders) = self
                .holders_if_taken(integration, api, &reply, &discount.code)
                .await?
                && !holders.iter().any(|p| p.id == holder.id)
            {
                return Ok(PushOutcome::AlreadyExists {
                    message: format!("code {} already exists in the store", discount.code),
                });
            }
            if !reply.status.is_success() {
                return Ok(refused(discount, &reply));
            }
        }
        if update.renames() {
            for previous in codes
                .iter()
                .filter(|c| c.code.eq_ignore_ascii_case(&update.previous_code))
            {
                self.delete_code(integration, api, holder.id, previous)
                    .await?;
            }
        }
        if let Some(fields) = changes.as_object_mut() {
            // Read-only once the promotion exists.
            fields.remove("redemption_type");
            fields.entry("currency_code").or_insert_with(|| json!("*"));
            fields.entry("end_date").or_insert(Value::Null);
        }
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::PUT,
                &format!("/v3/promotions/{}", holder.id),
                &[],
                Some(&changes),
            )
            .await?;
        if !reply.status.is_success() {
            return Ok(refused(discount, &reply));
        }
        Ok(PushOutcome::Created {
            store_discount_id: holder.id.to_string(),
        })
    }

    /// The coupon codes of promotion `promotion_id`.
    async fn codes_of(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        promotion_id: u64,
    ) -> Result<Vec<PromotionCode>, AdapterError> {
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::GET,
                &format!("/v3/promotions/{promotion_id}/codes"),
                &[],
                None,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a coupon code list"));
        }
        let body: Value = reply.json(STORE)?;
        Ok(serde_json::from_value(body["data"].clone()).unwrap_or_default())
    }

    async fn delete_code(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        promotion_id: u64,
        code: &PromotionCode,
    ) -> Result<(), AdapterError> {
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::DELETE,
                &format!("/v3/promotions/{promotion_id}/codes/{}", code.id),
                &[],
                None,
            )
            .await?;
        if reply.status.is_success() || reply.status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(reply.unexpected(STORE, "a coupon code deletion"))
        }
    }

    /// Removes a promotion made for a code the store then refused; a failure only leaves an empty
    /// promotion behind, so it is logged, not raised.
    async fn delete_promotion(&self, integration: &IntegrationRow, api: &Api, id: u64) {
        let result = self
            .call(
                integration,
                api,
                reqwest::Method::DELETE,
                "/v3/promotions",
                &[("id:in", id.to_string())],
                None,
            )
            .await;
        if !result.is_ok_and(|reply| reply.status.is_success()) {
            tracing::warn!(
                brand_id = integration.brand_id,
                integration_id = integration.id,
                promotion_id = id,
                "bigcommerce promotion without code left behind"
            );
        }
    }

    async fn disable_one(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        target: &ToDisable,
    ) -> Result<DisableOutcome, AdapterError> {
        let code = target.code.as_str();
        let holders = self.promotions(integration, api, ("code", code)).await?;
        if holders.is_empty() {
            return Ok(DisableOutcome::NotFound {
                message: format!("the store holds no code {code}"),
            });
        }
        // Only the suite's promotions (named with its marker) made for this code, never the
        // brand's own.
        let ours: Vec<&Promotion> = holders
            .iter()
            .filter(|p| target.owns(marker_of(&p.name)))
            .collect();
        if ours.is_empty() {
            return Ok(DisableOutcome::not_ours(code));
        }
        for promotion in ours.into_iter().filter(|p| p.status != "DISABLED") {
            // A promotion that also holds another code of ours (an edit's new text, added before
            // the old one went) loses this code alone: disabling it would stop the other too.
            let codes = self.codes_of(integration, api, promotion.id).await?;
            if codes.iter().any(|c| !c.code.eq_ignore_ascii_case(code)) {
                for held in codes.iter().filter(|c| c.code.eq_ignore_ascii_case(code)) {
                    self.delete_code(integration, api, promotion.id, held)
                        .await?;
                }
                continue;
            }
            let reply = self
                .call(
                    integration,
                    api,
                    reqwest::Method::PUT,
                    &format!("/v3/promotions/{}", promotion.id),
                    &[],
                    Some(&json!({ "status": "DISABLED" })),
                )
                .await?;
            if !reply.status.is_success() {
                return Ok(DisableOutcome::Failed {
                    message: format!(
                        "{STORE} did not disable {code}: {} {}",
                        reply.status,
                        reply.snippet()
                    ),
                    retryable: false,
                });
            }
        }
        Ok(DisableOutcome::Disabled)
    }

    /// A v2 list or subresource: 204 (nothing) reads as empty.
    async fn v2_list(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, AdapterError> {
        let reply = self
            .call(integration, api, reqwest::Method::GET, path, query, None)
            .await?;
        match reply.status {
            reqwest::StatusCode::NO_CONTENT | reqwest::StatusCode::NOT_FOUND => Ok(Vec::new()),
            status if status.is_success() => reply.json(STORE),
            _ => Err(reply.unexpected(STORE, path)),
        }
    }

    /// Every row of a v2 order sub-resource (products, coupons), page after page: BigCommerce
    /// answers 50 a page unless asked for more, at most 250.
    async fn v2_all(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        path: &str,
    ) -> Result<Vec<Value>, AdapterError> {
        let mut rows = Vec::new();
        for page in 1..=V2_MAX_PAGES {
            let query = [("limit", V2_PAGE.to_string()), ("page", page.to_string())];
            let got = self.v2_list(integration, api, path, &query).await?;
            let last = got.len() < V2_PAGE;
            rows.extend(got);
            if last {
                return Ok(rows);
            }
        }
        Err(AdapterError::Unavailable(format!(
            "{STORE}: {path} has more than {} rows, or the store ignores its pages",
            V2_MAX_PAGES * V2_PAGE
        )))
    }

    /// The order `value` with its products and coupons.
    async fn complete(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        value: Value,
    ) -> Result<Result<NormalizedOrder, String>, AdapterError> {
        let Some(id) = value["id"].as_u64() else {
            return Ok(Err("the order has no id".to_owned()));
        };
        let products = self
            .v2_all(integration, api, &format!("/v2/orders/{id}/products"))
            .await?;
        let coupons = self
            .v2_all(integration, api, &format!("/v2/orders/{id}/coupons"))
            .await?;
        Ok(normalize(value, &products, &coupons, &self.customer_key))
    }
}

fn refused(discount: &Discount, reply: &Reply) -> PushOutcome {
    PushOutcome::Failed {
        message: format!(
            "{STORE} refused code {}: {} {}",
            discount.code,
            reply.status,
            reply.snippet()
        ),
        retryable: false,
    }
}

/// The coupon code of a promotion with the discount's limits (0, the default, is unlimited).
fn code_body(discount: &Discount) -> Value {
    let mut code = json!({ "code": discount.code });
    if discount.terms.usage_limit > 0 {
        code["max_uses"] = json!(discount.terms.usage_limit);
    }
    if discount.terms.once_per_customer {
        code["max_uses_per_customer"] = json!(1);
    }
    code
}

/// The coupon promotion for one code; `Err` names what BigCommerce cannot take.
fn promotion_body(discount: &Discount) -> Result<Value, String> {
    let terms = &discount.terms;
    let (amount, currency) = match &terms.value {
        Some(DiscountValue::PercentBps(bps)) => {
            (json!({ "percentage_amount": percent_text(*bps) }), None)
        }
        Some(DiscountValue::Fixed(money)) => (
            json!({ "fixed_amount": format_amount(money.amount_minor, &money.currency) }),
            Some(money.currency.clone()),
        ),
        None => return Err("the discount has no value".to_owned()),
    };
    let products = numeric_ids(&terms.product_ids)
        .map_err(|id| format!("{id:?} is not a BigCommerce product id"))?;
    let categories = numeric_ids(&terms.category_ids)
        .map_err(|id| format!("{id:?} is not a BigCommerce category id"))?;
    let action = match (products.is_empty(), categories.is_empty()) {
        (true, true) => json!({ "cart_value": { "discount": amount } }),
        (no_products, no_categories) => {
            let items = match (no_products, no_categories) {
                (false, true) => json!({ "products": products }),
                (true, false) => json!({ "categories": categories }),
                _ => json!({ "or": [{ "products": products }, { "categories": categories }] }),
            };
            json!({ "cart_items": { "discount": amount, "as_total": currency.is_some(), "items": items } })
        }
    };
    let mut body = json!({
        "name": marked_title(&discount.title, &discount.external_ref, MAX_NAME),
        "redemption_type": "COUPON",
        "rules": [{ "action": action, "apply_once": true, "stop": false }],
        "status": "ENABLED",
    });
    if let Some(currency) = currency {
        body["currency_code"] = json!(currency);
    }
    if let Some(at) = terms.starts_at {
        body["start_date"] = json!(at.to_rfc3339_opts(SecondsFormat::Secs, false));
    }
    if let Some(at) = terms.ends_at {
        body["end_date"] = json!(at.to_rfc3339_opts(SecondsFormat::Secs, false));
    }
    Ok(body)
}

/// A v2 order (with its products and coupons) as the gateway's order.
fn normalize(
    order: Value,
    products: &[Value],
    coupons: &[Value],
    customer_key: &[u8],
) -> Result<NormalizedOrder, String> {
    // The amounts are in the transactional currency, the one the shopper pays in
    // (`default_currency_code`); `currency_code` is the storefront's display currency, which may
    // differ (orders of stores without multi-currency may carry only `currency_code`).
    let currency = [&order["default_currency_code"], &order["currency_code"]]
        .into_iter()
        .filter_map(Value::as_str)
        .map(|code| code.trim().to_ascii_uppercase())
        .find(|code| !code.is_empty())
        .unwrap_or_default();
    if currency.len() != 3 {
        return Err("default_currency_code is not an ISO 4217 code".to_owned());
    }
    let amount = |value: &Value, name: &str| {
        json_amount(value, &currency)
            .map(i64::abs)
            .ok_or_else(|| format!("{name}: {value} is not an amount in {currency}"))
    };
    let codes: Vec<String> = coupons
        .iter()
        .filter_map(|c| c["code"].as_str())
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let mut lines = Vec::with_capacity(products.len());
    for product in products {
        let mut discount = 0i64;
        let mut line_codes = Vec::new();
        for applied in product["applied_discounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            discount += amount(&applied["amount"], "applied_discounts.amount")?;
            if let Some(code) = applied["code"].as_str().filter(|c| !c.is_empty())
                && !line_codes.iter().any(|c: &String| c == code)
            {
                line_codes.push(code.to_owned());
            }
        }
        lines.push(OrderLine {
            product_id: product["product_id"]
                .as_u64()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            category_id: String::new(),
            quantity: product["quantity"].as_i64().unwrap_or(0),
            amount_minor: amount(&product["base_total"], "products.base_total")?,
            discount_minor: discount,
            codes: line_codes,
        });
    }
    let status = match order["status_id"].as_u64().unwrap_or(0) {
        4 => OrderStatus::Refunded,
        5 | 6 => OrderStatus::Cancelled,
        14 => OrderStatus::PartiallyRefunded,
        2 | 3 | 8 | 9 | 10 | 11 | 13 => OrderStatus::Paid,
        _ => OrderStatus::Created,
    };
    let occurred_at = order["date_created"]
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
        .ok_or_else(|| "date_created is not an RFC 2822 time".to_owned())?
        .with_timezone(&Utc);
    let billing = &order["billing_address"];
    let total = amount(&order["total_inc_tax"], "total_inc_tax")?;
    Ok(NormalizedOrder {
        store_order_id: order["id"].as_u64().unwrap_or_default().to_string(),
        status,
        codes,
        click_id: None,
        subtotal_minor: amount(&order["subtotal_ex_tax"], "subtotal_ex_tax")?,
        discount_minor: amount(&order["discount_amount"], "discount_amount")?
            .saturating_add(amount(&order["coupon_discount"], "coupon_discount")?),
        total_minor: total,
        refunded_minor: amount(&order["refunded_amount"], "refunded_amount")?.min(total),
        country: billing["country_iso2"]
            .as_str()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| c.len() == 2),
        customer_hash: billing["email"]
            .as_str()
            .and_then(|email| customer_hash(customer_key, email)),
        currency,
        lines,
        occurred_at,
        updated_at: changed_at(&order, "date_modified"),
        test: false,
    })
}

#[tonic::async_trait]
impl StoreAdapter for BigCommerce {
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let api = self.api(integration)?;
        each(
            discounts,
            |d| self.create_one(integration, &api, d),
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
        let api = self.api(integration)?;
        each(
            updates,
            |u| self.update_one(integration, &api, u),
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
        let api = self.api(integration)?;
        each(
            codes,
            |target| self.disable_one(integration, &api, target),
            |target, outcome| DisableResult {
                code: target.code.clone(),
                outcome,
            },
        )
        .await
    }

    /// `GET /v2/store`: the store's default currency, `currency`.
    async fn shop_currency(
        &self,
        integration: &IntegrationRow,
    ) -> Result<Option<String>, AdapterError> {
        let api = self.api(integration)?;
        let reply = self
            .call(
                integration,
                &api,
                reqwest::Method::GET,
                "/v2/store",
                &[],
                None,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "the store's currency"));
        }
        let store: Value = reply.json(STORE)?;
        Ok(store["currency"].as_str().map(str::to_owned))
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
        let api = self.api(integration)?;
        let reply = self
            .call(
                integration,
                &api,
                reqwest::Method::GET,
                &format!("/v2/orders/{id}"),
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
        let order = self.complete(integration, &api, reply.json(STORE)?).await?;
        Ok(super::readable(integration, &id, order))
    }

    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError> {
        let api = self.api(integration)?;
        let per_page = limit.clamp(1, MAX_PAGE);
        let mut listed = Listed::new(limit);
        let mut key = ChangeKey::new(since);
        // The second being walked by id (after a full page ended in it), and the last id read.
        let mut walking: Option<u64> = None;
        loop {
            let second = key.from.to_rfc3339_opts(SecondsFormat::Secs, false);
            let query = match walking {
                None => vec![
                    ("min_date_modified", second),
                    ("sort", "date_modified:asc".to_owned()),
                    ("limit", per_page.to_string()),
                ],
                Some(after_id) => vec![
                    ("min_date_modified", second.clone()),
                    ("max_date_modified", second),
                    ("min_id", (after_id + 1).to_string()),
                    ("sort", "id:asc".to_owned()),
                    ("limit", per_page.to_string()),
                ],
            };
            let values = self
                .v2_list(integration, &api, "/v2/orders", &query)
                .await?;
            let full_page = values.len() == per_page;
            let walked = walking.is_some();
            let mut last_id = walking.unwrap_or_default();
            for value in values {
                if listed.full(limit) {
                    break;
                }
                let id = value["id"].clone();
                last_id = last_id.max(id.as_u64().unwrap_or_default());
                let changed = changed_at(&value, "date_modified");
                if !key.take(&id, changed) {
                    continue;
                }
                let order = self.complete(integration, &api, value).await?;
                listed.take(integration, &id, order, changed);
            }
            if listed.full(limit) {
                return Ok(listed.finish(limit));
            }
            walking = match (walked, full_page) {
                // The last second of a full page may hold more orders: walked by id.
                (false, true) => Some(0),
                // A store that did not start after the id asked for would repeat the page.
                (true, true) if Some(last_id) == walking => {
                    return Err(AdapterError::Unavailable(format!(
                        "{STORE} listed orders changed at {} again despite min_id",
                        key.from
                    )));
                }
                (true, true) => Some(last_id),
                // That second read whole, the listing goes on after it.
                (true, false) => {
                    key.past_second();
                    None
                }
                (false, false) => return Ok(listed.finish(limit)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::adapters::http::HttpConfig;
    use crate::adapters::mock::{self, MockStore, Recorded};
    use crate::adapters::{test_discount, test_update};

    const PREFIX: &str = "/stores/abc123";

    fn setup(store: &MockStore) -> (BigCommerce, IntegrationRow) {
        setup_with(store, mock::fast_http())
    }

    fn setup_with(store: &MockStore, config: HttpConfig) -> (BigCommerce, IntegrationRow) {
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::Bigcommerce,
            &store.origin,
            &[("store_hash", "abc123"), ("access_token", "bc_token")],
        );
        let http = StoreHttp::new(config, sealer).unwrap_or_else(|e| panic!("{e}"));
        (
            BigCommerce::new(http, Arc::from(mock::CUSTOMER_KEY)),
            integration,
        )
    }

    fn promotion(id: u64, name: &str, status: &str) -> Value {
        json!({ "id": id, "name": name, "redemption_type": "COUPON", "status": status,
            "rules": [], "current_uses": 0, "max_uses": null })
    }

    fn code_created(code: &str) -> mock::Reply {
        mock::Reply::json(
            201,
            json!({ "data": { "id": 3, "code": code, "current_uses": 0, "max_uses": 0,
                "max_uses_per_customer": 0, "created": "2025-01-20T22:00:00+00:00" }, "meta": {} }),
        )
    }

    #[tokio::test]
    async fn creates_a_promotion_and_its_code() {
        let store = MockStore::start(|request| match request.route().as_str() {
            r if r == format!("POST {PREFIX}/v3/promotions") => mock::Reply::json(
                201,
                json!({ "data": promotion(31, "x", "ENABLED"), "meta": {} }),
            ),
            _ => code_created("MIA20"),
        })
        .await;
        let (bc, integration) = setup(&store);
        let mut discount = test_discount("MIA20", "code-1");
        discount.terms.usage_limit = 50;
        discount.terms.once_per_customer = true;
        discount.terms.category_ids = vec!["18".to_owned()];
        discount.terms.starts_at = DateTime::from_timestamp(1_800_000_000, 0);
        let results = bc
            .create_discounts(&integration, &[discount])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "31".to_owned()
            }
        );
        let requests = store.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header("x-auth-token"), Some("bc_token"));
        let body = requests[0].json();
        assert_eq!(body["redemption_type"], "COUPON");
        assert_eq!(body["name"], "Summer 20 / MIA20 [code-1]");
        assert_eq!(body["start_date"], "2027-01-15T08:00:00+00:00");
        let action = &body["rules"][0]["action"]["cart_items"];
        assert_eq!(action["discount"]["percentage_amount"], "20");
        assert_eq!(action["items"]["categories"], json!([18]));
        assert_eq!(
            requests[1].route(),
            format!("POST {PREFIX}/v3/promotions/31/codes")
        );
        assert_eq!(
            requests[1].json(),
            json!({ "code": "MIA20", "max_uses": 50, "max_uses_per_customer": 1 })
        );
    }

    #[tokio::test]
    async fn a_taken_code_is_someone_elses_unless_named_with_our_ref() {
        let store = MockStore::start(|request| match request.route().as_str() {
            r if r == format!("POST {PREFIX}/v3/promotions") => mock::Reply::json(
                201,
                json!({ "data": promotion(40, "x", "ENABLED"), "meta": {} }),
            ),
            // No body is documented for a refused code: the generic error shape, as 422.
            r if r.ends_with("/codes") => mock::Reply::json(
                422,
                json!({ "status": 422, "title": "The request payload is invalid",
                    "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes",
                    "errors": {} }),
            ),
            r if r.starts_with("DELETE") => mock::Reply::empty(204),
            _ => match request.param("code") {
                Some("MINE") => mock::Reply::json(
                    200,
                    json!({ "data": [promotion(12, "Summer 20 / MINE [code-1]", "ENABLED")] }),
                ),
                Some("THEIRS") => mock::Reply::json(
                    200,
                    json!({ "data": [promotion(13, "Their sale", "ENABLED")] }),
                ),
                _ => mock::Reply::json(200, json!({ "data": [], "meta": {} })),
            },
        })
        .await;
        let (bc, integration) = setup(&store);
        let results = bc
            .create_discounts(
                &integration,
                &[
                    test_discount("MINE", "code-1"),
                    test_discount("THEIRS", "code-2"),
                    test_discount("NOBODYS", "code-3"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&results[2].outcome, PushOutcome::Failed { message, retryable: false } if message.contains("422")),
            "a 422 for a code nobody holds is no collision: {:?}",
            results[2].outcome
        );
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "12".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::AlreadyExists { .. }
        ));
        let deletes = store.requests_to(&format!("DELETE {PREFIX}/v3/promotions"));
        assert_eq!(deletes.len(), 3, "the promotions made for refused codes go");
        assert_eq!(deletes[0].param("id:in"), Some("40"));
    }

    #[tokio::test]
    async fn disables_the_codes_promotion() {
        let store = MockStore::start(|request| match request.method.as_str() {
            "PUT" => mock::Reply::json(
                200,
                json!({ "data": promotion(12, "x", "DISABLED"), "meta": {} }),
            ),
            _ => match request.param("code") {
                // Our promotion 12 holds MIA20; the brand's own promotion 13 holds BRANDS.
                Some("MIA20") => mock::Reply::json(
                    200,
                    json!({ "data": [promotion(12, "x [code-1]", "ENABLED")], "meta": {} }),
                ),
                Some("BRANDS") => mock::Reply::json(
                    200,
                    json!({ "data": [promotion(13, "Spring sale", "ENABLED")], "meta": {} }),
                ),
                _ => mock::Reply::json(200, json!({ "data": [], "meta": {} })),
            },
        })
        .await;
        let (bc, integration) = setup(&store);
        let codes = ["MIA20", "GONE", "BRANDS"].map(ToDisable::any);
        let results = bc
            .disable_discounts(&integration, &codes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        assert!(matches!(
            results[1].outcome,
            DisableOutcome::NotFound { .. }
        ));
        assert_eq!(results[2].outcome, DisableOutcome::not_ours("BRANDS"));
        assert!(
            store
                .requests_to(&format!("PUT {PREFIX}/v3/promotions/13"))
                .is_empty(),
            "the brand's own promotion is left alone"
        );
        let puts = store.requests_to(&format!("PUT {PREFIX}/v3/promotions/12"));
        assert_eq!(puts.len(), 1);
        assert_eq!(puts[0].json(), json!({ "status": "DISABLED" }));
    }

    #[tokio::test]
    async fn a_promotion_holding_another_code_of_ours_loses_only_the_one_disabled() {
        // Promotion 12 holds MIA20 and MIA25 (an edit's new text, added before the old went).
        let store = MockStore::start(|request| {
            let route = request.route();
            match request.method.as_str() {
                "GET" if route.ends_with("/v3/promotions/12/codes") => mock::Reply::json(
                    200,
                    json!({ "data": [
                        { "id": 3, "code": "MIA20", "current_uses": 0, "max_uses": 0,
                          "max_uses_per_customer": 0, "created": "2025-01-20T22:00:00+00:00" },
                        { "id": 4, "code": "MIA25", "current_uses": 0, "max_uses": 0,
                          "max_uses_per_customer": 0, "created": "2025-01-21T22:00:00+00:00" }
                    ], "meta": {} }),
                ),
                "GET" => mock::Reply::json(
                    200,
                    json!({ "data": [promotion(12, "x [code-1]", "ENABLED")], "meta": {} }),
                ),
                "DELETE" => mock::Reply::empty(204),
                _ => mock::Reply::json(
                    200,
                    json!({ "data": promotion(12, "x", "DISABLED"), "meta": {} }),
                ),
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        let results = bc
            .disable_discounts(&integration, &[ToDisable::any("MIA20")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        assert!(
            store
                .requests_to(&format!("PUT {PREFIX}/v3/promotions/12"))
                .is_empty(),
            "disabling the promotion would stop MIA25 too"
        );
        assert_eq!(
            store
                .requests_to(&format!("DELETE {PREFIX}/v3/promotions/12/codes/3"))
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_code_whose_answer_was_lost_is_found_in_the_promotion_made_for_it() {
        // The code was made, its answer lost: the retried POST is refused as taken, by the very
        // promotion this push made.
        let store = MockStore::start(|request| match request.route().as_str() {
            r if r == format!("POST {PREFIX}/v3/promotions") => mock::Reply::json(
                201,
                json!({ "data": promotion(40, "Summer 20 / ANNA [code-5]", "ENABLED"), "meta": {} }),
            ),
            r if r.ends_with("/codes") => mock::Reply::json(
                409,
                json!({ "status": 409, "title": "Coupon code already exists",
                    "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes" }),
            ),
            r if r.starts_with("DELETE") => mock::Reply::empty(204),
            _ => mock::Reply::json(
                200,
                json!({ "data": [promotion(40, "Summer 20 / ANNA [code-5]", "ENABLED")], "meta": {} }),
            ),
        })
        .await;
        let (bc, integration) = setup(&store);
        let results = bc
            .create_discounts(&integration, &[test_discount("ANNA", "code-5")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "40".to_owned()
            }
        );
        assert!(
            store
                .requests_to(&format!("DELETE {PREFIX}/v3/promotions"))
                .is_empty(),
            "the promotion holding our code stays"
        );
    }

    #[tokio::test]
    async fn a_throttle_is_waited_out_by_its_reset_header() {
        // BigCommerce's 429 says when its quota resets, with no Retry-After: every call in the
        // first 300 ms is throttled.
        let started = std::time::Instant::now();
        let store = throttling_store(move || {
            (started.elapsed() < Duration::from_millis(300))
                .then(|| too_many_requests().header("X-Rate-Limit-Time-Reset-Ms", "300"))
        })
        .await;
        let results = push_mia20(&store).await;
        assert!(
            matches!(results[0].outcome, PushOutcome::Created { .. }),
            "{results:?}"
        );
    }

    fn too_many_requests() -> mock::Reply {
        mock::Reply::json(429, json!({ "status": 429, "title": "Too many requests" }))
    }

    /// A store that answers `throttle`'s 429 while it gives one, then makes promotions and codes.
    async fn throttling_store(
        throttle: impl Fn() -> Option<mock::Reply> + Send + Sync + 'static,
    ) -> MockStore {
        MockStore::start(move |request| {
            if let Some(throttled) = throttle() {
                throttled
            } else if request.path.ends_with("/codes") {
                code_created("MIA20")
            } else {
                mock::Reply::json(201, json!({ "data": promotion(5, "x", "ENABLED") }))
            }
        })
        .await
    }

    /// Pushes the code `MIA20` to `store`; the store's answer.
    async fn push_mia20(store: &MockStore) -> Vec<PushResult> {
        let (bc, integration) = setup(store);
        bc.create_discounts(&integration, &[test_discount("MIA20", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_promotion_whose_code_could_not_be_made_is_deleted() {
        let store = MockStore::start(|request| {
            if request.path.ends_with("/codes") {
                mock::Reply::json(
                    503,
                    json!({ "status": 503, "title": "Service Unavailable" }),
                )
            } else if request.method == "DELETE" {
                mock::Reply::json(204, json!({}))
            } else {
                mock::Reply::json(201, json!({ "data": promotion(5, "x", "ENABLED") }))
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        let outcome = bc
            .create_discounts(&integration, &[test_discount("MIA20", "code-1")])
            .await;
        assert!(
            matches!(outcome, Err(AdapterError::Unavailable(_))),
            "{outcome:?}"
        );
        let deletions = store.requests_to(&format!("DELETE {PREFIX}/v3/promotions"));
        assert_eq!(
            deletions
                .iter()
                .map(|d| d.param("id:in"))
                .collect::<Vec<_>>(),
            [Some("5")],
            "the promotion made for it is deleted"
        );
    }

    #[tokio::test]
    async fn rate_limits_are_retried_and_slow_stores_unavailable() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let store = throttling_store(move || {
            (seen.fetch_add(1, Ordering::SeqCst) == 0).then(|| {
                too_many_requests()
                    .header("X-Rate-Limit-Time-Reset-Ms", "10")
                    .header("Retry-After", "0")
            })
        })
        .await;
        let results = push_mia20(&store).await;
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let slow = MockStore::start(|_| {
            mock::Reply::json(200, json!({})).after(mock::SLOWER_THAN_TIMEOUT)
        })
        .await;
        let (bc, integration) = setup(&slow);
        mock::assert_unavailable_promptly(
            bc.disable_discounts(&integration, &[ToDisable::any("MIA20")]),
        )
        .await;
        mock::assert_unavailable_promptly(
            bc.update_discounts(&integration, &[test_update("MIA20", "MIA25", "code-1")]),
        )
        .await;
    }

    /// A store where promotion 12 (ours, `code-1`) holds `MIA20` (code 3, unlimited) and `OLD`
    /// is held by promotion 14 (ours too), `THEIRS` and `BRANDS` by the brand's promotion 13; a
    /// new code `THEIRS` is refused as taken, a new promotion is 40.
    fn promotions_api(request: &Recorded) -> mock::Reply {
        let route = request.route();
        let path = route.trim_start_matches(&format!("{} {PREFIX}", request.method));
        match (request.method.as_str(), path) {
            ("GET", "/v3/promotions") => {
                // BigCommerce matches codes whatever their case.
                let code = request.param("code").map(str::to_ascii_uppercase);
                let held = match code.as_deref() {
                    Some("MIA20") => vec![promotion(12, "Summer 20 / MIA20 [code-1]", "DISABLED")],
                    Some("OLD") => vec![promotion(14, "Summer 20 / OLD [code-1]", "ENABLED")],
                    Some("THEIRS" | "BRANDS") => vec![promotion(13, "Their sale", "ENABLED")],
                    _ => Vec::new(),
                };
                mock::Reply::json(200, json!({ "data": held, "meta": {} }))
            }
            ("GET", p) if p.ends_with("/codes") => {
                let code = if p.contains("/12/") { "MIA20" } else { "OLD" };
                mock::Reply::json(
                    200,
                    json!({ "data": [{ "id": 3, "code": code, "current_uses": 4, "max_uses": 0,
                        "max_uses_per_customer": 0, "created": "2025-01-20T22:00:00+00:00" }], "meta": {} }),
                )
            }
            ("POST", p) if p.ends_with("/codes") => match request.json()["code"].as_str() {
                Some("THEIRS") => mock::Reply::json(
                    409,
                    json!({ "status": 409, "title": "Coupon code already exists", "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes" }),
                ),
                code => code_created(code.unwrap_or_default()),
            },
            ("POST", "/v3/promotions") => mock::Reply::json(
                201,
                json!({ "data": promotion(40, "x", "ENABLED"), "meta": {} }),
            ),
            ("PUT", p) => mock::Reply::json(
                200,
                json!({ "data": promotion(p.rsplit('/').next().and_then(|id| id.parse().ok()).unwrap_or(0), "x", "ENABLED"), "meta": {} }),
            ),
            ("DELETE", _) => mock::Reply::empty(204),
            _ => mock::Reply::json(404, json!({ "status": 404, "title": "Not found" })),
        }
    }

    #[tokio::test]
    async fn a_renamed_code_is_a_new_code_of_the_same_promotion() {
        let store = MockStore::start(promotions_api).await;
        let (bc, integration) = setup(&store);
        let mut update = test_update("mia20", "MIA25", "code-1");
        update.discount.terms.value = Some(DiscountValue::PercentBps(1500));
        update.discount.terms.usage_limit = 50;
        let results = bc
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].code, "MIA25");
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "12".to_owned()
            }
        );
        let routes: Vec<String> = store.requests().iter().map(|r| r.route()).collect();
        assert_eq!(
            routes,
            [
                format!("GET {PREFIX}/v3/promotions"),
                format!("GET {PREFIX}/v3/promotions/12/codes"),
                format!("POST {PREFIX}/v3/promotions/12/codes"),
                format!("DELETE {PREFIX}/v3/promotions/12/codes/3"),
                format!("PUT {PREFIX}/v3/promotions/12"),
            ]
        );
        let requests = store.requests();
        assert_eq!(requests[0].param("code"), Some("mia20"));
        assert_eq!(
            requests[2].json(),
            json!({ "code": "MIA25", "max_uses": 50 })
        );
        let changes = requests[4].json();
        assert_eq!(changes["name"], "Summer 20 / MIA25 [code-1]");
        assert_eq!(changes["status"], "ENABLED");
        assert_eq!(changes["end_date"], Value::Null);
        assert_eq!(changes["currency_code"], "*");
        assert!(changes.get("redemption_type").is_none(), "{changes}");
        assert_eq!(
            changes["rules"][0]["action"]["cart_value"]["discount"]["percentage_amount"],
            "15"
        );
    }

    #[tokio::test]
    async fn new_terms_for_the_same_code_change_only_the_promotion() {
        let store = MockStore::start(promotions_api).await;
        let (bc, integration) = setup(&store);
        let mut update = test_update("MIA20", "MIA20", "code-1");
        update.discount.terms.ends_at = DateTime::from_timestamp(1_900_000_000, 0);
        let results = bc
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        let routes: Vec<String> = store.requests().iter().map(|r| r.route()).collect();
        assert_eq!(
            routes,
            [
                format!("GET {PREFIX}/v3/promotions"),
                format!("GET {PREFIX}/v3/promotions/12/codes"),
                format!("PUT {PREFIX}/v3/promotions/12"),
            ],
            "the code's text and limits are unchanged"
        );
        assert_eq!(
            store.requests()[2].json()["end_date"],
            "2030-03-17T17:46:40+00:00"
        );
    }

    #[tokio::test]
    async fn an_update_to_a_taken_code_changes_nothing_and_a_missing_code_is_created() {
        let store = MockStore::start(promotions_api).await;
        let (bc, integration) = setup(&store);
        let results = bc
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
        assert!(
            matches!(results[0].outcome, PushOutcome::AlreadyExists { .. }),
            "{results:?}"
        );
        for result in &results[1..] {
            assert_eq!(
                result.outcome,
                PushOutcome::Created {
                    store_discount_id: "40".to_owned()
                }
            );
        }
        let requests = store.requests();
        assert!(
            !requests
                .iter()
                .any(|r| r.method == "PUT" || r.method == "DELETE"),
            "{:?}",
            requests.iter().map(|r| r.route()).collect::<Vec<_>>()
        );
        assert_eq!(
            store
                .requests_to(&format!("POST {PREFIX}/v3/promotions"))
                .len(),
            2,
            "the missing and the brand's previous codes are created anew"
        );
    }

    #[tokio::test]
    async fn rate_limited_updates_are_retried() {
        let store = MockStore::start(|request| {
            if request.seq == 0 {
                mock::Reply::json(429, json!({ "status": 429, "title": "Too many requests" }))
                    .header("Retry-After", "0")
            } else {
                promotions_api(request)
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        let results = bc
            .update_discounts(&integration, &[test_update("MIA20", "MIA20", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(store.requests().len(), 4);
    }

    fn order_json(id: u64, status_id: u64) -> Value {
        json!({
            "id": id, "customer_id": 11, "date_created": "Tue, 04 Mar 2025 21:13:33 +0000",
            "date_modified": "Wed, 05 Mar 2025 08:00:00 +0000", "status_id": status_id,
            "status": "Awaiting Fulfillment", "subtotal_ex_tax": "120.0000", "subtotal_inc_tax": "120.0000",
            "total_ex_tax": "104.0000", "total_inc_tax": "104.0000", "discount_amount": "0.0000",
            "coupon_discount": "24.0000", "refunded_amount": "0.0000",
            "currency_id": 1, "currency_code": "USD", "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1, "default_currency_code": "USD",
            "store_default_currency_code": "USD",
            "store_default_to_transactional_exchange_rate": "1.0000000000",
            "billing_address": { "first_name": "Jo", "email": "JO@example.com", "country_iso2": "US" },
            "products": { "url": "https://api.bigcommerce.com/stores/abc123/v2/orders/118/products", "resource": "/orders/118/products" },
            "coupons": { "url": "https://api.bigcommerce.com/stores/abc123/v2/orders/118/coupons", "resource": "/orders/118/coupons" },
        })
    }

    #[tokio::test]
    async fn an_orders_products_are_read_page_after_page() {
        // 300 products: BigCommerce answers them 250 a page at most.
        let store = MockStore::start(|request| {
            let path = request.path.trim_start_matches(PREFIX);
            match path {
                "/v2/orders/119" => mock::Reply::json(200, order_json(119, 11)),
                "/v2/orders/119/products" => {
                    let page: usize = request
                        .param("page")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    let limit: usize = request
                        .param("limit")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(50);
                    let rows: Vec<Value> = (0..300)
                        .skip((page - 1) * limit)
                        .take(limit)
                        .map(|n| {
                            json!({ "id": n, "order_id": 119, "product_id": 1000 + n, "quantity": 1,
                                "base_price": "1.0000", "base_total": "1.0000",
                                "total_ex_tax": "1.0000", "applied_discounts": [] })
                        })
                        .collect();
                    mock::Reply::json(200, json!(rows))
                }
                _ => mock::Reply::empty(204),
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        let order = bc
            .fetch_order(&integration, "119")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the order exists"));
        assert_eq!(order.lines.len(), 300);
        assert_eq!(
            store
                .requests_to(&format!("GET {PREFIX}/v2/orders/119/products"))
                .len(),
            2
        );
    }

    /// A thin webhook's order fetch has calls of its own: it does not queue behind a push of
    /// many codes holding every bulk call the integration may make.
    #[tokio::test]
    async fn an_order_fetch_does_not_queue_behind_a_push() {
        let stall = Duration::from_millis(300);
        let store = MockStore::start(move |request| {
            let path = request.path.trim_start_matches(PREFIX);
            match (request.method.as_str(), path) {
                ("GET", "/v2/orders/118") => mock::Reply::json(200, order_json(118, 11)),
                ("GET", _) => mock::Reply::json(200, json!([])),
                ("POST", "/v3/promotions") => mock::Reply::json(
                    201,
                    json!({ "data": promotion(31, "x", "ENABLED"), "meta": {} }),
                )
                .after(stall),
                _ => code_created(request.json()["code"].as_str().unwrap_or_default()).after(stall),
            }
        })
        .await;
        // Calls wait longer than the stall: none is retried on a slow machine.
        let patient = HttpConfig {
            timeout: Duration::from_secs(5),
            ..mock::fast_http()
        };
        let (bc, integration) = setup_with(&store, patient);
        let discounts: Vec<_> = (0..40)
            .map(|i| test_discount(&format!("BULK{i}"), &format!("code-{i}")))
            .collect();
        let push = bc.create_discounts(&integration, &discounts);
        let fetch = async {
            // Every bulk call of the integration is taken (and the rest of the push waits).
            while store.requests().len() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let started = std::time::Instant::now();
            let order = crate::adapters::http::fetching(bc.fetch_order(&integration, "118")).await;
            let posts = store
                .requests()
                .iter()
                .filter(|r| r.method == "POST")
                .count();
            (order, started.elapsed(), posts)
        };
        let (pushed, (order, took, posts_meanwhile)) = tokio::join!(push, fetch);
        assert!(
            order.as_ref().is_ok_and(Option::is_some),
            "{:?}",
            order.map(|o| o.map(|o| o.store_order_id))
        );
        assert!(
            took < Duration::from_secs(1),
            "the fetch took {took:?}: it waited behind the push"
        );
        assert!(
            posts_meanwhile < 80,
            "the push was over when the fetch ended"
        );
        let pushed = pushed.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            pushed
                .iter()
                .all(|r| matches!(r.outcome, PushOutcome::Created { .. })),
            "{pushed:?}"
        );
    }

    /// A store selling in USD that shows prices in yen: the order's amounts are dollars.
    #[test]
    fn an_orders_amounts_are_in_the_currency_the_shopper_pays_in() {
        let mut order = order_json(120, 11);
        order["currency_id"] = json!(2);
        order["currency_code"] = json!("JPY");
        order["currency_exchange_rate"] = json!("150.2000000000");
        let normalized = normalize(order.clone(), &[], &[], mock::CUSTOMER_KEY)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (normalized.currency.as_str(), normalized.total_minor),
            ("USD", 10_400),
            "the transactional currency, not the display one"
        );
        // An order with the display currency only is read in it.
        order
            .as_object_mut()
            .map(|fields| fields.remove("default_currency_code"));
        order["currency_code"] = json!("usd");
        let normalized = normalize(order.clone(), &[], &[], mock::CUSTOMER_KEY)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(normalized.currency, "USD");
        order["currency_code"] = json!("");
        assert!(normalize(order, &[], &[], mock::CUSTOMER_KEY).is_err());
    }

    #[tokio::test]
    async fn maps_orders_with_products_and_coupons() {
        let store = MockStore::start(|request| {
            let path = request.path.trim_start_matches(PREFIX);
            match path {
                "/v2/orders/118" => mock::Reply::json(200, order_json(118, 11)),
                "/v2/orders/118/products" => mock::Reply::json(
                    200,
                    json!([{ "id": 1, "order_id": 118, "product_id": 77, "quantity": 2,
                        "base_price": "60.0000", "base_total": "120.0000", "total_ex_tax": "96.0000",
                        "applied_discounts": [{ "id": "coupon", "amount": "24.0000", "name": "MIA20", "code": "MIA20", "target": "order" }] }]),
                ),
                "/v2/orders/118/coupons" => mock::Reply::json(
                    200,
                    json!([{ "id": 3, "coupon_id": 9, "order_id": 118, "code": "MIA20", "amount": "20.0000", "type": 1, "discount": 24 }]),
                ),
                "/v2/orders" => mock::Reply::json(200, json!([order_json(118, 11)])),
                p if p.ends_with("/coupons") || p.ends_with("/products") => mock::Reply::empty(204),
                _ => mock::Reply::json(404, json!([{ "status": 404, "message": "The requested resource was not found." }])),
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        let order = bc
            .fetch_order(&integration, "118")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the order exists"));
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.codes, vec!["MIA20"]);
        assert_eq!(
            (
                order.subtotal_minor,
                order.discount_minor,
                order.total_minor
            ),
            (12_000, 2_400, 10_400)
        );
        assert_eq!(order.country.as_deref(), Some("US"));
        assert_eq!(
            order.customer_hash,
            customer_hash(mock::CUSTOMER_KEY, "jo@example.com")
        );
        assert_eq!(order.occurred_at.to_rfc3339(), "2025-03-04T21:13:33+00:00");
        assert_eq!(
            order.updated_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-03-05T08:00:00+00:00"),
            "date_modified"
        );
        assert_eq!(
            (
                order.lines[0].product_id.as_str(),
                order.lines[0].amount_minor,
                order.lines[0].discount_minor
            ),
            ("77", 12_000, 2_400)
        );
        assert_eq!(order.lines[0].codes, vec!["MIA20"]);
        assert_eq!(bc.fetch_order(&integration, "9").await.ok(), Some(None));

        let since = DateTime::from_timestamp(1_740_000_000, 0).unwrap_or_default();
        let listed = bc
            .list_orders(&integration, since, 5)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.orders.len(), 1);
        assert_eq!(listed.resume_from, None, "the whole list");
        let cut = bc
            .list_orders(&integration, since, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cut.resume_from.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-03-05T08:00:00+00:00"),
            "cut at its limit: on from the last order's change"
        );
        let request = &store.requests_to(&format!("GET {PREFIX}/v2/orders"))[0];
        assert_eq!(
            request.param("min_date_modified"),
            Some("2025-02-19T21:20:00+00:00")
        );
        assert_eq!(request.param("sort"), Some("date_modified:asc"));
    }

    /// A BigCommerce holding orders `changes` (their change second and id), listing them as
    /// `GET /v2/orders` does (`min_date_modified` and `max_date_modified` inclusive, `min_id`,
    /// `sort` by change or id, pages by number), where order `moving` changes again once a page
    /// showing it was read.
    async fn changing_store(changes: Vec<(i64, u64)>, moving: u64) -> MockStore {
        let held = Arc::new(std::sync::Mutex::new(changes));
        MockStore::start(move |request| {
            let path = request.path.trim_start_matches(PREFIX);
            if path != "/v2/orders" {
                return mock::Reply::empty(204);
            }
            let param = |name: &str| request.param(name).unwrap_or_default().to_owned();
            let time = |name: &str| {
                DateTime::parse_from_rfc3339(&param(name))
                    .map(|t| t.timestamp())
                    .ok()
            };
            let (min, max) = (time("min_date_modified"), time("max_date_modified"));
            let min_id: u64 = param("min_id").parse().unwrap_or_default();
            let size: usize = param("limit").parse().unwrap_or(50);
            let page: usize = param("page").parse().unwrap_or(1);
            let by_id = param("sort") == "id:asc";
            let mut changes = held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut matching: Vec<(i64, u64)> = changes
                .iter()
                .filter(|(second, id)| {
                    min.is_none_or(|min| *second >= min)
                        && max.is_none_or(|max| *second <= max)
                        && *id >= min_id
                })
                .copied()
                .collect();
            if by_id {
                matching.sort_by_key(|(_, id)| *id);
            } else {
                matching.sort();
            }
            let rows: Vec<(i64, u64)> = matching
                .into_iter()
                .skip((page - 1) * size)
                .take(size)
                .collect();
            if rows.iter().any(|(_, id)| *id == moving)
                && let Some(change) = changes.iter_mut().find(|(_, id)| *id == moving)
            {
                change.0 += 86_400;
            }
            let orders: Vec<Value> = rows
                .iter()
                .map(|(second, id)| {
                    let mut order = order_json(*id, 11);
                    order["date_modified"] = json!(
                        DateTime::from_timestamp(*second, 0)
                            .unwrap_or_default()
                            .to_rfc2822()
                    );
                    order
                })
                .collect();
            if orders.is_empty() {
                mock::Reply::empty(204)
            } else {
                mock::Reply::json(200, json!(orders))
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_order_changed_during_a_listing_shifts_no_other_out_of_it() {
        let start = 1_743_500_000;
        // 600 orders changed a second apart, then 600 changed in one second (more than a
        // page); an order on the first page, then one on the second, changes once its page is
        // read.
        for (scenario, changes, moving) in [
            (
                "a second apart",
                (0..600u64)
                    .map(|n| (start + n as i64, 1_000 + n))
                    .collect::<Vec<_>>(),
                1_004,
            ),
            (
                "in one second",
                (0..600u64).map(|n| (start, 1_000 + n)).collect(),
                1_300,
            ),
        ] {
            let store = changing_store(changes, moving).await;
            let (bc, integration) = setup(&store);
            let since = DateTime::from_timestamp(start - 60, 0).unwrap_or_default();
            let listed = bc
                .list_orders(&integration, since, 2_000)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            mock::assert_listed(&listed, 600, moving, true, scenario);
        }
    }

    #[tokio::test]
    async fn a_store_that_ignores_min_id_fails_the_listing_instead_of_repeating_it() {
        let store = MockStore::start(|request| {
            if request.path.trim_start_matches(PREFIX) != "/v2/orders" {
                return mock::Reply::empty(204);
            }
            // Every full page the same, whatever id it is asked to start after.
            let size: u64 = request.param("limit").unwrap_or("50").parse().unwrap_or(50);
            let orders: Vec<Value> = (1..=size).map(|id| order_json(id, 11)).collect();
            mock::Reply::json(200, json!(orders))
        })
        .await;
        let (bc, integration) = setup(&store);
        let since = DateTime::from_timestamp(1_740_000_000, 0).unwrap_or_default();
        let listed = bc.list_orders(&integration, since, 1_000).await;
        assert!(
            matches!(listed, Err(AdapterError::Unavailable(_))),
            "{:?}",
            listed.map(|l| l.orders.len())
        );
    }

    #[tokio::test]
    async fn the_stores_currency_is_its_default_one() {
        let store = MockStore::start(|request| {
            if request.route() == format!("GET {PREFIX}/v2/store") {
                mock::Reply::json(
                    200,
                    json!({ "id": "abc123", "domain": "my-awesome.store", "name": "Awesome",
                        "language": "en", "currency": "GBP", "currency_symbol": "£",
                        "decimal_separator": ".", "thousands_separator": ",", "decimal_places": 2,
                        "currency_symbol_location": "left" }),
                )
            } else {
                mock::Reply::json(404, json!({ "status": 404, "title": "Not found" }))
            }
        })
        .await;
        let (bc, integration) = setup(&store);
        assert_eq!(
            bc.shop_currency(&integration).await.ok(),
            Some(Some("GBP".to_owned()))
        );
        assert_eq!(store.requests()[0].header("x-auth-token"), Some("bc_token"));
    }
}
