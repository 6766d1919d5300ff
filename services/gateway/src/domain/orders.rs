//! The one order model everything behind the gateway sees, whatever store it came from.

use chrono::{DateTime, Utc};
use tracking_api::common::v1::currency_exponent;

/// Where an order stands at the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Created,
    Paid,
    Cancelled,
    Refunded,
    PartiallyRefunded,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    /// Price × quantity before discounts, minor units.
    pub amount_minor: i64,
    /// Discounts allocated to this line, minor units.
    pub discount_minor: i64,
    /// The discount codes (of the order's codes) that discounted this line.
    pub codes: Vec<String>,
}

/// An order as attribution needs it, and no more personal data than that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedOrder {
    pub store_order_id: String,
    pub status: OrderStatus,
    /// Every discount code the order used, as the store reports them.
    pub codes: Vec<String>,
    pub click_id: Option<String>,
    pub currency: String,
    pub subtotal_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    /// ISO 3166-1 alpha-2, when the store knows it.
    pub country: Option<String>,
    /// A keyed hash of the customer's email (never the email itself).
    pub customer_hash: Option<String>,
    pub lines: Vec<OrderLine>,
    pub occurred_at: DateTime<Utc>,
    /// Test orders are stored but never attributed.
    pub test: bool,
}

/// A store's decimal amount ("164.90") in minor units of `currency`, exactly (no floats).
pub fn parse_amount(text: &str, currency: &str) -> Option<i64> {
    let exponent = usize::from(currency_exponent(currency));
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Digits beyond the currency's precision must be zeros ("10.500" HKD is fine, "10.505" not).
    let (kept, dropped) = fraction.split_at(fraction.len().min(exponent));
    if dropped.chars().any(|c| c != '0') {
        return None;
    }
    let mut minor: i64 = whole.parse().ok()?;
    for _ in 0..exponent {
        minor = minor.checked_mul(10)?;
    }
    let mut padded = kept.to_owned();
    while padded.len() < exponent {
        padded.push('0');
    }
    if !padded.is_empty() {
        minor = minor.checked_add(padded.parse::<i64>().ok()?)?;
    }
    Some(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_amount("164.90", "HKD"), Some(16_490));
        assert_eq!(parse_amount("164.9", "USD"), Some(16_490));
        assert_eq!(parse_amount("7", "USD"), Some(700));
        assert_eq!(parse_amount("1200", "JPY"), Some(1200));
        assert_eq!(parse_amount("1.250", "KWD"), Some(1250));
        assert_eq!(parse_amount("10.500", "EUR"), Some(1050));
        assert_eq!(parse_amount("-5.00", "EUR"), Some(-500));
        assert_eq!(parse_amount("10.505", "EUR"), None);
        assert_eq!(parse_amount("1e3", "EUR"), None);
        assert_eq!(parse_amount("", "EUR"), None);
        assert_eq!(parse_amount("99999999999999999999", "EUR"), None);
    }
}
