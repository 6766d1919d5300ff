//! trackd: every service of the suite in one process, on one gRPC port and one HTTP port. Each
//! service keeps its own schema and talks to the others only through their gRPC APIs (over
//! loopback here), exactly as when they run as separate processes: through a listener of their
//! own on a loopback port the OS picks, which keeps serving through the drain at shutdown, so a
//! call in flight then can still reach a sibling service.

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
    /// Where shoppers reach the redirect (`/r/{slug}`); trackd's HTTP address by default.
    pub public_base_url: String,
    /// CodeMintService's parallel mint batches.
    pub mint_workers: usize,
    /// How long (µs) a mint batch waits for more requests before it runs.
    pub mint_linger_us: u64,
    /// Load shedding: while mint requests wait longer than this (ms), MintCode/RetryCode calls
    /// are refused.
    pub mint_shed_after_ms: u64,
    /// Load shedding: MintCode/RetryCode calls served at once (0: no limit).
    pub mint_max_calls: usize,
    /// CodeMintService's parallel push rounds for the codes it minted.
    pub mint_pushers: usize,
    /// How often stores without webhooks (Magento) are polled for orders.
    pub order_poll_interval: Duration,
    /// How often Amazon Ads integrations' recent report days are imported.
    pub amazon_report_interval: Duration,
    /// Whether stores on this machine or a private network may be registered.
    pub local_stores: bool,
    /// Peers whose `X-Forwarded-For` and country headers the redirect believes.
    pub trusted_proxies: tracking_server::net::TrustedProxies,
    /// Optional TLS for gRPC (off by default).
    pub tls: tracking_server::tls::TlsArgs,
}

/// `addr` as a plain URL a local client can reach: an unspecified IP (0.0.0.0) replaced by
/// loopback.
pub fn loopback_url(addr: SocketAddr) -> String {
    own_url(addr, false)
}

/// The URL the services use to call each other on `addr`: `https://localhost:PORT` when gRPC
/// is served over TLS (the certificate must name `localhost`), else plain loopback.
fn own_url(addr: SocketAddr, tls: bool) -> String {
    if tls {
        return format!("https://localhost:{}", addr.port());
    }
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    // A socket address writes an IPv6 address in brackets, as a URL needs it.
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The suite, migrated and wired, ready to serve.
pub struct Suite {
    grpc: GrpcServer,
    /// The services' HTTP routes (the kit's own are added when it serves).
    http: axum::Router,
    metrics: Metrics,
    /// Where `/metrics` is served when not on the HTTP port ([`Suite::with_metrics_listener`]).
    metrics_listener: Option<TcpListener>,
    drain: Vec<tokio::task::JoinHandle<()>>,
    /// Over TLS, the URL the services call each other at, checked once the suite serves.
    own_tls_url: Option<String>,
}

impl Suite {
    /// Migrates every schema and builds every service, which reach each other on a loopback
    /// listener of their own.
    pub async fn prepare(
        config: &SuiteConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Suite> {
        // The services call each other at trackd's own https://localhost URL: without --tls-ca
        // they trust trackd's own certificate (self-signed, or a chain that holds its CA).
        let mut own_tls = config.tls.clone();
        if own_tls.tls_ca.is_none() {
            own_tls.tls_ca = own_tls.tls_cert.clone();
        }
        tracking_server::tls::set_client(own_tls.client().map_err(anyhow::Error::msg)?);
        let internal =
            tracking_server::bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))).await?;
        let siblings = own_url(internal.local_addr()?, config.tls.tls_cert.is_some());
        let sealer = gateway_service::Sealer::from_base64(&config.credentials_key)?;
        let gateway_service::Started {
            service: gateway,
            rounds,
        } = gateway_service::start(
            &config.database_url,
            config.pool,
            sealer,
            config.order_poll_interval,
            config.amazon_report_interval,
            config.local_stores,
            shutdown.clone(),
        )
        .await?;
        let intake = gateway.intake();
        let plan = plan_service::start(
            &config.database_url,
            config.pool,
            &siblings,
            shutdown.clone(),
        )
        .await?;
        let keys = JwtKeys::new(config.jwt_secret.as_bytes());
        let mint_args = mint_service::MintArgs {
            public_base_url: config.public_base_url.clone(),
            plan_url: siblings.clone(),
            gateway_url: siblings.clone(),
            mint_workers: config.mint_workers,
            mint_linger_us: config.mint_linger_us,
            mint_shed_after_ms: config.mint_shed_after_ms,
            mint_max_calls: config.mint_max_calls,
            mint_pushers: config.mint_pushers,
        };
        let mint = mint_service::start(
            &config.database_url,
            config.pool,
            &mint_args,
            keys.clone(),
            shutdown.clone(),
        )
        .await?;
        let attribution_args = attribution_service::AttributionArgs {
            plan_url: siblings.clone(),
            mint_url: siblings.clone(),
            gateway_url: siblings.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        };
        let metrics = Metrics::new();
        let attribution = attribution_service::start(
            &config.database_url,
            config.pool,
            &attribution_args,
            keys.clone(),
            &metrics,
            shutdown,
        )
        .await?;

        let auth = Authenticator::new(keys);
        let grpc = GrpcServer::new(
            metrics.clone(),
            config.request_timeout,
            config.max_concurrent_requests,
            config.shutdown_grace,
        )
        .with_tls(config.tls.server().map_err(anyhow::Error::msg)?)
        .with_internal_listener(internal)
        .limit_calls(&mint_service::limited_calls(), config.mint_max_calls)
        .add_service(gateway_service::grpc_service(gateway, auth.clone()))
        .add_service(plan_service::grpc_service(plan, auth.clone()))
        .add_service(mint_service::grpc_service(mint, auth.clone()))
        .add_service(attribution_service::grpc_service(attribution.service, auth));
        Ok(Suite {
            grpc,
            http: gateway_service::http::routes(intake, &metrics).merge(attribution.http),
            metrics,
            metrics_listener: None,
            drain: rounds
                .into_iter()
                .chain([attribution.click_writer])
                .collect(),
            own_tls_url: config.tls.tls_cert.is_some().then_some(siblings),
        })
    }

    /// Serves `/metrics` on `listener` (an internal port) instead of on the HTTP port.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// Serves until `shutdown`, then drains.
    pub async fn serve(
        self,
        grpc_listener: TcpListener,
        http_listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let checked = self.own_tls_url.map(|url| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let reached = reach_own_tls(&url).await;
                if reached.is_err() {
                    shutdown.cancel();
                }
                reached.map_err(|why| {
                    anyhow::anyhow!(
                        "trackd's services cannot call each other over TLS at {url}: {why}. \
                         Give --tls-ca, the CA that signed --tls-cert; without it --tls-cert \
                         itself is trusted, which works for a self-signed certificate marked \
                         CA:FALSE or a chain that holds its CA"
                    )
                })
            })
        });
        let served = tracking_server::serve(
            self.grpc,
            grpc_listener,
            self.http,
            http_listener,
            (self.metrics, self.metrics_listener),
            shutdown,
        )
        .await;
        // Clicks still queued when the servers stopped are written, and the gateway's rounds
        // give back their leases, before returning.
        tracking_server::drain(self.drain).await;
        if let Some(checked) = checked {
            if !checked.is_finished() {
                checked.abort();
            } else if let Ok(Err(why)) = checked.await {
                return Err(why);
            }
        }
        served
    }
}

/// Whether the services can call each other at `url` over TLS: asked until any answer comes (a
/// TLS handshake that fails answers UNAVAILABLE every time), for up to 5 s. A certificate they
/// cannot trust would otherwise leave trackd SERVING while every call between its services
/// failed.
async fn reach_own_tls(url: &str) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tracking_clients::lazy_channel(url)?;
    let mut last = String::new();
    for _ in 0..25 {
        let asked = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        match asked {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                last = causes(&status);
            }
            _ => return Ok(()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// An error and its causes, in one line.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prepares the suite and serves it on the listeners until `shutdown`.
pub async fn run(
    config: SuiteConfig,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Suite::prepare(&config, shutdown.clone())
        .await?
        .serve(grpc_listener, http_listener, shutdown)
        .await
}

/// Every schema of the suite with its migrations (for test databases).
pub const SCHEMAS: &[tracking_db::SchemaSpec] = &[
    (gateway_service::SCHEMA, gateway_service::MIGRATIONS),
    (plan_service::SCHEMA, plan_service::MIGRATIONS),
    (mint_service::SCHEMA, mint_service::MIGRATIONS),
    (attribution_service::SCHEMA, attribution_service::MIGRATIONS),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_urls_reach_the_address_from_this_machine() {
        let url = |addr: &str| loopback_url(addr.parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(url("0.0.0.0:50051"), "http://127.0.0.1:50051");
        assert_eq!(url("10.0.0.5:8080"), "http://10.0.0.5:8080");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080");
        assert_eq!(url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(
            own_url("[::]:50051".parse().unwrap_or_else(|e| panic!("{e}")), true),
            "https://localhost:50051"
        );
    }
}
