//! CodeMintService on its own: `mint --help` lists the flags and their `TRACKING_*` variables.

use anyhow::Context;
use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, GrpcServer, JwtKeys, Metrics, ServerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "mint",
    about = "CodeMintService: discount codes and tracking links per creator"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    mint: mint_service::MintArgs,
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
    let keys = JwtKeys::new(
        args.server
            .jwt_secret
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    let shutdown = tracking_server::shutdown::on_signal();

    let service = mint_service::start(
        url,
        args.db.pool_options(),
        &args.mint,
        keys.clone(),
        shutdown.clone(),
    )
    .await?;
    let metrics = Metrics::new();
    let grpc = GrpcServer::from_args(&args.server, metrics.clone()).add_service(
        mint_service::grpc_service(service, Authenticator::new(keys)),
    );
    let grpc_listener = tracking_server::bind(args.server.grpc_addr).await?;
    let http_listener = tracking_server::bind(args.server.http_addr).await?;
    tracing::info!(grpc = %args.server.grpc_addr, http = %args.server.http_addr, "CodeMintService listening");
    tracking_server::serve(
        grpc,
        grpc_listener,
        tracking_server::http::router(metrics),
        http_listener,
        shutdown,
    )
    .await
}
