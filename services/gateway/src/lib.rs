//! ProviderGateway: the only part of the suite that talks to stores. It owns the brands' store
//! integrations (credentials sealed at rest), the capability table, and pushes and disables
//! discount codes at the stores through one adapter per provider (Shopify, WooCommerce,
//! BigCommerce, Magento, and the sandbox store simulated inside the gateway). For Amazon Ads it
//! makes creators' attribution tags and imports Amazon Attribution's reports (`amazon_ads`).
//!
//! Reading order: `rpc` (handlers, proto ↔ domain) → `domain` (rules) → `adapters` (stores) →
//! `store` (queries).

pub mod adapters;
pub mod amazon_ads;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod http;
pub mod intake;
pub mod poller;
pub mod rounds;
pub mod rpc;
pub mod store;
pub mod webhooks;

use tonic::service::interceptor::InterceptedService;
use tracking_api::gateway::v1::provider_gateway_server::ProviderGatewayServer;
use tracking_db::Migrations;
use tracking_server::auth::Authenticator;

pub use crypto::Sealer;
pub use rpc::Gateway;

/// The gateway's PostgreSQL schema.
pub const SCHEMA: &str = "gateway";

const OWN_MIGRATIONS: Migrations = Migrations {
    embedded: diesel_migrations::embed_migrations!("migrations"),
    source_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
};

/// Every migration set of the schema, in order.
pub const MIGRATIONS: &[&Migrations] = &[
    &tracking_events::MIGRATIONS,
    &tracking_db::request_keys::MIGRATIONS,
    &OWN_MIGRATIONS,
];

/// Gateway-specific settings.
#[derive(clap::Args, Clone, Debug)]
pub struct GatewayArgs {
    /// Key that seals store credentials and webhook secrets at rest: 32 bytes, base64.
    #[arg(long, env = "TRACKING_CREDENTIALS_KEY", hide_env_values = true)]
    pub credentials_key: Option<String>,
    /// How often stores without webhooks (Magento) are polled for new and changed orders.
    #[arg(long, env = "TRACKING_ORDER_POLL_INTERVAL", default_value = "60s", value_parser = tracking_server::parse_interval)]
    pub order_poll_interval: std::time::Duration,
    /// How often each Amazon Ads integration's recent days of Amazon Attribution's report are
    /// imported (again: Amazon revises them).
    #[arg(long, env = "TRACKING_AMAZON_REPORT_INTERVAL", default_value = "1h", value_parser = tracking_server::parse_interval)]
    pub amazon_report_interval: std::time::Duration,
    /// Whether stores on this machine or a private network may be registered (a `base_url` such
    /// as `http://127.0.0.1:8089` or `https://10.0.0.5`: test stores, a local proxy). Default: on
    /// in trackd (a local suite), off in the gateway service.
    #[arg(long, env = "TRACKING_LOCAL_STORES")]
    pub local_stores: Option<bool>,
}

/// The authenticated gRPC service, ready for the server kit.
pub fn grpc_service(
    gateway: Gateway,
    auth: Authenticator,
) -> InterceptedService<ProviderGatewayServer<Gateway>, Authenticator> {
    InterceptedService::new(
        ProviderGatewayServer::new(gateway)
            .max_decoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES),
        auth,
    )
}

/// The running service, and its rounds (the order poller, the Amazon report import) to wait
/// for at shutdown: they give back the leases they hold as they end.
pub struct Started {
    pub service: Gateway,
    pub rounds: Vec<tokio::task::JoinHandle<()>>,
}

/// Migrates the gateway's schema and builds the service on `database_url`, with the store
/// adapters' default HTTP settings and the customer-hash key derived from the credentials key,
/// and starts polling stores for orders (Magento, which has no webhooks, and WooCommerce, which
/// sends each once) every `order_poll_interval` and importing Amazon
/// Attribution's reports every `amazon_report_interval`.
pub async fn start(
    database_url: &str,
    pool: tracking_db::PoolOptions,
    sealer: Sealer,
    order_poll_interval: std::time::Duration,
    amazon_report_interval: std::time::Duration,
    local_stores: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Started> {
    tracking_db::migrate(database_url, SCHEMA, MIGRATIONS).await?;
    let db = tracking_db::Database::new(database_url, SCHEMA, pool)?;
    // Webhook deliveries share transactions (group commit) on a pool of their own, a connection
    // per worker, whose statements are planned once: planning them at each group took 532 ms
    // per 10 s at 5,000 deliveries/s (docs/BENCHMARKS.md, eighteenth session).
    let commits = tracking_db::Database::new(
        database_url,
        SCHEMA,
        pool.planned_once(intake::SHARING.workers),
    )?;
    // A webhook's reads on a pool of their own (see `Intake`): two connections, planned as
    // the main pool's.
    let reads = tracking_db::Database::new(
        database_url,
        SCHEMA,
        tracking_db::PoolOptions {
            max_size: 2,
            ..pool
        },
    )?;
    let adapters = adapters::AdapterConfig {
        local_stores,
        ..adapters::AdapterConfig::new(sealer.customer_key().to_vec())
    };
    let pools = intake::IntakePools {
        db: db.clone(),
        commits,
        reads,
    };
    let gateway = Gateway::new(pools, sealer, adapters, shutdown.clone())?;
    let rounds = vec![
        tokio::spawn(poller::run(
            db,
            gateway.intake(),
            order_poll_interval,
            shutdown.clone(),
        )),
        tokio::spawn(amazon_ads::run(
            gateway.amazon_ads(),
            amazon_report_interval,
            shutdown,
        )),
    ];
    Ok(Started {
        service: gateway,
        rounds,
    })
}
