//! ProviderGateway on its own: `gateway --help` lists the flags and their `TRACKING_*` variables.

use anyhow::Context;
use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, ServerArgs};

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
    tracking_server::run_service(
        "ProviderGateway",
        &args.server,
        &args.db,
        async |grpc, ctx| {
            let key = args
                .gateway
                .credentials_key
                .as_deref()
                .context("TRACKING_CREDENTIALS_KEY is required (32 bytes, base64)")?;
            let sealer = gateway_service::Sealer::from_base64(key)?;
            let started = gateway_service::start(
                &ctx.database_url,
                ctx.pool,
                sealer,
                args.gateway.order_poll_interval,
                args.gateway.amazon_report_interval,
                args.gateway.local_stores.unwrap_or(false),
                ctx.shutdown,
            )
            .await?;
            Ok(tracking_server::ServiceParts {
                drain: started.rounds,
                http: gateway_service::http::routes(started.service.intake(), &ctx.metrics),
                grpc: grpc.add_service(gateway_service::grpc_service(
                    started.service,
                    Authenticator::new(ctx.keys),
                )),
            })
        },
    )
    .await
}
