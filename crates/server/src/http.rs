//! The HTTP side of a server process: `/metrics`, `/healthz`, and whatever routes services add
//! (webhooks, redirects), with graceful shutdown.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The largest HTTP request body a route that reads bodies takes (webhooks, conversions): a
/// larger one is answered 413 as soon as its declared length, or the bytes read, exceed it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The kit's own routes; services merge theirs into it.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish within
/// `grace`: a client that stalls (a body promised and never sent) cannot keep the process from
/// stopping.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let server =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "grace period over, leaving the remaining HTTP requests");
            Ok(())
        }
    }
}
