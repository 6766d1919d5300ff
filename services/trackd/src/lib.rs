//! trackd: every service of the suite in one process, on one gRPC port and one HTTP port. Each
//! service keeps its own schema and talks to the others only through their gRPC APIs (over
//! loopback here), exactly as when they run as separate processes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracking_db::PoolOptions;
use tracking_server::auth::Authenticator;
use tracking_server::{GrpcServer, JwtKeys, Metrics};

/// What the suite needs once its database, secrets and addresses are settled.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    pub database_url: String,
    pub jwt_secret: String,
    pub credentials_key: String,
    pub pool: PoolOptions,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub shutdown_grace: Duration,
}

/// The address services use to call each other: the gRPC listener's, with an unspecified IP
/// (0.0.0.0) replaced by loopback.
pub fn loopback_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    format!("http://{ip}:{}", addr.port())
}

/// Migrates every schema, then serves every service until `shutdown`.
pub async fn run(
    config: SuiteConfig,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let own_url = loopback_url(grpc_listener.local_addr()?);
    let sealer = gateway_service::Sealer::from_base64(&config.credentials_key)?;
    let gateway = gateway_service::start(&config.database_url, config.pool, sealer).await?;
    let plan = plan_service::start(
        &config.database_url,
        config.pool,
        &own_url,
        shutdown.clone(),
    )
    .await?;

    let metrics = Metrics::new();
    let auth = Authenticator::new(JwtKeys::new(config.jwt_secret.as_bytes()));
    let grpc = GrpcServer::new(
        metrics.clone(),
        config.request_timeout,
        config.max_concurrent_requests,
        config.shutdown_grace,
    )
    .add_service(gateway_service::grpc_service(gateway, auth.clone()))
    .add_service(plan_service::grpc_service(plan, auth));
    tracking_server::serve(
        grpc,
        grpc_listener,
        tracking_server::http::router(metrics),
        http_listener,
        shutdown,
    )
    .await
}
