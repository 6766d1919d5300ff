//! Checks shared by the gateway's fuzz targets. Every check panics on a broken invariant, which
//! libFuzzer reports as a crash.

use chrono::{DateTime, Utc};
use gateway_service::domain::orders::NormalizedOrder;
use prost::Message;
use tracking_api::gateway::v1 as pb;

/// The integration id orders are encoded with in the round trips.
pub const INTEGRATION_ID: i64 = 7;

/// A fixed "now" for parsers that take one (2026-11-25T00:00:00Z).
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_564_800, 0).expect("a valid timestamp")
}

/// Splits `data` at its last `0xFF`: (before, Some(after)); (data, None) without one. JSON bodies
/// never contain `0xFF` (it is not UTF-8), so plain JSON seeds carry no tail.
pub fn split_tail(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().rposition(|&byte| byte == 0xFF) {
        Some(split) => (&data[..split], Some(&data[split + 1..])),
        None => (data, None),
    }
}

/// What every parser promises of an order it returns, whatever the store.
pub fn check_order(order: &NormalizedOrder) {
    assert!(
        !order.store_order_id.trim().is_empty(),
        "empty store_order_id in {order:?}"
    );
    assert!(
        order.currency.len() == 3 && order.currency.bytes().all(|b| b.is_ascii_uppercase()),
        "currency {:?} is not 3 capital letters",
        order.currency
    );
    for code in &order.codes {
        assert!(!code.is_empty(), "empty code in {:?}", order.codes);
        assert_eq!(code, code.trim(), "untrimmed code in {:?}", order.codes);
    }
    for line in &order.lines {
        for code in &line.codes {
            assert!(
                order.codes.contains(code),
                "line code {code:?} is not one of the order's codes {:?}",
                order.codes
            );
        }
    }
    if let Some(click_id) = &order.click_id {
        assert!(
            !click_id.is_empty() && click_id.len() <= 128,
            "click_id {click_id:?}"
        );
    }
    if let Some(country) = &order.country {
        assert_eq!(country.len(), 2, "country {country:?}");
    }
    if let Some(hash) = &order.customer_hash {
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "customer_hash {hash:?} is not a hex HMAC-SHA256"
        );
    }
    round_trip(order);
}

/// `to_proto`, encode, decode, `from_proto`: an error, or the same order. Never a panic.
/// Returns whether the order survived the trip.
pub fn round_trip(order: &NormalizedOrder) -> bool {
    let proto = order.to_proto(INTEGRATION_ID);
    let bytes = proto.encode_to_vec();
    let decoded = pb::Order::decode(bytes.as_slice()).expect("an encoded order decodes");
    assert_eq!(decoded, proto, "encoding changed the order");
    match NormalizedOrder::from_proto(decoded, "order") {
        Ok(back) => {
            assert_eq!(&back, order, "the order changed on its round trip");
            true
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with("order."),
                "error {message:?} does not name the field"
            );
            false
        }
    }
}
