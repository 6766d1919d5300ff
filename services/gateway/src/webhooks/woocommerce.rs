//! WooCommerce webhooks (`order.created`, `order.updated`, `order.restored`): the body is the
//! REST v3 order. Paid, cancelled and refunded are inferred from the order's status and its
//! refunds. `order.deleted` (an order trashed or deleted) carries only the order's id. Signed like
//! Shopify's (`X-WC-Webhook-Signature`, base64 HMAC-SHA256 of the body); WooCommerce's ping on
//! webhook creation (`webhook_id=N`, unsigned) is acknowledged without storing anything.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ParseError, amount, click_id, customer_hash, field};
use crate::domain::orders::{NormalizedOrder, OrderLine, OrderStatus};

/// Whether a delivery is WooCommerce's ping, sent once when the webhook is saved.
pub fn is_ping(topic: Option<&str>, body: &[u8]) -> bool {
    topic.is_none() && body.starts_with(b"webhook_id=")
}

/// Topics that carry an order.
pub fn is_order_topic(topic: &str) -> bool {
    matches!(topic, "order.created" | "order.updated" | "order.restored")
}

/// The topic WooCommerce sends when an order is trashed or deleted; its body holds only the
/// order's id.
pub const DELETED: &str = "order.deleted";

/// The order id of an [`DELETED`] delivery (`{"id": 727}`, nothing else: the topic header is not
/// signed, so a whole order's signed body posted again under this topic must not cancel it).
pub fn deleted_order_id(body: &[u8]) -> Result<String, ParseError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Deleted {
        id: u64,
    }
    let deleted: Deleted =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(deleted.id.to_string())
}

/// What a delivery is recorded by: WooCommerce's delivery id is a hash of the webhook and the
/// second it was sent (`WC_Webhook::get_new_delivery_id`), shared by every delivery the webhook
/// sends in that second (an order paid just after it was created, a bulk status change), so the
/// body's hash goes with it: only the same body sent again is a redelivery.
pub fn delivery_key(delivery_id: &str, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("{delivery_id}/{}", hex::encode(&digest[..16]))
}

#[derive(Deserialize)]
struct Order {
    id: u64,
    status: String,
    currency: String,
    #[serde(default)]
    date_created_gmt: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
    /// When the order last changed (UTC, no offset).
    #[serde(default)]
    date_modified_gmt: Option<String>,
    #[serde(default)]
    discount_total: Option<String>,
    #[serde(default)]
    total: Option<String>,
    #[serde(default)]
    billing: Option<Party>,
    #[serde(default)]
    shipping: Option<Party>,
    #[serde(default)]
    line_items: Vec<LineItem>,
    #[serde(default)]
    coupon_lines: Vec<CouponLine>,
    #[serde(default)]
    refunds: Vec<RefundLine>,
    #[serde(default)]
    meta_data: Vec<Meta>,
}

#[derive(Deserialize)]
struct Party {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Deserialize)]
struct LineItem {
    #[serde(default)]
    product_id: Option<u64>,
    /// A whole number in WooCommerce itself; a decimal (`2.0`, `1.5`) with plugins that sell by
    /// weight or length (they make stock amounts floats).
    quantity: f64,
    /// Before discounts.
    subtotal: String,
    /// After discounts.
    total: String,
}

#[derive(Deserialize)]
struct CouponLine {
    code: String,
}

#[derive(Deserialize)]
struct RefundLine {
    /// Negative, e.g. "-10.00".
    total: String,
}

#[derive(Deserialize)]
struct Meta {
    key: String,
    #[serde(default)]
    value: serde_json::Value,
}

/// The order in an `order.*` delivery (or a REST v3 order). `customer_key` keys the customer hash.
pub fn parse_order(body: &[u8], customer_key: &[u8]) -> Result<NormalizedOrder, ParseError> {
    let order: Order = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    order_from(order, customer_key)
}

fn order_from(order: Order, customer_key: &[u8]) -> Result<NormalizedOrder, ParseError> {
    let currency = order.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(field("currency", "must be an ISO 4217 code"));
    }
    let total = amount(order.total.as_deref(), &currency, "total")?;
    let mut refunded = 0i64;
    for refund in &order.refunds {
        refunded =
            refunded.saturating_add(amount(Some(&refund.total), &currency, "refunds.total")?.abs());
    }
    let refunded = refunded.min(total);
    let status = match order.status.as_str() {
        "refunded" => OrderStatus::Refunded,
        "cancelled" | "trash" => OrderStatus::Cancelled,
        "processing" | "completed" if refunded >= total && total > 0 => OrderStatus::Refunded,
        "processing" | "completed" if refunded > 0 => OrderStatus::PartiallyRefunded,
        "processing" | "completed" => OrderStatus::Paid,
        // pending, on-hold, checkout-draft, failed (a declined payment, which the shopper may
        // pay again on the same order) and statuses added by plugins: not paid yet. Orders only
        // move forward, so a failed payment must not end the order.
        _ => OrderStatus::Created,
    };
    let codes: Vec<String> = order
        .coupon_lines
        .iter()
        .map(|c| c.code.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let mut lines = Vec::with_capacity(order.line_items.len());
    let mut subtotal = 0i64;
    for item in &order.line_items {
        let before = amount(Some(&item.subtotal), &currency, "line_items.subtotal")?;
        let after = amount(Some(&item.total), &currency, "line_items.total")?;
        subtotal = subtotal.saturating_add(before);
        let discount = before.saturating_sub(after).max(0);
        // WooCommerce does not say which coupon discounted which line; with one coupon it is that one.
        let line_codes = if discount > 0 && codes.len() == 1 {
            codes.clone()
        } else {
            Vec::new()
        };
        lines.push(OrderLine {
            product_id: item.product_id.map(|id| id.to_string()).unwrap_or_default(),
            category_id: String::new(),
            // `as` saturates: a quantity past the model's bound is capped when it is fitted.
            quantity: item.quantity.round() as i64,
            amount_minor: before,
            discount_minor: discount,
            codes: line_codes,
        });
    }
    // WooCommerce's GMT dates carry no offset.
    let created = order
        .date_created_gmt
        .as_deref()
        .or(order.date_created.as_deref())
        .ok_or_else(|| field("date_created_gmt", "is missing"))?;
    let occurred_at = NaiveDateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%S")
        .map(|naive| naive.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(created).map(|at| at.with_timezone(&Utc)))
        .map_err(|_| field("date_created_gmt", "is not a date-time"))?;
    let click_id = order
        .meta_data
        .iter()
        .find(|meta| meta.key == "click_id" || meta.key == "_click_id")
        .and_then(|meta| meta.value.as_str().and_then(click_id));
    let country = order
        .shipping
        .as_ref()
        .and_then(|p| p.country.clone())
        .filter(|c| c.len() == 2)
        .or_else(|| order.billing.as_ref().and_then(|p| p.country.clone()))
        .filter(|c| c.len() == 2)
        .map(|c| c.to_ascii_uppercase());
    let customer_hash = order
        .billing
        .as_ref()
        .and_then(|p| p.email.as_deref())
        .and_then(|email| customer_hash(customer_key, email));
    Ok(NormalizedOrder {
        store_order_id: order.id.to_string(),
        status,
        codes,
        click_id,
        subtotal_minor: subtotal,
        discount_minor: amount(order.discount_total.as_deref(), &currency, "discount_total")?,
        total_minor: total,
        refunded_minor: refunded,
        currency,
        country,
        customer_hash,
        lines,
        occurred_at,
        updated_at: order
            .date_modified_gmt
            .as_deref()
            .and_then(crate::adapters::store_time),
        test: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_delivery_id_for_two_bodies_is_two_deliveries() {
        let paid = delivery_key("9f3c", br#"{"id":727,"status":"processing"}"#);
        let completed = delivery_key("9f3c", br#"{"id":727,"status":"completed"}"#);
        assert_ne!(paid, completed);
        assert_eq!(
            paid,
            delivery_key("9f3c", br#"{"id":727,"status":"processing"}"#)
        );
        assert!(paid.starts_with("9f3c/") && paid.len() == "9f3c/".len() + 32);
    }

    /// A REST v3 order as WooCommerce documents it (trimmed to the fields we read, plus a few we
    /// do not).
    const ORDER: &str = r#"{
      "id": 727, "parent_id": 0, "number": "727", "status": "processing", "currency": "USD",
      "date_created": "2017-03-22T16:28:02", "date_created_gmt": "2017-03-22T19:28:02",
      "date_modified": "2017-03-22T16:28:08", "date_modified_gmt": "2017-03-22T19:28:08",
      "discount_total": "2.40", "discount_tax": "0.00", "shipping_total": "10.00",
      "total": "29.35", "total_tax": "1.35", "prices_include_tax": false,
      "billing": {"first_name": "John", "last_name": "Doe", "email": "John.Doe@example.com", "country": "US"},
      "shipping": {"first_name": "John", "last_name": "Doe", "country": "US"},
      "meta_data": [{"id": 13, "key": "_click_id", "value": "c_abc123"}],
      "line_items": [
        {"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2,
         "subtotal": "6.00", "subtotal_tax": "0.45", "total": "4.80", "total_tax": "0.45", "price": 3},
        {"id": 316, "name": "Ship Your Idea", "product_id": 22, "variation_id": 23, "quantity": 1,
         "subtotal": "12.00", "subtotal_tax": "0.90", "total": "10.80", "total_tax": "0.90", "price": 12}
      ],
      "coupon_lines": [{"id": 318, "code": "SUMMER20", "discount": "2.40", "discount_tax": "0.00"}],
      "refunds": []
    }"#;

    #[test]
    fn only_a_deletion_body_names_a_deleted_order() {
        assert_eq!(
            deleted_order_id(br#"{"id": 727}"#).ok().as_deref(),
            Some("727")
        );
        // A whole order's signed body posted again under the (unsigned) deletion topic.
        assert!(deleted_order_id(ORDER.as_bytes()).is_err());
    }

    #[test]
    fn a_click_id_that_cannot_be_ours_is_no_click_id() {
        // Order meta comes from the shopper's cart: a value no link of ours made is dropped, and
        // the order (and its code) still counts.
        for bad in [r#"c_abc\n"#, r#"c_\u0000"#, &"c".repeat(129)] {
            let body = ORDER.replace("c_abc123", bad);
            let order = parse_order(body.as_bytes(), b"key").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(order.click_id, None, "{bad}");
            assert_eq!(order.codes, vec!["SUMMER20"]);
        }
    }

    #[test]
    fn a_decimal_quantity_is_read_rounded() {
        let body = ORDER
            .replace(r#""quantity": 2,"#, r#""quantity": 2.0,"#)
            .replace(r#""quantity": 1,"#, r#""quantity": 1.5,"#);
        let order = parse_order(body.as_bytes(), b"key").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            order.lines.iter().map(|l| l.quantity).collect::<Vec<_>>(),
            [2, 2]
        );
        assert_eq!(order.codes, vec!["SUMMER20"]);
    }

    #[test]
    fn a_paid_order_with_a_coupon() {
        let order = parse_order(ORDER.as_bytes(), b"key").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.store_order_id, "727");
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.codes, vec!["SUMMER20"]);
        assert_eq!(order.click_id.as_deref(), Some("c_abc123"));
        assert_eq!(
            (
                order.subtotal_minor,
                order.discount_minor,
                order.total_minor
            ),
            (1800, 240, 2935)
        );
        assert_eq!(order.lines[0].discount_minor, 120);
        assert_eq!(order.lines[0].codes, vec!["SUMMER20"]);
        assert_eq!(order.country.as_deref(), Some("US"));
        assert_eq!(order.occurred_at.to_rfc3339(), "2017-03-22T19:28:02+00:00");
        assert_eq!(
            order.updated_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2017-03-22T19:28:08+00:00"),
            "date_modified_gmt, not the shop's local date_modified"
        );
        assert_eq!(
            order.customer_hash,
            customer_hash(b"key", "john.doe@example.com"),
            "hash ignores case"
        );
    }

    #[test]
    fn statuses_are_inferred() {
        let with = |status: &str, refunds: &str| {
            let body = ORDER
                .replace(
                    "\"status\": \"processing\"",
                    &format!("\"status\": \"{status}\""),
                )
                .replace("\"refunds\": []", &format!("\"refunds\": [{refunds}]"));
            parse_order(body.as_bytes(), b"k").map(|o| (o.status, o.refunded_minor))
        };
        assert_eq!(with("pending", ""), Ok((OrderStatus::Created, 0)));
        assert_eq!(with("on-hold", ""), Ok((OrderStatus::Created, 0)));
        assert_eq!(with("completed", ""), Ok((OrderStatus::Paid, 0)));
        assert_eq!(with("cancelled", ""), Ok((OrderStatus::Cancelled, 0)));
        assert_eq!(with("failed", ""), Ok((OrderStatus::Created, 0)));
        assert_eq!(
            with("completed", r#"{"id": 1, "total": "-10.00"}"#),
            Ok((OrderStatus::PartiallyRefunded, 1000))
        );
        assert_eq!(
            with("refunded", r#"{"id": 1, "total": "-29.35"}"#),
            Ok((OrderStatus::Refunded, 2935))
        );
    }

    #[test]
    fn amounts_past_the_currencys_precision_are_rounded() {
        // A JPY shop left at WooCommerce's default of two decimals: a 10 % coupon on ¥1,005.
        let body = ORDER
            .replace("\"currency\": \"USD\"", "\"currency\": \"JPY\"")
            .replace("\"total\": \"29.35\"", "\"total\": \"904.50\"")
            .replace(
                "\"discount_total\": \"2.40\"",
                "\"discount_total\": \"100.50\"",
            );
        let order = parse_order(body.as_bytes(), b"k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((order.total_minor, order.discount_minor), (905, 101));
        assert_eq!(order.subtotal_minor, 18, "\"6.00\" and \"12.00\" yen");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(matches!(
            parse_order(b"webhook_id=3", b"k"),
            Err(ParseError::Json(_))
        ));
        let bad = ORDER.replace("\"total\": \"29.35\"", "\"total\": \"29.3.5\"");
        assert!(matches!(
            parse_order(bad.as_bytes(), b"k"),
            Err(ParseError::Field { field: "total", .. })
        ));
        assert!(is_ping(None, b"webhook_id=3"));
        assert!(!is_ping(Some("order.created"), b"webhook_id=3"));
    }
}
