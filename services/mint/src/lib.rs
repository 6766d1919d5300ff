//! CodeMintService: a unique discount code and tracking links for each creator of a campaign,
//! minted by the plan's trigger or on demand, pushed to the store, published on WatchCodes.
//!
//! Reading order: `rpc` (handlers) → `service` (use cases) → `minter` (batched reservation, the
//! hot path) → `domain` (rules: rendering, failures, links) → `store` (SQL). Background parts:
//! `projection` applies PlanService's events (triggers), `queue` mints what they queued,
//! `pusher` gets codes to the stores.

pub mod context;
pub mod convert;
pub mod domain;
pub mod edits;
pub mod error;
pub mod events;
pub mod minter;
pub mod projection;
pub mod pusher;
pub mod queue;
pub mod random;
pub mod rpc;
pub mod service;
pub mod store;
pub mod stores;

use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tracking_api::mint::v1::code_mint_service_server::CodeMintServiceServer;
use tracking_clients::{GatewayClient, PlanEventsSource, ServiceTokens};
use tracking_db::{Database, Migrations, PoolOptions};
use tracking_events::{ConsumerOptions, EventLog, run_consumer};
use tracking_server::JwtKeys;
use tracking_server::auth::Authenticator;

pub use service::MintService;

/// CodeMintService's PostgreSQL schema.
pub const SCHEMA: &str = "mint";

const OWN_MIGRATIONS: Migrations = Migrations {
    embedded: diesel_migrations::embed_migrations!("migrations"),
    source_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
};

/// Every migration set of the schema, in order.
pub const MIGRATIONS: &[&Migrations] = &[&tracking_events::MIGRATIONS, &OWN_MIGRATIONS];

/// CodeMintService-specific settings.
#[derive(clap::Args, Clone, Debug)]
pub struct MintArgs {
    /// Where shoppers reach the suite's redirect (`/r/{slug}`), for tracking links.
    #[arg(
        long,
        env = "TRACKING_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_base_url: String,
    /// Where PlanService's gRPC API is (its event stream feeds the triggers).
    #[arg(
        long,
        env = "TRACKING_PLAN_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub plan_url: String,
    /// Where ProviderGateway's gRPC API is (store rules, pushes).
    #[arg(
        long,
        env = "TRACKING_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway_url: String,
    /// Batches minted in parallel (each takes every request waiting, up to 512). Two let one batch
    /// read while another commits: measured fastest on 2 cores (docs/BENCHMARKS.md).
    #[arg(long, env = "TRACKING_MINT_WORKERS", default_value_t = 2)]
    pub mint_workers: usize,
    /// How long (µs) a mint batch waits for more requests before it runs, when fewer than 512
    /// are waiting: fuller batches cost less per code on a busy machine, at this much latency.
    #[arg(long, env = "TRACKING_MINT_LINGER_US", default_value_t = 1000)]
    pub mint_linger_us: u64,
    /// Load shedding: while mint requests wait longer than this many ms for their batch, new
    /// `MintCode` and `RetryCode` calls are refused at once with RESOURCE_EXHAUSTED. `0` never
    /// refuses. `MintCodes` streams and the trigger queue always wait their turn.
    #[arg(long, env = "TRACKING_MINT_SHED_AFTER_MS", default_value_t = 100)]
    pub mint_shed_after_ms: u64,
    /// Load shedding: `MintCode` and `RetryCode` calls served at once (together); beyond it
    /// they are refused at once with RESOURCE_EXHAUSTED, before they are read. `0` never
    /// refuses. Measured on 2 cores (docs/BENCHMARKS.md): more calls admitted at once only wait
    /// longer, and a refusal answered early costs the saturated machine least.
    #[arg(long, env = "TRACKING_MINT_MAX_CALLS", default_value_t = 64)]
    pub mint_max_calls: usize,
    /// Push rounds run in parallel, for the codes this process minted and for those the scan
    /// finds (each up to 500 codes, one store call): a round mostly waits (store, commit), so
    /// several keep both cores busy when minting outruns one. Measured on 2 cores in
    /// docs/BENCHMARKS.md.
    #[arg(long, env = "TRACKING_MINT_PUSHERS", default_value_t = 3)]
    pub mint_pushers: usize,
}

impl MintArgs {
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.public_base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("TRACKING_PUBLIC_BASE_URL must be an http(s) URL".to_owned());
        }
        if self.mint_workers == 0 || self.mint_workers > 64 {
            return Err("TRACKING_MINT_WORKERS must be 1..=64".to_owned());
        }
        if self.mint_linger_us > 100_000 {
            return Err("TRACKING_MINT_LINGER_US must be 0..=100000 (100 ms)".to_owned());
        }
        if self.mint_shed_after_ms > 60_000 {
            return Err("TRACKING_MINT_SHED_AFTER_MS must be 0..=60000 (a minute)".to_owned());
        }
        if self.mint_max_calls > 65_536 {
            return Err("TRACKING_MINT_MAX_CALLS must be 0..=65536".to_owned());
        }
        if self.mint_pushers == 0 || self.mint_pushers > 32 {
            return Err("TRACKING_MINT_PUSHERS must be 1..=32".to_owned());
        }
        Ok(())
    }
}

/// Migrates the schema, starts the background parts (plan stream consumer, mint queue, store
/// pusher) until `shutdown`, and returns the service.
pub async fn start(
    database_url: &str,
    pool: PoolOptions,
    args: &MintArgs,
    keys: JwtKeys,
    shutdown: CancellationToken,
) -> anyhow::Result<MintService> {
    args.validate().map_err(anyhow::Error::msg)?;
    tracking_db::migrate(database_url, SCHEMA, MIGRATIONS).await?;
    let db = Database::new(database_url, SCHEMA, pool)?;
    let tokens = ServiceTokens::new(keys);
    let gateway = GatewayClient::lazy(&args.gateway_url).map_err(anyhow::Error::msg)?;
    let shared = context::Shared {
        db: db.clone(),
        stores: stores::Stores::new(gateway, tokens.clone()),
        public_base_url: args.public_base_url.trim_end_matches('/').to_owned(),
        fresh: context::Fresh::default(),
    };
    // Mint batches run on a pool of their own (a connection per worker) whose statements are
    // planned once per connection: planning them at each batch was a third of their database
    // time (docs/BENCHMARKS.md, fifteenth session). Every statement a batch keeps probes its rows
    // by key; the failure deletes, joins, are planned each time (`PoolOptions::generic_plans`).
    let batches = context::Shared {
        db: Database::new(database_url, SCHEMA, pool.planned_once(args.mint_workers))?,
        ..shared.clone()
    };
    let minter = minter::Minter::start(
        batches,
        args.mint_workers,
        std::time::Duration::from_micros(args.mint_linger_us),
        std::time::Duration::from_millis(args.mint_shed_after_ms),
    );
    let work = tracking_events::listen(db.clone(), store::work_channel(SCHEMA), shutdown.clone());
    tokio::spawn(queue::run(
        shared.clone(),
        minter.clone(),
        work.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(pusher::run(
        shared.clone(),
        args.mint_pushers,
        work,
        shutdown.clone(),
    ));
    let source = PlanEventsSource::lazy(&args.plan_url, tokens).map_err(anyhow::Error::msg)?;
    let projector = projection::Projector {
        public_base_url: shared.public_base_url.clone(),
    };
    tokio::spawn(run_consumer(
        db.clone(),
        ConsumerOptions::new("plan-events"),
        source,
        projector,
        shutdown.clone(),
    ));
    let log = EventLog::start(db, shutdown);
    Ok(MintService::new(shared, minter, log))
}

/// The calls `TRACKING_MINT_MAX_CALLS` limits, for [`tracking_server::GrpcServer::limit_calls`]:
/// single mints, answered while their caller waits. `MintCodes` streams pace themselves.
pub fn limited_calls() -> Vec<String> {
    use tonic::server::NamedService;
    let service = <CodeMintServiceServer<MintService> as NamedService>::NAME;
    ["MintCode", "RetryCode"]
        .iter()
        .map(|method| format!("/{service}/{method}"))
        .collect()
}

/// The authenticated gRPC service, ready for the server kit.
pub fn grpc_service(
    service: MintService,
    auth: Authenticator,
) -> InterceptedService<CodeMintServiceServer<MintService>, Authenticator> {
    InterceptedService::new(
        CodeMintServiceServer::new(service)
            .max_decoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tracking_server::grpc::MAX_MESSAGE_BYTES),
        auth,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::MintArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mint: MintArgs,
    }

    fn parse(flags: &[&str]) -> MintArgs {
        Cli::try_parse_from(std::iter::once("mint").chain(flags.iter().copied()))
            .expect("flags parse")
            .mint
    }

    #[test]
    fn the_limited_calls_are_the_single_mints() {
        assert_eq!(
            super::limited_calls(),
            [
                "/tracking.mint.v1.CodeMintService/MintCode",
                "/tracking.mint.v1.CodeMintService/RetryCode"
            ]
        );
    }

    #[test]
    fn the_defaults_are_valid_and_out_of_range_settings_name_their_variable() {
        assert_eq!(parse(&[]).validate(), Ok(()));
        assert_eq!(parse(&["--mint-pushers", "1"]).validate(), Ok(()));
        for (flags, variable) in [
            (["--mint-pushers", "0"], "TRACKING_MINT_PUSHERS"),
            (["--mint-pushers", "33"], "TRACKING_MINT_PUSHERS"),
            (["--mint-workers", "0"], "TRACKING_MINT_WORKERS"),
            (["--mint-linger-us", "100001"], "TRACKING_MINT_LINGER_US"),
            (
                ["--mint-shed-after-ms", "60001"],
                "TRACKING_MINT_SHED_AFTER_MS",
            ),
            (["--mint-max-calls", "65537"], "TRACKING_MINT_MAX_CALLS"),
            (
                ["--public-base-url", "links.example"],
                "TRACKING_PUBLIC_BASE_URL",
            ),
        ] {
            let refused = parse(&flags).validate().expect_err("out of range");
            assert!(refused.starts_with(variable), "{flags:?}: {refused}");
        }
    }
}
