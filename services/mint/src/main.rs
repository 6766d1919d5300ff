//! CodeMintService on its own: `mint --help` lists the flags and their `TRACKING_*` variables.

use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, ServerArgs};

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
    tracking_server::run_service(
        "CodeMintService",
        &args.server,
        &args.db,
        async |grpc, ctx| {
            let service = mint_service::start(
                &ctx.database_url,
                ctx.pool,
                &args.mint,
                ctx.keys.clone(),
                ctx.shutdown,
            )
            .await?;
            Ok(grpc
                .limit_calls(&mint_service::limited_calls(), args.mint.mint_max_calls)
                .add_service(mint_service::grpc_service(
                    service,
                    Authenticator::new(ctx.keys),
                ))
                .into())
        },
    )
    .await
}
