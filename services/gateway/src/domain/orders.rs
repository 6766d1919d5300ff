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

/// The most codes an order (and a line) may name.
pub const MAX_CODES: usize = 20;
/// The most lines an order may have.
pub const MAX_LINES: usize = 1000;
/// The longest product or category id a line may carry, in characters.
pub const MAX_LINE_ID_CHARS: usize = 100;
/// The largest quantity a line may have.
pub const MAX_QUANTITY: i64 = 1_000_000;

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

    /// A store's order fitted to the model's bounds field by field, with what was changed (for
    /// the log), so that one field the model cannot keep does not lose the order: a code or a
    /// click id no text of ours could be, a product id longer than any plan names, a country
    /// that is not one are dropped; a quantity past the bound is capped; codes past the most an
    /// order names are cut, and lines past the most it has are folded into its last (with no
    /// product, their amounts and codes kept). Ids, the currency and amounts are left to the
    /// checks ([`Self::from_proto`]): an order wrong in those is not one the model can count.
    pub fn fitted(mut self) -> (Self, Vec<String>) {
        let mut changed = Vec::new();
        let code_fits =
            |code: &String| !code.trim().is_empty() && check_text(code, MAX_CODE_CHARS).is_ok();
        let fit_codes = |codes: &mut Vec<String>, field: &str, changed: &mut Vec<String>| {
            let before = codes.len();
            codes.retain(code_fits);
            codes.truncate(MAX_CODES);
            if codes.len() != before {
                changed.push(format!("{field}: {} of {before} kept", codes.len()));
            }
        };
        fit_codes(&mut self.codes, "codes", &mut changed);
        if self
            .click_id
            .take_if(|id| check_text(id, MAX_CLICK_ID_CHARS).is_err())
            .is_some()
        {
            changed.push("click_id dropped".to_owned());
        }
        if self
            .country
            .take_if(|c| c.len() != 2 || !c.chars().all(|c| c.is_ascii_uppercase()))
            .is_some()
        {
            changed.push("country dropped".to_owned());
        }
        if self.lines.len() > MAX_LINES {
            changed.push(format!(
                "lines: {} folded into one",
                self.lines.len() + 1 - MAX_LINES
            ));
            let folded = self.lines.drain(MAX_LINES - 1..).fold(
                OrderLine {
                    product_id: String::new(),
                    category_id: String::new(),
                    quantity: 0,
                    amount_minor: 0,
                    discount_minor: 0,
                    codes: Vec::new(),
                },
                |mut all, line| {
                    all.quantity = all.quantity.saturating_add(line.quantity);
                    all.amount_minor = all.amount_minor.saturating_add(line.amount_minor);
                    all.discount_minor = all.discount_minor.saturating_add(line.discount_minor);
                    for code in line.codes {
                        if !all.codes.contains(&code) {
                            all.codes.push(code);
                        }
                    }
                    all
                },
            );
            self.lines.push(folded);
        }
        for (i, line) in self.lines.iter_mut().enumerate() {
            for (name, id) in [
                ("product_id", &mut line.product_id),
                ("category_id", &mut line.category_id),
            ] {
                if check_text(id, MAX_LINE_ID_CHARS).is_err() {
                    id.clear();
                    changed.push(format!("lines[{i}].{name} dropped"));
                }
            }
            if !(0..=MAX_QUANTITY).contains(&line.quantity) {
                line.quantity = line.quantity.clamp(0, MAX_QUANTITY);
                changed.push(format!("lines[{i}].quantity capped"));
            }
            fit_codes(&mut line.codes, &format!("lines[{i}].codes"), &mut changed);
        }
        (self, changed)
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
        if order.codes.len() > MAX_CODES {
            return Err(bad("codes", &format!("at most {MAX_CODES} codes")));
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
        if order.lines.len() > MAX_LINES {
            return Err(bad("lines", &format!("at most {MAX_LINES} lines")));
        }
        let mut lines = Vec::with_capacity(order.lines.len());
        for (i, line) in order.lines.into_iter().enumerate() {
            let name = |n: &str| format!("lines[{i}].{n}");
            text(&name("product_id"), &line.product_id, MAX_LINE_ID_CHARS)?;
            text(&name("category_id"), &line.category_id, MAX_LINE_ID_CHARS)?;
            if !(0..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(bad(&name("quantity"), "must be between 0 and 1,000,000"));
            }
            amount(&name("amount_minor"), line.amount_minor)?;
            amount(&name("discount_minor"), line.discount_minor)?;
            if line.codes.len() > MAX_CODES {
                return Err(bad(&name("codes"), &format!("at most {MAX_CODES} codes")));
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

    /// A store's order with fields no check lets through is kept, without them, and reads back.
    #[test]
    fn a_stores_order_is_fitted_to_the_model_field_by_field() {
        let line = |product_id: String, quantity: i64, codes: Vec<String>| OrderLine {
            product_id,
            category_id: String::new(),
            quantity,
            amount_minor: 100,
            discount_minor: 10,
            codes,
        };
        let long_sku = "SKU-".repeat(60);
        let mut codes: Vec<String> = (0..25).map(|n| format!("C{n}")).collect();
        codes.insert(0, "A".repeat(MAX_CODE_CHARS + 1));
        codes.insert(1, "BAD\0CODE".to_owned());
        codes.insert(2, " ".to_owned());
        let mut lines = vec![
            line(long_sku, 2, vec!["C0".into(), "X\nY".into()]),
            line("77".into(), 2_000_000, vec!["C1".into()]),
        ];
        lines.extend((0..MAX_LINES).map(|n| line(format!("p{n}"), 1, vec![format!("C{}", n % 3)])));
        let order = NormalizedOrder {
            store_order_id: "1001".into(),
            status: OrderStatus::Paid,
            codes,
            click_id: Some("c\u{7}".into()),
            currency: "USD".into(),
            subtotal_minor: 100_200,
            discount_minor: 10_020,
            total_minor: 90_180,
            refunded_minor: 0,
            country: Some("\u{e9}s".into()),
            customer_hash: None,
            lines,
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            updated_at: None,
            test: false,
        };
        assert!(NormalizedOrder::from_proto(order.to_proto(7), "order").is_err());
        let (fitted, changed) = order.fitted();
        assert!(!changed.is_empty());
        let kept = NormalizedOrder::from_proto(fitted.to_proto(7), "order")
            .unwrap_or_else(|e| panic!("{e}: {changed:?}"));
        assert_eq!(kept, fitted, "it reads back as it is stored");
        assert_eq!(
            kept.codes,
            (0..20).map(|n| format!("C{n}")).collect::<Vec<_>>(),
            "codes no order could name are dropped, the rest cut at {MAX_CODES}"
        );
        assert_eq!((kept.click_id, kept.country), (None, None));
        assert_eq!(kept.lines.len(), MAX_LINES);
        assert_eq!(
            (
                kept.lines[0].product_id.as_str(),
                kept.lines[0].codes.clone()
            ),
            ("", vec!["C0".to_owned()])
        );
        assert_eq!(kept.lines[1].quantity, MAX_QUANTITY);
        // The last line holds the folded ones (3 of them): their amounts and codes count.
        let last = &kept.lines[MAX_LINES - 1];
        assert_eq!(
            (
                last.product_id.as_str(),
                last.quantity,
                last.amount_minor,
                last.discount_minor
            ),
            ("", 3, 300, 30)
        );
        let mut folded_codes = last.codes.clone();
        folded_codes.sort();
        assert_eq!(folded_codes, ["C0", "C1", "C2"]);
        let sum = |lines: &[OrderLine]| lines.iter().map(|l| l.amount_minor).sum::<i64>();
        assert_eq!(sum(&kept.lines), 100 * (MAX_LINES as i64 + 2));
    }
}
