//! `cargo run`: the whole suite, locally, with nothing to configure. It finds PostgreSQL (or
//! starts a private cluster), keeps its secrets under `.trackd/`, writes a dev token and prints
//! how to call it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracking_server::{DbArgs, JwtKeys, Role, ServerArgs};

#[derive(Parser, Debug)]
#[command(name = "trackd", about = "The whole tracking suite in one process")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    gateway: gateway_service::GatewayArgs,
    /// Where shoppers reach the redirect (`/r/{slug}`) in tracking links; default: the HTTP address.
    #[arg(long, env = "TRACKING_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// CodeMintService's parallel mint batches.
    #[arg(long, env = "TRACKING_MINT_WORKERS", default_value_t = 2)]
    mint_workers: usize,
    /// How long (µs) a mint batch waits for more requests before it runs.
    #[arg(long, env = "TRACKING_MINT_LINGER_US", default_value_t = 1000)]
    mint_linger_us: u64,
    /// While mint requests wait longer than this (ms) for their batch, new MintCode/RetryCode
    /// calls are refused with RESOURCE_EXHAUSTED (load shedding); 0 never refuses.
    #[arg(long, env = "TRACKING_MINT_SHED_AFTER_MS", default_value_t = 100)]
    mint_shed_after_ms: u64,
    /// MintCode/RetryCode calls served at once; beyond it they are refused with
    /// RESOURCE_EXHAUSTED (load shedding); 0 no limit.
    #[arg(long, env = "TRACKING_MINT_MAX_CALLS", default_value_t = 64)]
    mint_max_calls: usize,
    /// CodeMintService's parallel push rounds (codes it minted, codes its scan finds).
    #[arg(long, env = "TRACKING_MINT_PUSHERS", default_value_t = 3)]
    mint_pushers: usize,
    /// Peers whose X-Forwarded-For and CF-IPCountry / X-Country-Code the redirect believes:
    /// `local` (this machine and private networks), `none`, or addresses and networks
    /// (198.51.100.0/24), comma-separated.
    #[arg(long, env = "TRACKING_TRUSTED_PROXIES", default_value = "local")]
    trusted_proxies: tracking_server::net::TrustedProxies,
    /// Local state: private PostgreSQL cluster, generated secrets, dev token.
    #[arg(long, env = "TRACKING_STATE_DIR", default_value = ".trackd")]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracking_server::telemetry::init(args.server.log_format);
    args.server.validate(false).map_err(anyhow::Error::msg)?;
    args.db.validate().map_err(anyhow::Error::msg)?;
    // Not its owner's only: run as root, the private cluster under it runs as `postgres`. The
    // secrets and the dev token in it are (`write_private`).
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;

    let jwt_secret = match &args.server.jwt_secret {
        Some(secret) => secret.clone(),
        None => local_jwt_secret(&args.state_dir)?,
    };
    let credentials_key = match &args.gateway.credentials_key {
        Some(key) => key.clone(),
        None => local_secret(&args.state_dir.join("credentials-key"), || {
            gateway_service::Sealer::generate_key().map_err(anyhow::Error::from)
        })?,
    };
    let database_url =
        tracking_db::resolve_local_database(args.db.database_url.as_deref(), &args.state_dir)
            .await?;

    let shutdown = tracking_server::shutdown::on_signal();
    let grpc_listener = tracking_server::bind(args.server.grpc_addr).await?;
    let http_listener = tracking_server::bind(args.server.http_addr).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let metrics_listener = match args.server.metrics_addr {
        Some(addr) => Some(tracking_server::bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;

    let token = JwtKeys::new(jwt_secret.as_bytes()).sign(
        1,
        Role::Brand,
        None,
        Duration::from_secs(30 * 86_400),
    );
    let token_path = args.state_dir.join("dev-token");
    write_private(&token_path, &token)?;

    let config = trackd::SuiteConfig {
        database_url: database_url.clone(),
        jwt_secret,
        credentials_key,
        pool: args.db.pool_options(),
        request_timeout: args.server.request_timeout,
        max_concurrent_requests: args.server.max_concurrent_requests,
        shutdown_grace: args.server.shutdown_grace,
        public_base_url: args
            .public_base_url
            .clone()
            .unwrap_or_else(|| trackd::loopback_url(http_addr)),
        mint_workers: args.mint_workers,
        mint_linger_us: args.mint_linger_us,
        mint_shed_after_ms: args.mint_shed_after_ms,
        mint_max_calls: args.mint_max_calls,
        mint_pushers: args.mint_pushers,
        order_poll_interval: args.gateway.order_poll_interval,
        amazon_report_interval: args.gateway.amazon_report_interval,
        // A local suite: its test stores and proxies are on this machine.
        local_stores: args.gateway.local_stores.unwrap_or(true),
        trusted_proxies: args.trusted_proxies.clone(),
        tls: args.server.tls.clone(),
    };
    let mut suite = trackd::Suite::prepare(&config, shutdown.clone()).await?;
    if let Some(listener) = metrics_listener {
        suite = suite.with_metrics_listener(listener);
    }
    let serving = tokio::spawn(suite.serve(grpc_listener, http_listener, shutdown));

    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        metrics = ?metrics_addr,
        database = %tracking_db::url::redacted(&database_url),
        "trackd serving PlanService, ProviderGateway, CodeMintService and AttributionService"
    );
    // Over TLS, grpcurl checks the certificate (which names localhost) against its CA.
    let (security, host) = match (&args.server.tls.tls_cert, &args.server.tls.tls_key) {
        (Some(cert), Some(key)) => {
            let ca = args.server.tls.tls_ca.as_ref().unwrap_or(cert);
            let mut flags = format!("-cacert {}", ca.display());
            // Mutual TLS: grpcurl presents trackd's own certificate, as the services do.
            if args.server.tls.tls_client_ca.is_some() {
                flags.push_str(&format!(" -cert {} -key {}", cert.display(), key.display()));
            }
            (flags, format!("localhost:{}", grpc_addr.port()))
        }
        _ => (
            "-plaintext".to_owned(),
            trackd::loopback_url(grpc_addr)
                .trim_start_matches("http://")
                .to_owned(),
        ),
    };
    let (on_http, metrics_line) = match metrics_addr {
        Some(addr) => (String::new(), format!("  metrics  http://{addr}/metrics\n")),
        None => ("/metrics, ".to_owned(), String::new()),
    };
    println!(
        "\ntrackd is up\n  gRPC     {grpc_addr}  (PlanService, ProviderGateway, CodeMintService, AttributionService, health, reflection)\n  \
         HTTP     http://{http_addr}  ({on_http}store webhooks, /ast/v1/conversions, tracking links /r/…)\n{metrics_line}  dev token (brand 1, 30 days) in {}\n\n\
         Try:\n  grpcurl {security} {host} list\n  \
         grpcurl {security} -H \"authorization: Bearer $(cat {})\" \\\n    \
         -d '{{\"provider\":\"PROVIDER_SANDBOX\",\"name\":\"Demo store\"}}' \\\n    \
         {host} tracking.gateway.v1.ProviderGateway/RegisterIntegration\n",
        token_path.display(),
        token_path.display(),
    );
    serving.await?
}

/// Reads a secret kept under the state folder (readable by its owner only), creating it on
/// first run. Two first runs at once keep the same secret: the file appears whole, once, and
/// the run that did not make it reads it (a credentials key overwritten after a run had sealed
/// with it would lose those credentials for good).
fn local_secret(
    path: &Path,
    generate: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let read = |path: &Path| -> anyhow::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(existing) => {
                keep_private(path)?;
                Ok(Some(existing.trim().to_owned()).filter(|s| !s.is_empty()))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    };
    if let Some(existing) = read(path)? {
        return Ok(existing);
    }
    let secret = generate()?;
    // Written whole under a name of its own, then linked where no file is: the first run's
    // secret stays, and no run reads a half-written one.
    static DRAFTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let draft = path.with_extension(format!(
        "new-{}-{}",
        std::process::id(),
        DRAFTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let linked = write_private(&draft, &secret).and_then(|()| {
        std::fs::hard_link(&draft, path).or_else(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => Err(err.into()),
            // A file system without hard links: created only where no file is, if less whole.
            _ => create_private(path, &secret),
        })
    });
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(secret),
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) =>
        {
            read(path)?.with_context(|| {
                format!("{} is empty: delete it to make a new one", path.display())
            })
        }
        Err(err) => Err(err).with_context(|| format!("writing {}", path.display())),
    }
}

/// Creates `path` with `contents`, readable by its owner only; `AlreadyExists` if it is there.
fn create_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Makes `path` readable by its owner only (a secret written there by hand may not be).
fn keep_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
        tracing::info!(path = %path.display(), "made readable by its owner only");
    }
    Ok(())
}

/// The signing secret kept under the state folder, created on first run; one written there by
/// hand is held to the same length as `TRACKING_JWT_SECRET`.
fn local_jwt_secret(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("jwt-secret");
    let secret = local_secret(&path, generate_secret)?;
    tracking_server::config::check_secret(&path.display().to_string(), &secret)
        .map_err(anyhow::Error::msg)?;
    Ok(secret)
}

fn generate_secret() -> anyhow::Result<String> {
    // 32 random bytes as base64: 44 characters, above the kit's minimum.
    gateway_service::Sealer::generate_key().map_err(anyhow::Error::from)
}

/// Writes `contents` to `path`, readable by its owner only (also a file that was there before).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    keep_private(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{local_jwt_secret, local_secret, write_private};

    #[test]
    fn runs_started_together_keep_one_secret_readable_by_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("trackd-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("credentials-key");
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|n| {
                    let path = &path;
                    scope.spawn(move || {
                        local_secret(path, || Ok(format!("secret-of-run-{n}")))
                            .unwrap_or_else(|e| panic!("{e}"))
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| run.join().unwrap_or_else(|_| panic!("a run panicked")))
                .collect()
        });
        assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_disk, secrets[0]);
        let mode = |path: &std::path::Path| {
            std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
        };
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            std::fs::read_dir(&dir).map_or(0, |entries| entries.count()),
            1,
            "no drafts left"
        );
        // A secret or token left readable by others (written by hand, say) is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        local_secret(&path, || Ok("unused".to_owned())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&path), 0o600);
        let token = dir.join("dev-token");
        std::fs::write(&token, "old").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        write_private(&token, "new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&token), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_local_signing_secret_is_generated_long_and_a_short_one_refused() {
        let dir = std::env::temp_dir().join(format!("trackd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let generated = local_jwt_secret(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(generated.len() >= 32, "{generated}");
        assert_eq!(
            local_jwt_secret(&dir).ok(),
            Some(generated),
            "kept across runs"
        );
        std::fs::write(dir.join("jwt-secret"), "secret").unwrap_or_else(|e| panic!("{e}"));
        let refused = local_jwt_secret(&dir).map_err(|e| e.to_string());
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("at least 32 characters")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
