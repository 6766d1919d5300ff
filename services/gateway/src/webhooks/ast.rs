//! Agnostic Sales Tracking: conversions reported by the brand's own site, for stores the suite
//! has no adapter for. Server-side: `POST /ast/v1/conversions?integration=ID` with a JSON body
//! signed like a Shopify webhook (`X-AST-Signature`: base64 HMAC-SHA256 of the body with the
//! integration's secret). Browser-side: a 1×1 pixel whose URL the brand's server signs:
//! `GET /ast/v1/pixel.gif?integration=ID&order_id=..&amount=..&currency=..[&click_id=..]
//! [&country=..][&codes=A,B][&status=..][&refunded_amount=..][&occurred_at=..]&sig=HEX`, where `sig` is the hex HMAC-SHA256 of the query string
//! before `&sig=` and comes last.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::Deserialize;

use super::{HmacSha256, ParseError, click_id, field};
use crate::domain::orders::{NormalizedOrder, OrderLine, OrderStatus, parse_amount};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conversion {
    order_id: String,
    #[serde(default)]
    click_id: Option<String>,
    /// Decimal string, e.g. "49.90" (exact; numbers are refused to keep money out of floats).
    amount: String,
    currency: String,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    codes: Vec<String>,
    /// paid (default), cancelled or refunded.
    #[serde(default)]
    status: Option<String>,
    /// Refunded so far (decimal string); with status paid, a partial refund.
    #[serde(default)]
    refunded_amount: Option<String>,
    /// When the order was placed (RFC 3339); now when absent.
    #[serde(default)]
    occurred_at: Option<String>,
}

/// A conversion body into an order. `now` stands in for a missing `occurred_at`.
pub fn parse_conversion(body: &[u8], now: DateTime<Utc>) -> Result<NormalizedOrder, ParseError> {
    let c: Conversion =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    build(Fields {
        order_id: c.order_id,
        click_id: c.click_id,
        amount: c.amount,
        currency: c.currency,
        country: c.country,
        codes: c.codes,
        status: c.status,
        refunded: c.refunded_amount,
        occurred_at: c.occurred_at,
        now,
    })
}

struct Fields {
    order_id: String,
    click_id: Option<String>,
    amount: String,
    currency: String,
    country: Option<String>,
    codes: Vec<String>,
    status: Option<String>,
    refunded: Option<String>,
    occurred_at: Option<String>,
    now: DateTime<Utc>,
}

fn build(f: Fields) -> Result<NormalizedOrder, ParseError> {
    let order_id = f.order_id.trim().to_owned();
    if order_id.is_empty() || order_id.len() > 200 || order_id.chars().any(char::is_control) {
        return Err(field(
            "order_id",
            "1..=200 characters, no control characters",
        ));
    }
    let currency = f.currency.trim().to_owned();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(field(
            "currency",
            "must be an ISO 4217 code (3 capital letters)",
        ));
    }
    let amount = parse_amount(&f.amount, &currency)
        .filter(|a| *a >= 0)
        .ok_or_else(|| {
            field(
                "amount",
                format!("{:?} is not an amount in {currency}", f.amount),
            )
        })?;
    let refunded = match f.refunded.as_deref() {
        None | Some("") => 0,
        Some(text) => parse_amount(text, &currency)
            .filter(|r| (0..=amount).contains(r))
            .ok_or_else(|| field("refunded_amount", "must be an amount between 0 and amount"))?,
    };
    let status = match f.status.as_deref().unwrap_or("paid") {
        "paid" if refunded >= amount && amount > 0 => OrderStatus::Refunded,
        "paid" if refunded > 0 => OrderStatus::PartiallyRefunded,
        "paid" => OrderStatus::Paid,
        "cancelled" => OrderStatus::Cancelled,
        "refunded" => OrderStatus::Refunded,
        _ => return Err(field("status", "must be paid, cancelled or refunded")),
    };
    let refunded = if status == OrderStatus::Refunded {
        amount
    } else {
        refunded
    };
    // Carried from the landing URL, which shoppers can edit: one that could not be ours is no
    // click id, and the conversion still counts by its codes.
    let click_id = f.click_id.as_deref().map(str::trim).and_then(click_id);
    let country = f
        .country
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty());
    if country
        .as_ref()
        .is_some_and(|c| c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()))
    {
        return Err(field("country", "must be ISO 3166-1 alpha-2"));
    }
    let codes: Vec<String> = f
        .codes
        .into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if codes.len() > 20 || codes.iter().any(|c| c.len() > 100) {
        return Err(field("codes", "at most 20 codes of at most 100 characters"));
    }
    let occurred_at = match f.occurred_at.as_deref() {
        None | Some("") => f.now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| field("occurred_at", "must be an RFC 3339 time"))?,
    };
    Ok(NormalizedOrder {
        store_order_id: order_id,
        status,
        lines: vec![OrderLine {
            product_id: String::new(),
            category_id: String::new(),
            quantity: 1,
            amount_minor: amount,
            discount_minor: 0,
            codes: codes.clone(),
        }],
        codes,
        click_id,
        currency,
        subtotal_minor: amount,
        discount_minor: 0,
        total_minor: amount,
        refunded_minor: refunded,
        country,
        customer_hash: None,
        occurred_at,
        updated_at: None,
        test: false,
    })
}

/// The pixel's query: the integration id and the signed part, or why it is refused.
pub struct Pixel<'a> {
    pub integration_id: i64,
    signed: &'a str,
    signature: &'a str,
}

/// Splits a raw pixel query string into the integration, the signed part and the signature.
pub fn pixel_query(raw: &str) -> Result<Pixel<'_>, ParseError> {
    let (signed, signature) = raw
        .rsplit_once("&sig=")
        .ok_or_else(|| field("sig", "is required and must be the last parameter"))?;
    let integration_id = signed
        .split('&')
        .find_map(|pair| pair.strip_prefix("integration="))
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| field("integration", "must be a positive id"))?;
    Ok(Pixel {
        integration_id,
        signed,
        signature,
    })
}

impl Pixel<'_> {
    /// Whether `sig` is the hex HMAC-SHA256 of the signed part under `secret` (constant time).
    pub fn verify(&self, secret: &[u8]) -> bool {
        let Ok(expected) = hex::decode(self.signature) else {
            return false;
        };
        let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret) else {
            return false;
        };
        mac.update(self.signed.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }

    /// The conversion the pixel reports (after [`Pixel::verify`]).
    pub fn conversion(&self, now: DateTime<Utc>) -> Result<NormalizedOrder, ParseError> {
        let params: HashMap<String, String> = url_pairs(self.signed)?;
        let get = |name: &str| params.get(name).cloned();
        build(Fields {
            order_id: get("order_id").ok_or_else(|| field("order_id", "is required"))?,
            click_id: get("click_id"),
            amount: get("amount").ok_or_else(|| field("amount", "is required"))?,
            currency: get("currency").ok_or_else(|| field("currency", "is required"))?,
            country: get("country"),
            codes: get("codes")
                .map(|codes| codes.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            status: get("status"),
            refunded: get("refunded_amount"),
            occurred_at: get("occurred_at"),
            now,
        })
    }
}

fn url_pairs(query: &str) -> Result<HashMap<String, String>, ParseError> {
    let mut pairs = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| field("query", "bad percent-encoding"))?;
        pairs.insert(key.to_owned(), value);
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(hex_byte(text.get(i + 1..i + 3)?)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Two hex digits as a byte. Only digits: `u8::from_str_radix` alone also takes a sign ("+f").
fn hex_byte(pair: &str) -> Option<u8> {
    if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(pair, 16).ok()
}

/// The hex signature a brand's server puts on a pixel URL (tests and docs use it).
pub fn sign_pixel(secret: &[u8], signed_query: &str) -> String {
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(signed_query.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn conversions_parse_exactly() {
        let body = br#"{"order_id": "A-1001", "click_id": "c_1", "amount": "49.90",
            "currency": "EUR", "country": "de", "codes": ["ANNA10"]}"#;
        let order = parse_conversion(body, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.store_order_id, "A-1001");
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.total_minor, 4990);
        assert_eq!(order.country.as_deref(), Some("DE"));
        assert_eq!(order.codes, vec!["ANNA10"]);
        assert_eq!(order.occurred_at, now());
        let partial =
            br#"{"order_id": "A", "amount": "10", "currency": "EUR", "refunded_amount": "2.50"}"#;
        let order = parse_conversion(partial, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (order.status, order.refunded_minor),
            (OrderStatus::PartiallyRefunded, 250)
        );
    }

    #[test]
    fn bad_conversions_name_the_field() {
        let refused = |body: &str| match parse_conversion(body.as_bytes(), now()) {
            Err(ParseError::Field { field, .. }) => field.to_owned(),
            Err(ParseError::Json(_) | ParseError::Invalid(_)) => "json".to_owned(),
            Ok(_) => "accepted".to_owned(),
        };
        assert_eq!(
            refused(r#"{"order_id": "", "amount": "1", "currency": "EUR"}"#),
            "order_id"
        );
        assert_eq!(
            refused(r#"{"order_id": "a", "amount": "1.001", "currency": "EUR"}"#),
            "amount"
        );
        assert_eq!(
            refused(r#"{"order_id": "a", "amount": 1.5, "currency": "EUR"}"#),
            "json"
        );
        assert_eq!(
            refused(r#"{"order_id": "a", "amount": "1", "currency": "eur"}"#),
            "currency"
        );
        assert_eq!(
            refused(r#"{"order_id": "a", "amount": "1", "currency": "EUR", "status": "x"}"#),
            "status"
        );
        assert_eq!(
            refused(r#"{"order_id": "a", "amount": "1", "currency": "EUR", "extra": 1}"#),
            "json"
        );
    }

    #[test]
    fn pixels_are_signed_by_the_brand_server() {
        let signed = "integration=7&order_id=A%2D1&amount=12.50&currency=USD&codes=ANNA10,BOB5";
        let sig = sign_pixel(b"secret", signed);
        let raw = format!("{signed}&sig={sig}");
        let pixel = pixel_query(&raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pixel.integration_id, 7);
        assert!(pixel.verify(b"secret"));
        assert!(!pixel.verify(b"other"));
        let order = pixel.conversion(now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.store_order_id, "A-1");
        assert_eq!(order.total_minor, 1250);
        assert_eq!(order.codes, vec!["ANNA10", "BOB5"]);
        let tampered = raw.replace("12.50", "99.50");
        assert!(!pixel_query(&tampered).is_ok_and(|p| p.verify(b"secret")));
        assert!(pixel_query("integration=7&amount=1").is_err());
    }

    #[test]
    fn a_click_id_that_cannot_be_ours_is_no_click_id() {
        for bad in ["c_\n1", "c_\u{7f}", &"c".repeat(129)] {
            let body = serde_json::json!({
                "order_id": "A-1", "click_id": bad, "amount": "1.00", "currency": "EUR",
                "codes": ["ANNA10"],
            });
            let order = parse_conversion(body.to_string().as_bytes(), now())
                .unwrap_or_else(|e| panic!("{bad:?}: {e}"));
            assert_eq!(order.click_id, None, "{bad:?}");
            assert_eq!(order.codes, vec!["ANNA10"]);
        }
    }

    #[test]
    fn a_pixel_reports_status_refunds_and_time_like_the_body() {
        let pixel = |signed: &str| {
            let raw = format!("{signed}&sig={}", sign_pixel(b"secret", signed));
            pixel_query(&raw)
                .unwrap_or_else(|e| panic!("{e}"))
                .conversion(now())
        };
        let base = "integration=7&order_id=A-1&amount=12.50&currency=USD";
        let refunded = pixel(&format!("{base}&status=refunded")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (refunded.status, refunded.refunded_minor),
            (OrderStatus::Refunded, 1250)
        );
        let partly = pixel(&format!(
            "{base}&refunded_amount=2.50&occurred_at=2026-11-20T10%3A00%3A00%2B02%3A00"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (partly.status, partly.refunded_minor),
            (OrderStatus::PartiallyRefunded, 250)
        );
        assert_eq!(partly.occurred_at.to_rfc3339(), "2026-11-20T08:00:00+00:00");
        let cancelled = pixel(&format!("{base}&status=cancelled")).map(|o| o.status);
        assert_eq!(cancelled, Ok(OrderStatus::Cancelled));
        assert!(pixel(&format!("{base}&status=shipped")).is_err());
        let paid = pixel(base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((paid.status, paid.occurred_at), (OrderStatus::Paid, now()));
    }

    /// Kept from the `ast` fuzz target: a `+` in place of a leading `0` of a hex pair still
    /// verified (`u8::from_str_radix` takes a sign), so one signature had many spellings; the
    /// same parse let `%+4` through as a percent-escape.
    #[test]
    fn only_hex_digits_spell_signatures_and_escapes() {
        let signed = "integration=7&order_id=C&amount=1&currency=USD";
        let sig = sign_pixel(b"secret", signed);
        // The signature is 0cfa74ca...: its first pair "0c" spelled "+c".
        assert!(sig.starts_with("0c"), "{sig}");
        let plus = format!("+{}", sig.get(1..).unwrap_or_default());
        assert!(pixel_query(&format!("{signed}&sig={sig}")).is_ok_and(|p| p.verify(b"secret")));
        let raw = format!("{signed}&sig={plus}");
        assert!(!pixel_query(&raw).is_ok_and(|p| p.verify(b"secret")));
        assert_eq!(hex::decode("+f").ok(), None);
        assert_eq!(hex::decode("0f").ok(), Some(vec![15]));
        assert_eq!(hex::decode("0F").ok(), Some(vec![15]));
        assert_eq!(percent_decode("%+4"), None);
        assert_eq!(percent_decode("%41+b").as_deref(), Some("A b"));
    }
}
