//! PlanService on its own: `plan --help` lists the flags and their `TRACKING_*` variables.

use clap::Parser;
use tracking_server::auth::Authenticator;
use tracking_server::{DbArgs, ServerArgs};

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
    tracking_server::run_service("PlanService", &args.server, &args.db, async |grpc, ctx| {
        let service = plan_service::start(
            &ctx.database_url,
            ctx.pool,
            &args.plan.gateway_url,
            ctx.shutdown,
        )
        .await?;
        Ok(grpc
            .add_service(plan_service::grpc_service(
                service,
                Authenticator::new(ctx.keys),
            ))
            .into())
    })
    .await
}
