//! trackctl: the operator's command line for the suite.

mod load;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracking_server::{JwtKeys, Role, parse_duration};

#[derive(Parser, Debug)]
// A flag given twice takes its last value, so a script can add to a fixed command line (as
// docs/bench.sh passes its `-- ARGS` after each path's own).
#[command(
    name = "trackctl",
    about = "Operations CLI for the tracking suite",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints a bearer token signed with the suite's secret (TRACKING_JWT_SECRET, or the one
    /// trackd keeps under its state folder).
    Token {
        /// The brand the token acts for.
        #[arg(long)]
        brand: i64,
        /// brand, creator, service or ops.
        #[arg(long, value_enum, default_value = "brand")]
        role: Role,
        /// The creator, for creator tokens.
        #[arg(long)]
        creator: Option<i64>,
        /// Lifetime, e.g. 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        #[arg(long, env = "TRACKING_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// trackd's state folder, where its generated secret lives.
        #[arg(long, env = "TRACKING_STATE_DIR", default_value = ".trackd")]
        state_dir: PathBuf,
    },
    /// Drives load at the suite and verifies the outcome (see the README's "Load testing").
    // Boxed: its flags are many.
    #[command(subcommand)]
    Load(Box<LoadCommand>),
    /// Asks a server's gRPC health service; exits 0 when SERVING (for probes and scripts).
    Health {
        /// The server's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// One service (e.g. tracking.plan.v1.PlanService); empty for the whole server.
        #[arg(long, default_value = "")]
        service: String,
        /// How long to wait for an answer.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum LoadCommand {
    /// MintCode (unary) or MintCodes (stream) against a fresh sandbox campaign.
    Mint {
        #[command(flatten)]
        load: load::mint::MintLoad,
        #[command(flatten)]
        auth: Auth,
    },
    /// Signed Shopify order webhooks (with re-sent duplicates) over HTTP, then attribution.
    Webhooks {
        #[command(flatten)]
        load: load::webhooks::WebhooksLoad,
        #[command(flatten)]
        auth: Auth,
    },
    /// IngestOrders client streams of normalized orders, then attribution.
    Orders {
        #[command(flatten)]
        load: load::orders::OrdersLoad,
        #[command(flatten)]
        auth: Auth,
    },
    /// Tracking-link redirects (`GET /r/{slug}`) over HTTP, then the click counts.
    Clicks {
        #[command(flatten)]
        load: load::clicks::ClicksLoad,
        #[command(flatten)]
        auth: Auth,
    },
    /// A bare tonic unary call (gRPC health, served in this process): the machine's ceiling.
    Echo {
        #[command(flatten)]
        load: load::echo::EchoLoad,
    },
}

/// Where the signing secret comes from, and which brand the load runs as.
#[derive(clap::Args, Debug)]
struct Auth {
    #[arg(long, env = "TRACKING_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    #[arg(long, env = "TRACKING_STATE_DIR", default_value = ".trackd")]
    state_dir: PathBuf,
    /// The brand the run's data belongs to (default: a fresh one per run).
    #[arg(long)]
    brand: Option<i64>,
}

fn secret(jwt_secret: Option<String>, state_dir: &std::path::Path) -> anyhow::Result<String> {
    match jwt_secret {
        Some(secret) => Ok(secret),
        None => {
            let path = state_dir.join("jwt-secret");
            Ok(std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no TRACKING_JWT_SECRET and no {} (run trackd once, or set the secret)",
                        path.display()
                    )
                })?
                .trim()
                .to_owned())
        }
    }
}

/// A brand token for the run.
fn brand_token(auth: Auth) -> anyhow::Result<String> {
    let secret = secret(auth.jwt_secret, &auth.state_dir)?;
    let brand = match auth.brand {
        Some(brand) => brand,
        // A brand of its own per run keeps runs from seeing each other's data: the run's start
        // in milliseconds (two runs started in one second still differ).
        None => i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?,
    };
    // A day: longer than any run's set-up, load and settling together.
    Ok(JwtKeys::new(secret.as_bytes()).sign(
        brand,
        Role::Brand,
        None,
        Duration::from_secs(24 * 3600),
    ))
}

async fn run_load(command: LoadCommand) -> anyhow::Result<()> {
    let (summary, json) = match command {
        LoadCommand::Mint { load, auth } => {
            let json = load.common.json;
            (load::mint::run(load, &brand_token(auth)?).await?, json)
        }
        LoadCommand::Webhooks { load, auth } => {
            let json = load.common.json;
            (load::webhooks::run(load, &brand_token(auth)?).await?, json)
        }
        LoadCommand::Orders { load, auth } => {
            let json = load.common.json;
            (load::orders::run(load, &brand_token(auth)?).await?, json)
        }
        LoadCommand::Clicks { load, auth } => {
            let json = load.common.json;
            (load::clicks::run(load, &brand_token(auth)?).await?, json)
        }
        LoadCommand::Echo { load } => {
            let json = load.common.json;
            (load::echo::run(load).await?, json)
        }
    };
    summary.print(json);
    if !summary.verified {
        anyhow::bail!("verification failed");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(command) => run_load(*command).await,
        Command::Health {
            addr,
            service,
            timeout,
        } => health(addr, service, timeout).await,
        Command::Token {
            brand,
            role,
            creator,
            ttl,
            jwt_secret,
            state_dir,
        } => {
            if brand < 0 {
                anyhow::bail!("--brand must be 0 or more");
            }
            if role == Role::Creator && creator.is_none() {
                anyhow::bail!("--role creator needs --creator ID");
            }
            if role != Role::Creator && creator.is_some() {
                anyhow::bail!("--creator is for --role creator only");
            }
            if ttl < Duration::from_secs(1) {
                anyhow::bail!(
                    "--ttl must be 1s or more: a token expires on a whole second, so a shorter one would be expired already"
                );
            }
            let secret = secret(jwt_secret, &state_dir)?;
            println!(
                "{}",
                JwtKeys::new(secret.as_bytes()).sign(brand, role, creator, ttl)
            );
            Ok(())
        }
    }
}

async fn health(addr: String, service: String, timeout: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let channel = tonic::transport::Endpoint::from_shared(addr.clone())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.clone(),
        })
        .await
        .with_context(|| format!("health check of {service:?} at {addr}"))?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    if status != ServingStatus::Serving {
        anyhow::bail!("{addr} {service:?} is {}", status.as_str_name());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command, LoadCommand};
    use clap::Parser;

    #[test]
    fn a_flag_given_again_takes_its_last_value() {
        let cli = Cli::try_parse_from([
            "trackctl",
            "load",
            "echo",
            "--concurrency",
            "64",
            "--rate",
            "1000",
            "--concurrency",
            "256",
        ])
        .expect("parses");
        let Command::Load(command) = cli.command else {
            panic!("not load: {:?}", cli.command);
        };
        let LoadCommand::Echo { load } = *command else {
            panic!("not load echo: {command:?}");
        };
        assert_eq!(load.common.concurrency, 256);
        assert_eq!(load.common.rate, Some(1000));
    }
}
