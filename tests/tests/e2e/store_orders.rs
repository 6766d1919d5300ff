//! Orders read from store APIs through the real adapters, against local servers that answer as
//! those stores do: BigCommerce's thin webhooks and Shopify's refunds (the order is fetched) and
//! the Magento and WooCommerce poller. The adapters' own tests cover each store's calls in detail; these prove the
//! suite wires them to the intake and counts every order once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use futures::StreamExt;
use gateway_service::webhooks::sign;
use serde_json::{Value, json};
use suite_tests::{Suite, brand, valid_registration};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{OrderEvent, OrderSource, OrderStatus, WatchOrdersRequest};
use tracking_testkit::authed;

/// Serves `router` on a loopback port; its base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

pub(crate) async fn register(suite: &Suite, provider: Provider, base_url: &str) -> i64 {
    let mut registration = valid_registration(provider, "mock store");
    registration.base_url = base_url.to_owned();
    registration.webhook_secret = "whsec_test_secret".to_owned();
    suite
        .gateway()
        .register_integration(authed(registration, &brand(1)))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("register: {s}"))
}

async fn events(suite: &Suite, n: usize) -> Vec<OrderEvent> {
    let mut stream = suite
        .gateway()
        .watch_orders(authed(WatchOrdersRequest { after_seq: 0 }, &brand(1)))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
            Ok(Some(Ok(response))) => events.extend(response.event),
            other => panic!("after {} events: {other:?}", events.len()),
        }
    }
    events
}

fn bigcommerce_order(id: u64) -> Value {
    json!({
        "id": id, "customer_id": 11, "date_created": "Tue, 04 Mar 2025 21:13:33 +0000",
        "date_modified": "Wed, 05 Mar 2025 08:00:00 +0000", "status_id": 11,
        "status": "Awaiting Fulfillment", "subtotal_ex_tax": "120.0000", "subtotal_inc_tax": "120.0000",
        "total_ex_tax": "104.0000", "total_inc_tax": "104.0000", "discount_amount": "0.0000",
        "coupon_discount": "24.0000", "refunded_amount": "0.0000",
        "currency_id": 1, "currency_code": "USD", "currency_exchange_rate": "1.0000000000",
        "default_currency_id": 1, "default_currency_code": "USD",
        "store_default_currency_code": "USD",
        "store_default_to_transactional_exchange_rate": "1.0000000000",
        "billing_address": { "first_name": "Jo", "email": "jo@example.com", "country_iso2": "US" }
    })
}

/// `store` reading BigCommerce orders as [`bigcommerce_order`], with no products or coupons.
fn plain_bigcommerce_orders(store: Router) -> Router {
    store
        .route(
            "/stores/abc123/v2/orders/{id}",
            get(|Path(id): Path<u64>| async move { axum::Json(bigcommerce_order(id)) }),
        )
        .route(
            "/stores/abc123/v2/orders/{id}/products",
            get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/stores/abc123/v2/orders/{id}/coupons",
            get(|| async { axum::Json(json!([])) }),
        )
}

#[tokio::test]
async fn bigcommerce_thin_webhooks_fetch_the_order_once() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let store = Router::new()
        .route(
            "/stores/abc123/v2/orders/{id}",
            get(|State(fetches): State<Arc<AtomicUsize>>, Path(id): Path<u64>| async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let mut order = bigcommerce_order(id);
                // Order 251 comes back with no currency: it cannot be read.
                if id == 251 {
                    order["currency_code"] = json!("");
                    order["default_currency_code"] = json!("");
                }
                axum::Json(order)
            }),
        )
        .route(
            "/stores/abc123/v2/orders/{id}/products",
            get(|Path(id): Path<u64>| async move {
                axum::Json(json!([{ "id": 1, "order_id": id, "product_id": 77, "quantity": 2,
                    "base_price": "60.0000", "base_total": "120.0000", "total_ex_tax": "96.0000",
                    "applied_discounts": [{ "id": "coupon", "amount": "24.0000", "code": "MIA20", "target": "order" }] }]))
            }),
        )
        .route(
            "/stores/abc123/v2/orders/{id}/coupons",
            get(|Path(id): Path<u64>| async move {
                axum::Json(json!([{ "id": 3, "coupon_id": 9, "order_id": id, "code": "MIA20", "amount": "20.0000", "type": 1, "discount": 24 }]))
            }),
        )
        .with_state(fetches.clone());
    let base = serve(store).await;
    let suite = Suite::start().await;
    let integration = register(&suite, Provider::Bigcommerce, &base).await;
    let body = br#"{"created_at": 1561482670, "store_id": "1025646", "producer": "stores/abc123",
        "scope": "store/order/created", "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "data": {"type": "order", "id": 250}}"#;
    let target = format!("/webhooks/bigcommerce/{integration}");
    let deliver = |secret: &'static str, body: String| {
        let target = target.clone();
        let suite = &suite;
        async move {
            suite
                .http(
                    "POST",
                    &target,
                    &[("x-tracking-secret", secret)],
                    body.as_bytes(),
                )
                .await
        }
    };
    let created = String::from_utf8_lossy(body).into_owned();
    assert_eq!(deliver("wrong", created.clone()).await.status, 401);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "nothing fetched for a bad secret"
    );
    let first = deliver("whsec_test_secret", created.clone()).await;
    assert_eq!(
        (first.status, first.text()),
        (200, r#"{"status":"accepted"}"#.to_owned())
    );
    let again = deliver("whsec_test_secret", created.clone()).await;
    assert_eq!(again.text(), r#"{"status":"redelivery"}"#);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "a redelivery is dropped before fetching"
    );
    // A later update of the order hashes the same data ({"type":"order","id":250}): it is a new
    // delivery all the same, and the order is fetched again.
    let updated = created
        .replace("store/order/created", "store/order/updated")
        .replace("1561482670", "1561482999");
    for _ in 0..2 {
        deliver("whsec_test_secret", updated.clone()).await;
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "the update fetched once, its redelivery dropped"
    );
    // An order the gateway cannot read is logged and skipped: answered 503, its delivery would
    // come again until BigCommerce gave up on the webhook and sent no later order.
    let unreadable = created
        .replace("\"id\": 250", "\"id\": 251")
        .replace("1561482670", "1561483000");
    let skipped = deliver("whsec_test_secret", unreadable).await;
    assert_eq!(skipped.status, 200, "{}", skipped.text());
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    assert_eq!(
        suite
            .count("gateway", "select count(*) as n from orders")
            .await,
        1,
        "nothing stored for the unreadable order"
    );
    let order = events(&suite, 1).await[0].order.clone().unwrap_or_default();
    assert_eq!(order.store_order_id, "250");
    assert_eq!(order.codes, vec!["MIA20"]);
    assert_eq!(
        (order.currency.as_str(), order.total_minor),
        ("USD", 10_400)
    );
}

fn magento_order(id: u64, state: &str) -> Value {
    json!({
        "entity_id": id, "increment_id": format!("0000000{id}"), "state": state, "status": state,
        "created_at": "2025-04-02 13:45:10", "updated_at": "2025-04-03 09:00:00",
        "order_currency_code": "GBP", "base_currency_code": "GBP",
        "subtotal": 80, "discount_amount": -16, "shipping_amount": 5, "grand_total": 69,
        "total_refunded": 0, "coupon_code": "MIA20", "customer_email": "kim@example.co.uk",
        "billing_address": { "country_id": "GB", "email": "kim@example.co.uk" },
        "items": [{ "item_id": 1, "sku": "TEE-M", "product_id": 12, "product_type": "simple",
            "qty_ordered": 2, "price": 40, "row_total": 80, "discount_amount": 16 }]
    })
}

#[tokio::test]
async fn magento_is_polled_and_each_order_state_counted_once() {
    let polls = Arc::new(AtomicUsize::new(0));
    let store = Router::new()
        .route(
            "/rest/V1/orders",
            get(|State(polls): State<Arc<AtomicUsize>>| async move {
                polls.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({
                    "items": [magento_order(42, "processing"), magento_order(43, "canceled")],
                    "search_criteria": {}, "total_count": 2
                }))
            }),
        )
        .with_state(polls.clone());
    let base = serve(store).await;
    let suite = Suite::start().await;
    register(&suite, Provider::Magento, &base).await;
    let events = events(&suite, 2).await;
    let mut states: Vec<(String, i32)> = events
        .iter()
        .filter_map(|e| e.order.clone())
        .map(|o| (o.store_order_id, o.status))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("42".to_owned(), OrderStatus::Paid as i32),
            ("43".to_owned(), OrderStatus::Cancelled as i32)
        ]
    );
    // Later polls list the same orders again: nothing new is stored.
    polled_again_storing_nothing_new(&suite, &polls, 2).await;
}

/// Waits for two more polls of the store counting them in `polls`; then the gateway still holds
/// `stored` order states.
async fn polled_again_storing_nothing_new(suite: &Suite, polls: &AtomicUsize, stored: i64) {
    let seen = polls.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while polls.load(Ordering::SeqCst) < seen + 2 {
        assert!(std::time::Instant::now() < deadline, "not polled again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        suite
            .count("gateway", "select count(*) as n from orders")
            .await,
        stored
    );
}

/// A store that takes the request and never answers holds up only its own poll: a round works on
/// its integrations side by side.
#[tokio::test]
async fn a_store_that_never_answers_holds_up_only_its_own_poll() {
    let stalled = serve(Router::new().route(
        "/rest/V1/orders",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            ""
        }),
    ))
    .await;
    let answering = serve(Router::new().route(
        "/rest/V1/orders",
        get(|| async {
            axum::Json(json!({
                "items": [magento_order(42, "processing")],
                "search_criteria": {}, "total_count": 1
            }))
        }),
    ))
    .await;
    let suite = Suite::start().await;
    let mut silent = valid_registration(Provider::Magento, "stalled store");
    silent.base_url = stalled;
    suite
        .gateway()
        .register_integration(authed(silent, &brand(1)))
        .await
        .unwrap_or_else(|s| panic!("register: {s}"));
    register(&suite, Provider::Magento, &answering).await;
    // Within the first round, not after the stalled store's ~40 s of attempts.
    let events = events(&suite, 1).await;
    let order = events[0].order.clone().unwrap_or_default();
    assert_eq!(order.store_order_id, "42");

    // A graceful stop drops the stalled poll and gives its lease back, so another replica polls
    // that store at once instead of after the lease's five intervals.
    let gateway = suite.schema("gateway");
    let Suite {
        db: _db, server, ..
    } = suite;
    server
        .stop()
        .await
        .unwrap_or_else(|e| panic!("stopped with an error: {e}"));
    let mut conn = gateway.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let held: Vec<i64> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "select integration_id from integration_jobs where leased_until is not null",
        ),
        &mut conn,
    )
    .await
    .map(|rows: Vec<Held>| rows.into_iter().map(|row| row.integration_id).collect())
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held, Vec::<i64>::new(), "leases held after the stop");
}

#[derive(diesel::QueryableByName)]
struct Held {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    integration_id: i64,
}

/// WooCommerce sends a webhook once: an order whose delivery was lost (answered with an error,
/// or the webhook disabled by the store after a few) is caught up by the poll.
#[tokio::test]
async fn woocommerce_orders_whose_webhooks_were_lost_are_polled() {
    let listed = Arc::new(AtomicUsize::new(0));
    let store = Router::new()
        .route(
            "/wp-json/wc/v3/orders",
            get(|State(listed): State<Arc<AtomicUsize>>| async move {
                listed.fetch_add(1, Ordering::SeqCst);
                let modified = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
                axum::Json(json!([{
                    "id": 727, "status": "processing", "currency": "USD",
                    "date_created_gmt": "2025-01-24T19:28:02", "date_modified_gmt": modified,
                    "discount_total": "2.40", "total": "29.35", "prices_include_tax": false,
                    "billing": {"email": "shopper@example.com", "country": "US"},
                    "line_items": [{"id": 315, "product_id": 93, "quantity": 2,
                                    "subtotal": "6.00", "total": "4.80"}],
                    "coupon_lines": [{"id": 318, "code": "SUMMER20", "discount": "2.40"}],
                    "refunds": []
                }]))
            }),
        )
        .with_state(listed.clone());
    let base = serve(store).await;
    let suite = Suite::start().await;
    register(&suite, Provider::Woocommerce, &base).await;
    let events = events(&suite, 1).await;
    let order = events[0].order.clone().unwrap_or_default();
    assert_eq!(
        (order.store_order_id.as_str(), order.status, order.codes),
        ("727", OrderStatus::Paid as i32, vec!["SUMMER20".to_owned()])
    );
    assert_eq!(events[0].source, OrderSource::Poller as i32);
    // Polled again, the same order state is not stored again.
    polled_again_storing_nothing_new(&suite, &listed, 1).await;
}

/// More orders changed since the last poll than one listing takes (10,000): the poller lists on
/// from where each listing stopped, and none is missed.
#[tokio::test]
async fn magento_polls_every_order_beyond_one_listing() {
    use std::collections::HashMap;

    use axum::extract::Query;

    const ORDERS: usize = 10_050;
    // Changed one a second over the last three hours, oldest first (as Magento sorts them).
    let start = chrono::Utc::now() - chrono::Duration::hours(3);
    let orders: Arc<Vec<(String, Value)>> = Arc::new(
        (0..ORDERS)
            .map(|n| {
                let changed = (start + chrono::Duration::seconds(n as i64))
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
                let mut order = magento_order(1_000 + n as u64, "processing");
                order["updated_at"] = json!(changed);
                (changed, order)
            })
            .collect(),
    );
    let store = Router::new()
        .route(
            "/rest/V1/orders",
            get(
                |State(orders): State<Arc<Vec<(String, Value)>>>,
                 Query(query): Query<HashMap<String, String>>| async move {
                    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
                    let since = param("searchCriteria[filter_groups][0][filters][0][value]");
                    let size: usize = param("searchCriteria[pageSize]").parse().unwrap_or(20);
                    let page: usize = param("searchCriteria[currentPage]").parse().unwrap_or(1);
                    let changed: Vec<&Value> = orders
                        .iter()
                        .filter(|(at, _)| *at >= since)
                        .map(|(_, order)| order)
                        .collect();
                    let items: Vec<&Value> = changed
                        .iter()
                        .skip((page - 1) * size)
                        .take(size)
                        .copied()
                        .collect();
                    axum::Json(json!({ "items": items, "total_count": changed.len() }))
                },
            ),
        )
        .with_state(orders);
    let base = serve(store).await;
    let suite = Suite::start().await;
    register(&suite, Provider::Magento, &base).await;
    suite
        .count_becomes(
            "every order polled",
            "gateway",
            "select count(distinct store_order_id) as n from orders",
            ORDERS as i64,
        )
        .await;
}

/// Shopify's order of the fixture as its Admin API answers it now: its financial status, and
/// the refunds so far (each one transaction of that amount).
fn shopify_order(financial_status: &str, refunds: &[&str]) -> Value {
    let mut order: Value = serde_json::from_slice(include_bytes!(
        "../../fixtures/shopify/orders_create_percentage_code.json"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    order["refunds"] = refunds
        .iter()
        .enumerate()
        .map(|(n, amount)| {
            json!({ "id": n + 1, "order_id": order["id"], "created_at": "2025-01-25T10:00:00+08:00",
                "transactions": [{ "id": n + 7, "kind": "refund", "status": "success",
                    "amount": amount, "currency": "HKD" }] })
        })
        .collect();
    order["financial_status"] = json!(financial_status);
    order
}

/// Delivers a signed Shopify webhook of `topic` to `integration`'s intake: the answer's body.
async fn deliver_shopify(
    suite: &Suite,
    integration: i64,
    topic: &str,
    id: &str,
    body: Vec<u8>,
) -> String {
    let signature = sign(b"whsec_test_secret", &body);
    let headers = [
        ("x-shopify-topic", topic),
        ("x-shopify-webhook-id", id),
        ("x-shopify-shop-domain", "test-shop.myshopify.com"),
        ("x-shopify-hmac-sha256", signature.as_str()),
    ];
    let target = format!("/webhooks/shopify/{integration}");
    suite.http("POST", &target, &headers, &body).await.text()
}

/// The first `n` order events' status and refunded amount.
async fn refunds_published(suite: &Suite, n: usize) -> Vec<(OrderStatus, i64)> {
    events(suite, n)
        .await
        .iter()
        .map(|e| {
            let order = e.order.clone().unwrap_or_default();
            (order.status(), order.refunded_minor)
        })
        .collect()
}

/// A Shopify `refunds/create` body for the fixture's order: refund `id`, made at `created_at`,
/// `amount` HKD back.
fn shopify_refund(id: u64, created_at: &str, amount: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "id": id, "order_id": 6_200_407_294_252_u64,
        "created_at": created_at,
        "transactions": [{ "id": id + 6, "kind": "refund", "status": "success",
            "amount": amount, "currency": "HKD" }] }))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn shopify_refunds_fetch_the_order_so_none_is_lost_or_counted_twice() {
    // What the store holds; the test moves it on as refunds are made.
    let held = Arc::new(Mutex::new(shopify_order("paid", &[])));
    let fetches = Arc::new(AtomicUsize::new(0));
    let store = Router::new()
        .route(
            "/admin/api/2025-01/orders/{file}",
            get(
                |State((held, fetches)): State<(Arc<Mutex<Value>>, Arc<AtomicUsize>)>| async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let order = held.lock().map(|o| o.clone()).unwrap_or_default();
                    axum::Json(json!({ "order": order }))
                },
            ),
        )
        .with_state((held.clone(), fetches.clone()));
    let base = serve(store).await;
    let suite = Suite::start().await;
    let integration = register(&suite, Provider::Shopify, &base).await;
    let deliver = |topic: &'static str, id: &'static str, body: Vec<u8>| {
        deliver_shopify(&suite, integration, topic, id, body)
    };
    let refund = |amount: &str| shopify_refund(1, "2025-01-25T10:00:00+08:00", amount);
    let paid = serde_json::to_vec(&shopify_order("paid", &[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deliver("orders/paid", "d-paid", paid).await,
        r#"{"status":"accepted"}"#
    );

    // Two partial refunds made together, their deliveries racing: each brings the order with
    // both, so neither is lost.
    *held.lock().unwrap_or_else(|e| panic!("{e}")) =
        shopify_order("partially_refunded", &["50.00", "30.00"]);
    let (first, second) = tokio::join!(
        deliver("refunds/create", "d-r1", refund("50.00")),
        deliver("refunds/create", "d-r2", refund("30.00")),
    );
    let mut answers = [first, second];
    answers.sort();
    assert_eq!(
        answers,
        [r#"{"status":"accepted"}"#, r#"{"status":"duplicate"}"#]
    );
    // Redelivered: dropped before the store is asked again.
    assert_eq!(
        deliver("refunds/create", "d-r1", refund("50.00")).await,
        r#"{"status":"redelivery"}"#
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // An `orders/updated` that already carried the last refund, then that refund's own delivery:
    // counted once.
    *held.lock().unwrap_or_else(|e| panic!("{e}")) =
        shopify_order("refunded", &["50.00", "30.00", "106.90"]);
    let updated = serde_json::to_vec(&shopify_order("refunded", &["50.00", "30.00", "106.90"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deliver("orders/updated", "d-u", updated).await,
        r#"{"status":"accepted"}"#
    );
    assert_eq!(
        deliver("refunds/create", "d-r3", refund("106.90")).await,
        r#"{"status":"duplicate"}"#
    );

    assert_eq!(
        refunds_published(&suite, 3).await,
        [
            (OrderStatus::Paid, 0),
            (OrderStatus::PartiallyRefunded, 8_000),
            (OrderStatus::Refunded, 18_690),
        ]
    );
}

/// A refund of an order the store no longer shows (deleted, or past the 60 days an app without
/// `read_all_orders` may read: Shopify answers 404) is added to the order's last stored state,
/// once; a refund older than that state is taken to be in it already.
/// A Shopify store that no longer shows any order (each fetch answered 404, counted in
/// `fetches`).
fn store_without_orders(fetches: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/admin/api/2025-01/orders/{file}",
            get(|State(fetches): State<Arc<AtomicUsize>>| async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({ "errors": "Not Found" })),
                )
            }),
        )
        .with_state(fetches)
}

#[tokio::test]
async fn a_shopify_refund_of_an_order_the_store_no_longer_shows_is_added_to_its_stored_state() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let base = serve(store_without_orders(fetches.clone())).await;
    let suite = Suite::start().await;
    let integration = register(&suite, Provider::Shopify, &base).await;
    let deliver = |topic: &'static str, id: &'static str, body: Vec<u8>| {
        deliver_shopify(&suite, integration, topic, id, body)
    };
    // The fixture: paid, 186.90 HKD, last changed at 2025-01-24T04:10:16Z.
    let paid = serde_json::to_vec(&shopify_order("paid", &[])).unwrap_or_else(|e| panic!("{e}"));
    let deliveries = [
        ("orders/paid", "d-paid", paid, "accepted"),
        (
            "refunds/create",
            "d-r1",
            shopify_refund(1, "2025-01-25T10:00:00+08:00", "50.00"),
            "accepted",
        ),
        (
            "refunds/create",
            "d-r2",
            shopify_refund(2, "2025-01-26T10:00:00+08:00", "30.00"),
            "accepted",
        ),
        // Made before the state stored last: in it already.
        (
            "refunds/create",
            "d-r3",
            shopify_refund(1, "2025-01-25T10:00:00+08:00", "50.00"),
            "duplicate",
        ),
        // The rest, a cent more than is left (refunds rounded into the shop's currency): the
        // order is refunded in full, never beyond its total.
        (
            "refunds/create",
            "d-r4",
            shopify_refund(4, "2025-01-27T10:00:00+08:00", "106.91"),
            "accepted",
        ),
    ];
    for (topic, id, body, outcome) in deliveries {
        assert_eq!(
            deliver(topic, id, body).await,
            format!(r#"{{"status":"{outcome}"}}"#),
            "{id}"
        );
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 4, "the store asked first");
    assert_eq!(
        refunds_published(&suite, 4).await,
        [
            (OrderStatus::Paid, 0),
            (OrderStatus::PartiallyRefunded, 5_000),
            (OrderStatus::PartiallyRefunded, 8_000),
            (OrderStatus::Refunded, 18_690),
        ]
    );
}

/// A suite with a Shopify integration whose store no longer shows any order, and the fixture's
/// order delivered paid: the suite and the integration.
async fn paid_order_the_store_no_longer_shows() -> (Suite, i64) {
    let base = serve(store_without_orders(Arc::default())).await;
    let suite = Suite::start().await;
    let integration = register(&suite, Provider::Shopify, &base).await;
    let paid = serde_json::to_vec(&shopify_order("paid", &[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deliver_shopify(&suite, integration, "orders/paid", "d-paid", paid).await,
        r#"{"status":"accepted"}"#
    );
    (suite, integration)
}

/// A state the store sends, changed in the same second as one the gateway made from a refund,
/// is the store's own: a later refund made by then is in it, not added again.
#[tokio::test]
async fn a_store_state_of_the_same_second_as_a_refund_is_the_stores_own() {
    let (suite, integration) = paid_order_the_store_no_longer_shows().await;
    let deliver = |topic: &'static str, id: &'static str, body: Vec<u8>| {
        deliver_shopify(&suite, integration, topic, id, body)
    };
    // Two refunds in one second: the first reaches the gateway alone, then the store's state
    // with both, changed in that second, then the second refund.
    let at = "2025-01-25T10:00:00+08:00";
    assert_eq!(
        deliver("refunds/create", "d-r1", shopify_refund(1, at, "20.00")).await,
        r#"{"status":"accepted"}"#
    );
    let mut both = shopify_order("partially_refunded", &["20.00", "10.00"]);
    both["updated_at"] = json!(at);
    let both = serde_json::to_vec(&both).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deliver("orders/updated", "d-both", both).await,
        r#"{"status":"accepted"}"#
    );
    assert_eq!(
        deliver("refunds/create", "d-r2", shopify_refund(2, at, "10.00")).await,
        r#"{"status":"duplicate"}"#
    );
    assert_eq!(
        refunds_published(&suite, 3).await,
        [
            (OrderStatus::Paid, 0),
            (OrderStatus::PartiallyRefunded, 2_000),
            (OrderStatus::PartiallyRefunded, 3_000),
        ]
    );
}

#[tokio::test]
async fn refunds_of_an_order_the_store_no_longer_shows_count_once_in_any_order() {
    let (suite, integration) = paid_order_the_store_no_longer_shows().await;
    let deliver = |topic: &'static str, id: &'static str, body: Vec<u8>| {
        deliver_shopify(&suite, integration, topic, id, body)
    };
    // The later refund first, then the earlier: both count.
    for (id, body) in [
        (
            "d-r2",
            shopify_refund(2, "2025-01-26T10:00:00+08:00", "30.00"),
        ),
        (
            "d-r1",
            shopify_refund(1, "2025-01-25T10:00:00+08:00", "50.00"),
        ),
    ] {
        assert_eq!(
            deliver("refunds/create", id, body).await,
            r#"{"status":"accepted"}"#,
            "{id}"
        );
    }
    // A refund taken in already, sent again under another delivery id, counts once.
    assert_eq!(
        deliver(
            "refunds/create",
            "d-r1-again",
            shopify_refund(1, "2025-01-25T10:00:00+08:00", "50.00")
        )
        .await,
        r#"{"status":"duplicate"}"#
    );
    // A delivery of an older state the store sent late (changed after the paid state, before
    // the refunds) changes nothing: the refunds' states stay the order's latest.
    let mut late = shopify_order("paid", &[]);
    late["updated_at"] = json!("2025-01-25T08:00:00+08:00");
    let late = serde_json::to_vec(&late).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        deliver("orders/updated", "d-late", late).await,
        r#"{"status":"duplicate"}"#
    );
    // Two delivered at once, made in the same second: both count.
    let (third, fourth) = tokio::join!(
        deliver(
            "refunds/create",
            "d-r3",
            shopify_refund(3, "2025-01-27T10:00:00+08:00", "20.00")
        ),
        deliver(
            "refunds/create",
            "d-r4",
            shopify_refund(4, "2025-01-27T10:00:00+08:00", "10.00")
        ),
    );
    assert_eq!(third, r#"{"status":"accepted"}"#);
    assert_eq!(fourth, r#"{"status":"accepted"}"#);
    let published = refunds_published(&suite, 5).await;
    assert_eq!(
        published[..3],
        [
            (OrderStatus::Paid, 0),
            (OrderStatus::PartiallyRefunded, 3_000),
            (OrderStatus::PartiallyRefunded, 8_000),
        ]
    );
    assert_eq!(published[4], (OrderStatus::PartiallyRefunded, 11_000));
}

/// A thin webhook's fetch does not queue behind a push holding every bulk call the gateway makes
/// to the store: the delivery is answered while the push waits on the store.
#[tokio::test]
async fn a_bigcommerce_webhook_is_not_held_behind_a_push() {
    use axum::routing::post;
    use tokio::sync::watch;
    use tracking_api::gateway::v1::{DiscountSpec, PushDiscountsRequest, discount_spec};

    // The store answers promotion calls only once `open` says so; it counts those that arrived.
    #[derive(Clone)]
    struct Gate {
        opened: watch::Receiver<bool>,
        arrived: Arc<AtomicUsize>,
    }
    impl Gate {
        async fn pass(mut self, body: &str) -> Value {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            let _ = self.opened.wait_for(|open| *open).await;
            serde_json::from_str(body).unwrap_or_default()
        }
    }
    let created = |data: Value| {
        (
            axum::http::StatusCode::CREATED,
            axum::Json(json!({ "data": data, "meta": {} })),
        )
    };
    let (open, opened) = watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        opened,
        arrived: arrived.clone(),
    };
    let store = Router::new()
        .route(
            "/stores/abc123/v3/promotions",
            get(|| async { axum::Json(json!({ "data": [], "meta": {} })) }).post({
                let gate = gate.clone();
                move |body: String| async move {
                    let sent = gate.pass(&body).await;
                    created(
                        json!({ "id": 31, "name": sent["name"], "redemption_type": "COUPON",
                        "status": "ENABLED", "rules": [], "current_uses": 0, "max_uses": null }),
                    )
                }
            }),
        )
        .route(
            "/stores/abc123/v3/promotions/{id}/codes",
            post(move |body: String| async move {
                let sent = gate.pass(&body).await;
                created(json!({ "id": 3, "code": sent["code"], "current_uses": 0,
                    "max_uses": 0, "max_uses_per_customer": 0,
                    "created": "2025-01-20T22:00:00+00:00" }))
            }),
        );
    let store = plain_bigcommerce_orders(store);
    let base = serve(store).await;
    let suite = Suite::start().await;
    let integration = register(&suite, Provider::Bigcommerce, &base).await;

    let discounts: Vec<DiscountSpec> = (0..12)
        .map(|n| DiscountSpec {
            code: format!("BULK{n}"),
            external_ref: format!("code-{n}"),
            title: format!("Summer 20 / code-{n}"),
            value: Some(discount_spec::Value::PercentBps(2000)),
            ..DiscountSpec::default()
        })
        .collect();
    let mut gateway = suite.gateway();
    let mut request = authed(
        PushDiscountsRequest {
            integration_id: integration,
            discounts,
        },
        &suite_tests::token(1, tracking_server::Role::Service),
    );
    // Its own deadline, longer than the suite's default: the push waits at the gate meanwhile.
    request.set_timeout(Duration::from_secs(60));
    let push = tokio::spawn(async move {
        gateway
            .push_discounts(request)
            .await
            .map(|r| r.into_inner().results.len())
    });
    // Every bulk call the gateway makes to the store is taken, the rest of the push waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while arrived.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the push never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = br#"{"created_at": 1561482670, "store_id": "1025646", "producer": "stores/abc123",
        "scope": "store/order/created", "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "data": {"type": "order", "id": 260}}"#;
    let answer = tokio::time::timeout(
        Duration::from_secs(8),
        suite.http(
            "POST",
            &format!("/webhooks/bigcommerce/{integration}"),
            &[("x-tracking-secret", "whsec_test_secret")],
            body,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("the webhook waited behind the push"));
    assert_eq!(
        (answer.status, answer.text()),
        (200, r#"{"status":"accepted"}"#.to_owned())
    );
    assert_eq!(arrived.load(Ordering::SeqCst), 4, "the push still waits");
    open.send_replace(true);
    let pushed = tokio::time::timeout(Duration::from_secs(20), push)
        .await
        .unwrap_or_else(|_| panic!("the push did not end"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pushed.map_err(|s| s.to_string()), Ok(12));
}

/// A thin webhook is answered while every connection of the gateway's main pool is taken (here
/// by registrations waiting on a lock; in production by large `IngestOrders` calls or
/// backfills): a webhook's reads have a pool of their own.
#[tokio::test]
async fn a_bigcommerce_webhook_is_answered_while_the_main_pool_is_taken() {
    let store = plain_bigcommerce_orders(Router::new());
    let base = serve(store).await;
    let suite = Suite::start_with(|config| {
        config.pool.max_size = 2;
        config.pool.wait_timeout = Duration::from_secs(1);
    })
    .await;
    let integration = register(&suite, Provider::Bigcommerce, &base).await;

    // Two registrations wait on the integrations table, each holding a main pool connection.
    let db = suite.schema("gateway");
    let mut holder = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    for sql in ["begin", "lock table integrations in exclusive mode"] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut *holder)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let waiting: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let mut gateway = suite.gateway();
            tokio::spawn(async move {
                gateway
                    .register_integration(authed(
                        valid_registration(Provider::Sandbox, name),
                        &brand(1),
                    ))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    suite
        .count_becomes(
            "both registrations waiting",
            "gateway",
            "select count(*) as n from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
            2,
        )
        .await;

    let body = br#"{"created_at": 1561482670, "store_id": "1025646", "producer": "stores/abc123",
        "scope": "store/order/created", "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "data": {"type": "order", "id": 270}}"#;
    let answer = suite
        .http(
            "POST",
            &format!("/webhooks/bigcommerce/{integration}"),
            &[("x-tracking-secret", "whsec_test_secret")],
            body,
        )
        .await;
    assert_eq!(
        (answer.status, answer.text()),
        (200, r#"{"status":"accepted"}"#.to_owned())
    );

    diesel_async::RunQueryDsl::execute(diesel::sql_query("commit"), &mut *holder)
        .await
        .unwrap_or_else(|e| panic!("commit: {e}"));
    for registration in waiting {
        let registered = registration.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(registered.is_ok(), "{registered:?}");
    }
}
