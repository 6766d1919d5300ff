//! Shopify webhooks: `X-Shopify-Hmac-Sha256` verification (base64 HMAC-SHA256 of the raw body
//! with the app's secret, compared in constant time) and the order payloads of `orders/create`,
//! `orders/paid`, `orders/cancelled` (and orders carrying refunds).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ParseError, amount, click_id, customer_hash, field};
use crate::domain::orders::{NormalizedOrder, OrderLine, OrderStatus};

#[derive(Deserialize)]
struct Order {
    id: u64,
    currency: String,
    #[serde(default)]
    financial_status: Option<String>,
    #[serde(default)]
    cancelled_at: Option<String>,
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
    /// After discounts (Shopify's meaning); the suite's subtotal is before them.
    #[serde(default)]
    subtotal_price: Option<String>,
    /// The line items' prices before discounts.
    #[serde(default)]
    total_line_items_price: Option<String>,
    #[serde(default)]
    total_price: Option<String>,
    #[serde(default)]
    total_discounts: Option<String>,
    #[serde(default)]
    discount_codes: Vec<DiscountCode>,
    #[serde(default)]
    discount_applications: Vec<DiscountApplication>,
    #[serde(default)]
    line_items: Vec<LineItem>,
    #[serde(default)]
    note_attributes: Vec<NoteAttribute>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    shipping_address: Option<Address>,
    #[serde(default)]
    billing_address: Option<Address>,
    #[serde(default)]
    test: bool,
    #[serde(default)]
    refunds: Vec<Refund>,
    /// The customer's currency, where it is not the shop's (`currency`, which every amount above
    /// is in): refund transactions are in it.
    #[serde(default)]
    presentment_currency: Option<String>,
    #[serde(default)]
    total_price_set: Option<PriceSet>,
}

#[derive(Deserialize)]
struct PriceSet {
    presentment_money: Money,
}

#[derive(Deserialize)]
struct Money {
    amount: String,
}

/// The order's own exchange between the customer's currency and the shop's: its total in each.
struct Exchange {
    presentment: String,
    presentment_total: i64,
    shop_total: i64,
}

impl Exchange {
    /// `minor` of the customer's currency in the shop's, rounded half up (the presentment total
    /// is above zero: [`exchange`]).
    fn to_shop(&self, minor: i64) -> i64 {
        let (n, d) = (
            i128::from(minor) * i128::from(self.shop_total),
            i128::from(self.presentment_total),
        );
        i64::try_from((2 * n + d) / (2 * d)).unwrap_or(i64::MAX)
    }
}

/// A refund, as embedded in an order and as the body of `refunds/create`.
#[derive(Deserialize)]
pub struct Refund {
    /// The refund's own id (Shopify's numeric id).
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub order_id: Option<u64>,
    /// When the refund was made (RFC 3339, the shop's offset).
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    transactions: Vec<Transaction>,
}

#[derive(Deserialize)]
struct Transaction {
    kind: String,
    #[serde(default)]
    status: Option<String>,
    amount: String,
    /// The transaction's currency: the customer's (Shopify refunds in the presentment currency).
    #[serde(default)]
    currency: Option<String>,
}

impl Refund {
    /// The money actually returned, in the shop's `currency`: successful refund transactions, a
    /// transaction in the customer's currency taken at the order's `exchange` (read only then).
    fn amount_minor(
        &self,
        currency: &str,
        exchange: &dyn Fn() -> Result<Option<Exchange>, ParseError>,
    ) -> Result<i64, ParseError> {
        let mut total = 0i64;
        for tx in &self.transactions {
            if tx.kind != "refund" || tx.status.as_deref().is_some_and(|s| s != "success") {
                continue;
            }
            let tx_currency = tx
                .currency
                .as_deref()
                .map(|c| c.trim().to_ascii_uppercase())
                .unwrap_or_else(|| currency.to_owned());
            let minor = if tx_currency == currency {
                amount(Some(&tx.amount), currency, "refunds.transactions.amount")?
            } else {
                let exchange = exchange()?
                    .filter(|e| e.presentment == tx_currency)
                    .ok_or_else(|| {
                        field(
                            "refunds.transactions.currency",
                            format!("{tx_currency} is neither the shop's currency nor the order's presentment currency"),
                        )
                    })?;
                exchange.to_shop(amount(
                    Some(&tx.amount),
                    &tx_currency,
                    "refunds.transactions.amount",
                )?)
            };
            total = total.saturating_add(minor);
        }
        Ok(total)
    }
}

/// What a refund of an order the store no longer shows does to its stored state
/// ([`refunded_from_stored`]).
#[derive(Debug, PartialEq)]
pub enum TakenIn {
    /// The state with the refund's money added, changed at the later of the stored state's
    /// change and the refund.
    Added(NormalizedOrder),
    /// The stored state as it is: the refund is in it already.
    AlreadyIn(NormalizedOrder),
    /// It cannot be told: a time is unknown (a refund counted twice would take back commission a
    /// creator earned).
    Unknown,
}

/// `refund` of an order the store no longer shows (deleted, or older than the 60 days an app
/// without `read_all_orders` may read), taken into its latest stored state, `stored`. The refund
/// is in it already when it was taken in before (`taken_before`, known by its id) or made no
/// later than `store_at`, the store's own last change of the order (a state made here from
/// refunds has a change time of its own, later than the store's). A refund in the customer's
/// currency cannot be taken into the shop's without the order: an error.
pub fn refunded_from_stored(
    mut stored: NormalizedOrder,
    refund: &Refund,
    taken_before: bool,
    store_at: Option<DateTime<Utc>>,
) -> Result<TakenIn, ParseError> {
    let refunded_at = refund
        .created_at
        .as_deref()
        .and_then(crate::adapters::store_time);
    let (Some(refunded_at), Some(store_at), Some(stored_at)) =
        (refunded_at, store_at, stored.updated_at)
    else {
        return Ok(TakenIn::Unknown);
    };
    if taken_before || store_at >= refunded_at {
        return Ok(TakenIn::AlreadyIn(stored));
    }
    let added = refund.amount_minor(&stored.currency, &|| Ok(None))?;
    if added == 0 {
        return Ok(TakenIn::AlreadyIn(stored));
    }
    stored.refunded_minor = stored
        .refunded_minor
        .saturating_add(added)
        .min(stored.total_minor);
    if stored.status != OrderStatus::Cancelled {
        stored.status = if stored.refunded_minor >= stored.total_minor {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        };
    }
    stored.updated_at = Some(stored_at.max(refunded_at));
    Ok(TakenIn::Added(stored))
}

/// The body of a `refunds/create` delivery: which order, and how much went back.
pub fn parse_refund(body: &[u8]) -> Result<Refund, ParseError> {
    let refund: Refund =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if refund.order_id.is_none() {
        return Err(field("order_id", "is missing"));
    }
    Ok(refund)
}

#[derive(Deserialize)]
struct DiscountCode {
    code: String,
}

#[derive(Deserialize)]
struct DiscountApplication {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct LineItem {
    #[serde(default)]
    product_id: Option<u64>,
    quantity: i64,
    price: String,
    #[serde(default)]
    discount_allocations: Vec<Allocation>,
}

#[derive(Deserialize)]
struct Allocation {
    amount: String,
    discount_application_index: usize,
}

#[derive(Deserialize)]
struct NoteAttribute {
    name: String,
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default)]
    country_code: Option<String>,
}

/// The order in a webhook body, its status from the body alone: cancelled when it has a
/// `cancelled_at` (as every `orders/cancelled` body has), else by `financial_status`. The topic
/// header is not signed, so it must not change what a signed body says: a body captured once and
/// posted again under `orders/cancelled` would cancel its order. `customer_key` keys the hash of
/// the customer's email, so the same customer is recognised without storing the email.
pub fn parse_order(body: &[u8], customer_key: &[u8]) -> Result<NormalizedOrder, ParseError> {
    let order: Order = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let currency = order.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(field("currency", "must be an ISO 4217 code"));
    }
    let status = if order.cancelled_at.is_some() {
        OrderStatus::Cancelled
    } else {
        match order.financial_status.as_deref() {
            Some("paid") => OrderStatus::Paid,
            Some("refunded") => OrderStatus::Refunded,
            Some("partially_refunded") => OrderStatus::PartiallyRefunded,
            Some("voided") => OrderStatus::Cancelled,
            _ => OrderStatus::Created,
        }
    };
    let codes: Vec<String> = order
        .discount_codes
        .iter()
        .map(|d| d.code.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    // An application is a code's when it names one of the order's codes (draft orders carry the
    // code as the title of a manual application); lines carry the order's spelling of the code.
    let application_code: Vec<Option<String>> = order
        .discount_applications
        .iter()
        .map(|app| {
            let name = app.code.as_deref().or(app.title.as_deref())?;
            codes.iter().find(|c| c.eq_ignore_ascii_case(name)).cloned()
        })
        .collect();
    let mut lines = Vec::with_capacity(order.line_items.len());
    for item in &order.line_items {
        let price = amount(Some(&item.price), &currency, "line_items.price")?;
        let mut discount = 0i64;
        let mut line_codes = Vec::new();
        for allocation in &item.discount_allocations {
            // Saturating, like every other sum here: huge allocations must not overflow.
            discount = discount.saturating_add(amount(
                Some(&allocation.amount),
                &currency,
                "line_items.discount_allocations.amount",
            )?);
            if let Some(Some(code)) = application_code.get(allocation.discount_application_index)
                && !line_codes.contains(code)
            {
                line_codes.push(code.clone());
            }
        }
        lines.push(OrderLine {
            product_id: item.product_id.map(|id| id.to_string()).unwrap_or_default(),
            category_id: String::new(),
            quantity: item.quantity,
            amount_minor: price.saturating_mul(item.quantity),
            discount_minor: discount,
            codes: line_codes,
        });
    }
    let occurred_at = DateTime::parse_from_rfc3339(&order.created_at)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| field("created_at", "is not an RFC 3339 time"))?;
    let click_id = order
        .note_attributes
        .iter()
        .find(|attr| attr.name == "click_id")
        .and_then(|attr| attr.value.as_str().and_then(click_id));
    let country = order
        .shipping_address
        .as_ref()
        .or(order.billing_address.as_ref())
        .and_then(|address| address.country_code.as_deref())
        .map(|code| code.trim().to_ascii_uppercase())
        .filter(|code| code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase()));
    let customer_hash = order
        .email
        .as_deref()
        .and_then(|email| customer_hash(customer_key, email));
    let discount_minor = amount(
        order.total_discounts.as_deref(),
        &currency,
        "total_discounts",
    )?;
    // The suite's subtotal is before discounts, as every store's but Shopify's `subtotal_price`.
    let subtotal_minor = match order.total_line_items_price.as_deref() {
        Some(before) => amount(Some(before), &currency, "total_line_items_price")?,
        None => amount(order.subtotal_price.as_deref(), &currency, "subtotal_price")?
            .saturating_add(discount_minor),
    };
    let total_minor = amount(order.total_price.as_deref(), &currency, "total_price")?;
    let exchange = || exchange(&order, &currency, total_minor);
    Ok(NormalizedOrder {
        store_order_id: order.id.to_string(),
        status,
        codes,
        click_id,
        subtotal_minor,
        discount_minor,
        total_minor,
        // At most the total: refunds in the customer's currency, each rounded into the shop's,
        // may add up to a cent more than the order.
        refunded_minor: {
            let mut refunded = 0i64;
            for refund in &order.refunds {
                refunded = refunded.saturating_add(refund.amount_minor(&currency, &exchange)?);
            }
            refunded.min(total_minor)
        },
        currency,
        country,
        customer_hash,
        lines,
        occurred_at,
        updated_at: order
            .updated_at
            .as_deref()
            .and_then(crate::adapters::store_time),
        test: order.test,
    })
}

/// The order's exchange, when the customer paid in another currency than the shop's: read for
/// a refund in that currency only.
fn exchange(order: &Order, shop: &str, shop_total: i64) -> Result<Option<Exchange>, ParseError> {
    let Some(presentment) = order
        .presentment_currency
        .as_deref()
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty() && c != shop)
    else {
        return Ok(None);
    };
    const FIELD: &str = "total_price_set.presentment_money.amount";
    let total = order
        .total_price_set
        .as_ref()
        .map(|set| set.presentment_money.amount.as_str())
        .ok_or_else(|| {
            field(
                FIELD,
                "is needed to take a refund in the customer's currency",
            )
        })?;
    let presentment_total = amount(Some(total), &presentment, FIELD)?;
    if presentment_total <= 0 {
        return Err(field(
            FIELD,
            "must be above zero to take a refund in the customer's currency",
        ));
    }
    Ok(Some(Exchange {
        presentment,
        presentment_total,
        shop_total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::{sign, verify_signature as verify};

    const WITH_CODE: &[u8] =
        include_bytes!("../../../../tests/fixtures/shopify/orders_create_percentage_code.json");
    const WITHOUT_CODE: &[u8] =
        include_bytes!("../../../../tests/fixtures/shopify/orders_create_no_code.json");

    #[test]
    fn signatures_must_match_the_exact_bytes() {
        let secret = b"shopify-app-secret";
        let good = sign(secret, WITH_CODE);
        assert!(verify(secret, WITH_CODE, Some(&good)));
        assert!(
            !verify(b"another-secret", WITH_CODE, Some(&good)),
            "wrong secret"
        );
        assert!(!verify(secret, WITH_CODE, None), "missing header");
        assert!(
            !verify(secret, WITH_CODE, Some("not base64!")),
            "garbage header"
        );
        let mut flipped = WITH_CODE.to_vec();
        flipped[10] ^= 1;
        assert!(!verify(secret, &flipped, Some(&good)), "flipped bit");
        // The same JSON serialized again (whitespace, key order) is not the signed body.
        let value: serde_json::Value = serde_json::from_slice(WITH_CODE).unwrap_or_default();
        let reserialized = serde_json::to_vec(&value).unwrap_or_default();
        assert_ne!(reserialized, WITH_CODE);
        assert!(
            !verify(secret, &reserialized, Some(&good)),
            "re-serialized body"
        );
    }

    #[test]
    fn parses_the_real_order_with_a_code() {
        let order = parse_order(WITH_CODE, b"key").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.store_order_id, "6200407294252");
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.codes, vec!["0124D"]);
        assert_eq!(order.currency, "HKD");
        assert_eq!(
            (
                order.subtotal_minor,
                order.discount_minor,
                order.total_minor
            ),
            (19_900, 3_410, 18_690)
        );
        assert_eq!(order.lines.len(), 2);
        // Line 1: 99.00 with 14.10 from the code and 5.00 automatic; line 2: 100.00 with 15.00.
        assert_eq!(
            (order.lines[0].amount_minor, order.lines[0].discount_minor),
            (9_900, 1_910)
        );
        assert_eq!(order.lines[0].codes, vec!["0124D"]);
        assert_eq!(order.lines[1].codes, vec!["0124D"]);
        assert_eq!(order.country, None);
        assert_eq!(order.customer_hash, None, "the fixture has an empty email");
        assert!(!order.test);
        assert_eq!(order.occurred_at.to_rfc3339(), "2025-01-24T04:10:15+00:00");
        // The unsigned topic header does not make a signed body cancelled: its cancelled_at does.
        let cancelled = String::from_utf8_lossy(WITH_CODE).replace(
            "\"cancelled_at\": null",
            "\"cancelled_at\": \"2025-01-24T12:00:00+08:00\"",
        );
        let cancelled = parse_order(cancelled.as_bytes(), b"key").map(|o| o.status);
        assert_eq!(cancelled, Ok(OrderStatus::Cancelled));
    }

    #[test]
    fn a_cart_attribute_click_id_is_kept_only_when_it_could_be_ours() {
        let with = |value: &str| {
            let mut order: serde_json::Value =
                serde_json::from_slice(WITH_CODE).unwrap_or_default();
            order["note_attributes"] = serde_json::json!([{"name": "click_id", "value": value}]);
            let body = serde_json::to_vec(&order).unwrap_or_default();
            parse_order(&body, b"key").unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(with("c_1").click_id.as_deref(), Some("c_1"));
        // Shoppers can edit cart attributes: what no link of ours made is no click id, and the
        // order still counts by its code.
        for bad in ["c_1\n", "c_\u{0}", ""] {
            let order = with(bad);
            assert_eq!(order.click_id, None, "{bad:?}");
            assert_eq!(order.codes, vec!["0124D"]);
        }
    }

    #[test]
    fn a_refund_in_the_customers_currency_is_taken_at_the_orders_exchange() {
        // The shop sells in USD; the customer paid 170.00 EUR for its 186.90 USD.
        let with = |refunds: serde_json::Value| {
            let mut body: serde_json::Value =
                serde_json::from_slice(WITH_CODE).unwrap_or_else(|e| panic!("{e}"));
            body["currency"] = "USD".into();
            body["presentment_currency"] = "EUR".into();
            body["total_price_set"]["presentment_money"]["amount"] = "170.00".into();
            body["refunds"] = refunds;
            let body = serde_json::to_vec(&body).unwrap_or_else(|e| panic!("{e}"));
            parse_order(&body, b"key").map(|o| o.refunded_minor)
        };
        let refund = |amount: &str, currency: &str| {
            serde_json::json!([{ "order_id": 1, "transactions": [
                { "kind": "refund", "status": "success", "amount": amount, "currency": currency }
            ] }])
        };
        // 17.00 EUR of 170.00 is a tenth: 18.69 USD.
        assert_eq!(with(refund("17.00", "EUR")), Ok(1_869));
        assert_eq!(with(refund("10.00", "USD")), Ok(1_000));
        // The whole 170.00 EUR back in three refunds, each rounded up into USD: the total.
        let parts = serde_json::json!([1.00, 1.06, 167.94].map(|amount| serde_json::json!({
            "order_id": 1,
            "transactions": [{ "kind": "refund", "status": "success",
                               "amount": format!("{amount:.2}"), "currency": "EUR" }]
        })));
        assert_eq!(with(parts), Ok(18_690));
        assert!(matches!(
            with(refund("10.00", "GBP")),
            Err(ParseError::Field { field, .. }) if field == "refunds.transactions.currency"
        ));
        // Without the order's total in the customer's currency, a refund in it cannot be taken
        // (rather than counted as nothing); an order without such a refund does not need it.
        let without_total = |refunds: serde_json::Value| {
            let mut body: serde_json::Value =
                serde_json::from_slice(WITH_CODE).unwrap_or_else(|e| panic!("{e}"));
            body["currency"] = "USD".into();
            body["presentment_currency"] = "EUR".into();
            if let Some(fields) = body.as_object_mut() {
                fields.remove("total_price_set");
            }
            body["refunds"] = refunds;
            let body = serde_json::to_vec(&body).unwrap_or_else(|e| panic!("{e}"));
            parse_order(&body, b"key").map(|o| o.refunded_minor)
        };
        assert_eq!(without_total(refund("10.00", "USD")), Ok(1_000));
        assert!(matches!(
            without_total(refund("17.00", "EUR")),
            Err(ParseError::Field { field, .. })
                if field == "total_price_set.presentment_money.amount"
        ));
    }

    #[test]
    fn the_subtotal_is_before_discounts_even_without_the_line_items_total() {
        // Shopify's `subtotal_price` (164.90) is after the discounts (34.10).
        let mut body: serde_json::Value =
            serde_json::from_slice(WITH_CODE).unwrap_or_else(|e| panic!("{e}"));
        if let Some(fields) = body.as_object_mut() {
            fields.remove("total_line_items_price");
        }
        let body = serde_json::to_vec(&body).unwrap_or_else(|e| panic!("{e}"));
        let order = parse_order(&body, b"key").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (order.subtotal_minor, order.discount_minor),
            (19_900, 3_410)
        );
    }

    #[test]
    fn an_automatic_discount_is_not_a_code() {
        let order = parse_order(WITHOUT_CODE, b"key").unwrap_or_else(|e| panic!("{e}"));
        assert!(order.codes.is_empty());
        assert!(order.lines.iter().all(|line| line.codes.is_empty()));
        assert!(order.discount_minor > 0);
    }

    #[test]
    fn a_refund_is_taken_into_a_stored_state_only_when_both_times_are_known() {
        let paid = |updated_at: &str| {
            let body = format!(
                r#"{{"id":1,"currency":"EUR","created_at":"2025-01-01T00:00:00Z","total_price":"10.00","financial_status":"paid"{updated_at}}}"#
            );
            parse_order(body.as_bytes(), b"k").unwrap_or_else(|e| panic!("{e}"))
        };
        let refund = |currency: &str| {
            let body = format!(
                r#"{{"id":7,"order_id":1,"created_at":"2025-01-02T00:00:00+01:00","transactions":[{{"kind":"refund","status":"success","amount":"4.00","currency":"{currency}"}}]}}"#
            );
            parse_refund(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
        };
        let taken = |stored: NormalizedOrder, refund: &Refund, taken_before: bool| {
            let store_at = stored.updated_at;
            match refunded_from_stored(stored, refund, taken_before, store_at) {
                Ok(TakenIn::Added(o)) => Some((
                    true,
                    o.status,
                    o.refunded_minor,
                    o.updated_at.map(|t| t.to_rfc3339()),
                )),
                Ok(TakenIn::AlreadyIn(o)) => Some((
                    false,
                    o.status,
                    o.refunded_minor,
                    o.updated_at.map(|t| t.to_rfc3339()),
                )),
                Ok(TakenIn::Unknown) => None,
                Err(err) => panic!("{err}"),
            }
        };
        // Made after the stored state: added, the state changed when the refund was made.
        let earlier = r#","updated_at":"2025-01-01T12:00:00Z""#;
        assert_eq!(
            taken(paid(earlier), &refund("EUR"), false),
            Some((
                true,
                OrderStatus::PartiallyRefunded,
                400,
                Some("2025-01-01T23:00:00+00:00".to_owned())
            ))
        );
        // Taken in before (its id recorded): in it already.
        assert_eq!(
            taken(paid(earlier), &refund("EUR"), true).map(|t| (t.0, t.2)),
            Some((false, 0))
        );
        // The stored state is no older than the refund: in it already.
        let later = r#","updated_at":"2025-01-01T23:00:00Z""#;
        assert_eq!(
            taken(paid(later), &refund("EUR"), false),
            Some((
                false,
                OrderStatus::Paid,
                0,
                Some("2025-01-01T23:00:00+00:00".to_owned())
            ))
        );
        assert_eq!(
            taken(paid(""), &refund("EUR"), false),
            None,
            "no time stored"
        );
        // The customer's currency, without the order's exchange.
        let stored = paid(earlier);
        let store_at = stored.updated_at;
        assert!(refunded_from_stored(stored, &refund("USD"), false, store_at).is_err());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(matches!(parse_order(b"{", b"k"), Err(ParseError::Json(_))));
        let bad_amount =
            br#"{"id":1,"currency":"USD","created_at":"2025-01-01T00:00:00Z","total_price":"abc"}"#;
        assert_eq!(
            parse_order(bad_amount, b"k").err().map(|e| e.to_string()),
            Some("total_price: \"abc\" is not an amount in USD".to_owned())
        );
        let email = br#"{"id":1,"currency":"USD","created_at":"2025-01-01T00:00:00Z","email":"A@B.co","shipping_address":{"country_code":"FR"}}"#;
        let order = parse_order(email, b"k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.country.as_deref(), Some("FR"));
        let hash = order.customer_hash.unwrap_or_default();
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains('@'));
    }

    /// Kept from the `shopify_order` fuzz target: two discount allocations summing past
    /// `i64::MAX` overflowed (a panic with overflow checks, a wrapped discount without).
    #[test]
    fn huge_discount_allocations_do_not_overflow() {
        let body = br#"{"id":1,"currency":"USD","created_at":"2025-01-01T00:00:00Z","line_items":[{"quantity":1,"price":"1","discount_allocations":[{"amount":"92233720368547758.07","discount_application_index":0},{"amount":"0.01","discount_application_index":0}]}]}"#;
        let order = parse_order(body, b"k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.lines[0].discount_minor, i64::MAX);
    }

    /// Kept from the `shopify_order` fuzz target: an application naming the code in another
    /// case ("anna10" for the order's "ANNA10") put that spelling on the line, which was then
    /// not one of the order's codes.
    #[test]
    fn lines_carry_the_orders_spelling_of_a_code() {
        let body = br#"{"id":1,"currency":"USD","created_at":"2025-01-01T00:00:00Z","discount_codes":[{"code":"ANNA10"}],"discount_applications":[{"code":"ANNA10"},{"title":"anna10"}],"line_items":[{"quantity":1,"price":"6.00","discount_allocations":[{"amount":"2.00","discount_application_index":1}]}]}"#;
        let order = parse_order(body, b"k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.codes, vec!["ANNA10"]);
        assert_eq!(order.lines[0].codes, vec!["ANNA10"]);
    }
}
