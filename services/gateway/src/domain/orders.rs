//! The one order model everything behind the gateway sees, whatever store it came from.

use chrono::{DateTime, Utc};
use tracking_api::common::v1::currency_exponent;
use tracking_api::gateway::v1 as pb;

use crate::error::Error;
use tracking_server::fields::check_text;

/// The longest code an order may name: the longest any store takes (Shopify's and Magento's
/// 255), so that no code the suite can mint makes its orders unreadable.
pub const MAX_CODE_CHARS: usize = 255;
/// The longest click id an order may carry, in characters.
pub const MAX_CLICK_ID_CHARS: usize = 128;

/// Largest amount accepted anywhere (10^15 minor units): far above any real order, far below
/// overflow when amounts are summed.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

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
    /// Empty when the store does not say.
    pub category_id: String,
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
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
    /// ISO 3166-1 alpha-2, when the store knows it.
    pub country: Option<String>,
    /// A keyed hash of the customer's email (never the email itself).
    pub customer_hash: Option<String>,
    pub lines: Vec<OrderLine>,
    pub occurred_at: DateTime<Utc>,
    /// When the store last changed the order, when it says: edits are ordered by it.
    pub updated_at: Option<DateTime<Utc>>,
    /// Test orders are stored but never attributed.
    pub test: bool,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
            OrderStatus::PartiallyRefunded => "partially_refunded",
        }
    }

    fn to_proto(self) -> pb::OrderStatus {
        match self {
            OrderStatus::Created => pb::OrderStatus::Created,
            OrderStatus::Paid => pb::OrderStatus::Paid,
            OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
            OrderStatus::Refunded => pb::OrderStatus::Refunded,
            OrderStatus::PartiallyRefunded => pb::OrderStatus::PartiallyRefunded,
        }
    }

    fn from_proto(status: i32) -> Option<OrderStatus> {
        Some(match pb::OrderStatus::try_from(status).ok()? {
            pb::OrderStatus::Unspecified => return None,
            pb::OrderStatus::Created => OrderStatus::Created,
            pb::OrderStatus::Paid => OrderStatus::Paid,
            pb::OrderStatus::Cancelled => OrderStatus::Cancelled,
            pb::OrderStatus::Refunded => OrderStatus::Refunded,
            pb::OrderStatus::PartiallyRefunded => OrderStatus::PartiallyRefunded,
        })
    }
}

impl NormalizedOrder {
    /// The order as streamed and stored, for `integration_id`.
    pub fn to_proto(&self, integration_id: i64) -> pb::Order {
        pb::Order {
            integration_id,
            store_order_id: self.store_order_id.clone(),
            status: self.status.to_proto() as i32,
            codes: self.codes.clone(),
            click_id: self.click_id.clone().unwrap_or_default(),
            currency: self.currency.clone(),
            subtotal_minor: self.subtotal_minor,
            discount_minor: self.discount_minor,
            total_minor: self.total_minor,
            refunded_minor: self.refunded_minor,
            country: self.country.clone().unwrap_or_default(),
            customer_hash: self.customer_hash.clone().unwrap_or_default(),
            lines: self
                .lines
                .iter()
                .map(|line| pb::OrderLine {
                    product_id: line.product_id.clone(),
                    category_id: line.category_id.clone(),
                    quantity: line.quantity,
                    amount_minor: line.amount_minor,
                    discount_minor: line.discount_minor,
                    codes: line.codes.clone(),
                })
                .collect(),
            occurred_at: Some(timestamp(self.occurred_at)),
            updated_at: self.updated_at.map(timestamp),
            test: self.test,
        }
    }

    /// A normalized order from outside the gateway (IngestOrders, PlaceSandboxOrder), checked
    /// field by field; `field` prefixes the field names in errors (e.g. `orders[3]`).
    pub fn from_proto(order: pb::Order, field: &str) -> Result<NormalizedOrder, Error> {
        let bad = |name: &str, message: &str| Error::invalid(&format!("{field}.{name}"), message);
        let text = |name: &str, value: &str, max: usize| {
            check_text(value, max).map_err(|message| bad(name, &message))
        };
        if order.store_order_id.trim().is_empty() {
            return Err(bad("store_order_id", "is required"));
        }
        text("store_order_id", &order.store_order_id, 200)?;
        let status = OrderStatus::from_proto(order.status)
            .ok_or_else(|| bad("status", "must be a known status other than UNSPECIFIED"))?;
        if order.currency.len() != 3 || !order.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(bad(
                "currency",
                "must be an ISO 4217 code (3 capital letters)",
            ));
        }
        let amount = |name: &str, value: i64| {
            if (0..=MAX_AMOUNT_MINOR).contains(&value) {
                Ok(value)
            } else {
                Err(bad(name, "must be between 0 and 10^15 minor units"))
            }
        };
        amount("subtotal_minor", order.subtotal_minor)?;
        amount("discount_minor", order.discount_minor)?;
        amount("total_minor", order.total_minor)?;
        amount("refunded_minor", order.refunded_minor)?;
        if order.refunded_minor > order.total_minor {
            return Err(bad("refunded_minor", "exceeds total_minor"));
        }
        if order.codes.len() > 20 {
            return Err(bad("codes", "at most 20 codes"));
        }
        for code in &order.codes {
            if code.trim().is_empty() {
                return Err(bad("codes", "codes must not be empty"));
            }
            text("codes", code, MAX_CODE_CHARS)?;
        }
        text("click_id", &order.click_id, MAX_CLICK_ID_CHARS)?;
        text("customer_hash", &order.customer_hash, 128)?;
        if !order.country.is_empty()
            && (order.country.len() != 2 || !order.country.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err(bad(
                "country",
                "must be empty or ISO 3166-1 alpha-2 (2 capital letters)",
            ));
        }
        if order.lines.len() > 1000 {
            return Err(bad("lines", "at most 1000 lines"));
        }
        let mut lines = Vec::with_capacity(order.lines.len());
        for (i, line) in order.lines.into_iter().enumerate() {
            let name = |n: &str| format!("lines[{i}].{n}");
            text(&name("product_id"), &line.product_id, 100)?;
            text(&name("category_id"), &line.category_id, 100)?;
            if !(0..=1_000_000).contains(&line.quantity) {
                return Err(bad(&name("quantity"), "must be between 0 and 1,000,000"));
            }
            amount(&name("amount_minor"), line.amount_minor)?;
            amount(&name("discount_minor"), line.discount_minor)?;
            if line.codes.len() > 20 {
                return Err(bad(&name("codes"), "at most 20 codes"));
            }
            for code in &line.codes {
                text(&name("codes"), code, MAX_CODE_CHARS)?;
            }
            lines.push(OrderLine {
                product_id: line.product_id,
                category_id: line.category_id,
                quantity: line.quantity,
                amount_minor: line.amount_minor,
                discount_minor: line.discount_minor,
                codes: line.codes,
            });
        }
        let time = |ts: prost_types::Timestamp| {
            DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
        };
        let occurred_at = order
            .occurred_at
            .and_then(time)
            .ok_or_else(|| bad("occurred_at", "is required and must be a valid timestamp"))?;
        let updated_at = match order.updated_at {
            None => None,
            Some(ts) => {
                Some(time(ts).ok_or_else(|| bad("updated_at", "must be a valid timestamp"))?)
            }
        };
        let optional = |value: String| Some(value).filter(|v| !v.is_empty());
        Ok(NormalizedOrder {
            store_order_id: order.store_order_id,
            status,
            codes: order
                .codes
                .into_iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            click_id: optional(order.click_id),
            currency: order.currency,
            subtotal_minor: order.subtotal_minor,
            discount_minor: order.discount_minor,
            total_minor: order.total_minor,
            refunded_minor: order.refunded_minor,
            country: optional(order.country),
            customer_hash: optional(order.customer_hash),
            lines,
            occurred_at,
            updated_at,
            test: order.test,
        })
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// A decimal amount ("164.90") in minor units of `currency`, exactly (no floats): for input whose
/// sender chooses its format (the AST API), where digits past the currency's precision are the
/// sender's mistake, refused (`None`). Stores' amounts are read with [`round_amount`].
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

/// A store's amount in minor units of `currency`, rounded half away from zero from its decimal
/// text: a decimal string ("904.50" from a JPY shop that keeps two decimals) or a JSON number's
/// text (a float: "89.97000000000001", "1.5e3"). Past the currency's precision its digits are
/// the store's own rounding or the float's noise, not money.
pub fn round_amount(text: &str, currency: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, power) = match rest.split_once(['e', 'E']) {
        Some((mantissa, power)) => (mantissa, power.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Zero at any power: a sender's exponent is not counted out digit by digit.
    if digits.bytes().all(|digit| digit == b'0') {
        return Some(0);
    }
    // minor = digits × 10^shift
    let shift = power
        .checked_sub(i64::try_from(fraction.len()).ok()?)?
        .checked_add(i64::from(currency_exponent(currency)))?;
    let minor = if shift >= 0 {
        let factor = 10_i64.checked_pow(u32::try_from(shift).ok()?)?;
        digits.parse::<i64>().ok()?.checked_mul(factor)?
    } else {
        let cut = usize::try_from(shift.unsigned_abs()).ok()?;
        let keep = digits.len().saturating_sub(cut);
        let kept: i64 = if keep == 0 {
            0
        } else {
            digits[..keep].parse().ok()?
        };
        // The first digit cut decides (none is a zero).
        let first_cut = if cut <= digits.len() {
            digits.as_bytes()[keep]
        } else {
            b'0'
        };
        kept.checked_add(i64::from(first_cut >= b'5'))?
    };
    Some(if negative { -minor } else { minor })
}

/// Minor units of `currency` as the decimal text stores take ("5.00" USD, "1200" JPY), exactly.
pub use tracking_api::common::v1::format_minor as format_amount;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_format_exactly() {
        assert_eq!(format_amount(16_490, "HKD"), "164.90");
        assert_eq!(format_amount(5, "USD"), "0.05");
        assert_eq!(format_amount(1200, "JPY"), "1200");
        assert_eq!(format_amount(1250, "KWD"), "1.250");
        assert_eq!(format_amount(-500, "EUR"), "-5.00");
        for minor in [0, 1, 99, 100, 123_456_789] {
            assert_eq!(
                parse_amount(&format_amount(minor, "EUR"), "EUR"),
                Some(minor)
            );
        }
    }

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

    #[test]
    fn a_senders_exponent_costs_no_more_than_its_digits() {
        // Each of these once counted its exponent out one power of ten at a time (a zero never
        // overflows: ~10^19 steps on a worker thread), or overflowed the shift and panicked.
        assert_eq!(round_amount("0e9000000000000000000", "USD"), Some(0));
        assert_eq!(round_amount("0e90000000000000000000", "USD"), None);
        assert_eq!(round_amount("-0.000e9223372036854775807", "USD"), Some(0));
        assert_eq!(round_amount("1.5e-9223372036854775808", "USD"), None);
        assert_eq!(round_amount("1.5e-9000000000000000000", "USD"), Some(0));
        assert_eq!(round_amount("1e9223372036854775807", "USD"), None);
        assert_eq!(round_amount("1e16", "USD"), Some(1_000_000_000_000_000_000));
        assert_eq!(round_amount("1e17", "USD"), None);
        assert_eq!(round_amount("1.5e-2", "USD"), Some(2));
        assert_eq!(round_amount("89.97000000000001", "USD"), Some(8_997));
        assert_eq!(round_amount("1.5e3", "JPY"), Some(1_500));
    }

    #[test]
    fn an_order_may_name_the_longest_code_a_store_takes() {
        let with_code = |code: String| {
            NormalizedOrder::from_proto(
                pb::Order {
                    store_order_id: "1001".into(),
                    status: pb::OrderStatus::Paid as i32,
                    currency: "USD".into(),
                    total_minor: 1_000,
                    occurred_at: Some(prost_types::Timestamp::default()),
                    lines: vec![pb::OrderLine {
                        codes: vec![code.clone()],
                        ..pb::OrderLine::default()
                    }],
                    codes: vec![code],
                    ..pb::Order::default()
                },
                "order",
            )
            .map(|order| order.codes[0].chars().count())
        };
        assert_eq!(with_code("É".repeat(MAX_CODE_CHARS)).ok(), Some(255));
        assert!(with_code("A".repeat(MAX_CODE_CHARS + 1)).is_err());
    }
}
