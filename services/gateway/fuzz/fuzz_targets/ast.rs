//! Fuzz target for Agnostic Sales Tracking (`webhooks::ast`): the server-side conversion body and
//! the signed pixel query.
//!
//! Every input is tried both ways: as a conversion body, and (lossy UTF-8) as a raw pixel query
//! string. Any panic, including a failed assertion, is a bug.

#![no_main]

use gateway_service::domain::orders::{NormalizedOrder, OrderStatus};
use gateway_service::webhooks::ast::{parse_conversion, pixel_query, sign_pixel};
use gateway_service_fuzz::{check_order, now};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"ast-secret";

/// What an AST conversion promises beyond any order.
fn check_conversion(order: &NormalizedOrder) {
    check_order(order);
    assert_eq!(order.store_order_id, order.store_order_id.trim());
    assert!(order.store_order_id.len() <= 200);
    assert!(order.total_minor >= 0, "negative total in {order:?}");
    assert_eq!(order.subtotal_minor, order.total_minor);
    assert_eq!(order.discount_minor, 0);
    assert!(
        (0..=order.total_minor).contains(&order.refunded_minor),
        "refunded {} of {}",
        order.refunded_minor,
        order.total_minor
    );
    if order.status == OrderStatus::Refunded {
        assert_eq!(order.refunded_minor, order.total_minor);
    }
    assert!(order.codes.len() <= 20 && order.codes.iter().all(|c| c.len() <= 100));
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].amount_minor, order.total_minor);
    assert_eq!(order.lines[0].codes, order.codes);
    if let Some(country) = &order.country {
        assert!(
            country.bytes().all(|b| b.is_ascii_uppercase()),
            "{country:?}"
        );
    }
    assert!(order.customer_hash.is_none());
    assert!(!order.test);
}

fuzz_target!(|data: &[u8]| {
    let now = now();

    match parse_conversion(data, now) {
        Ok(order) => check_conversion(&order),
        Err(error) => {
            let _ = error.to_string();
        }
    }

    let raw = String::from_utf8_lossy(data);
    let pixel = match pixel_query(&raw) {
        Ok(pixel) => pixel,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(pixel.integration_id > 0);
    let _ = pixel.verify(SECRET);
    let _ = pixel.verify(b"");
    match pixel.conversion(now) {
        Ok(order) => {
            check_conversion(&order);
            assert_eq!(order.occurred_at, now);
            assert!(matches!(
                order.status,
                OrderStatus::Paid | OrderStatus::Refunded
            ));
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }

    // Signed again by the brand's server, the same query verifies under that secret only.
    let Some((signed, _)) = raw.rsplit_once("&sig=") else {
        panic!("pixel_query accepted {raw:?} without &sig=");
    };
    let resigned = format!("{signed}&sig={}", sign_pixel(SECRET, signed));
    let again = pixel_query(&resigned).expect("a re-signed accepted query parses");
    assert_eq!(again.integration_id, pixel.integration_id);
    assert!(again.verify(SECRET), "{resigned:?} fails its own signature");
    assert!(!again.verify(b"another-secret"));
    let signature = sign_pixel(SECRET, signed);
    let upper = format!("{signed}&sig={}", signature.to_ascii_uppercase());
    let _ = pixel_query(&upper).map(|p| p.verify(SECRET));
    // Only hex digits spell the signature: a sign in front of a digit pair is not "0".
    for (index, pair) in signature.as_bytes().chunks(2).enumerate() {
        if pair[0] == b'0' {
            let mut mangled = signature.clone();
            mangled.replace_range(2 * index..2 * index + 1, "+");
            let raw = format!("{signed}&sig={mangled}");
            assert!(
                !pixel_query(&raw).is_ok_and(|p| p.verify(SECRET)),
                "{raw:?} passed with a non-hex signature"
            );
        }
    }
    // Changing the signed part breaks the signature.
    let tampered = format!("{signed}&x=1&sig={}", sign_pixel(SECRET, signed));
    assert!(
        !pixel_query(&tampered).is_ok_and(|p| p.verify(SECRET)),
        "{tampered:?} passed with the signature of {signed:?}"
    );
});
