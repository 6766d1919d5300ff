//! Configuration shared by every service binary: flags with `TRACKING_*` environment variables
//! and defaults, validated before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use tracking_db::PoolOptions;

use crate::telemetry::LogFormat;

/// The shortest signing secret accepted: HS256 keys shorter than the hash are guessable.
pub const MIN_SECRET_LEN: usize = 32;

/// A signing secret from `source` (a variable or a file) long enough to sign tokens with.
pub fn check_secret(source: &str, secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{source} must be at least {MIN_SECRET_LEN} characters"
        ));
    }
    Ok(())
}

/// Listening addresses, auth and limits of one server process.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// gRPC listen address.
    #[arg(long, env = "TRACKING_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (Prometheus /metrics unless --metrics-addr, webhooks, redirects).
    #[arg(long, env = "TRACKING_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Serve Prometheus /metrics on this address (an internal port) instead of on the HTTP
    /// port, which faces stores and shoppers.
    #[arg(long, env = "TRACKING_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// HS256 secret that bearer tokens are signed with (at least 32 characters).
    #[arg(long, env = "TRACKING_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Deadline for a unary call when the client sets none (e.g. 30s, 500ms).
    #[arg(long, env = "TRACKING_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Calls served at once; beyond it calls are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "TRACKING_MAX_CONCURRENT_REQUESTS", default_value_t = 2048)]
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight calls before closing connections.
    #[arg(long, env = "TRACKING_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format: plain or json. Levels come from RUST_LOG (default info).
    #[arg(long, env = "TRACKING_LOG_FORMAT", default_value = "plain")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// The most calls a process may serve at once (far past what it could; a larger number would
/// not fit the admission semaphore).
pub const MAX_CONCURRENT_REQUESTS: usize = 1_000_000;

impl ServerArgs {
    /// Checks what clap cannot; `secret_required` is false only where a default secret is
    /// provided by other means (trackd's local state).
    pub fn validate(&self, secret_required: bool) -> Result<(), String> {
        match &self.jwt_secret {
            Some(secret) => check_secret("TRACKING_JWT_SECRET", secret)?,
            None if secret_required => {
                return Err("TRACKING_JWT_SECRET (or --jwt-secret) is required".to_owned());
            }
            _ => {}
        }
        if !(1..=MAX_CONCURRENT_REQUESTS).contains(&self.max_concurrent_requests) {
            return Err(format!(
                "TRACKING_MAX_CONCURRENT_REQUESTS must be 1..={MAX_CONCURRENT_REQUESTS}"
            ));
        }
        if self.request_timeout.is_zero() {
            return Err("TRACKING_REQUEST_TIMEOUT must be positive".to_owned());
        }
        if self.grpc_addr.port() != 0 && self.grpc_addr == self.http_addr {
            return Err("TRACKING_GRPC_ADDR and TRACKING_HTTP_ADDR must differ".to_owned());
        }
        if let Some(metrics) = self.metrics_addr
            && metrics.port() != 0
            && (metrics == self.grpc_addr || metrics == self.http_addr)
        {
            return Err(
                "TRACKING_METRICS_ADDR must differ from TRACKING_GRPC_ADDR and TRACKING_HTTP_ADDR"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Where the service's database is and how its pool is sized.
#[derive(clap::Args, Clone, Debug)]
pub struct DbArgs {
    /// PostgreSQL URL (postgres://user@host:port/db). trackd finds one when unset.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections in the service's pool.
    #[arg(long, env = "TRACKING_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// How long a call waits for a database connection before UNAVAILABLE.
    #[arg(long, env = "TRACKING_DB_POOL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_pool_timeout: Duration,
}

impl DbArgs {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err("DATABASE_URL must be a postgres:// URL".to_owned());
        }
        if self.db_pool_size == 0 {
            return Err("TRACKING_DB_POOL_SIZE must be at least 1".to_owned());
        }
        // Zero would refuse every call that finds the pool busy for an instant.
        if self.db_pool_timeout.is_zero() {
            return Err("TRACKING_DB_POOL_TIMEOUT must be positive".to_owned());
        }
        Ok(())
    }

    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            max_size: self.db_pool_size,
            wait_timeout: self.db_pool_timeout,
            generic_plans: false,
        }
    }
}

/// [`parse_duration`] for an interval something runs at: zero is refused.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        interval if interval.is_zero() => Err(format!("interval {text:?} must be more than 0")),
        interval => Ok(interval),
    }
}

/// Parses durations like `250ms`, `30s`, `5m`, `2h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit: ms, s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number"))?;
    let seconds = |factor: u64| {
        value
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(format!(
            "duration {text:?} has unknown unit {unit:?}: use ms, s, m, h or d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3y").is_err());
        // An interval something runs at is never zero (a zero period stopped the task).
        assert_eq!(parse_interval("60s"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("0ms").is_err());
    }

    #[test]
    fn settings_that_would_break_the_server_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            server: ServerArgs,
            #[command(flatten)]
            db: DbArgs,
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["test", "--jwt-secret", "0123456789abcdef0123456789abcdef"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map_err(|e| e.to_string())
        };
        let checked = |extra: &[&str]| {
            parse(extra).and_then(|args| {
                args.server.validate(true)?;
                args.db.validate()
            })
        };
        assert_eq!(checked(&[]), Ok(()));
        let refused = checked(&["--max-concurrent-requests", "2305843009213693951"]);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with("TRACKING_MAX_CONCURRENT_REQUESTS")),
            "{refused:?}"
        );
        let refused = checked(&["--db-pool-timeout", "0s"]);
        assert_eq!(
            refused,
            Err("TRACKING_DB_POOL_TIMEOUT must be positive".to_owned())
        );
        let refused = checked(&["--metrics-addr", "127.0.0.1:8080"]);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with("TRACKING_METRICS_ADDR")),
            "{refused:?}"
        );
        assert_eq!(checked(&["--metrics-addr", "127.0.0.1:9090"]), Ok(()));
    }
}
