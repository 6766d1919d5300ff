//! Mapping helpers the store adapters share: discount values as stores write them, the external
//! ref carried in a store object's name (so a retried push is recognised), and store amounts.

use serde_json::Value;

use crate::domain::orders::round_amount;
use tracking_api::gateway::v1::restriction_number;

/// Basis points as a percentage the stores take: 2000 → "20", 1250 → "12.5", 1 → "0.01".
pub fn percent_text(bps: i32) -> String {
    let whole = bps / 100;
    let cents = (bps % 100).unsigned_abs();
    match cents {
        0 => whole.to_string(),
        c if c % 10 == 0 => format!("{whole}.{}", c / 10),
        c => format!("{whole}.{c:02}"),
    }
}

/// Stores other than the sandbox have no field for our external ref, so it rides at the end of
/// the discount's name: `Summer 20 / mia [code-17]`. Whoever holds a taken code is then known:
/// the same ref is our own earlier push (a retry), another is someone else's code. The title is
/// shortened to keep the whole within `max` characters.
pub fn marked_title(title: &str, external_ref: &str, max: usize) -> String {
    let marker = format!(" [{external_ref}]");
    let room = max.saturating_sub(marker.chars().count());
    let title: String = title.chars().take(room).collect();
    format!("{}{marker}", title.trim_end())
}

/// Whether `name` carries the ref `external_ref` (see [`marked_title`]).
pub fn has_marker(name: &str, external_ref: &str) -> bool {
    name.trim_end().ends_with(&format!("[{external_ref}]"))
}

/// The ref a name carries (see [`marked_title`]), if any: `Summer 20 [code-17]` → `code-17`.
pub fn marker_of(name: &str) -> Option<&str> {
    let name = name.trim_end().strip_suffix(']')?;
    let start = name.rfind(" [")?;
    Some(&name[start + 2..])
}

/// A store's amount, as a JSON string ("12.50"; BigCommerce's "3.3333" keeps four decimals) or
/// number (12.5, a float), in minor units rounded to the currency's precision.
pub fn json_amount(value: &Value, currency: &str) -> Option<i64> {
    match value {
        Value::String(text) => round_amount(text, currency),
        Value::Number(number) => round_amount(&number.to_string(), currency),
        Value::Null => Some(0),
        _ => None,
    }
}

/// Restriction ids as the store's numeric ids; the first that is not a number is returned as the
/// error.
pub fn numeric_ids(ids: &[String]) -> Result<Vec<u64>, String> {
    ids.iter()
        .map(|id| restriction_number(id, "").ok_or_else(|| id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restriction_ids_are_the_stores_numbers() {
        assert_eq!(numeric_ids(&[" 42 ".into(), "7".into()]), Ok(vec![42, 7]));
        assert_eq!(
            numeric_ids(&["99999999999999999999".into()]),
            Err("99999999999999999999".into())
        );
        assert_eq!(numeric_ids(&["+5".into()]), Err("+5".into()));
        assert_eq!(
            numeric_ids(&["gid://shopify/Product/5".into()]),
            Err("gid://shopify/Product/5".into())
        );
    }

    #[test]
    fn percentages_read_as_stores_write_them() {
        assert_eq!(percent_text(2000), "20");
        assert_eq!(percent_text(1250), "12.5");
        assert_eq!(percent_text(1), "0.01");
        assert_eq!(percent_text(10_000), "100");
    }

    #[test]
    fn markers_fit_and_match() {
        let title = marked_title("Summer 20 / mia", "code-17", 255);
        assert_eq!(title, "Summer 20 / mia [code-17]");
        assert!(has_marker(&title, "code-17"));
        assert!(!has_marker(&title, "code-1"));
        let long = marked_title(&"x".repeat(300), "r", 255);
        assert_eq!(long.chars().count(), 255);
        assert!(has_marker(&long, "r"));
        assert_eq!(marker_of(&title), Some("code-17"));
        assert_eq!(
            marker_of("Summer [shared plan-5 0a1b2c3d]"),
            Some("shared plan-5 0a1b2c3d")
        );
        assert_eq!(marker_of("Their sale"), None);
    }

    #[test]
    fn amounts_from_json() {
        assert_eq!(json_amount(&serde_json::json!("12.50"), "USD"), Some(1250));
        assert_eq!(json_amount(&serde_json::json!("3.3333"), "USD"), Some(333));
        assert_eq!(json_amount(&serde_json::json!("3.3350"), "USD"), Some(334));
        assert_eq!(json_amount(&serde_json::json!(36.39), "USD"), Some(3639));
        assert_eq!(json_amount(&serde_json::json!(10), "USD"), Some(1000));
        assert_eq!(json_amount(&serde_json::json!(-5.5), "EUR"), Some(-550));
        assert_eq!(json_amount(&serde_json::json!(true), "EUR"), None);
        // A float's noise is rounded off, as are a string's digits past the currency's.
        let sum: f64 = 0.1 + 0.2;
        assert_eq!(json_amount(&serde_json::json!(sum), "USD"), Some(30));
        assert_eq!(
            json_amount(&serde_json::json!(89.97000000000001), "USD"),
            Some(8_997)
        );
        assert_eq!(json_amount(&serde_json::json!(1.5e3), "JPY"), Some(1_500));
        assert_eq!(json_amount(&serde_json::json!(2.5e-3), "USD"), Some(0));
        assert_eq!(json_amount(&serde_json::json!(0.125), "USD"), Some(13));
        assert_eq!(json_amount(&serde_json::json!(-0.125), "USD"), Some(-13));
        assert_eq!(json_amount(&serde_json::json!(1e20), "USD"), None);
        assert_eq!(
            json_amount(&serde_json::json!("0.30000000000000004"), "USD"),
            Some(30)
        );
        assert_eq!(json_amount(&serde_json::json!("3.3.3"), "USD"), None);
    }
}
