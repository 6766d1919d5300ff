//! Server kit shared by every service: typed config, tracing, bearer-JWT auth, the gRPC server
//! builder (health, reflection, admission control, timeouts, metrics), the HTTP side (metrics,
//! later webhooks and redirects), graceful shutdown, and the one mapping of database errors to
//! gRPC statuses.

pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod paging;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use auth::{Claims, JwtKeys, Role};
pub use config::{DbArgs, ServerArgs, parse_duration};
pub use grpc::GrpcServer;
pub use metrics::Metrics;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds a listen address, naming it in the error.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))
}

/// Runs the gRPC and HTTP servers of a process until `shutdown`, and returns when both have
/// drained. Either failing stops the other.
pub async fn serve(
    grpc: GrpcServer,
    grpc_listener: TcpListener,
    http_router: axum::Router,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grpc_task = grpc.serve(grpc_listener, shutdown.clone());
    let http_task = http::serve(http_listener, http_router, shutdown.clone());
    let (grpc_result, http_result) = tokio::join!(
        async {
            let result = grpc_task.await;
            shutdown.cancel();
            result
        },
        async {
            let result = http_task.await;
            shutdown.cancel();
            result
        }
    );
    grpc_result.map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
    http_result.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))?;
    tracing::info!("servers stopped");
    Ok(())
}
