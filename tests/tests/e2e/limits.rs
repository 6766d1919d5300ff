//! Size limits: oversized gRPC messages and HTTP bodies are refused before they are read whole,
//! and nothing is stored.

use suite_tests::{Suite, brand, register, valid_registration};
use tonic::Code;
use tracking_api::common::v1::Provider;
use tracking_testkit::authed;

#[tokio::test]
async fn oversized_grpc_messages_are_refused() {
    let suite = Suite::start().await;
    let mut registration = valid_registration(Provider::Shopify, "huge");
    registration
        .credentials
        .insert("access_token".into(), "x".repeat(5 * 1024 * 1024));
    let status = suite
        .gateway()
        .register_integration(authed(registration, &brand(1)))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(status, Some(Code::OutOfRange));
    assert_eq!(
        suite
            .count("gateway", "select count(*) as n from integrations")
            .await,
        0
    );
}

#[tokio::test]
async fn oversized_webhook_bodies_are_refused() {
    let suite = Suite::start().await;
    let integration = register(&suite, &brand(1), Provider::Shopify).await;
    let body = vec![b' '; 2 * 1024 * 1024];
    let response = suite
        .http(
            "POST",
            &format!("/webhooks/shopify/{integration}"),
            &[
                ("x-shopify-topic", "orders/create"),
                ("x-shopify-webhook-id", "big"),
                ("x-shopify-hmac-sha256", "AAAA"),
            ],
            &body,
        )
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(
        suite
            .count("gateway", "select count(*) as n from webhook_deliveries")
            .await,
        0
    );
}
