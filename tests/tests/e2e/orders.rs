//! ProviderGateway's order intake end to end: signed webhooks over HTTP, AST conversions and the
//! pixel, IngestOrders, BackfillOrders after a webhook gap, and WatchOrders.

use std::time::Duration;

use futures::StreamExt;
use gateway_service::webhooks::{ast::sign_pixel, sign};
use suite_tests::{Suite, brand, register, sandbox_outage, token};
use tonic::Code;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{
    BackfillOrdersRequest, IngestOrdersRequest, Order, OrderEvent, OrderLine, OrderSource,
    OrderStatus, PlaceSandboxOrderRequest, WatchOrdersRequest,
};
use tracking_server::Role;
use tracking_testkit::authed;

const SECRET: &[u8] = b"whsec_test_secret";
const WITH_CODE: &[u8] =
    include_bytes!("../../fixtures/shopify/orders_create_percentage_code.json");
const WITHOUT_CODE: &[u8] = include_bytes!("../../fixtures/shopify/orders_create_no_code.json");

async fn orders_stored(suite: &Suite) -> i64 {
    suite
        .count("gateway", "select count(*) as n from orders")
        .await
}

async fn deliveries_stored(suite: &Suite) -> i64 {
    suite
        .count("gateway", "select count(*) as n from webhook_deliveries")
        .await
}

async fn shopify(
    suite: &Suite,
    integration: i64,
    topic: &str,
    delivery: &str,
    signature: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-shopify-topic", topic),
        ("x-shopify-webhook-id", delivery),
        ("x-shopify-shop-domain", "test-shop.myshopify.com"),
    ];
    if let Some(signature) = signature {
        headers.push(("x-shopify-hmac-sha256", signature));
    }
    let response = suite
        .http(
            "POST",
            &format!("/webhooks/shopify/{integration}"),
            &headers,
            body,
        )
        .await;
    (response.status, response.text())
}

/// The count of Shopify deliveries answered with `outcome`, from `/metrics`.
async fn shopify_answered(suite: &Suite, outcome: &str) -> u64 {
    let metrics = suite.http("GET", "/metrics", &[], b"").await.text();
    let series =
        format!(r#"tracking_order_deliveries_total{{endpoint="shopify",outcome="{outcome}"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_default()
}

/// The first `n` events of WatchOrders after `after`, as `scope_token` sees them.
async fn watch(suite: &Suite, scope_token: &str, after: i64, n: usize) -> Vec<OrderEvent> {
    let mut stream = suite
        .gateway()
        .watch_orders(authed(WatchOrdersRequest { after_seq: after }, scope_token))
        .await
        .unwrap_or_else(|s| panic!("WatchOrders: {s}"))
        .into_inner();
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(response))) => events.extend(response.event),
            other => panic!(
                "WatchOrders ended early after {} events: {other:?}",
                events.len()
            ),
        }
    }
    events
}

fn status(event: &OrderEvent) -> OrderStatus {
    let order = event.order.clone().unwrap_or_default();
    OrderStatus::try_from(order.status).unwrap_or(OrderStatus::Unspecified)
}

#[tokio::test]
async fn shopify_webhooks_are_verified_before_anything_is_stored() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(1), Provider::Shopify).await;
    let good = sign(SECRET, WITH_CODE);

    let mut flipped = WITH_CODE.to_vec();
    flipped[100] ^= 0x01;
    let reserialized = serde_json_roundtrip(WITH_CODE);
    let wrong_secret = sign(b"another secret", WITH_CODE);
    for (what, signature, body) in [
        ("flipped bit", Some(good.as_str()), flipped.as_slice()),
        ("wrong secret", Some(wrong_secret.as_str()), WITH_CODE),
        ("missing header", None, WITH_CODE),
        (
            "re-serialized body",
            Some(good.as_str()),
            reserialized.as_slice(),
        ),
        ("not base64", Some("%%%"), WITH_CODE),
    ] {
        let (status, _) = shopify(
            &suite,
            integration,
            "orders/create",
            "d-bad",
            signature,
            body,
        )
        .await;
        assert_eq!(status, 401, "{what}");
    }
    // Unknown integrations, and an integration of another provider, look the same.
    let (status, _) = shopify(
        &suite,
        999_999,
        "orders/create",
        "d-x",
        Some(&good),
        WITH_CODE,
    )
    .await;
    assert_eq!(status, 401);
    let ast = register(&suite, &brand(1), Provider::Ast).await;
    let (status, _) = shopify(&suite, ast, "orders/create", "d-x", Some(&good), WITH_CODE).await;
    assert_eq!(status, 401);
    // Signed by the app, but sent from another shop than the integration's (an app installed on
    // several brands' shops signs for all of them), or naming no shop (Shopify names the shop on
    // every delivery: one that does not is not the store's).
    for (delivery, shop) in [
        ("d-elsewhere", Some("another-brand.myshopify.com")),
        ("d-unnamed", None),
    ] {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-webhook-id", delivery),
            ("x-shopify-hmac-sha256", good.as_str()),
        ];
        headers.extend(shop.map(|shop| ("x-shopify-shop-domain", shop)));
        let response = suite
            .http(
                "POST",
                &format!("/webhooks/shopify/{integration}"),
                &headers,
                WITH_CODE,
            )
            .await;
        assert_eq!(response.status, 401, "{delivery}");
    }
    assert_eq!(
        (orders_stored(&suite).await, deliveries_stored(&suite).await),
        (0, 0)
    );

    // A signed body that is not an order: 400, nothing stored.
    let junk = br#"{"id": "not a number"}"#;
    let (status, text) = shopify(
        &suite,
        integration,
        "orders/create",
        "d-junk",
        Some(&sign(SECRET, junk)),
        junk,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(
        (orders_stored(&suite).await, deliveries_stored(&suite).await),
        (0, 0)
    );

    // Parsed, but not an order the suite keeps (a negative total): 400, nothing stored.
    let negative = String::from_utf8_lossy(WITH_CODE).replace(
        "\"total_price\": \"186.90\"",
        "\"total_price\": \"-186.90\"",
    );
    assert_ne!(negative.as_bytes(), WITH_CODE, "the fixture's total_price");
    let (status, text) = shopify(
        &suite,
        integration,
        "orders/create",
        "d-neg",
        Some(&sign(SECRET, negative.as_bytes())),
        negative.as_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(
        (orders_stored(&suite).await, deliveries_stored(&suite).await),
        (0, 0)
    );

    // The real capture, signed: stored and streamed with its code.
    let (status, text) = shopify(
        &suite,
        integration,
        "orders/create",
        "d-1",
        Some(&good),
        WITH_CODE,
    )
    .await;
    assert_eq!((status, text.as_str()), (200, r#"{"status":"accepted"}"#));
    let events = watch(&suite, &token(1, Role::Service), 0, 1).await;
    let order = events[0].order.clone().unwrap_or_default();
    assert_eq!(events[0].brand_id, 1);
    assert_eq!(order.integration_id, integration);
    assert_eq!(order.store_order_id, "6200407294252");
    assert_eq!(order.codes, vec!["0124D"]);
    assert_eq!(
        (order.currency.as_str(), order.total_minor),
        ("HKD", 18_690)
    );
    assert_eq!(status_of(&order), OrderStatus::Paid);
    assert_eq!(
        OrderSource::try_from(events[0].source),
        Ok(OrderSource::Webhook)
    );

    // The gateway now knows the integration without reading it: signatures are still checked,
    // and a Shopify delivery to the AST integration is still refused.
    let (status, _) = shopify(
        &suite,
        integration,
        "orders/create",
        "d-2",
        Some(&wrong_secret),
        WITH_CODE,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = shopify(&suite, ast, "orders/create", "d-3", Some(&good), WITH_CODE).await;
    assert_eq!(status, 401);

    // Every answer is counted by its outcome.
    for (outcome, count) in [("unauthorized", 11), ("malformed", 2), ("accepted", 1)] {
        assert_eq!(shopify_answered(&suite, outcome).await, count, "{outcome}");
    }
}

fn status_of(order: &Order) -> OrderStatus {
    OrderStatus::try_from(order.status).unwrap_or(OrderStatus::Unspecified)
}

/// The same JSON with different bytes (as a proxy re-encoding it would produce).
fn serde_json_roundtrip(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    text.replace(": ", ":").replace(", ", ",").into_bytes()
}

#[tokio::test]
async fn redeliveries_and_the_same_order_by_two_topics_count_once() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(1), Provider::Shopify).await;
    let good = sign(SECRET, WITH_CODE);
    let first = shopify(
        &suite,
        integration,
        "orders/create",
        "d-1",
        Some(&good),
        WITH_CODE,
    )
    .await;
    assert_eq!(first, (200, r#"{"status":"accepted"}"#.to_owned()));
    // Shopify retries with the same webhook id.
    let again = shopify(
        &suite,
        integration,
        "orders/create",
        "d-1",
        Some(&good),
        WITH_CODE,
    )
    .await;
    assert_eq!(again, (200, r#"{"status":"redelivery"}"#.to_owned()));
    // The already-paid order arrives again as orders/paid: same state, collapsed.
    let paid = shopify(
        &suite,
        integration,
        "orders/paid",
        "d-2",
        Some(&good),
        WITH_CODE,
    )
    .await;
    assert_eq!(paid, (200, r#"{"status":"duplicate"}"#.to_owned()));
    assert_eq!(orders_stored(&suite).await, 1);
    assert_eq!(deliveries_stored(&suite).await, 2);

    // Concurrent redeliveries of one new delivery: exactly one is stored.
    let body = WITHOUT_CODE;
    let signature = sign(SECRET, body);
    let mut calls = Vec::new();
    for _ in 0..8 {
        calls.push(shopify(
            &suite,
            integration,
            "orders/create",
            "d-3",
            Some(&signature),
            body,
        ));
    }
    let answers = futures::future::join_all(calls).await;
    let accepted = answers
        .iter()
        .filter(|(_, text)| text.contains("accepted"))
        .count();
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(accepted, 1, "{answers:?}");
    assert_eq!(orders_stored(&suite).await, 2);

    // One new order by eight concurrent deliveries with their own ids (they share transactions
    // in the intake's group commit): stored once, the others duplicates, every delivery kept.
    let fresh = String::from_utf8_lossy(WITHOUT_CODE)
        .replace("6200354537772", "6200354599999")
        .into_bytes();
    let signature = sign(SECRET, &fresh);
    let ids: Vec<String> = (0..8).map(|n| format!("d-fresh-{n}")).collect();
    let calls = ids.iter().map(|id| {
        shopify(
            &suite,
            integration,
            "orders/paid",
            id,
            Some(&signature),
            &fresh,
        )
    });
    let answers = futures::future::join_all(calls).await;
    let count = |word: &str| answers.iter().filter(|(_, t)| t.contains(word)).count();
    assert_eq!(
        (count("accepted"), count("duplicate")),
        (1, 7),
        "{answers:?}"
    );
    assert_eq!(orders_stored(&suite).await, 3);
    assert_eq!(deliveries_stored(&suite).await, 3 + 8);
    for (outcome, count) in [("accepted", 3), ("redelivery", 8), ("duplicate", 8)] {
        assert_eq!(shopify_answered(&suite, outcome).await, count, "{outcome}");
    }
}

#[tokio::test]
async fn an_edit_of_the_total_is_an_order_event_of_its_own() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(1), Provider::Shopify).await;
    // The fixture is paid, 186.90 HKD, last changed at 23:10:16. The brand edits the order (one
    // more item): Shopify sends `orders/updated` with the new total and a later `updated_at`.
    let fixture = String::from_utf8_lossy(WITH_CODE).into_owned();
    let edited = fixture
        .replace("\"total_price\": \"186.90\"", "\"total_price\": \"286.90\"")
        .replace(
            "\"updated_at\": \"2025-01-23T23:10:16-05:00\"",
            "\"updated_at\": \"2025-01-24T09:00:00-05:00\"",
        );
    // A change that leaves the amounts alone (a note, a fulfilment) is no new state.
    let noted = fixture.replace(
        "\"updated_at\": \"2025-01-23T23:10:16-05:00\"",
        "\"updated_at\": \"2025-01-23T23:30:00-05:00\"",
    );
    // The brand takes the item out again: the first total, at a later time.
    let reverted = fixture.replace(
        "\"updated_at\": \"2025-01-23T23:10:16-05:00\"",
        "\"updated_at\": \"2025-01-24T10:00:00-05:00\"",
    );
    assert!(
        edited != fixture && noted != fixture,
        "the fixture's fields moved"
    );
    let deliveries = [
        ("orders/create", "e-1", fixture.as_str(), "accepted"),
        ("orders/updated", "e-2", noted.as_str(), "duplicate"),
        ("orders/updated", "e-3", edited.as_str(), "accepted"),
        // The same edit again, under another delivery id.
        ("orders/updated", "e-4", edited.as_str(), "duplicate"),
        // A late delivery of the note, older than the edit: no return to the first total.
        ("orders/updated", "e-5", noted.as_str(), "duplicate"),
        ("orders/updated", "e-6", reverted.as_str(), "accepted"),
        ("orders/updated", "e-7", reverted.as_str(), "duplicate"),
    ];
    for (topic, id, body, outcome) in deliveries {
        let answer = shopify(
            &suite,
            integration,
            topic,
            id,
            Some(&sign(SECRET, body.as_bytes())),
            body.as_bytes(),
        )
        .await;
        assert_eq!(
            answer,
            (200, format!(r#"{{"status":"{outcome}"}}"#)),
            "{id}"
        );
    }
    let events = watch(&suite, &brand(1), 0, 3).await;
    let orders: Vec<Order> = events.into_iter().filter_map(|e| e.order).collect();
    let totals: Vec<(i32, i64)> = orders.iter().map(|o| (o.status, o.total_minor)).collect();
    assert_eq!(
        totals,
        [
            (OrderStatus::Paid as i32, 18_690),
            (OrderStatus::Paid as i32, 28_690),
            (OrderStatus::Paid as i32, 18_690)
        ]
    );
    let updated: Vec<i64> = orders
        .iter()
        .map(|o| o.updated_at.map_or(0, |t| t.seconds))
        .collect();
    // 2025-01-24T04:10:16Z, 2025-01-24T14:00:00Z and 2025-01-24T15:00:00Z.
    assert_eq!(updated, [1_737_691_816, 1_737_727_200, 1_737_730_800]);
}

#[tokio::test]
async fn each_status_transition_is_one_order_event() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(1), Provider::Shopify).await;
    let created = String::from_utf8_lossy(WITH_CODE).replace(
        "\"financial_status\": \"paid\"",
        "\"financial_status\": \"pending\"",
    );
    assert_ne!(
        created.as_bytes(),
        WITH_CODE,
        "fixture has financial_status paid"
    );
    let deliveries: Vec<(&str, Vec<u8>)> = vec![
        ("orders/create", created.into_bytes()),
        ("orders/paid", WITH_CODE.to_vec()),
    ];
    for (i, (topic, body)) in deliveries.iter().enumerate() {
        let answer = shopify(
            &suite,
            integration,
            topic,
            &format!("d-{i}"),
            Some(&sign(SECRET, body)),
            body,
        )
        .await;
        assert_eq!(
            answer,
            (200, r#"{"status":"accepted"}"#.to_owned()),
            "{topic}"
        );
    }
    let events = watch(&suite, &brand(1), 0, 2).await;
    assert_eq!(
        events.iter().map(status).collect::<Vec<_>>(),
        [OrderStatus::Created, OrderStatus::Paid]
    );
    let cancelled = String::from_utf8_lossy(WITH_CODE).replace(
        "\"cancelled_at\": null",
        "\"cancelled_at\": \"2024-05-07T10:00:00+08:00\"",
    );
    let answer = shopify(
        &suite,
        integration,
        "orders/cancelled",
        "d-c",
        Some(&sign(SECRET, cancelled.as_bytes())),
        cancelled.as_bytes(),
    )
    .await;
    assert_eq!(answer.0, 200);
    let events = watch(&suite, &brand(1), events[1].seq, 1).await;
    assert_eq!(status(&events[0]), OrderStatus::Cancelled);
}

async fn woocommerce(
    suite: &Suite,
    integration: i64,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let response = suite
        .http(
            "POST",
            &format!("/webhooks/woocommerce/{integration}"),
            headers,
            body,
        )
        .await;
    (response.status, response.text())
}

const WOO_ORDER: &str = r#"{"id": 727, "status": "processing", "currency": "USD",
  "date_created_gmt": "2026-11-20T19:28:02", "discount_total": "2.40", "total": "29.35",
  "billing": {"email": "john.doe@example.com", "country": "US"}, "shipping": {"country": "US"},
  "line_items": [{"id": 315, "product_id": 93, "quantity": 2, "subtotal": "6.00", "total": "4.80"},
                 {"id": 316, "product_id": 22, "quantity": 1, "subtotal": "12.00", "total": "10.80"}],
  "coupon_lines": [{"id": 318, "code": "summer20", "discount": "2.40"}], "refunds": [], "meta_data": []}"#;

#[tokio::test]
async fn woocommerce_deliveries_pings_and_statuses() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(2), Provider::Woocommerce).await;
    // The ping WooCommerce sends when the webhook is saved: unsigned, acknowledged, not stored.
    let ping = woocommerce(
        &suite,
        integration,
        &[("content-type", "application/x-www-form-urlencoded")],
        b"webhook_id=12",
    )
    .await;
    assert_eq!(ping.0, 200);
    let body = WOO_ORDER.as_bytes();
    let signature = sign(SECRET, body);
    let headers = |topic: &'static str, delivery: &'static str, signature: &'static str| {
        vec![
            ("x-wc-webhook-topic", topic),
            ("x-wc-webhook-delivery-id", delivery),
            ("x-wc-webhook-signature", signature),
        ]
    };
    let signature: &'static str = Box::leak(signature.into_boxed_str());
    assert_eq!(
        woocommerce(
            &suite,
            integration,
            &headers("order.created", "1", "AAAA"),
            body
        )
        .await
        .0,
        401
    );
    assert_eq!(orders_stored(&suite).await, 0);
    let answer = woocommerce(
        &suite,
        integration,
        &headers("order.created", "1", signature),
        body,
    )
    .await;
    assert_eq!(answer, (200, r#"{"status":"accepted"}"#.to_owned()));
    let redelivered = woocommerce(
        &suite,
        integration,
        &headers("order.created", "1", signature),
        body,
    )
    .await;
    assert_eq!(redelivered.1, r#"{"status":"redelivery"}"#);
    let updated_same = woocommerce(
        &suite,
        integration,
        &headers("order.updated", "2", signature),
        body,
    )
    .await;
    assert_eq!(updated_same.1, r#"{"status":"duplicate"}"#);
    let refunded = WOO_ORDER.replace(
        "\"refunds\": []",
        "\"refunds\": [{\"id\": 9, \"total\": \"-10.00\"}]",
    );
    let refunded_sig: &'static str = Box::leak(sign(SECRET, refunded.as_bytes()).into_boxed_str());
    // WooCommerce's delivery id is the webhook's and the second's (`get_new_delivery_id`): a
    // change sent in the same second as the first delivery carries its id, and is not dropped.
    let answer = woocommerce(
        &suite,
        integration,
        &headers("order.updated", "1", refunded_sig),
        refunded.as_bytes(),
    )
    .await;
    assert_eq!(answer.1, r#"{"status":"accepted"}"#);
    let events = watch(&suite, &brand(2), 0, 2).await;
    assert_eq!(status(&events[0]), OrderStatus::Paid);
    assert_eq!(status(&events[1]), OrderStatus::PartiallyRefunded);
    let order = events[1].order.clone().unwrap_or_default();
    assert_eq!(
        (order.codes.clone(), order.refunded_minor, order.total_minor),
        (vec!["summer20".to_owned()], 1000, 2935)
    );
    // Another brand's stream does not see it.
    let other = suite
        .gateway()
        .watch_orders(authed(WatchOrdersRequest { after_seq: 0 }, &brand(3)))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let seen = tokio::time::timeout(
        Duration::from_millis(300),
        other.take(1).collect::<Vec<_>>(),
    )
    .await;
    assert!(seen.is_err(), "brand 3 saw brand 2's orders: {seen:?}");

    // The brand trashes the order: WooCommerce sends only its id. It ends cancelled, as last
    // stored otherwise. A deletion of an order never seen stores nothing.
    let deleted = br#"{"id": 727}"#;
    let deleted_sig: &'static str = Box::leak(sign(SECRET, deleted).into_boxed_str());
    let answer = woocommerce(
        &suite,
        integration,
        &headers("order.deleted", "3", deleted_sig),
        deleted,
    )
    .await;
    assert_eq!(answer.1, r#"{"status":"accepted"}"#);
    let events = watch(&suite, &brand(2), events[1].seq, 1).await;
    assert_eq!(status(&events[0]), OrderStatus::Cancelled);
    let void = events[0].order.clone().unwrap_or_default();
    assert_eq!(
        (void.store_order_id.as_str(), void.codes, void.total_minor),
        ("727", vec!["summer20".to_owned()], 2935)
    );
    let unknown = br#"{"id": 999}"#;
    let unknown_sig: &'static str = Box::leak(sign(SECRET, unknown).into_boxed_str());
    let answer = woocommerce(
        &suite,
        integration,
        &headers("order.deleted", "4", unknown_sig),
        unknown,
    )
    .await;
    assert_eq!(answer.0, 200);
    assert_eq!(orders_stored(&suite).await, 3);
}

/// A shop whose plugins sell by weight (decimal quantities) and let a shopper type a coupon no
/// store of ours made, longer than any code: its order still counts, with the code of ours.
#[tokio::test]
async fn a_woocommerce_order_with_fields_the_model_does_not_keep_still_counts() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(2), Provider::Woocommerce).await;
    let long_coupon = "x".repeat(300);
    let body = WOO_ORDER
        .replace(r#""quantity": 2,"#, r#""quantity": 1.5,"#)
        .replace(
            r#"{"id": 318, "code": "summer20", "discount": "2.40"}"#,
            &format!(
                r#"{{"id": 317, "code": "{long_coupon}", "discount": "0.00"}},
                   {{"id": 318, "code": "summer20", "discount": "2.40"}}"#
            ),
        )
        .replace(
            r#""shipping": {"country": "US"}"#,
            r#""shipping": {"country": "\u00c9"}"#,
        )
        .replace(r#""country": "US""#, r#""country": "\u00c9""#);
    let signature = sign(SECRET, body.as_bytes());
    let answer = woocommerce(
        &suite,
        integration,
        &[
            ("x-wc-webhook-topic", "order.created"),
            ("x-wc-webhook-delivery-id", "1"),
            ("x-wc-webhook-signature", &signature),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(answer, (200, r#"{"status":"accepted"}"#.to_owned()));
    let events = watch(&suite, &brand(2), 0, 1).await;
    let order = events[0].order.clone().unwrap_or_default();
    assert_eq!(
        (order.codes, order.country, order.total_minor),
        (vec!["summer20".to_owned()], String::new(), 2935)
    );
    assert_eq!(
        order.lines.iter().map(|l| l.quantity).collect::<Vec<_>>(),
        [2, 1]
    );
}

#[tokio::test]
async fn ast_conversions_and_the_pixel() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(4), Provider::Ast).await;
    let body = br#"{"order_id": "A-1001", "click_id": "c_abc", "amount": "49.90", "currency": "EUR", "country": "DE", "codes": ["ANNA10"]}"#;
    let target = format!("/ast/v1/conversions?integration={integration}");
    let post = |signature: String| {
        let target = target.clone();
        let suite = &suite;
        async move {
            suite
                .http(
                    "POST",
                    &target,
                    &[
                        ("content-type", "application/json"),
                        ("x-ast-signature", &signature),
                    ],
                    body,
                )
                .await
        }
    };
    assert_eq!(post(sign(b"wrong", body)).await.status, 401);
    let accepted = post(sign(SECRET, body)).await;
    assert_eq!(
        (accepted.status, accepted.text()),
        (200, r#"{"status":"accepted"}"#.to_owned())
    );
    assert_eq!(
        post(sign(SECRET, body)).await.text(),
        r#"{"status":"duplicate"}"#
    );
    let malformed = br#"{"order_id": "A-1", "amount": 49.9, "currency": "EUR"}"#;
    let response = suite
        .http(
            "POST",
            &target,
            &[("x-ast-signature", &sign(SECRET, malformed))],
            malformed,
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text());

    let signed =
        format!("integration={integration}&order_id=B-7&amount=12.50&currency=USD&click_id=c_def");
    let pixel = format!(
        "/ast/v1/pixel.gif?{signed}&sig={}",
        sign_pixel(SECRET, &signed)
    );
    let response = suite.http("GET", &pixel, &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/gif"));
    assert!(response.body.starts_with(b"GIF89a"));
    let tampered = pixel.replace("12.50", "99.50");
    assert_eq!(suite.http("GET", &tampered, &[], b"").await.status, 401);

    let events = watch(&suite, &brand(4), 0, 2).await;
    let orders: Vec<Order> = events.iter().filter_map(|e| e.order.clone()).collect();
    assert_eq!(orders[0].click_id, "c_abc");
    assert_eq!(
        (orders[0].total_minor, orders[0].codes.clone()),
        (4990, vec!["ANNA10".to_owned()])
    );
    assert_eq!(
        (orders[1].store_order_id.as_str(), orders[1].total_minor),
        ("B-7", 1250)
    );
    assert!(events.iter().all(|e| e.source == OrderSource::Ast as i32));
    assert_eq!(orders_stored(&suite).await, 2);
}

fn order(integration_id: i64, id: &str, status: OrderStatus, codes: &[&str]) -> Order {
    Order {
        integration_id,
        store_order_id: id.to_owned(),
        status: status as i32,
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        currency: "EUR".to_owned(),
        subtotal_minor: 10_000,
        discount_minor: 1_000,
        total_minor: 9_000,
        country: "FR".to_owned(),
        lines: vec![OrderLine {
            product_id: "p1".to_owned(),
            quantity: 1,
            amount_minor: 10_000,
            discount_minor: 1_000,
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            ..OrderLine::default()
        }],
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        ..Order::default()
    }
}

#[tokio::test]
async fn edits_in_one_call_are_published_in_the_order_they_came() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(5), Provider::Sandbox).await;
    // One order edited twice, without the store's time: 150.00, then 120.00 (a lower total
    // sorts first), sent in one call, which stores them together.
    let edits: Vec<IngestOrdersRequest> = [15_000, 12_000]
        .into_iter()
        .map(|total| {
            let mut edit = order(integration, "e-1", OrderStatus::Paid, &["CODE1"]);
            edit.total_minor = total;
            IngestOrdersRequest { order: Some(edit) }
        })
        .collect();
    let answer = suite
        .gateway()
        .ingest_orders(authed(tokio_stream::iter(edits), &brand(5)))
        .await
        .map(|r| r.into_inner().accepted);
    assert_eq!(answer.ok(), Some(2));
    let totals: Vec<i64> = watch(&suite, &brand(5), 0, 2)
        .await
        .iter()
        .filter_map(|e| e.order.as_ref().map(|o| o.total_minor))
        .collect();
    assert_eq!(
        totals,
        [15_000, 12_000],
        "the last edit sent is the last one published"
    );
}

/// Edits that bring an order back to an earlier total, with the store's times, in one call and
/// across calls: the order's last state is what is published last.
#[tokio::test]
async fn an_edit_back_to_an_earlier_total_is_published_also_within_one_call() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(5), Provider::Sandbox).await;
    let edit = |id: &str, total: i64, minute: i64| {
        let mut edit = order(integration, id, OrderStatus::Paid, &["CODE1"]);
        edit.total_minor = total;
        edit.updated_at = Some(prost_types::Timestamp {
            seconds: 1_764_000_000 + minute * 60,
            nanos: 0,
        });
        IngestOrdersRequest { order: Some(edit) }
    };
    let ingest = |edits: Vec<IngestOrdersRequest>| {
        let mut client = suite.gateway();
        async move {
            client
                .ingest_orders(authed(tokio_stream::iter(edits), &brand(5)))
                .await
                .map(|r| r.into_inner().accepted)
                .unwrap_or_else(|s| panic!("{s}"))
        }
    };
    // r-1 goes 100 → 120 → 100 in one call; r-2 goes 100 → 120, and in a second call back to
    // 100 and on to 120 again: its last state, 120, is the one already published.
    let first = ingest(vec![
        edit("r-1", 10_000, 1),
        edit("r-1", 12_000, 2),
        edit("r-1", 10_000, 3),
        edit("r-2", 10_000, 1),
        edit("r-2", 12_000, 2),
    ])
    .await;
    assert_eq!(first, 5);
    let second = ingest(vec![edit("r-2", 10_000, 3), edit("r-2", 12_000, 4)]).await;
    assert_eq!(second, 0, "nothing new: the order is at 120, as published");
    // The returns a later call brings are published too.
    let third = ingest(vec![edit("r-1", 12_000, 5), edit("r-2", 10_000, 5)]).await;
    assert_eq!(third, 2);
    let published: Vec<(String, i64)> = watch(&suite, &brand(5), 0, 7)
        .await
        .iter()
        .filter_map(|e| {
            e.order
                .as_ref()
                .map(|o| (o.store_order_id.clone(), o.total_minor))
        })
        .collect();
    let of = |id: &str| -> Vec<i64> {
        published
            .iter()
            .filter(|(order, _)| order == id)
            .map(|(_, total)| *total)
            .collect()
    };
    assert_eq!(of("r-1"), [10_000, 12_000, 10_000, 12_000]);
    assert_eq!(of("r-2"), [10_000, 12_000, 10_000]);
}

#[tokio::test]
async fn ingest_orders_stores_batches_once_and_names_bad_fields() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(5), Provider::Sandbox).await;
    let other = register(&suite, &brand(6), Provider::Sandbox).await;
    let ingest = |orders: Vec<Order>, token: String| {
        let mut client = suite.gateway();
        async move {
            let stream = tokio_stream::iter(
                orders
                    .into_iter()
                    .map(|o| IngestOrdersRequest { order: Some(o) }),
            );
            client
                .ingest_orders(authed(stream, &token))
                .await
                .map(|r| r.into_inner())
        }
    };
    let batch: Vec<Order> = (0..1200)
        .map(|i| {
            order(
                integration,
                &format!("o-{i}"),
                OrderStatus::Paid,
                &["CODE1"],
            )
        })
        .collect();
    let first = ingest(batch.clone(), brand(5))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        (first.received, first.accepted, first.duplicates),
        (1200, 1200, 0)
    );
    let again = ingest(batch, brand(5))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        (again.received, again.accepted, again.duplicates),
        (1200, 0, 1200)
    );
    assert_eq!(orders_stored(&suite).await, 1200);

    let mut bad = order(integration, "bad", OrderStatus::Paid, &[]);
    bad.currency = "euro".to_owned();
    let err = ingest(
        vec![order(integration, "ok-1", OrderStatus::Paid, &[]), bad],
        brand(5),
    )
    .await
    .err();
    let err = err.unwrap_or_else(|| panic!("bad currency accepted"));
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("orders[1].currency"),
        "{}",
        err.message()
    );
    assert_eq!(
        orders_stored(&suite).await,
        1201,
        "the order before the invalid one is kept"
    );
    let unspecified = order(integration, "u", OrderStatus::Unspecified, &[]);
    let err = ingest(vec![unspecified], brand(5))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&err, Some((Code::InvalidArgument, m)) if m.contains("orders[0].status")),
        "{err:?}"
    );
    let unset = order(0, "z", OrderStatus::Paid, &[]);
    let err = ingest(vec![unset], brand(5))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&err, Some((Code::InvalidArgument, m)) if m.contains("orders[0].integration_id")),
        "{err:?}"
    );
    // Another brand's integration: NOT_FOUND, nothing stored.
    let err = ingest(vec![order(other, "x", OrderStatus::Paid, &[])], brand(5))
        .await
        .err();
    assert_eq!(err.map(|s| s.code()), Some(Code::NotFound));
    let creator = suite_tests::creator_token(5, 1);
    let err = ingest(
        vec![order(integration, "y", OrderStatus::Paid, &[])],
        creator,
    )
    .await
    .err();
    assert_eq!(err.map(|s| s.code()), Some(Code::PermissionDenied));
    assert_eq!(
        orders_stored(&suite).await,
        1201,
        "nothing stored by the refused calls"
    );
}

#[tokio::test]
async fn backfill_after_a_webhook_gap_counts_every_order_once() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(7), Provider::Sandbox).await;
    let since =
        prost_types::Timestamp::from(std::time::SystemTime::now() - Duration::from_secs(60));
    let place = |id: &'static str| {
        let mut client = suite.gateway();
        async move {
            client
                .place_sandbox_order(authed(
                    PlaceSandboxOrderRequest {
                        integration_id: integration,
                        order: Some(order(0, id, OrderStatus::Paid, &["ANNA10"])),
                    },
                    &brand(7),
                ))
                .await
                .unwrap_or_else(|s| panic!("{s}"))
                .into_inner()
                .delivered
        }
    };
    assert!(place("s-1").await, "delivered while the store is up");
    sandbox_outage(&suite, &brand(7), integration, true).await;
    assert!(
        !place("s-2").await && !place("s-3").await,
        "webhooks missed during the outage"
    );
    let backfill = |token: String| {
        let mut client = suite.gateway();
        async move {
            client
                .backfill_orders(authed(
                    BackfillOrdersRequest {
                        integration_id: integration,
                        since: Some(since),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let down = backfill(brand(7)).await.err().map(|s| s.code());
    assert_eq!(down, Some(Code::Unavailable), "the store's API is down too");
    sandbox_outage(&suite, &brand(7), integration, false).await;
    assert!(place("s-4").await);
    assert_eq!(orders_stored(&suite).await, 2);
    let filled = backfill(brand(7)).await.unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        (filled.listed, filled.accepted, filled.duplicates),
        (4, 2, 2)
    );
    let again = backfill(brand(7)).await.unwrap_or_else(|s| panic!("{s}"));
    assert_eq!((again.accepted, again.duplicates), (0, 4));
    assert_eq!(orders_stored(&suite).await, 4);
    let ids: Vec<String> = watch(&suite, &brand(7), 0, 4)
        .await
        .into_iter()
        .filter_map(|e| e.order.map(|o| o.store_order_id))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["s-1", "s-2", "s-3", "s-4"]);
    // Another brand cannot backfill it; bad windows name the field.
    assert_eq!(
        backfill(brand(8)).await.err().map(|s| s.code()),
        Some(Code::NotFound)
    );
}

#[tokio::test]
async fn watch_orders_replays_then_follows_live() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(9), Provider::Sandbox).await;
    let mut client = suite.gateway();
    let send = |ids: Vec<String>| {
        let mut client = suite.gateway();
        async move {
            let orders: Vec<IngestOrdersRequest> = ids
                .iter()
                .map(|id| IngestOrdersRequest {
                    order: Some(order(integration, id, OrderStatus::Paid, &[])),
                })
                .collect();
            client
                .ingest_orders(authed(tokio_stream::iter(orders), &brand(9)))
                .await
                .unwrap_or_else(|s| panic!("{s}"));
        }
    };
    send(vec!["w-1".into(), "w-2".into()]).await;
    let mut stream = client
        .watch_orders(authed(
            WatchOrdersRequest { after_seq: 0 },
            &token(0, Role::Service),
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        seen.extend(
            next.ok()
                .flatten()
                .and_then(Result::ok)
                .and_then(|r| r.event),
        );
    }
    send(vec!["w-3".into()]).await;
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    seen.extend(
        next.ok()
            .flatten()
            .and_then(Result::ok)
            .and_then(|r| r.event),
    );
    let ids: Vec<String> = seen
        .iter()
        .filter_map(|e| e.order.clone().map(|o| o.store_order_id))
        .collect();
    assert_eq!(ids, vec!["w-1", "w-2", "w-3"]);
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    // Resuming after the second event gives only the third.
    let resumed = watch(&suite, &token(0, Role::Ops), seen[1].seq, 1).await;
    assert_eq!(resumed[0].seq, seen[2].seq);
    let bad = client
        .watch_orders(authed(WatchOrdersRequest { after_seq: -1 }, &brand(9)))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(bad, Some(Code::InvalidArgument));
}
