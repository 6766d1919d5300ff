//! Magento 2 (Adobe Commerce): cart price rules, coupons and orders through the REST API
//! (`{base_url}/rest/V1`) with an integration's access token as bearer.
//!
//! - Codes: one cart price rule per set of terms, found by its name (`Influencer codes 20 %
//!   [terms hash]`) or created (`POST /V1/salesRules`, specific coupons with auto generation on, so
//!   the rule takes many coupons; every website and customer group; `by_percent` or `cart_fixed`;
//!   SKU and category conditions for restrictions; dates by day, in the store views' time zones
//!   from `GET /V1/store/storeConfigs`; a dated rule found again with other days than its
//!   views' zones now make, after a zone changed, has its days moved with
//!   `PUT /V1/salesRules/{ruleId}`, the only edit of a rule in place: its terms stay). Then one
//!   coupon per code
//!   (`POST /V1/coupons`) with `usage_limit` and `usage_per_customer`.
//! - Magento coupons have no field for our external ref. A code Magento reports taken is our
//!   earlier push when its coupon belongs to the rule of the same terms: CodeMintService keeps
//!   codes unique per integration, so the suite never pushes one code for two owners. A coupon of
//!   any other rule is `AlreadyExists`. Magento reports a taken code as HTTP 400
//!   `{"message": "%1 already exists.", "parameters": ["Coupon with the same code"]}` (the coupon
//!   resource's unique `code` field, `AbstractDb::_checkUnique`), or `"Unique constraint violation
//!   found"` when the database index catches a concurrent save; nothing else is read as taken.
//! - Updating finds the previous code's coupon (`GET /V1/coupons/search` on `code`) and, when its
//!   rule is one of ours (`GET /V1/salesRules/{ruleId}`, named `Influencer codes …`), moves it
//!   in place to the rule of the new terms with the new code: `PUT /V1/coupons/{couponId}` with
//!   `coupon_id` (`CouponRepository::save` merges the sent fields into the stored coupon, then
//!   takes the usage limits and expiry from the rule). A rule is shared by every code with the
//!   same terms, so an update never edits a rule's terms in place (`PUT /V1/salesRules/{ruleId}`
//!   would change the other creators' codes too): the new terms' rule is found or created as for
//!   a push.
//! - Disabling deletes the coupons the suite made (`POST /V1/coupons/deleteByIds`): each code's
//!   coupon is found (`GET /V1/coupons/search`) and kept only when its rule is one of ours (read
//!   once per rule in a batch: a plan's codes share it). Magento coupons have no active flag of
//!   their own, and the rule keeps serving the plan's other codes.
//! - Orders: `GET /V1/orders/{entity_id}` and `GET /V1/orders?searchCriteria…` on `updated_at`,
//!   paged by key (change time, then `entity_id`).
//!   For restrictions, Magento product ids are the products' SKUs (rule conditions match SKUs).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http::{Reply, StoreHttp, origin};
use super::mapping::{json_amount, percent_text};
use super::{AdapterError, Listed, StoreAdapter, changed_at};
use crate::domain::discount::{
    DisableOutcome, DisableResult, Discount, DiscountUpdate, DiscountValue, PushOutcome,
    PushResult, Terms, ToDisable,
};
use crate::domain::orders::{NormalizedOrder, OrderLine, OrderStatus, format_amount};
use crate::store::IntegrationRow;
use crate::webhooks::customer_hash;

const STORE: &str = "Magento";
const MAX_PAGE: usize = 200;
const PRODUCT_CONDITION: &str = "Magento\\SalesRule\\Model\\Rule\\Condition\\Product";
const PRODUCT_COMBINE: &str = "Magento\\SalesRule\\Model\\Rule\\Condition\\Product\\Combine";
/// How every rule of this adapter is named (see [`rule_name`]): a coupon under another rule is the
/// brand's own.
const RULE_PREFIX: &str = "Influencer codes ";
/// `CouponInterface::TYPE_GENERATED`: `CouponRepository::save` refuses a manual coupon (type 0)
/// on a rule with auto generation on, which every rule of this adapter has.
const COUPON_GENERATED: u8 = 1;

/// The Magento adapter.
#[derive(Clone, Debug)]
pub struct Magento {
    http: StoreHttp,
    customer_key: Arc<[u8]>,
}

struct Api {
    base: String,
    token: String,
}

/// `searchCriteria` query pairs for one `field condition value` filter.
fn filter(
    group: usize,
    index: usize,
    field: &str,
    value: &str,
    condition: &str,
) -> Vec<(String, String)> {
    let prefix = format!("searchCriteria[filter_groups][{group}][filters][{index}]");
    vec![
        (format!("{prefix}[field]"), field.to_owned()),
        (format!("{prefix}[value]"), value.to_owned()),
        (format!("{prefix}[condition_type]"), condition.to_owned()),
    ]
}

impl Magento {
    pub fn new(http: StoreHttp, customer_key: Arc<[u8]>) -> Self {
        Self { http, customer_key }
    }

    fn api(&self, integration: &IntegrationRow) -> Result<Api, AdapterError> {
        let credentials = self.http.credentials(integration)?;
        let base = origin(integration, String::new);
        if base.is_empty() {
            return Err(AdapterError::Misconfigured(format!(
                "integration {} has no store base URL",
                integration.id
            )));
        }
        Ok(Api {
            base: format!("{base}/rest/V1"),
            token: credentials.get("access_token")?.to_owned(),
        })
    }

    async fn call(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Reply, AdapterError> {
        let url = format!("{}{path}", api.base);
        self.http
            .send(integration, STORE, |client| {
                let request = client
                    .request(method.clone(), &url)
                    .bearer_auth(&api.token)
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await
    }

    async fn get_json(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Value, AdapterError> {
        let reply = self
            .call(integration, api, reqwest::Method::GET, path, query, None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, path));
        }
        reply.json(STORE)
    }

    /// The id of the rule for `discount` (see [`rule_name`]), found by name or created.
    async fn rule_for(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        discount: &Discount,
    ) -> Result<Result<u64, String>, AdapterError> {
        let terms = &discount.terms;
        let name = rule_name(discount);
        let found = self
            .get_json(
                integration,
                api,
                "/salesRules/search",
                &filter(0, 0, "name", &name, "eq"),
            )
            .await?;
        if let Some((id, rule)) = found["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|rule| rule["name"].as_str() == Some(name.as_str()))
            .and_then(|rule| Some((rule["rule_id"].as_u64()?, rule)))
        {
            if dated(terms) {
                self.keep_days(integration, api, id, rule, terms).await?;
            }
            return Ok(Ok(id));
        }
        let websites: Vec<u64> = self
            .get_json(integration, api, "/store/websites", &[])
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["id"].as_u64())
            .filter(|id| *id != 0)
            .collect();
        let groups: Vec<u64> = self
            .get_json(
                integration,
                api,
                "/customerGroups/search",
                &[("searchCriteria[pageSize]".to_owned(), "500".to_owned())],
            )
            .await?["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["id"].as_u64())
            .collect();
        let zones = if dated(terms) {
            self.zones(integration, api, &websites).await?
        } else {
            Vec::new()
        };
        let rule = match rule_body(&name, terms, &websites, &groups, &zones) {
            Ok(rule) => rule,
            Err(message) => return Ok(Err(message)),
        };
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::POST,
                "/salesRules",
                &[],
                Some(&json!({ "rule": rule })),
            )
            .await?;
        if !reply.status.is_success() {
            return Ok(Err(format!(
                "{STORE} refused the cart price rule: {} {}",
                reply.status,
                message_of(&reply)
            )));
        }
        let created: Value = reply.json(STORE)?;
        created["rule_id"]
            .as_u64()
            .map(Ok)
            .ok_or_else(|| reply.unexpected(STORE, "a rule creation"))
    }

    /// Moves the days of a dated rule found by name to what its store views' zones make of the
    /// terms now, when a view's zone changed since the rule was made: Magento compares the days
    /// with each view's date, so every code of the rule would otherwise start or end a day off.
    /// The rule is sent back whole, as the store gave it, with only its days changed. A store
    /// that refuses the change keeps the rule as it is (logged): its codes still work.
    async fn keep_days(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
        rule: &Value,
        terms: &Terms,
    ) -> Result<(), AdapterError> {
        let websites: Vec<u64> = rule["website_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let zones = self.zones(integration, api, &websites).await?;
        let (first, last) = rule_days(terms, &zones);
        let (from_date, to_date) = (magento_day(first), magento_day(last));
        if same_day(&rule["from_date"], &from_date) && same_day(&rule["to_date"], &to_date) {
            return Ok(());
        }
        let mut moved = rule.clone();
        moved["from_date"] = from_date;
        moved["to_date"] = to_date;
        let path = format!("/salesRules/{rule_id}");
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::PUT,
                &path,
                &[],
                Some(&json!({ "rule": moved })),
            )
            .await?;
        if reply.status.is_success() {
            tracing::info!(integration_id = integration.id, rule_id, from_date = %moved["from_date"],
                to_date = %moved["to_date"], "a rule's days moved with its store views' time zones");
        } else {
            tracing::warn!(integration_id = integration.id, rule_id, status = %reply.status,
                message = %message_of(&reply),
                "the store refused to move a rule's days to its views' time zones: kept as they were");
        }
        Ok(())
    }

    /// The time zones of the store views of `websites` (`GET /V1/store/storeConfigs`: each
    /// view's `timezone`, an IANA name): Magento compares a rule's days with the date in the
    /// view's zone. A name that is not a zone is logged and left out.
    async fn zones(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        websites: &[u64],
    ) -> Result<Vec<Tz>, AdapterError> {
        let configs = self
            .get_json(integration, api, "/store/storeConfigs", &[])
            .await?;
        let mut zones: Vec<Tz> = configs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|view| {
                view["website_id"]
                    .as_u64()
                    .is_some_and(|id| websites.contains(&id))
            })
            .filter_map(|view| {
                let name = view["timezone"].as_str()?;
                name.parse::<Tz>()
                    .inspect_err(|_| {
                        tracing::warn!(
                            integration_id = integration.id,
                            timezone = name,
                            "a store view's time zone is unknown: left out of the rule's days"
                        );
                    })
                    .ok()
            })
            .collect();
        zones.sort_by_key(|zone| zone.name());
        zones.dedup();
        Ok(zones)
    }

    async fn create_coupon(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
        discount: &Discount,
    ) -> Result<PushOutcome, AdapterError> {
        let coupon = json!({ "coupon": {
            "rule_id": rule_id,
            "code": discount.code,
            "usage_limit": discount.terms.usage_limit.max(0),
            "usage_per_customer": i32::from(discount.terms.once_per_customer),
            "is_primary": false,
            "type": COUPON_GENERATED,
        }});
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::POST,
                "/coupons",
                &[],
                Some(&coupon),
            )
            .await?;
        if reply.status.is_success() {
            let created: Value = reply.json(STORE)?;
            return Ok(PushOutcome::Created {
                store_discount_id: created["coupon_id"]
                    .as_u64()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            });
        }
        self.refusal(integration, api, rule_id, discount, &reply)
            .await
    }

    /// What Magento's refusal to save `discount`'s coupon under `rule_id` means. A code it reports
    /// taken is ours when its coupon belongs to that rule (the rule of the same terms).
    async fn refusal(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
        discount: &Discount,
        reply: &Reply,
    ) -> Result<PushOutcome, AdapterError> {
        let message = message_of(reply);
        let lower = message.to_ascii_lowercase();
        // Magento's coupon resource declares `code` unique ("Coupon with the same code"): a save
        // of a taken code throws AlreadyExistsException("%1 already exists."), or "Unique
        // constraint violation found" when the database index catches a concurrent twin; the
        // REST layer answers either as 400 with the phrase and its parameters.
        if reply.status != reqwest::StatusCode::BAD_REQUEST
            || !(lower.contains("already exists") || lower.contains("unique constraint"))
        {
            return Ok(PushOutcome::Failed {
                message: format!("{STORE} refused code {}: {message}", discount.code),
                retryable: false,
            });
        }
        let held = self
            .get_json(
                integration,
                api,
                "/coupons/search",
                &filter(0, 0, "code", &discount.code, "eq"),
            )
            .await?;
        let coupons: Vec<&Value> = held["items"].as_array().into_iter().flatten().collect();
        let mut ours = coupons
            .iter()
            .find(|c| c["rule_id"].as_u64() == Some(rule_id))
            .copied();
        // A once-per-customer code pushed when such codes shared their terms' rule, whose answer
        // was lost, is found there on its retry: ours, left where it is (it is not a taken code,
        // which would be suffixed and leave this coupon live unrecorded).
        if ours.is_none() && discount.terms.once_per_customer {
            let shared = terms_rule_name(&discount.terms, None);
            for coupon in &coupons {
                let Some(other) = coupon["rule_id"].as_u64() else {
                    continue;
                };
                if self.rule_name_of(integration, api, other).await?.as_deref()
                    == Some(shared.as_str())
                {
                    ours = Some(coupon);
                    break;
                }
            }
        }
        Ok(match ours {
            Some(coupon) => PushOutcome::Created {
                store_discount_id: coupon["coupon_id"]
                    .as_u64()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            },
            None => PushOutcome::AlreadyExists {
                message: format!("code {} already exists in the store", discount.code),
            },
        })
    }

    /// The coupon holding `code`, when its rule is one of ours.
    async fn our_coupon(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        code: &str,
    ) -> Result<Option<Value>, AdapterError> {
        let Some((coupon, rule_id)) = self.coupon_of(integration, api, code).await? else {
            return Ok(None);
        };
        Ok(self
            .rule_is_ours(integration, api, rule_id)
            .await?
            .then_some(coupon))
    }

    /// The coupon holding `code` (matched case-insensitively), with its rule's id.
    async fn coupon_of(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        code: &str,
    ) -> Result<Option<(Value, u64)>, AdapterError> {
        let held = self
            .get_json(
                integration,
                api,
                "/coupons/search",
                &filter(0, 0, "code", code, "eq"),
            )
            .await?;
        Ok(held["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["code"]
                    .as_str()
                    .is_some_and(|held| held.eq_ignore_ascii_case(code))
            })
            .and_then(|coupon| Some((coupon.clone(), coupon["rule_id"].as_u64()?))))
    }

    /// Whether the sales rule `rule_id` is one the suite made (named with [`RULE_PREFIX`]). A
    /// rule gone is no rule of ours; any other failure is the store's, to retry.
    async fn rule_is_ours(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
    ) -> Result<bool, AdapterError> {
        Ok(self
            .rule_name_of(integration, api, rule_id)
            .await?
            .is_some_and(|name| name.starts_with(RULE_PREFIX)))
    }

    /// The name of the sales rule `rule_id`; `None` when it is gone.
    async fn rule_name_of(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
    ) -> Result<Option<String>, AdapterError> {
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::GET,
                &format!("/salesRules/{rule_id}"),
                &[],
                None,
            )
            .await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(reply.unexpected(STORE, "a sales rule read"));
        }
        let rule: Value = reply.json(STORE)?;
        Ok(rule["name"].as_str().map(str::to_owned))
    }

    async fn update_one(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        rule_id: u64,
        update: &DiscountUpdate,
    ) -> Result<PushOutcome, AdapterError> {
        let discount = &update.discount;
        let held = self
            .our_coupon(integration, api, &update.previous_code)
            .await?;
        // Not ours, or gone (an earlier try renamed it): created as a push would be.
        let Some(coupon_id) = held.and_then(|c| c["coupon_id"].as_u64()) else {
            return self
                .create_coupon(integration, api, rule_id, discount)
                .await;
        };
        let coupon = json!({ "coupon": {
            "coupon_id": coupon_id,
            "rule_id": rule_id,
            "code": discount.code,
            "usage_limit": discount.terms.usage_limit.max(0),
            "usage_per_customer": i32::from(discount.terms.once_per_customer),
            "is_primary": false,
            "type": COUPON_GENERATED,
        }});
        let reply = self
            .call(
                integration,
                api,
                reqwest::Method::PUT,
                &format!("/coupons/{coupon_id}"),
                &[],
                Some(&coupon),
            )
            .await?;
        if reply.status.is_success() {
            return Ok(PushOutcome::Created {
                store_discount_id: coupon_id.to_string(),
            });
        }
        self.refusal(integration, api, rule_id, discount, &reply)
            .await
    }

    /// The rule of each discount, asked once per rule name.
    async fn rules_for(
        &self,
        integration: &IntegrationRow,
        api: &Api,
        discounts: impl Iterator<Item = &Discount>,
    ) -> Result<Vec<Result<u64, String>>, AdapterError> {
        let mut rules: HashMap<String, Result<u64, String>> = HashMap::new();
        let mut found = Vec::new();
        for discount in discounts {
            let name = rule_name(discount);
            let rule = match rules.get(&name) {
                Some(rule) => rule.clone(),
                None => {
                    let rule = self.rule_for(integration, api, discount).await?;
                    rules.insert(name, rule.clone());
                    rule
                }
            };
            found.push(rule);
        }
        Ok(found)
    }

    fn order(&self, value: &Value) -> Result<NormalizedOrder, String> {
        normalize(value, &self.customer_key)
    }
}

/// Magento's error text, with its `%1` parameters filled in.
fn message_of(reply: &Reply) -> String {
    let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
        return reply.snippet();
    };
    let mut message = body["message"].as_str().unwrap_or_default().to_owned();
    match &body["parameters"] {
        Value::Array(values) => {
            for (i, value) in values.iter().enumerate() {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                message = message.replace(&format!("%{}", i + 1), &text);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                message = message.replace(&format!("%{key}"), &text);
            }
        }
        _ => {}
    }
    message
}

/// The rule's name: readable, and unique to the terms (a hash of all of them). Codes of the same
/// terms share a rule, except once per customer: Magento counts a customer's uses per rule as
/// well as per coupon (and gives every coupon the rule's limits), so a customer who used one
/// creator's code could not use another's of the same rule. Such a code has a rule of its own,
/// named for its `external_ref` too, which its updates find again.
fn rule_name(discount: &Discount) -> String {
    let owner = discount
        .terms
        .once_per_customer
        .then_some(discount.external_ref.as_str());
    terms_rule_name(&discount.terms, owner)
}

/// The name of the rule for `terms`, of the code `owner` alone when given. Without an owner, for
/// once-per-customer terms, it is the rule such codes shared before each got its own: a code
/// pushed then is found under it.
fn terms_rule_name(terms: &Terms, owner: Option<&str>) -> String {
    let canonical = serde_json::to_vec(terms).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(&canonical);
    if let Some(owner) = owner {
        hasher.update(b" for the code of ");
        hasher.update(owner.as_bytes());
    }
    // A rule with dates made before its days were the store views' (they were UTC's) is not
    // found for the same terms: a new one is made, with the right days.
    if dated(terms) {
        hasher.update(b" days in the store views' zones");
    }
    let hash = hex::encode(&hasher.finalize()[..6]);
    let value = match &terms.value {
        Some(DiscountValue::PercentBps(bps)) => format!("{} %", percent_text(*bps)),
        Some(DiscountValue::Fixed(m)) => {
            format!(
                "{} {}",
                format_amount(m.amount_minor, &m.currency),
                m.currency
            )
        }
        None => "no value".to_owned(),
    };
    format!("{RULE_PREFIX}{value} [{hash}]")
}

fn decimal(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)
}

/// A rule's first and last days (`from_date`, `to_date`), as Magento reads them: whole days in
/// each store view's zone (UTC when none is known). The plan's start falls on its zone's first
/// day, and the day of its last moment (the end is exclusive) is the last. Where the views' zones
/// differ, the earliest first day and the latest last day, so that the code works for the whole
/// plan in every view (whole days may add up to a day at either end).
fn rule_days(terms: &Terms, zones: &[Tz]) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let zones = if zones.is_empty() {
        &[Tz::UTC][..]
    } else {
        zones
    };
    let days = |at: DateTime<Utc>| {
        zones
            .iter()
            .map(move |zone| at.with_timezone(zone).date_naive())
    };
    let first = terms.starts_at.and_then(|at| days(at).min());
    let last = terms
        .ends_at
        .and_then(|at| days(at - chrono::Duration::seconds(1)).max());
    (first, last)
}

/// Whether the terms have days (a start or an end), which Magento reads in its views' zones.
fn dated(terms: &Terms) -> bool {
    terms.starts_at.is_some() || terms.ends_at.is_some()
}

/// A rule day as Magento takes it (`YYYY-MM-DD`), or null for none.
fn magento_day(day: Option<NaiveDate>) -> Value {
    day.map_or(Value::Null, |day| json!(day.format("%Y-%m-%d").to_string()))
}

/// Whether a rule's day as the store gave it (a date, perhaps with a time; empty or null for
/// none) is `day`.
fn same_day(stored: &Value, day: &Value) -> bool {
    let stored = stored
        .as_str()
        .map(str::trim)
        .filter(|text| !text.is_empty());
    stored.map(|text| text.get(..10).unwrap_or(text)) == day.as_str()
}

fn rule_body(
    name: &str,
    terms: &Terms,
    websites: &[u64],
    groups: &[u64],
    zones: &[Tz],
) -> Result<Value, String> {
    let (action, amount) = match &terms.value {
        Some(DiscountValue::PercentBps(bps)) => ("by_percent", decimal(&percent_text(*bps))),
        Some(DiscountValue::Fixed(m)) => (
            "cart_fixed",
            decimal(&format_amount(m.amount_minor, &m.currency)),
        ),
        None => return Err("the discount has no value".to_owned()),
    };
    if websites.is_empty() {
        return Err(format!("{STORE} lists no website for the rule"));
    }
    let (first, last) = rule_days(terms, zones);
    let mut conditions = Vec::new();
    if !terms.product_ids.is_empty() {
        conditions.push(
            json!({ "condition_type": PRODUCT_CONDITION, "attribute_name": "sku",
            "operator": "()", "value": terms.product_ids.join(", ") }),
        );
    }
    if !terms.category_ids.is_empty() {
        conditions.push(
            json!({ "condition_type": PRODUCT_CONDITION, "attribute_name": "category_ids",
            "operator": "()", "value": terms.category_ids.join(", ") }),
        );
    }
    let mut rule = json!({
        "name": name,
        "description": "Discount codes of influencer tracking; one coupon per creator.",
        "is_active": true,
        "website_ids": websites,
        "customer_group_ids": groups,
        "coupon_type": "SPECIFIC_COUPON",
        "use_auto_generation": true,
        "uses_per_coupon": terms.usage_limit.max(0),
        "uses_per_customer": i32::from(terms.once_per_customer),
        "simple_action": action,
        "discount_amount": amount,
        "apply_to_shipping": false,
        "stop_rules_processing": false,
        "from_date": magento_day(first),
        "to_date": magento_day(last),
    });
    if !conditions.is_empty() {
        rule["action_condition"] = json!({
            "condition_type": PRODUCT_COMBINE, "aggregator_type": "any", "value": "1",
            "conditions": conditions,
        });
    }
    Ok(rule)
}

fn magento_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|at| at.and_utc())
}

/// A Magento order (times in UTC, amounts as JSON numbers, discounts negative).
fn normalize(order: &Value, customer_key: &[u8]) -> Result<NormalizedOrder, String> {
    let currency = order["order_currency_code"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    if currency.len() != 3 {
        return Err("order_currency_code is not an ISO 4217 code".to_owned());
    }
    let amount = |value: &Value, name: &str| {
        json_amount(value, &currency)
            .map(i64::abs)
            .ok_or_else(|| format!("{name}: {value} is not an amount in {currency}"))
    };
    let codes: Vec<String> = order["coupon_code"]
        .as_str()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| vec![c.to_owned()])
        .unwrap_or_default();
    let mut lines = Vec::new();
    // Child items (a configurable product's simple one) repeat their parent's amounts.
    for item in order["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["parent_item_id"].is_null())
    {
        let discount = amount(&item["discount_amount"], "items.discount_amount")?;
        lines.push(OrderLine {
            product_id: item["sku"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| item["product_id"].as_u64().map(|id| id.to_string()))
                .unwrap_or_default(),
            category_id: String::new(),
            quantity: item["qty_ordered"].as_f64().unwrap_or(0.0).round() as i64,
            amount_minor: amount(&item["row_total"], "items.row_total")?,
            discount_minor: discount,
            codes: if discount > 0 {
                codes.clone()
            } else {
                Vec::new()
            },
        });
    }
    let total = amount(&order["grand_total"], "grand_total")?;
    let refunded = amount(&order["total_refunded"], "total_refunded")?.min(total);
    let status = match order["state"].as_str().unwrap_or_default() {
        "canceled" => OrderStatus::Cancelled,
        "closed" => OrderStatus::Refunded,
        _ if refunded > 0 && refunded >= total => OrderStatus::Refunded,
        _ if refunded > 0 => OrderStatus::PartiallyRefunded,
        "processing" | "complete" => OrderStatus::Paid,
        _ => OrderStatus::Created,
    };
    let shipping_country = order["extension_attributes"]["shipping_assignments"][0]["shipping"]
        ["address"]["country_id"]
        .as_str();
    let country = shipping_country
        .or_else(|| order["billing_address"]["country_id"].as_str())
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| c.len() == 2);
    Ok(NormalizedOrder {
        store_order_id: order["entity_id"]
            .as_u64()
            .ok_or_else(|| "entity_id is missing".to_owned())?
            .to_string(),
        status,
        codes,
        click_id: None,
        subtotal_minor: amount(&order["subtotal"], "subtotal")?,
        discount_minor: amount(&order["discount_amount"], "discount_amount")?,
        total_minor: total,
        refunded_minor: refunded,
        country,
        customer_hash: order["customer_email"]
            .as_str()
            .and_then(|email| customer_hash(customer_key, email)),
        currency,
        lines,
        occurred_at: order["created_at"]
            .as_str()
            .and_then(magento_time)
            .ok_or_else(|| "created_at is not a time".to_owned())?,
        updated_at: changed_at(order, "updated_at"),
        test: false,
    })
}

#[tonic::async_trait]
impl StoreAdapter for Magento {
    async fn create_discounts(
        &self,
        integration: &IntegrationRow,
        discounts: &[Discount],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let api = self.api(integration)?;
        let rules = self.rules_for(integration, &api, discounts.iter()).await?;
        let mut results = Vec::with_capacity(discounts.len());
        for (discount, rule) in discounts.iter().zip(rules) {
            let outcome = match rule {
                Ok(rule_id) => {
                    self.create_coupon(integration, &api, rule_id, discount)
                        .await?
                }
                Err(message) => PushOutcome::Failed {
                    message,
                    retryable: false,
                },
            };
            results.push(PushResult {
                code: discount.code.clone(),
                outcome,
            });
        }
        Ok(results)
    }

    async fn update_discounts(
        &self,
        integration: &IntegrationRow,
        updates: &[DiscountUpdate],
    ) -> Result<Vec<PushResult>, AdapterError> {
        let api = self.api(integration)?;
        let rules = self
            .rules_for(integration, &api, updates.iter().map(|u| &u.discount))
            .await?;
        let mut results = Vec::with_capacity(updates.len());
        for (update, rule) in updates.iter().zip(rules) {
            let outcome = match rule {
                Ok(rule_id) => self.update_one(integration, &api, rule_id, update).await?,
                Err(message) => PushOutcome::Failed {
                    message,
                    retryable: false,
                },
            };
            results.push(PushResult {
                code: update.discount.code.clone(),
                outcome,
            });
        }
        Ok(results)
    }

    /// Deletes the suite's coupons of `codes` (`POST /V1/coupons/deleteByIds`): only a coupon
    /// under one of the suite's rules, never the brand's own coupon of the same text.
    /// Magento's coupons keep no ref of ours (a rule holds every code of its terms): a coupon is
    /// the suite's when its rule is.
    async fn disable_discounts(
        &self,
        integration: &IntegrationRow,
        codes: &[ToDisable],
    ) -> Result<Vec<DisableResult>, AdapterError> {
        let api = self.api(integration)?;
        let mut ids: Vec<Option<u64>> = Vec::with_capacity(codes.len());
        // A plan's codes share its rule: each rule is read once for the batch.
        let mut rules: HashMap<u64, bool> = HashMap::new();
        for ToDisable { code, .. } in codes {
            let Some((coupon, rule_id)) = self.coupon_of(integration, &api, code).await? else {
                ids.push(None);
                continue;
            };
            let ours = match rules.get(&rule_id) {
                Some(ours) => *ours,
                None => {
                    let ours = self.rule_is_ours(integration, &api, rule_id).await?;
                    rules.insert(rule_id, ours);
                    ours
                }
            };
            ids.push(ours.then(|| coupon["coupon_id"].as_u64()).flatten());
        }
        let to_delete: Vec<u64> = ids.iter().flatten().copied().collect();
        let mut failed: Vec<String> = Vec::new();
        if !to_delete.is_empty() {
            let body = json!({ "ids": to_delete, "ignoreInvalidCoupons": true });
            let reply = self
                .call(
                    integration,
                    &api,
                    reqwest::Method::POST,
                    "/coupons/deleteByIds",
                    &[],
                    Some(&body),
                )
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(STORE, "a coupon deletion"));
            }
            let answer: Value = reply.json(STORE)?;
            failed = answer["failed_items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned))
                .collect();
        }
        Ok(codes
            .iter()
            .map(|target| &target.code)
            .zip(ids)
            .map(|(code, id)| DisableResult {
                code: code.clone(),
                outcome: match id {
                    // No coupon of the text, or the brand's own: nothing of ours to delete.
                    None => DisableOutcome::not_ours(code),
                    Some(id) if failed.contains(&id.to_string()) => DisableOutcome::Failed {
                        message: format!("{STORE} could not delete coupon {code}"),
                        retryable: true,
                    },
                    // Deleted, or already gone (a missing id).
                    Some(_) => DisableOutcome::Disabled,
                },
            })
            .collect())
    }

    /// `GET /V1/directory/currency`: the base currency, which cart rules' amounts are in.
    async fn shop_currency(
        &self,
        integration: &IntegrationRow,
    ) -> Result<Option<String>, AdapterError> {
        let api = self.api(integration)?;
        let info = self
            .get_json(integration, &api, "/directory/currency", &[])
            .await?;
        Ok(info["base_currency_code"].as_str().map(str::to_owned))
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
            self.order(&reply.json(STORE)?),
        ))
    }

    /// Pages by key, not by number: each page asks for the orders after the last one listed,
    /// by change time, then id (`updated_at > t or (updated_at = t and entity_id > id)`, which
    /// Magento's filter groups say as `updated_at >= t and (updated_at > t or entity_id > id)`:
    /// groups are ANDed, a group's filters ORed). Paged by number, an order changed during the
    /// listing moved to the end and shifted the order after a page's end onto the page already
    /// read: it was not listed.
    async fn list_orders(
        &self,
        integration: &IntegrationRow,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Listed, AdapterError> {
        let api = self.api(integration)?;
        let page_size = limit.clamp(1, MAX_PAGE);
        let mut listed = Listed::new(limit);
        // Magento's time text sorts as its times do.
        let mut from = since.format("%Y-%m-%d %H:%M:%S").to_string();
        let mut after_id: Option<u64> = None;
        loop {
            let mut query = filter(0, 0, "updated_at", &from, "gteq");
            if let Some(id) = after_id {
                query.extend(filter(1, 0, "updated_at", &from, "gt"));
                query.extend(filter(1, 1, "entity_id", &id.to_string(), "gt"));
            }
            for (n, field) in ["updated_at", "entity_id"].into_iter().enumerate() {
                query.extend([
                    (
                        format!("searchCriteria[sortOrders][{n}][field]"),
                        field.to_owned(),
                    ),
                    (
                        format!("searchCriteria[sortOrders][{n}][direction]"),
                        "ASC".to_owned(),
                    ),
                ]);
            }
            query.extend([
                ("searchCriteria[pageSize]".to_owned(), page_size.to_string()),
                ("searchCriteria[currentPage]".to_owned(), "1".to_owned()),
            ]);
            let body = self.get_json(integration, &api, "/orders", &query).await?;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            for value in &items {
                if listed.full(limit) {
                    break;
                }
                let id = &value["entity_id"];
                let key = id
                    .as_u64()
                    .or_else(|| id.as_str().and_then(|text| text.parse().ok()));
                let (Some(at), Some(key)) = (value["updated_at"].as_str(), key) else {
                    return Err(AdapterError::Unavailable(format!(
                        "{STORE} listed an order without updated_at or entity_id"
                    )));
                };
                (from, after_id) = (at.to_owned(), Some(key));
                let changed = changed_at(value, "updated_at");
                listed.take(integration, id, self.order(value), changed);
            }
            if listed.full(limit) || items.len() < page_size {
                return Ok(listed.finish(limit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracking_api::common::v1::Provider;

    use super::*;
    use crate::adapters::mock::{self, MockStore, Recorded};
    use crate::adapters::{test_discount, test_update};

    fn setup(store: &MockStore) -> (Magento, IntegrationRow) {
        let sealer = mock::sealer();
        let integration = mock::integration(
            &sealer,
            Provider::Magento,
            &store.origin,
            &[("access_token", "mg_token")],
        );
        let http = StoreHttp::new(mock::fast_http(), sealer).unwrap_or_else(|e| panic!("{e}"));
        (
            Magento::new(http, Arc::from(mock::CUSTOMER_KEY)),
            integration,
        )
    }

    /// A Magento that has no rule yet, creates rule 5, and holds coupon `THEIRS` under rule 2
    /// and `MINE` under rule 5.
    fn store_api(request: &Recorded) -> mock::Reply {
        let duplicate = || {
            mock::Reply::json(
                400,
                json!({ "message": "%1 already exists.",
                    "parameters": ["Coupon with the same code"] }),
            )
        };
        match request.route().as_str() {
            "GET /rest/V1/salesRules/search" => {
                mock::Reply::json(200, json!({ "items": [], "total_count": 0 }))
            }
            "GET /rest/V1/store/websites" => mock::Reply::json(
                200,
                json!([{ "id": 0, "code": "admin" }, { "id": 1, "code": "base" }]),
            ),
            "GET /rest/V1/customerGroups/search" => mock::Reply::json(
                200,
                json!({ "items": [{ "id": 0, "code": "NOT LOGGED IN" }, { "id": 1, "code": "General" }] }),
            ),
            // The admin view keeps UTC; the shop's view, Berlin's days.
            "GET /rest/V1/store/storeConfigs" => mock::Reply::json(
                200,
                json!([
                    { "id": 0, "code": "admin", "website_id": 0, "locale": "en_US",
                      "base_currency_code": "EUR", "default_display_currency_code": "EUR",
                      "timezone": "UTC", "weight_unit": "kgs",
                      "base_url": "https://shop.example.de/", "secure_base_url": "https://shop.example.de/" },
                    { "id": 1, "code": "default", "website_id": 1, "locale": "de_DE",
                      "base_currency_code": "EUR", "default_display_currency_code": "EUR",
                      "timezone": "Europe/Berlin", "weight_unit": "kgs",
                      "base_url": "https://shop.example.de/", "secure_base_url": "https://shop.example.de/" }
                ]),
            ),
            "POST /rest/V1/salesRules" => {
                let mut rule = request.json()["rule"].clone();
                rule["rule_id"] = json!(5);
                mock::Reply::json(200, rule)
            }
            "POST /rest/V1/coupons" => match request.json()["coupon"]["code"].as_str() {
                Some("MINE" | "THEIRS") => duplicate(),
                _ => {
                    let mut coupon = request.json()["coupon"].clone();
                    coupon["coupon_id"] = json!(70);
                    mock::Reply::json(200, coupon)
                }
            },
            "GET /rest/V1/coupons/search" => {
                let rule = if request.param("searchCriteria[filter_groups][0][filters][0][value]")
                    == Some("MINE")
                {
                    5
                } else {
                    2
                };
                mock::Reply::json(
                    200,
                    json!({ "items": [{ "coupon_id": 60, "rule_id": rule, "code": "x" }], "total_count": 1 }),
                )
            }
            _ => mock::Reply::json(
                404,
                json!({ "message": "Request does not match any route." }),
            ),
        }
    }

    #[tokio::test]
    async fn creates_one_rule_per_terms_and_a_coupon_per_code() {
        let store = MockStore::start(store_api).await;
        let (magento, integration) = setup(&store);
        let mut first = test_discount("MIA20", "code-1");
        first.terms.usage_limit = 10;
        first.terms.product_ids = vec!["MUG-1".to_owned()];
        // 2030-03-31T22:30:00Z, half past midnight on 1 April in Berlin.
        first.terms.starts_at = DateTime::from_timestamp(1_901_226_600, 0);
        // 2030-04-30T22:30:00Z, half past midnight on 1 May in Berlin.
        first.terms.ends_at = DateTime::from_timestamp(1_903_818_600, 0);
        let first_terms = first.terms.clone();
        let mut second = first.clone();
        second.code = "JOSE20".to_owned();
        second.external_ref = "code-2".to_owned();
        let results = magento
            .create_discounts(&integration, &[first, second])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for result in &results {
            assert_eq!(
                result.outcome,
                PushOutcome::Created {
                    store_discount_id: "70".to_owned()
                }
            );
        }
        assert_eq!(
            store.requests()[0].header("authorization"),
            Some("Bearer mg_token")
        );
        let rules = store.requests_to("POST /rest/V1/salesRules");
        assert_eq!(rules.len(), 1, "both codes share the rule of their terms");
        let rule = &rules[0].json()["rule"];
        assert!(
            rule["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Influencer codes 20 % [")
        );
        assert_eq!(rule["simple_action"], "by_percent");
        assert_eq!(rule["discount_amount"], 20);
        assert_eq!(rule["coupon_type"], "SPECIFIC_COUPON");
        assert_eq!(rule["use_auto_generation"], true);
        assert_eq!(rule["website_ids"], json!([1]));
        assert_eq!(rule["customer_group_ids"], json!([0, 1]));
        // Days in the shop view's zone: the plan runs from 1 April to the first half hour of
        // 1 May in Berlin (UTC's days: 31 March to 30 April).
        assert_eq!(rule["from_date"], "2030-04-01");
        assert_eq!(rule["to_date"], "2030-05-01");
        // Not the name a rule of these terms had when its days were UTC's: such a rule is not
        // reused.
        let utc_days_hash =
            hex::encode(&Sha256::digest(serde_json::to_vec(&first_terms).unwrap_or_default())[..6]);
        assert!(
            !rule["name"]
                .as_str()
                .unwrap_or_default()
                .contains(&utc_days_hash)
        );
        assert_eq!(
            store.requests_to("GET /rest/V1/store/storeConfigs").len(),
            1
        );
        assert_eq!(
            rule["action_condition"]["conditions"][0]["attribute_name"],
            "sku"
        );
        assert_eq!(rule["action_condition"]["conditions"][0]["value"], "MUG-1");
        let coupons = store.requests_to("POST /rest/V1/coupons");
        assert_eq!(
            coupons[1].json()["coupon"],
            json!({ "rule_id": 5, "code": "JOSE20", "usage_limit": 10, "usage_per_customer": 0,
                "is_primary": false, "type": 1 })
        );
    }

    #[tokio::test]
    async fn once_per_customer_gives_each_code_a_rule_of_its_own() {
        let store = MockStore::start(store_api).await;
        let (magento, integration) = setup(&store);
        let mut first = test_discount("MIA20", "code-1");
        first.terms.once_per_customer = true;
        let mut second = first.clone();
        second.code = "JOSE20".to_owned();
        second.external_ref = "code-2".to_owned();
        magento
            .create_discounts(&integration, &[first.clone(), second])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Magento counts a customer's uses per rule too: one shared rule would refuse JOSE20 to
        // a customer who used MIA20.
        let rules = store.requests_to("POST /rest/V1/salesRules");
        let names: Vec<String> = rules
            .iter()
            .map(|rule| {
                rule.json()["rule"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_ne!(names[0], names[1]);
        for rule in &rules {
            assert_eq!(rule.json()["rule"]["uses_per_customer"], 1);
        }
        // An edit of a code (same ref) finds its rule again; other terms without the limit share.
        let mut renamed = first.clone();
        renamed.code = "MIA25".to_owned();
        assert_eq!(rule_name(&renamed), names[0]);
        let mut shared = first.clone();
        shared.terms.once_per_customer = false;
        let mut other = shared.clone();
        other.external_ref = "code-2".to_owned();
        assert_eq!(rule_name(&shared), rule_name(&other));
    }

    #[tokio::test]
    async fn a_rule_found_with_other_days_than_its_views_zones_make_is_moved_to_them() {
        let mut discount = test_discount("MIA20", "code-1");
        discount.terms.usage_limit = 10;
        // 2030-03-31T22:30:00Z to 2030-04-30T22:30:00Z: 1 April to 1 May in Berlin.
        discount.terms.starts_at = DateTime::from_timestamp(1_901_226_600, 0);
        discount.terms.ends_at = DateTime::from_timestamp(1_903_818_600, 0);
        // The rule of these terms, made while the shop's view kept UTC (its days then).
        let stored = Arc::new(std::sync::Mutex::new(json!({
            "rule_id": 5, "name": rule_name(&discount), "is_active": true,
            "website_ids": [1], "customer_group_ids": [0, 1], "uses_per_coupon": 10,
            "simple_action": "by_percent", "discount_amount": 20,
            "from_date": "2030-03-31", "to_date": "2030-04-30",
        })));
        let rule = stored.clone();
        let store = MockStore::start(move |request| {
            let mut rule = rule.lock().unwrap_or_else(|e| e.into_inner());
            match request.route().as_str() {
                "GET /rest/V1/salesRules/search" => {
                    mock::Reply::json(200, json!({ "items": [*rule], "total_count": 1 }))
                }
                "PUT /rest/V1/salesRules/5" => {
                    *rule = request.json()["rule"].clone();
                    mock::Reply::json(200, rule.clone())
                }
                _ => store_api(request),
            }
        })
        .await;
        let (magento, integration) = setup(&store);
        let pushed = magento
            .create_discounts(&integration, std::slice::from_ref(&discount))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(pushed[0].outcome, PushOutcome::Created { .. }));
        let moves = store.requests_to("PUT /rest/V1/salesRules/5");
        assert_eq!(moves.len(), 1, "the rule's days are moved once");
        let moved = &moves[0].json()["rule"];
        assert_eq!(moved["from_date"], "2030-04-01");
        assert_eq!(moved["to_date"], "2030-05-01");
        // The rest of the rule is sent back as the store gave it.
        assert_eq!(moved["uses_per_coupon"], 10);
        assert_eq!(moved["website_ids"], json!([1]));
        assert_eq!(moved["name"], json!(rule_name(&discount)));
        assert!(store.requests_to("POST /rest/V1/salesRules").is_empty());
        assert_eq!(
            store.requests_to("POST /rest/V1/coupons")[0].json()["coupon"]["rule_id"],
            5
        );

        // A rule whose days are already its views' is left alone.
        let mut next = discount.clone();
        next.code = "JOSE20".to_owned();
        next.external_ref = "code-2".to_owned();
        magento
            .create_discounts(&integration, &[next])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.requests_to("PUT /rest/V1/salesRules/5").len(), 1);
    }

    #[test]
    fn a_rules_days_are_the_store_views_days() {
        let at = |rfc3339: &str| {
            DateTime::parse_from_rfc3339(rfc3339)
                .map(|at| at.with_timezone(&Utc))
                .ok()
        };
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
        let mut terms = test_discount("X", "code-9").terms;
        // 1 April to the end of 30 April in Los Angeles (PDT, UTC-7).
        terms.starts_at = at("2030-04-01T07:00:00Z");
        terms.ends_at = at("2030-05-01T07:00:00Z");
        let la = [Tz::America__Los_Angeles];
        assert_eq!(
            rule_days(&terms, &la),
            (day("2030-04-01"), day("2030-04-30"))
        );
        // In UTC (no zone known) those moments fall on the same days, but an end at midnight
        // ends with the day before: `to_date` is the last day.
        assert_eq!(
            rule_days(&terms, &[]),
            (day("2030-04-01"), day("2030-05-01"))
        );
        terms.ends_at = at("2030-05-01T00:00:00Z");
        assert_eq!(rule_days(&terms, &[]).1, day("2030-04-30"));
        // Views in Berlin and Los Angeles: the code works for the whole plan in both.
        terms.starts_at = at("2030-03-31T22:30:00Z");
        terms.ends_at = at("2030-04-30T23:30:00Z");
        assert_eq!(
            rule_days(&terms, &[Tz::Europe__Berlin, Tz::America__Los_Angeles]),
            (day("2030-03-31"), day("2030-05-01"))
        );
        assert_eq!(
            rule_days(&terms, &[Tz::Europe__Berlin]),
            (day("2030-04-01"), day("2030-05-01"))
        );
    }

    #[tokio::test]
    async fn a_taken_code_is_ours_only_under_our_rule() {
        let store = MockStore::start(store_api).await;
        let (magento, integration) = setup(&store);
        let results = magento
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
                store_discount_id: "60".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::AlreadyExists { .. }
        ));
        assert!(
            store
                .requests_to("GET /rest/V1/store/storeConfigs")
                .is_empty(),
            "terms without dates need no zone"
        );
    }

    #[tokio::test]
    async fn a_once_per_customer_code_pushed_under_the_shared_rule_is_ours_on_its_retry() {
        let mut old = test_discount("OLDONE", "code-3");
        old.terms.once_per_customer = true;
        let shared = terms_rule_name(&old.terms, None);
        let store = MockStore::start(move |request| {
            let search = request.param("searchCriteria[filter_groups][0][filters][0][value]");
            match request.route().as_str() {
                "POST /rest/V1/coupons" => mock::Reply::json(
                    400,
                    json!({ "message": "%1 already exists.",
                        "parameters": ["Coupon with the same code"] }),
                ),
                // OLDONE sits under rule 2, the rule its terms had when codes shared it; THEIRS
                // under the brand's rule 3.
                "GET /rest/V1/coupons/search" if search == Some("OLDONE") => mock::Reply::json(
                    200,
                    json!({ "items": [{ "coupon_id": 61, "rule_id": 2, "code": "OLDONE" }] }),
                ),
                "GET /rest/V1/coupons/search" if search == Some("THEIRS") => mock::Reply::json(
                    200,
                    json!({ "items": [{ "coupon_id": 62, "rule_id": 3, "code": "THEIRS" }] }),
                ),
                "GET /rest/V1/salesRules/2" => {
                    mock::Reply::json(200, json!({ "rule_id": 2, "name": shared.clone() }))
                }
                "GET /rest/V1/salesRules/3" => {
                    mock::Reply::json(200, json!({ "rule_id": 3, "name": "Summer sale" }))
                }
                _ => store_api(request),
            }
        })
        .await;
        let (magento, integration) = setup(&store);
        let mut theirs = old.clone();
        theirs.code = "THEIRS".to_owned();
        theirs.external_ref = "code-4".to_owned();
        let results = magento
            .create_discounts(&integration, &[old, theirs])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "61".to_owned()
            }
        );
        assert!(matches!(
            results[1].outcome,
            PushOutcome::AlreadyExists { .. }
        ));
    }

    #[tokio::test]
    async fn disables_by_deleting_only_the_suites_coupons() {
        let store = MockStore::start(|request| match request.route().as_str() {
            "POST /rest/V1/coupons/deleteByIds" => {
                mock::Reply::json(200, json!({ "failed_items": [], "missing_items": [] }))
            }
            _ => update_api(request),
        })
        .await;
        let (magento, integration) = setup(&store);
        // OLD and OLDER are ours (rule 2); BRANDS is the brand's own coupon (rule 9); GONE is
        // held by none.
        let codes = ["OLD", "OLDER", "BRANDS", "GONE"].map(ToDisable::any);
        let results = magento
            .disable_discounts(&integration, &codes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for ours in &results[..2] {
            assert_eq!(ours.outcome, DisableOutcome::Disabled, "{ours:?}");
        }
        for left in &results[2..] {
            assert!(
                matches!(left.outcome, DisableOutcome::NotFound { .. }),
                "{left:?}"
            );
        }
        let deletions = store.requests_to("POST /rest/V1/coupons/deleteByIds");
        assert_eq!(deletions.len(), 1);
        assert_eq!(
            deletions[0].json(),
            json!({ "ids": [60, 63], "ignoreInvalidCoupons": true })
        );
        assert_eq!(
            store.requests_to("GET /rest/V1/salesRules/2").len(),
            1,
            "the rule the two codes share is read once"
        );
    }

    #[tokio::test]
    async fn overload_is_retried_and_slow_stores_unavailable() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let store = MockStore::start(move |request| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                mock::Reply::json(503, json!({ "message": "Service Unavailable" }))
            } else if request.route() == "POST /rest/V1/coupons/deleteByIds" {
                mock::Reply::json(200, json!({ "failed_items": [], "missing_items": [] }))
            } else {
                update_api(request)
            }
        })
        .await;
        let (magento, integration) = setup(&store);
        let results = magento
            .disable_discounts(&integration, &[ToDisable::any("OLD")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].outcome, DisableOutcome::Disabled);
        // The coupon's search twice (503, then answered), its rule, the deletion.
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let slow = MockStore::start(|_| {
            mock::Reply::json(200, json!({})).after(mock::SLOWER_THAN_TIMEOUT)
        })
        .await;
        let (magento, integration) = setup(&slow);
        mock::assert_unavailable_promptly(
            magento.create_discounts(&integration, &[test_discount("MIA20", "code-1")]),
        )
        .await;
        mock::assert_unavailable_promptly(
            magento.update_discounts(&integration, &[test_update("MIA20", "MIA25", "code-1")]),
        )
        .await;
    }

    /// [`store_api`], also holding coupons 60 `OLD` and 63 `OLDER` under rule 2 (ours), coupon 61
    /// `BRANDS` and 62 `THEIRS` under rule 9 (the brand's own); saving a coupon as `THEIRS` is
    /// refused as taken.
    fn update_api(request: &Recorded) -> mock::Reply {
        let coupon = |id: u64, rule: u64, code: &str| {
            json!({ "coupon_id": id, "rule_id": rule, "code": code, "usage_limit": 0,
                "usage_per_customer": 0, "times_used": 3, "is_primary": false, "type": 1 })
        };
        match request.route().as_str() {
            "GET /rest/V1/coupons/search" => {
                let items = match request
                    .param("searchCriteria[filter_groups][0][filters][0][value]")
                    .map(str::to_ascii_uppercase)
                    .as_deref()
                {
                    Some("OLD") => vec![coupon(60, 2, "OLD")],
                    Some("OLDER") => vec![coupon(63, 2, "OLDER")],
                    Some("BRANDS") => vec![coupon(61, 9, "BRANDS")],
                    Some("THEIRS") => vec![coupon(62, 9, "THEIRS")],
                    _ => Vec::new(),
                };
                mock::Reply::json(200, json!({ "items": items, "total_count": items.len() }))
            }
            "GET /rest/V1/salesRules/2" => mock::Reply::json(
                200,
                json!({ "rule_id": 2, "name": "Influencer codes 20 % [0a1b2c3d4e5f]" }),
            ),
            "GET /rest/V1/salesRules/9" => {
                mock::Reply::json(200, json!({ "rule_id": 9, "name": "Spring sale" }))
            }
            "PUT /rest/V1/coupons/60" => match request.json()["coupon"]["code"].as_str() {
                Some("THEIRS") => mock::Reply::json(
                    400,
                    json!({ "message": "Unique constraint violation found" }),
                ),
                _ => mock::Reply::json(200, request.json()["coupon"].clone()),
            },
            _ => store_api(request),
        }
    }

    #[tokio::test]
    async fn moves_the_coupon_to_the_rule_of_its_new_terms() {
        let store = MockStore::start(update_api).await;
        let (magento, integration) = setup(&store);
        let mut update = test_update("old", "NEW25", "code-1");
        update.discount.terms.value = Some(DiscountValue::PercentBps(2500));
        update.discount.terms.usage_limit = 10;
        update.discount.terms.once_per_customer = true;
        let results = magento
            .update_discounts(&integration, &[update])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(results[0].code, "NEW25");
        assert_eq!(
            results[0].outcome,
            PushOutcome::Created {
                store_discount_id: "60".to_owned()
            }
        );
        let rules = store.requests_to("POST /rest/V1/salesRules");
        assert_eq!(rules.len(), 1, "the new terms' rule is made as for a push");
        assert_eq!(rules[0].json()["rule"]["discount_amount"], 25);
        assert_eq!(rules[0].json()["rule"]["uses_per_coupon"], 10);
        assert!(
            !store
                .requests()
                .iter()
                .any(|r| r.method == "PUT" && r.path.starts_with("/rest/V1/salesRules")),
            "no shared rule is edited"
        );
        let saves = store.requests_to("PUT /rest/V1/coupons/60");
        assert_eq!(saves.len(), 1);
        assert_eq!(
            saves[0].json(),
            json!({ "coupon": { "coupon_id": 60, "rule_id": 5, "code": "NEW25", "usage_limit": 10,
                "usage_per_customer": 1, "is_primary": false, "type": 1 } })
        );
        assert!(store.requests_to("POST /rest/V1/coupons").is_empty());
    }

    #[tokio::test]
    async fn an_update_to_a_taken_code_is_already_exists_and_a_coupon_not_ours_is_left_alone() {
        let store = MockStore::start(update_api).await;
        let (magento, integration) = setup(&store);
        let results = magento
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
                    store_discount_id: "70".to_owned()
                }
            );
        }
        assert!(store.requests_to("PUT /rest/V1/coupons/61").is_empty());
        let created: Vec<Value> = store
            .requests_to("POST /rest/V1/coupons")
            .iter()
            .map(|r| r.json()["coupon"]["code"].clone())
            .collect();
        assert_eq!(created, [json!("NEW1"), json!("NEW2")]);
    }

    #[tokio::test]
    async fn overloaded_updates_are_retried() {
        let store = MockStore::start(|request| {
            if request.seq == 0 {
                mock::Reply::json(503, json!({ "message": "Service Unavailable" }))
            } else {
                update_api(request)
            }
        })
        .await;
        let (magento, integration) = setup(&store);
        let results = magento
            .update_discounts(&integration, &[test_update("OLD", "NEW25", "code-1")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(results[0].outcome, PushOutcome::Created { .. }));
        assert_eq!(store.requests_to("PUT /rest/V1/coupons/60").len(), 1);
    }

    fn order_json(id: u64, state: &str, refunded: f64) -> Value {
        json!({
            "entity_id": id, "increment_id": "000000042", "state": state, "status": state,
            "created_at": "2025-04-02 13:45:10", "updated_at": "2025-04-03 09:00:00",
            "order_currency_code": "GBP", "base_currency_code": "GBP",
            "subtotal": 80, "discount_amount": -16, "shipping_amount": 5, "grand_total": 69,
            "total_refunded": refunded, "coupon_code": "MIA20", "customer_email": "Kim@Example.co.uk",
            "billing_address": { "country_id": "GB", "email": "Kim@Example.co.uk" },
            "items": [
                { "item_id": 1, "sku": "TEE-M", "product_id": 12, "product_type": "configurable",
                  "qty_ordered": 2, "price": 40, "row_total": 80, "discount_amount": 16 },
                { "item_id": 2, "parent_item_id": 1, "sku": "TEE-M", "product_id": 13,
                  "product_type": "simple", "qty_ordered": 2, "price": 0, "row_total": 0, "discount_amount": 0 }
            ],
            "extension_attributes": { "shipping_assignments": [
                { "shipping": { "address": { "country_id": "IE" }, "method": "flatrate_flatrate" } }
            ] },
        })
    }

    #[tokio::test]
    async fn maps_orders() {
        let store = MockStore::start(|request| match request.path.as_str() {
            "/rest/V1/orders/42" => mock::Reply::json(200, order_json(42, "processing", 19.5)),
            "/rest/V1/orders" => mock::Reply::json(
                200,
                json!({ "items": [order_json(42, "complete", 0.0), order_json(43, "canceled", 0.0)],
                    "search_criteria": {}, "total_count": 2 }),
            ),
            _ => mock::Reply::json(
                404,
                json!({ "message": "The entity that was requested doesn't exist. Verify the entity and try again." }),
            ),
        })
        .await;
        let (magento, integration) = setup(&store);
        let order = magento
            .fetch_order(&integration, "42")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the order exists"));
        assert_eq!(order.status, OrderStatus::PartiallyRefunded);
        assert_eq!(order.codes, vec!["MIA20"]);
        assert_eq!(
            (
                order.subtotal_minor,
                order.discount_minor,
                order.total_minor,
                order.refunded_minor
            ),
            (8000, 1600, 6900, 1950)
        );
        assert_eq!(order.country.as_deref(), Some("IE"));
        assert_eq!(
            order.customer_hash,
            customer_hash(mock::CUSTOMER_KEY, "kim@example.co.uk")
        );
        assert_eq!(order.occurred_at.to_rfc3339(), "2025-04-02T13:45:10+00:00");
        assert_eq!(
            order.updated_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2025-04-03T09:00:00+00:00"),
            "updated_at"
        );
        assert_eq!(
            order.lines.len(),
            1,
            "the child item is not a line of its own"
        );
        assert_eq!(
            (
                order.lines[0].product_id.as_str(),
                order.lines[0].quantity,
                order.lines[0].discount_minor
            ),
            ("TEE-M", 2, 1600)
        );
        assert_eq!(
            magento.fetch_order(&integration, "9").await.ok(),
            Some(None)
        );

        let since = DateTime::from_timestamp(1_740_000_000, 0).unwrap_or_default();
        let listed = magento
            .list_orders(&integration, since, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            listed.orders.iter().map(|o| o.status).collect::<Vec<_>>(),
            vec![OrderStatus::Paid, OrderStatus::Cancelled]
        );
        assert_eq!(listed.resume_from, None, "the whole list");
        let request = &store.requests_to("GET /rest/V1/orders")[0];
        let param = |name: &str| request.param(name).map(str::to_owned);
        assert_eq!(
            param("searchCriteria[filter_groups][0][filters][0][field]").as_deref(),
            Some("updated_at")
        );
        assert_eq!(
            param("searchCriteria[filter_groups][0][filters][0][value]").as_deref(),
            Some("2025-02-19 21:20:00")
        );
        assert_eq!(
            param("searchCriteria[filter_groups][0][filters][0][condition_type]").as_deref(),
            Some("gteq")
        );
        assert_eq!(
            param("searchCriteria[sortOrders][0][direction]").as_deref(),
            Some("ASC")
        );
    }

    /// A store whose order list is `changes` (change time, id), filtered and sorted as Magento
    /// does (filter groups ANDed, a group's filters ORed); order `moving` changes once a page
    /// that holds it has been read.
    async fn changing_store(changes: Vec<(String, u64)>, moving: u64) -> MockStore {
        let held = Arc::new(std::sync::Mutex::new(changes));
        MockStore::start(move |request| {
            let param = |name: &str| request.param(name).unwrap_or_default().to_owned();
            let matches = |group: usize, (at, id): &(String, u64)| {
                (0..2).any(|index| {
                    let prefix =
                        format!("searchCriteria[filter_groups][{group}][filters][{index}]");
                    let value = param(&format!("{prefix}[value]"));
                    let (field, condition) = (
                        param(&format!("{prefix}[field]")),
                        param(&format!("{prefix}[condition_type]")),
                    );
                    match (field.as_str(), condition.as_str()) {
                        ("updated_at", "gteq") => *at >= value,
                        ("updated_at", "gt") => *at > value,
                        ("entity_id", "gt") => value.parse().is_ok_and(|v: u64| *id > v),
                        _ => false,
                    }
                })
            };
            let groups = (0..2)
                .filter(|g| {
                    request
                        .param(&format!(
                            "searchCriteria[filter_groups][{g}][filters][0][field]"
                        ))
                        .is_some()
                })
                .count();
            let size: usize = param("searchCriteria[pageSize]").parse().unwrap_or(20);
            let page: usize = param("searchCriteria[currentPage]").parse().unwrap_or(1);
            let mut changes = held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut matching: Vec<(String, u64)> = changes
                .iter()
                .filter(|change| (0..groups).all(|g| matches(g, change)))
                .cloned()
                .collect();
            matching.sort();
            let page_rows: Vec<(String, u64)> = matching
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .cloned()
                .collect();
            if page_rows.iter().any(|(_, id)| *id == moving)
                && let Some(change) = changes.iter_mut().find(|(_, id)| *id == moving)
            {
                change.0 = "2025-04-10 00:00:00".to_owned();
            }
            let items: Vec<Value> = page_rows
                .iter()
                .map(|(at, id)| {
                    let mut order = order_json(*id, "processing", 0.0);
                    order["updated_at"] = json!(at);
                    order
                })
                .collect();
            mock::Reply::json(
                200,
                json!({ "items": items, "total_count": matching.len() }),
            )
        })
        .await
    }

    #[tokio::test]
    async fn an_order_changed_during_a_listing_shifts_no_other_out_of_it() {
        let at = |second: i64| {
            DateTime::from_timestamp(1_743_500_000 + second, 0)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        // 450 orders changed a second apart, then 450 changed in one second (more than a page);
        // an order on the first page, then one on the second, changes once its page is read.
        for (scenario, changes, moving) in [
            (
                "a second apart",
                (0..450u64)
                    .map(|n| (at(n as i64), 1_000 + n))
                    .collect::<Vec<_>>(),
                1_004,
            ),
            (
                "in one second",
                (0..450u64).map(|n| (at(0), 1_000 + n)).collect(),
                1_250,
            ),
        ] {
            let store = changing_store(changes, moving).await;
            let (magento, integration) = setup(&store);
            let since = DateTime::from_timestamp(1_743_000_000, 0).unwrap_or_default();
            let listed = magento
                .list_orders(&integration, since, 1_000)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            mock::assert_listed(&listed, 450, moving, true, scenario);
        }
    }

    #[tokio::test]
    async fn the_stores_currency_is_its_base_currency() {
        let store = MockStore::start(|request| match request.route().as_str() {
            "GET /rest/V1/directory/currency" => mock::Reply::json(
                200,
                json!({ "base_currency_code": "CHF", "base_currency_symbol": "CHF",
                    "default_display_currency_code": "EUR", "default_display_currency_symbol": "€",
                    "available_currency_codes": ["CHF", "EUR"],
                    "exchange_rates": [{ "currency_to": "CHF", "rate": 1 }, { "currency_to": "EUR", "rate": 1.05 }] }),
            ),
            _ => mock::Reply::json(404, json!({ "message": "Request does not match any route." })),
        })
        .await;
        let (magento, integration) = setup(&store);
        assert_eq!(
            magento.shop_currency(&integration).await.ok(),
            Some(Some("CHF".to_owned())),
            "the base currency, not the display one"
        );
    }
}
