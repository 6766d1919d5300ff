//! PlanService on its own: `plan --help` lists the flags and their `TRACKING_*` variables.

use anyhow::Context;
use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, GrpcServer, JwtKeys, Metrics, ServerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "plan",
    about = "PlanService: tracking plans, campaigns and rosters"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    plan: plan_service::PlanArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracking_server::telemetry::init(args.server.log_format);
    args.server.validate(true).map_err(anyhow::Error::msg)?;
    args.db.validate().map_err(anyhow::Error::msg)?;
    let url = args
        .db
        .database_url
        .as_deref()
        .context("DATABASE_URL is required")?;
    let secret = args.server.jwt_secret.as_deref().unwrap_or_default();
    let shutdown = tracking_server::shutdown::on_signal();

    let service = plan_service::start(
        url,
        args.db.pool_options(),
        &args.plan.gateway_url,
        shutdown.clone(),
    )
    .await?;
    let metrics = Metrics::new();
    let auth = Authenticator::new(JwtKeys::new(secret.as_bytes()));
    let grpc = GrpcServer::from_args(&args.server, metrics.clone())
        .add_service(plan_service::grpc_service(service, auth));
    let grpc_listener = tracking_server::bind(args.server.grpc_addr).await?;
    let http_listener = tracking_server::bind(args.server.http_addr).await?;
    tracing::info!(grpc = %args.server.grpc_addr, http = %args.server.http_addr, "PlanService listening");
    tracking_server::serve(
        grpc,
        grpc_listener,
        tracking_server::http::router(metrics),
        http_listener,
        shutdown,
    )
    .await
}
