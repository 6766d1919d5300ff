//! The gateway's HTTP intake, served on the suite's HTTP port: store webhooks and AST
//! conversions. Each handler only reads what the request carries and hands it to
//! [`Intake`]; the answer is 200 once the delivery is stored, 401 for a bad or missing signature,
//! 400 for a malformed body, 503 when storage (or, for thin webhooks, the store) is unavailable
//! so the sender retries. Every answer of these handlers is counted in
//! `tracking_order_deliveries_total` by endpoint and outcome (not axum's own refusals before a
//! handler runs, such as 413 for a body over [`MAX_BODY`] or 405 for another method).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use tracking_server::Metrics;

use crate::intake::{Intake, Outcome, Refusal, WebhookHeaders};
use crate::webhooks::bigcommerce;

/// Largest webhook body taken (Shopify orders with hundreds of lines stay well below it).
pub const MAX_BODY: usize = tracking_server::http::MAX_BODY_BYTES;

/// The 1×1 transparent GIF the pixel answers with.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

/// What the handlers share (behind an `Arc`: the intake's adapters are many fields to clone for
/// each request): the intake, and the count of answers by endpoint and outcome.
struct Intakes {
    intake: Intake,
    answered: Family<DeliveryLabels, Counter>,
}

impl Intakes {
    fn count(&self, endpoint: &'static str, result: &Result<Outcome, Refusal>) {
        let outcome = outcome(result);
        self.answered
            .get_or_create(&DeliveryLabels { endpoint, outcome })
            .inc();
    }

    fn answer(&self, endpoint: &'static str, result: Result<Outcome, Refusal>) -> Response {
        self.count(endpoint, &result);
        answer(result)
    }
}

/// The intake routes, to merge into the server kit's router; their answers are counted in
/// `metrics`.
pub fn routes(intake: Intake, metrics: &Metrics) -> Router {
    let answered = Family::<DeliveryLabels, Counter>::default();
    metrics.register(
        "order_deliveries",
        "Store webhooks and AST conversions by endpoint and how they were answered",
        answered.clone(),
    );
    Router::new()
        .route("/webhooks/shopify/{integration}", post(shopify))
        .route("/webhooks/woocommerce/{integration}", post(woocommerce))
        .route(
            "/webhooks/bigcommerce/{integration}",
            post(bigcommerce_webhook),
        )
        .route("/ast/v1/conversions", post(ast_conversion))
        .route("/ast/v1/pixel.gif", get(ast_pixel))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Intakes { intake, answered }))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An integration id from the path; anything else is refused as an unknown integration.
fn integration_id(raw: &str) -> Result<i64, Refusal> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(Refusal::Unauthorized)
}

/// A delivery's outcome, as counted and (for a stored one) as answered.
fn outcome(result: &Result<Outcome, Refusal>) -> &'static str {
    match result {
        Ok(outcome) if outcome.redelivery => "redelivery",
        Ok(outcome) if outcome.accepted > 0 => "accepted",
        Ok(outcome) if outcome.duplicates > 0 => "duplicate",
        Ok(_) => "ignored",
        Err(Refusal::Unauthorized) => "unauthorized",
        Err(Refusal::Malformed(_)) => "malformed",
        Err(Refusal::Unavailable(_)) => "unavailable",
    }
}

fn answer(result: Result<Outcome, Refusal>) -> Response {
    let status = outcome(&result);
    match result {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"status\":\"{status}\"}}"),
        )
            .into_response(),
        Err(Refusal::Unauthorized) => {
            (StatusCode::UNAUTHORIZED, "signature missing or invalid\n").into_response()
        }
        Err(Refusal::Malformed(err)) => {
            (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()
        }
        Err(Refusal::Unavailable(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "temporarily unavailable, retry\n",
        )
            .into_response(),
    }
}

async fn shopify(
    State(intakes): State<Arc<Intakes>>,
    Path(integration): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hooks = WebhookHeaders {
        signature: header(&headers, "x-shopify-hmac-sha256"),
        topic: header(&headers, "x-shopify-topic"),
        delivery_id: header(&headers, "x-shopify-webhook-id"),
        shop: header(&headers, "x-shopify-shop-domain"),
    };
    intakes.answer(
        "shopify",
        async {
            intakes
                .intake
                .shopify(integration_id(&integration)?, &hooks, &body)
                .await
        }
        .await,
    )
}

async fn woocommerce(
    State(intakes): State<Arc<Intakes>>,
    Path(integration): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hooks = WebhookHeaders {
        signature: header(&headers, "x-wc-webhook-signature"),
        topic: header(&headers, "x-wc-webhook-topic"),
        delivery_id: header(&headers, "x-wc-webhook-delivery-id"),
        shop: None,
    };
    intakes.answer(
        "woocommerce",
        async {
            intakes
                .intake
                .woocommerce(integration_id(&integration)?, &hooks, &body)
                .await
        }
        .await,
    )
}

async fn bigcommerce_webhook(
    State(intakes): State<Arc<Intakes>>,
    Path(integration): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret = header(&headers, bigcommerce::SECRET_HEADER);
    intakes.answer(
        "bigcommerce",
        async {
            intakes
                .intake
                .bigcommerce(integration_id(&integration)?, secret, &body)
                .await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct AstQuery {
    integration: Option<String>,
}

async fn ast_conversion(
    State(intakes): State<Arc<Intakes>>,
    Query(query): Query<AstQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = integration_id(query.integration.as_deref().unwrap_or_default());
    let signature = header(&headers, "x-ast-signature");
    let result = async { intakes.intake.ast_conversion(id?, signature, &body).await }.await;
    intakes.answer("ast", result)
}

async fn ast_pixel(State(intakes): State<Arc<Intakes>>, RawQuery(query): RawQuery) -> Response {
    let result = intakes
        .intake
        .ast_pixel(query.as_deref().unwrap_or_default())
        .await;
    intakes.count("ast_pixel", &result);
    match result {
        Ok(_) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "image/gif"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            PIXEL,
        )
            .into_response(),
        Err(refusal) => answer(Err(refusal)),
    }
}
