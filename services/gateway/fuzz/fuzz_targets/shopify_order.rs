//! Fuzz target for Shopify's order and refund webhooks (`webhooks::shopify`).
//!
//! Input layout: the bytes before the last `0xFF` are the body; the bytes after it (lossy UTF-8)
//! are the `X-Shopify-Topic`. Without a `0xFF` (plain JSON seeds) the whole input is the body and
//! its length picks one of the order topics. Any panic, including a failed assertion, is a bug.

#![no_main]

use gateway_service::domain::orders::OrderStatus;
use gateway_service::webhooks::shopify::{parse_order, parse_refund};
use gateway_service_fuzz::{check_order, split_tail};
use libfuzzer_sys::fuzz_target;

const TOPICS: [&str; 4] = [
    "orders/create",
    "orders/paid",
    "orders/cancelled",
    "orders/updated",
];

fuzz_target!(|data: &[u8]| {
    let (body, tail) = split_tail(data);
    let topic = match tail {
        Some(tail) => String::from_utf8_lossy(tail).into_owned(),
        None => TOPICS[body.len() % TOPICS.len()].to_owned(),
    };

    let parsed = parse_order(&topic, body, b"customer-key");
    if let Err(error) = &parsed {
        let _ = error.to_string();
    }
    // The same bytes always give the same answer.
    assert_eq!(parsed, parse_order(&topic, body, b"customer-key"));
    if let Ok(order) = &parsed {
        check_order(order);
        assert!(
            order.store_order_id.bytes().all(|b| b.is_ascii_digit()),
            "store_order_id {:?} is not Shopify's numeric id",
            order.store_order_id
        );
        if topic == "orders/cancelled" {
            assert_eq!(order.status, OrderStatus::Cancelled);
        }
        // Without the customer key the hash differs, never the rest.
        let other = parse_order(&topic, body, b"another-key").expect("the key changes no field");
        assert_eq!(other.customer_hash.is_some(), order.customer_hash.is_some());
    }

    match parse_refund(body) {
        Ok(refund) => {
            assert!(refund.order_id.is_some(), "a refund without its order");
            for currency in ["USD", "JPY", "KWD"] {
                if let Err(error) = refund.amount_minor(currency) {
                    let _ = error.to_string();
                }
            }
            if let Ok(order) = &parsed
                && let Err(error) = refund.amount_minor(&order.currency)
            {
                let _ = error.to_string();
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
