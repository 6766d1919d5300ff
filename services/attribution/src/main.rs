//! AttributionService on its own: `attribution --help` lists the flags and their `TRACKING_*`
//! variables.

use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, ServerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "attribution",
    about = "AttributionService: link redirects, attribution, commissions, performance"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    attribution: attribution_service::AttributionArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracking_server::run_service(
        "AttributionService",
        &args.server,
        &args.db,
        async |grpc, ctx| {
            let started = attribution_service::start(
                &ctx.database_url,
                ctx.pool,
                &args.attribution,
                ctx.keys.clone(),
                &ctx.metrics,
                ctx.shutdown,
            )
            .await?;
            Ok(tracking_server::ServiceParts {
                // Clicks still queued at shutdown are written before the process exits.
                drain: vec![started.click_writer],
                http: started.http,
                grpc: grpc.add_service(attribution_service::grpc_service(
                    started.service,
                    Authenticator::new(ctx.keys),
                )),
            })
        },
    )
    .await
}
