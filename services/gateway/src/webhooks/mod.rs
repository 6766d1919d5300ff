//! Order intake from the stores' webhooks and AST conversions: signature checks and payload
//! parsing into [`NormalizedOrder`](crate::domain::orders::NormalizedOrder). The HTTP routes
//! that use them are in [`crate::http`]; storage is [`crate::intake`].

pub mod ast;
pub mod bigcommerce;
pub mod shopify;
pub mod woocommerce;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracking_server::fields::check_text;

use crate::domain::orders::MAX_CLICK_ID_CHARS;

type HmacSha256 = Hmac<Sha256>;

/// Why a body was refused (answered 400, nothing stored).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    /// Parsed, but not an order the suite can keep (the normalized model's checks).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn field(field: &'static str, problem: impl Into<String>) -> ParseError {
    ParseError::Field {
        field,
        problem: problem.into(),
    }
}

/// A store's decimal amount field (absent = 0) in minor units, or which field is wrong. Digits
/// past the currency's precision are rounded, as the store shows the amount: a store may keep
/// more decimals than its currency has (a JPY WooCommerce shop left at two decimals sends
/// "904.50"; BigCommerce keeps four).
pub(crate) fn amount(
    text: Option<&str>,
    currency: &str,
    name: &'static str,
) -> Result<i64, ParseError> {
    let text = text.unwrap_or("0");
    crate::domain::orders::round_amount(text, currency)
        .ok_or_else(|| field(name, format!("{text:?} is not an amount in {currency}")))
}

/// Whether `header` is the base64 HMAC-SHA256 of exactly these `body` bytes under `secret`
/// (Shopify's `X-Shopify-Hmac-Sha256`, WooCommerce's `X-WC-Webhook-Signature`, our
/// `X-AST-Signature`). Compared in constant time, before anything is parsed or stored.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(signature) = header.and_then(|h| STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The base64 HMAC-SHA256 signature of `body` under `secret` (what a store sends; tests and the
/// load tool sign with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A click id a store carried from the shopper's landing URL (a cart attribute or an order meta
/// field, which shoppers can edit): kept only when it could be one of ours. Anything else is no
/// click id, rather than a reason to refuse the whole order.
pub fn click_id(value: &str) -> Option<String> {
    (!value.is_empty() && check_text(value, MAX_CLICK_ID_CHARS).is_ok()).then(|| value.to_owned())
}

/// A keyed hash of a customer's email (lower-cased, trimmed): the same customer is recognised
/// across orders without the email being stored.
pub fn customer_hash(key: &[u8], email: &str) -> Option<String> {
    let email = email.trim();
    if email.is_empty() {
        return None;
    }
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).ok()?;
    mac.update(email.to_lowercase().as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_hashes_ignore_case_and_blanks() {
        let hash = customer_hash(b"k", "A@B.co");
        assert_eq!(hash, customer_hash(b"k", " a@b.CO "));
        assert_ne!(hash, customer_hash(b"other", "a@b.co"));
        assert_eq!(hash.map(|h| h.len()), Some(64));
        assert_eq!(customer_hash(b"k", "  "), None);
    }
}
