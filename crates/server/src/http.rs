//! The HTTP side of a server process: `/metrics`, `/healthz`, and whatever routes services add
//! (webhooks, redirects), with graceful shutdown. `/metrics` may be served on a port of its own
//! instead (`--metrics-addr`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The largest HTTP request body a route that reads bodies takes (webhooks, conversions): a
/// larger one is answered 413 as soon as its declared length, or the bytes read, exceed it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The kit's own routes, `/metrics` among them unless it has a port of its own (`None`);
/// services merge theirs into it.
pub fn router(metrics: Option<Metrics>) -> Router {
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    match metrics {
        Some(metrics) => router.merge(metrics_route(metrics)),
        None => router,
    }
}

/// A process's HTTP routers: the public port's (the kit's routes and the service's `routes`) and,
/// when `/metrics` has a port of its own (`metrics_listener`), that port with its router.
pub(crate) fn routers(
    metrics: Metrics,
    routes: Router,
    metrics_listener: Option<TcpListener>,
) -> (Router, Option<(TcpListener, Router)>) {
    match metrics_listener {
        Some(listener) => (
            router(None).merge(routes),
            Some((listener, metrics_route(metrics))),
        ),
        None => (router(Some(metrics)).merge(routes), None),
    }
}

/// `/metrics` (Prometheus' text format).
pub fn metrics_route(metrics: Metrics) -> Router {
    Router::new().route(
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
}

/// How long a client may take to send a request's headers (also the next request's, on a
/// connection kept alive): a client that opens connections and sends nothing, or half a request
/// line, would otherwise hold each one, and its task, for good.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may take from its headers to its answer, its body included: a webhook
/// whose body never comes, or a handler that hangs, is answered `408` and its connection closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The most HTTP connections served at once; more wait in the listener's backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish within
/// `grace`: a client that stalls (a body promised and never sent) cannot keep the process from
/// stopping. The port faces the internet (stores' webhooks, shoppers' clicks), so no client may
/// hold it: headers must come within [`HEADER_READ_TIMEOUT`], a request be answered within
/// [`REQUEST_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: the connections being served end in time.
                    tracing::warn!(error = %err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
            let router = router.clone();
            // Who sent it, for handlers that need to know ([`crate::net::TrustedProxies`]).
            request.extensions_mut().insert(ConnectInfo(peer));
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, router.oneshot(request)).await {
                    Ok(answered) => answered,
                    Err(_) => Ok((
                        http::StatusCode::REQUEST_TIMEOUT,
                        [(http::header::CONNECTION, "close")],
                        "request not complete within its time",
                    )
                        .into_response()),
                }
            }
        });
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection has ended once all the permits are back.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "grace period over, leaving the remaining HTTP requests");
        }
    }
    Ok(())
}
