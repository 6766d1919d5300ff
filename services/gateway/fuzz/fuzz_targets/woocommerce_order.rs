//! Fuzz target for WooCommerce's order webhooks (`webhooks::woocommerce`).
//!
//! Input layout: the bytes before the last `0xFF` are the body; the bytes after it (lossy UTF-8)
//! are the `X-WC-Webhook-Topic`, absent without a `0xFF` (plain JSON seeds). Any panic,
//! including a failed assertion, is a bug.

#![no_main]

use gateway_service::webhooks::woocommerce::{is_order_topic, is_ping, parse_order};
use gateway_service_fuzz::{check_order, split_tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (body, tail) = split_tail(data);
    let topic = tail.map(|tail| String::from_utf8_lossy(tail).into_owned());

    // Only an unsigned delivery without a topic can be the ping.
    let ping = is_ping(topic.as_deref(), body);
    assert_eq!(ping, topic.is_none() && body.starts_with(b"webhook_id="));
    assert!(!is_ping(Some("order.created"), body));
    if let Some(topic) = &topic {
        let _ = is_order_topic(topic);
    }

    let parsed = parse_order(body, b"customer-key");
    assert_eq!(parsed, parse_order(body, b"customer-key"));
    match parsed {
        Ok(order) => {
            assert!(!ping, "a ping parsed as an order");
            check_order(&order);
            assert!(
                order.store_order_id.bytes().all(|b| b.is_ascii_digit()),
                "store_order_id {:?} is not WooCommerce's numeric id",
                order.store_order_id
            );
            assert!(
                order.refunded_minor <= order.total_minor.max(0),
                "refunded {} of a total of {}",
                order.refunded_minor,
                order.total_minor
            );
            for line in &order.lines {
                assert!(line.discount_minor >= 0, "negative line discount {line:?}");
            }
            if let Some(country) = &order.country {
                assert_eq!(country, &country.to_ascii_uppercase());
            }
            assert!(!order.test);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
