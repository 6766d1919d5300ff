//! Server kit shared by every service: typed config, tracing, bearer-JWT auth, the gRPC server
//! builder (health, reflection, admission control, timeouts, metrics), the HTTP side (metrics,
//! later webhooks and redirects), graceful shutdown, and the one mapping of database errors to
//! gRPC statuses.

pub mod auth;
pub mod config;
pub mod fields;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod net;
pub mod paging;
pub mod shutdown;
pub mod status;
pub mod streams;
pub mod telemetry;
pub mod tls;

pub use auth::{Claims, JwtKeys, Role};
pub use config::{DbArgs, ServerArgs, parse_duration, parse_interval};
pub use grpc::GrpcServer;
pub use metrics::Metrics;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every process built on the kit (the services, trackd, trackctl, the tests) allocates with
/// mimalloc: glibc's malloc and free were about a tenth of the processes' CPU under load, from
/// many small, short-lived allocations on many threads (docs/BENCHMARKS.md, eighth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Binds a listen address, naming it in the error.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))
}

/// Runs the gRPC and HTTP servers of a process (the HTTP port with the kit's routes and the
/// process's `routes`; `/metrics` there, or on `metrics_listener` when it has a port of its
/// own: see `http::routers`) until `shutdown`, and returns when all have drained. Any failing
/// stops the others.
pub async fn serve(
    grpc: GrpcServer,
    grpc_listener: TcpListener,
    routes: axum::Router,
    http_listener: TcpListener,
    (metrics, metrics_listener): (Metrics, Option<TcpListener>),
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (http_router, metrics_port) = http::routers(metrics, routes, metrics_listener);
    let grace = grpc.shutdown_grace();
    let grpc_task = grpc.serve(grpc_listener, shutdown.clone());
    let http_task = http::serve(http_listener, http_router, shutdown.clone(), grace);
    let (grpc_result, http_result, metrics_result) = tokio::join!(
        async {
            let result = grpc_task.await;
            shutdown.cancel();
            result
        },
        async {
            let result = http_task.await;
            shutdown.cancel();
            result
        },
        async {
            let Some((listener, router)) = metrics_port else {
                return Ok(());
            };
            let result = http::serve(listener, router, shutdown.clone(), grace).await;
            shutdown.cancel();
            result
        }
    );
    grpc_result.map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
    http_result.map_err(|e| anyhow::anyhow!("HTTP server: {e}"))?;
    metrics_result.map_err(|e| anyhow::anyhow!("metrics server: {e}"))?;
    tracing::info!("servers stopped");
    Ok(())
}

/// What a service binary gets to build its gRPC services with.
pub struct ServiceContext {
    /// DATABASE_URL.
    pub database_url: String,
    pub pool: tracking_db::PoolOptions,
    /// The suite's signing keys (for the auth interceptor and the service's own calls).
    pub keys: JwtKeys,
    pub shutdown: CancellationToken,
    /// The process's metrics, for a service to register its own metrics in
    /// ([`Metrics::register`]).
    pub metrics: Metrics,
}

/// What a single-service binary serves: its gRPC services and any HTTP routes of its own
/// (merged with the kit's `/healthz`, and `/metrics` unless it has a port of its own).
pub struct ServiceParts {
    pub grpc: GrpcServer,
    pub http: axum::Router,
    /// Background work to wait for once the servers have stopped (e.g. writing queued clicks),
    /// at most [`DRAIN_TIMEOUT`].
    pub drain: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a stopping process waits for its background work to finish.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl From<GrpcServer> for ServiceParts {
    fn from(grpc: GrpcServer) -> Self {
        ServiceParts {
            grpc,
            http: axum::Router::new(),
            drain: Vec::new(),
        }
    }
}

/// Waits for background work after the servers stopped (their handles are dropped by then).
pub async fn drain(tasks: Vec<tokio::task::JoinHandle<()>>) {
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::error!("background work did not finish within {DRAIN_TIMEOUT:?} of shutdown");
    }
}

/// The `main` of a single-service binary once its flags are parsed: logging, validation, signal
/// handling, listeners and serving are the same for every service; `build` adds the service's
/// own gRPC services to the server it is given, and its HTTP routes.
pub async fn run_service<F, Fut>(
    name: &str,
    server: &ServerArgs,
    db: &DbArgs,
    build: F,
) -> anyhow::Result<()>
where
    F: FnOnce(GrpcServer, ServiceContext) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ServiceParts>>,
{
    telemetry::init(server.log_format);
    server.validate(true).map_err(anyhow::Error::msg)?;
    db.validate().map_err(anyhow::Error::msg)?;
    let database_url = db
        .database_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is required"))?;
    let secret = server.jwt_secret.as_deref().unwrap_or_default();
    let shutdown = shutdown::on_signal();
    let metrics = Metrics::new();
    let context = ServiceContext {
        database_url,
        pool: db.pool_options(),
        keys: JwtKeys::new(secret.as_bytes()),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
    };
    crate::tls::set_client(server.tls.client().map_err(anyhow::Error::msg)?);
    let grpc = GrpcServer::from_args(server, metrics.clone())
        .with_tls(server.tls.server().map_err(anyhow::Error::msg)?);
    let parts = build(grpc, context).await?;
    let grpc_listener = bind(server.grpc_addr).await?;
    let http_listener = bind(server.http_addr).await?;
    let metrics_listener = match server.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    tracing::info!(grpc = %server.grpc_addr, http = %server.http_addr, metrics = ?server.metrics_addr, "{name} listening");
    let served = serve(
        parts.grpc,
        grpc_listener,
        parts.http,
        http_listener,
        (metrics, metrics_listener),
        shutdown,
    )
    .await;
    drain(parts.drain).await;
    served
}
