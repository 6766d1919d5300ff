//! AttributionService: turns clicks and orders into conversions. It consumes PlanService's,
//! CodeMintService's and ProviderGateway's event streams into its own projections, serves the
//! tracking-link redirect over HTTP, attributes each order (by code, else by click within the
//! plan's window), follows it through refunds and cancellation, approves commissions after the
//! holding period, applies Amazon Attribution's report rows to the creators' figures
//! (`amazon_reports`), and answers performance reads from aggregates kept current as it goes.
//!
//! Reading order: `rpc` (handlers) → `attribute` (orders → conversions) → `domain` (rules) →
//! `projection` (plans, campaigns, codes) → `links` (redirect, clicks) → `store` (queries).

pub mod amazon_reports;
pub mod attribute;
pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod links;
pub mod projection;
pub mod report;
pub mod rpc;
pub mod store;

use std::time::Duration;

use diesel_async::AsyncConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tracking_api::attribution::v1::attribution_service_server::AttributionServiceServer;
use tracking_clients::{CodeEventsSource, OrderEventsSource, PlanEventsSource, ServiceTokens};
use tracking_db::{Database, DbError, Migrations, PoolOptions};
use tracking_events::{ConsumerOptions, EventLog, run_consumer};
use tracking_server::auth::Authenticator;
use tracking_server::{JwtKeys, Metrics};

pub use rpc::Attribution;

/// AttributionService's PostgreSQL schema.
pub const SCHEMA: &str = "attribution";

const OWN_MIGRATIONS: Migrations = Migrations {
    embedded: diesel_migrations::embed_migrations!("migrations"),
    source_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
};

/// Every migration set of the schema, in order.
pub const MIGRATIONS: &[&Migrations] = &[&tracking_events::MIGRATIONS, &OWN_MIGRATIONS];

/// AttributionService-specific settings.
#[derive(clap::Args, Clone, Debug)]
pub struct AttributionArgs {
    /// PlanService's gRPC address (its WatchEvents stream).
    #[arg(
        long,
        env = "TRACKING_PLAN_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub plan_url: String,
    /// CodeMintService's gRPC address (its WatchCodes stream).
    #[arg(
        long,
        env = "TRACKING_MINT_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub mint_url: String,
    /// ProviderGateway's gRPC address (its WatchOrders stream).
    #[arg(
        long,
        env = "TRACKING_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway_url: String,
    /// Peers whose `X-Forwarded-For` and `CF-IPCountry` / `X-Country-Code` are believed at the
    /// redirect: `local` (this machine and private networks), `none`, or addresses and networks
    /// (`198.51.100.0/24`), comma-separated.
    #[arg(long, env = "TRACKING_TRUSTED_PROXIES", default_value = "local")]
    pub trusted_proxies: tracking_server::net::TrustedProxies,
}

/// Most order events applied in one transaction. A batch only takes what has arrived, so at low
/// rates batches stay small; catching up, 4,096 attributed 25,600-27,900 orders/s against
/// 21,400-22,500 for 1,024 (8,192: slower, and 130 MiB resident; docs/BENCHMARKS.md).
const ORDER_BATCH: usize = 4096;

/// How often due conversions are approved.
const APPROVE_EVERY: Duration = Duration::from_secs(1);

/// How often pending orders that waited too long are looked for, and how many go per statement.
const EXPIRE_PENDING_EVERY: Duration = Duration::from_secs(60);
const EXPIRE_PENDING_CHUNK: i64 = 10_000;

/// The running service: its gRPC state, its HTTP routes, and the click writer to wait for at
/// shutdown (it ends once the servers have dropped their handles and every queued click is
/// written).
pub struct Started {
    pub service: Attribution,
    pub http: axum::Router,
    pub click_writer: JoinHandle<()>,
}

/// Migrates the schema, starts the three stream consumers, the approver and the click writer.
pub async fn start(
    database_url: &str,
    pool: PoolOptions,
    args: &AttributionArgs,
    keys: JwtKeys,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    tracking_db::migrate(database_url, SCHEMA, MIGRATIONS).await?;
    let db = Database::new(database_url, SCHEMA, pool)?;
    let tokens = ServiceTokens::new(keys.clone());
    let plans =
        PlanEventsSource::lazy(&args.plan_url, tokens.clone()).map_err(anyhow::Error::msg)?;
    let codes =
        CodeEventsSource::lazy(&args.mint_url, tokens.clone()).map_err(anyhow::Error::msg)?;
    let orders = OrderEventsSource::lazy(&args.gateway_url, tokens).map_err(anyhow::Error::msg)?;
    tokio::spawn(run_consumer(
        db.clone(),
        ConsumerOptions::new("plan-events"),
        plans,
        projection::Plans,
        shutdown.clone(),
    ));
    tokio::spawn(run_consumer(
        db.clone(),
        ConsumerOptions::new("code-events"),
        codes,
        projection::Codes,
        shutdown.clone(),
    ));
    tokio::spawn(run_consumer(
        db.clone(),
        // Larger batches than the default: applying one is a fixed number of statements, so
        // the statements' own cost is spread over more orders.
        ConsumerOptions {
            batch: ORDER_BATCH,
            ..ConsumerOptions::new("order-events")
        },
        orders,
        attribute::Orders,
        shutdown.clone(),
    ));
    tokio::spawn(approve(db.clone(), shutdown.clone()));
    tokio::spawn(expire_pending(db.clone(), shutdown.clone()));
    // The click writer runs on a connection of its own whose statements are planned once:
    // planning its insert cost 0.10-0.14 ms a batch (docs/BENCHMARKS.md, eighteenth session).
    let click_db = Database::new(database_url, SCHEMA, pool.planned_once(1))?;
    let (links, click_writer) = links::Links::start(
        db.clone(),
        click_db,
        &visitor_key(&keys),
        links::ClickQueue::default(),
        metrics,
        shutdown.clone(),
    )
    .await?;
    let service = Attribution {
        log: EventLog::start(db.clone(), shutdown),
        db,
        links: links.clone(),
    };
    Ok(Started {
        service,
        http: links::routes(links, args.trusted_proxies.clone()),
        click_writer,
    })
}

/// The key of visitor hashes, derived from the suite's signing secret (one secret to manage).
fn visitor_key(keys: &JwtKeys) -> Vec<u8> {
    keys.derive(b"tracking visitor hash v1")
}

/// Approves conversions whose holding period is over (and Amazon report commissions whose day
/// Amazon no longer revises), every second, on every replica (rows are claimed with SKIP LOCKED,
/// so replicas share the work).
async fn approve(db: Database, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(APPROVE_EVERY) => {}
        }
        let result = async {
            let mut conn = db.conn().await?;
            conn.transaction::<_, DbError, _>(async |conn| {
                let now = chrono::Utc::now();
                // The report days' figures first: the orders' approval ends by appending its
                // events, which holds the event log's lock (every writer's) until this commits.
                let reported = amazon_reports::approve_due(conn, now, 500).await?;
                let orders = attribute::approve_due(conn, now, 500).await?;
                events::report_sales_changed(conn, &reported).await?;
                Ok(orders + reported.len())
            })
            .await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(approved = n, "conversions approved"),
            Err(err) => tracing::warn!(error = %err, "approving conversions failed, retrying"),
        }
    }
}

/// Forgets the pending orders whose code or click has not shown up within
/// `domain::attribution::PENDING_WAIT`, every minute, on every replica (rows are claimed with
/// SKIP LOCKED), a chunk per statement until none is left.
async fn expire_pending(db: Database, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EXPIRE_PENDING_EVERY) => {}
        }
        let before = chrono::Utc::now() - domain::attribution::PENDING_WAIT;
        let result = async {
            let mut conn = db.conn().await?;
            let mut expired = 0;
            loop {
                let n = store::pending::expire(&mut conn, before, EXPIRE_PENDING_CHUNK).await?;
                expired += n;
                if (n as i64) < EXPIRE_PENDING_CHUNK || shutdown.is_cancelled() {
                    return Ok::<_, DbError>(expired);
                }
            }
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, %before, "pending orders expired unmatched"),
            Err(err) => tracing::warn!(error = %err, "expiring pending orders failed, retrying"),
        }
    }
}

/// The authenticated gRPC service, ready for the server kit.
pub fn grpc_service(
    service: Attribution,
    auth: Authenticator,
) -> InterceptedService<AttributionServiceServer<Attribution>, Authenticator> {
    InterceptedService::new(
        AttributionServiceServer::new(service)
            .max_decoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES),
        auth,
    )
}
