//! ProviderGateway on its own: `gateway --help` lists the flags and their `TRACKING_*` variables.

use anyhow::Context;
use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, GrpcServer, JwtKeys, Metrics, ServerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    about = "ProviderGateway: store integrations and capabilities"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    gateway: gateway_service::GatewayArgs,
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
    let key = args
        .gateway
        .credentials_key
        .as_deref()
        .context("TRACKING_CREDENTIALS_KEY is required (32 bytes, base64)")?;
    let sealer = gateway_service::Sealer::from_base64(key)?;
    let secret = args.server.jwt_secret.as_deref().unwrap_or_default();
    let shutdown = tracking_server::shutdown::on_signal();

    let gateway = gateway_service::start(url, args.db.pool_options(), sealer).await?;
    let metrics = Metrics::new();
    let auth = Authenticator::new(JwtKeys::new(secret.as_bytes()));
    let grpc = GrpcServer::from_args(&args.server, metrics.clone())
        .add_service(gateway_service::grpc_service(gateway, auth));
    let grpc_listener = tracking_server::bind(args.server.grpc_addr).await?;
    let http_listener = tracking_server::bind(args.server.http_addr).await?;
    tracing::info!(grpc = %args.server.grpc_addr, http = %args.server.http_addr, "ProviderGateway listening");
    tracking_server::serve(
        grpc,
        grpc_listener,
        tracking_server::http::router(metrics),
        http_listener,
        shutdown,
    )
    .await
}
