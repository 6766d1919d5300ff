//! Fuzz target for the proto-to-domain validation (`NormalizedOrder::from_proto`), which guards
//! IngestOrders, PlaceSandboxOrder and every stored order read back.
//!
//! Input layout: the whole input is an encoded `tracking.gateway.v1.Order`. Any panic, including
//! a failed assertion, is a bug.

#![no_main]

use gateway_service::domain::orders::{MAX_AMOUNT_MINOR, NormalizedOrder};
use gateway_service_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tracking_api::gateway::v1 as pb;

fuzz_target!(|data: &[u8]| {
    let Ok(proto) = pb::Order::decode(data) else {
        return;
    };
    let order = match NormalizedOrder::from_proto(proto.clone(), "order") {
        Ok(order) => order,
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("order."), "{message:?}");
            return;
        }
    };

    // What the validation promises.
    assert!(!order.store_order_id.trim().is_empty());
    assert!(order.store_order_id.chars().count() <= 200);
    assert!(order.currency.len() == 3 && order.currency.bytes().all(|b| b.is_ascii_uppercase()));
    for amount in [
        order.subtotal_minor,
        order.discount_minor,
        order.total_minor,
        order.refunded_minor,
    ] {
        assert!((0..=MAX_AMOUNT_MINOR).contains(&amount), "amount {amount}");
    }
    assert!(order.refunded_minor <= order.total_minor);
    assert!(order.codes.len() <= 20);
    for code in &order.codes {
        assert!(!code.is_empty() && code == code.trim(), "code {code:?}");
    }
    assert!(order.lines.len() <= 1000);
    for line in &order.lines {
        assert!((0..=1_000_000).contains(&line.quantity));
        assert!((0..=MAX_AMOUNT_MINOR).contains(&line.amount_minor));
        assert!((0..=MAX_AMOUNT_MINOR).contains(&line.discount_minor));
    }
    for optional in [&order.click_id, &order.country, &order.customer_hash] {
        assert!(optional.as_ref().is_none_or(|value| !value.is_empty()));
    }

    // Nothing but the codes' whitespace is changed on the way in.
    let back = order.to_proto(proto.integration_id);
    let mut expected = proto.clone();
    expected.codes = expected.codes.iter().map(|c| c.trim().to_owned()).collect();
    assert_eq!(back, expected, "to_proto(from_proto(x)) differs from x");

    // An accepted order re-encodes and re-validates to an equal order.
    assert!(round_trip(&order), "{order:?} is refused on its way back");
});
