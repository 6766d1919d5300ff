//! PlanService: tracking plans, campaigns, their rosters and settings, and the event stream the
//! rest of the suite builds its projections from.
//!
//! Reading order: `rpc` (handlers, proto ↔ domain) → `service` (use cases, one transaction
//! each) → `domain` (the business rules) → `store` (SQL). `events` encodes what changed;
//! ProviderGateway (through `tracking_clients`) says what a plan's provider can do.

pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod rpc;
pub mod service;
pub mod store;

use tonic::service::interceptor::InterceptedService;
use tracking_api::plan::v1::plan_service_server::PlanServiceServer;
use tracking_db::Migrations;
use tracking_server::auth::Authenticator;

pub use service::PlanService;

/// PlanService's PostgreSQL schema.
pub const SCHEMA: &str = "plan";

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

/// PlanService-specific settings.
#[derive(clap::Args, Clone, Debug)]
pub struct PlanArgs {
    /// Where ProviderGateway's gRPC API is (trackd: its own address).
    #[arg(
        long,
        env = "TRACKING_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway_url: String,
}

/// The authenticated gRPC service, ready for the server kit.
pub fn grpc_service(
    service: PlanService,
    auth: Authenticator,
) -> InterceptedService<PlanServiceServer<PlanService>, Authenticator> {
    InterceptedService::new(
        PlanServiceServer::new(service)
            .max_decoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES),
        auth,
    )
}

/// Migrates PlanService's schema and builds the service on `database_url`; its event listener
/// runs until `shutdown`.
pub async fn start(
    database_url: &str,
    pool: tracking_db::PoolOptions,
    gateway_url: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<PlanService> {
    tracking_db::migrate(database_url, SCHEMA, MIGRATIONS).await?;
    let db = tracking_db::Database::new(database_url, SCHEMA, pool)?;
    let log = tracking_events::EventLog::start(db.clone(), shutdown);
    let gateway = tracking_clients::GatewayClient::lazy(gateway_url).map_err(anyhow::Error::msg)?;
    Ok(PlanService::new(db, gateway, log))
}
