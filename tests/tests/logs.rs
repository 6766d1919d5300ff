//! Secrets never reach the logs: a full flow (integrations with credentials and webhook secrets,
//! signed webhooks, AST conversions, minting, attribution, bad tokens) runs with every log line
//! at DEBUG captured, and the capture is searched for each secret and token used.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suite_tests::{Suite, brand, token, valid_registration};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::ListIntegrationsRequest;
use tracking_server::Role;
use tracking_testkit::authed;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut captured) = self.0.lock() {
            captured.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_and_tokens_are_never_logged() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .unwrap_or_else(|e| panic!("subscriber: {e}"));

    let suite = Suite::start().await;
    let brand_token = brand(1);
    let secrets = [
        "shpat_very_secret_access_token",
        "whsec_very_secret_webhook_key",
        "cs_very_secret_consumer_secret",
    ];
    let mut shopify = valid_registration(Provider::Shopify, "Logged shop");
    shopify
        .credentials
        .insert("access_token".into(), secrets[0].into());
    shopify.webhook_secret = secrets[1].into();
    let mut woo = valid_registration(Provider::Woocommerce, "Logged woo");
    woo.credentials
        .insert("consumer_secret".into(), secrets[2].into());
    woo.webhook_secret = secrets[1].into();
    let mut ids = Vec::new();
    for registration in [shopify, woo] {
        ids.push(
            suite
                .gateway()
                .register_integration(authed(registration, &brand_token))
                .await
                .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
                .unwrap_or_else(|s| panic!("{s}")),
        );
    }
    // A signed webhook, one with a wrong signature, and a call with a forged token.
    let body = include_bytes!("../fixtures/shopify/orders_create_percentage_code.json");
    let signature = gateway_service::webhooks::sign(secrets[1].as_bytes(), body);
    for sig in [signature.as_str(), "bm90IGl0"] {
        suite
            .http(
                "POST",
                &format!("/webhooks/shopify/{}", ids[0]),
                &[
                    ("x-shopify-topic", "orders/create"),
                    ("x-shopify-webhook-id", "logged-1"),
                    ("x-shopify-shop-domain", "test-shop.myshopify.com"),
                    ("x-shopify-hmac-sha256", sig),
                ],
                body,
            )
            .await;
    }
    let mut forged = brand_token.clone();
    forged.push('x');
    let _ = suite
        .gateway()
        .list_integrations(authed(ListIntegrationsRequest::default(), &forged))
        .await;
    let service = token(1, Role::Service);
    // Pushing to the Shopify integration opens its credentials (the store cannot be reached).
    let _ = suite
        .gateway()
        .push_discounts(authed(
            tracking_api::gateway::v1::PushDiscountsRequest {
                integration_id: ids[0],
                discounts: vec![tracking_api::gateway::v1::DiscountSpec {
                    code: "LOGGED10".into(),
                    external_ref: "logged".into(),
                    value: Some(tracking_api::gateway::v1::discount_spec::Value::PercentBps(
                        1000,
                    )),
                    ..Default::default()
                }],
            },
            &service,
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logged = String::from_utf8_lossy(&capture.0.lock().map(|c| c.clone()).unwrap_or_default())
        .into_owned();
    assert!(
        logged.len() > 1000,
        "the capture works: {} bytes",
        logged.len()
    );
    for secret in secrets {
        assert!(!logged.contains(secret), "{secret} was logged");
    }
    for (what, bearer) in [
        ("brand", &brand_token),
        ("service", &service),
        ("forged", &forged),
    ] {
        let signature_part = bearer.rsplit('.').next().unwrap_or_default();
        assert!(
            !logged.contains(signature_part),
            "the {what} token was logged"
        );
    }
    assert!(
        !logged.contains(&signature),
        "a webhook signature was logged"
    );
    assert!(
        !logged.contains(suite_tests::TEST_CREDENTIALS_KEY),
        "the credentials key was logged"
    );
}
