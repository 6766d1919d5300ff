//! Finding PostgreSQL for a local run: an explicit URL, else the server on 127.0.0.1:5432, else a
//! private cluster started from the installed binaries under the project's state folder.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::url::{redacted, target_database, with_database};

/// The database trackd uses when nothing else is said.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/tracking";
const DEFAULT_DB: &str = "tracking";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "PostgreSQL is not running on 127.0.0.1:5432 and no installed PostgreSQL was found to start \
         a private cluster. Set DATABASE_URL, or install it: apt-get install -y postgresql"
    )]
    NotInstalled,
    #[error("starting the private PostgreSQL cluster in {dir} failed: {reason}")]
    PrivateCluster { dir: String, reason: String },
    #[error("creating database {name}: {reason}")]
    CreateDatabase { name: String, reason: String },
}

/// Where the suite's database is, creating it if missing. `explicit` is DATABASE_URL when set;
/// `state_dir` is where a private cluster lives if one has to be started.
pub async fn resolve_local_database(
    explicit: Option<&str>,
    state_dir: &Path,
) -> Result<String, BootstrapError> {
    if let Some(url) = explicit {
        ensure_database(url).await?;
        return Ok(url.to_owned());
    }
    match ensure_database(DEFAULT_URL).await {
        Ok(()) => return Ok(DEFAULT_URL.to_owned()),
        Err(BootstrapError::Unreachable { reason, .. }) => {
            tracing::info!(%reason, "no PostgreSQL on 127.0.0.1:5432, trying a private cluster");
        }
        Err(other) => return Err(other),
    }
    let url = start_private_cluster(&state_dir.join("postgres")).await?;
    ensure_database(&url).await?;
    Ok(url)
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)]
    one: i32,
}

/// Makes sure the URL's database exists: connects to it, and only when the server says it does
/// not exist, to the server's `postgres` database to create it. (A server may refuse the
/// `postgres` database to a role that has a database of its own, a managed one say.)
pub(crate) async fn ensure_database(url: &str) -> Result<(), BootstrapError> {
    match connect(url, Duration::from_secs(3)).await {
        Ok(_) => return Ok(()),
        Err(BootstrapError::Unreachable { reason, .. }) if reason.contains("does not exist") => {}
        Err(other) => return Err(other),
    }
    // The database the URL reaches: created under another name, it would stay missing.
    let name = target_database(url).unwrap_or_else(|| DEFAULT_DB.to_owned());
    let admin_url = with_database(url, "postgres");
    let mut conn = connect(&admin_url, Duration::from_secs(3)).await?;
    let exists = diesel::sql_query("select 1 as one from pg_database where datname = $1")
        .bind::<Text, _>(&name)
        .get_result::<Found>(&mut conn)
        .await
        .optional()
        .map_err(|err| BootstrapError::CreateDatabase {
            name: name.clone(),
            reason: err.to_string(),
        })?
        .is_some();
    if !exists {
        let create = format!("create database \"{}\"", name.replace('"', "\"\""));
        match diesel::sql_query(create).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "database created"),
            // Another process created it in the meantime (PostgreSQL may tell the loser of the
            // race by the catalog's unique index rather than by name).
            Err(err)
                if err.to_string().contains("already exists")
                    || err.to_string().contains("pg_database_datname_index") => {}
            Err(err) => {
                return Err(BootstrapError::CreateDatabase {
                    name,
                    reason: err.to_string(),
                });
            }
        }
    }
    Ok(())
}

pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<AsyncPgConnection, BootstrapError> {
    let unreachable = |reason: String| BootstrapError::Unreachable {
        url: redacted(url),
        reason,
    };
    match tokio::time::timeout(timeout, AsyncPgConnection::establish(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(unreachable(err.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// Initializes (once) and starts a cluster under `dir`, owned by the `postgres` user when run as
/// root (initdb refuses root), listening on 127.0.0.1 on a port chosen at init. It answers only to
/// its `postgres` role with the password drawn at init (`dir/password`, readable by its owner
/// only); a cluster initialized before there was one trusts every local user, as it did.
pub(crate) async fn start_private_cluster(dir: &Path) -> Result<String, BootstrapError> {
    // Absolute, and without `..`: PostgreSQL runs from its data folder, where a relative path
    // (trackd's default `.trackd/postgres`) would name nothing, and, run as `postgres`, it may
    // not pass through a folder a `..` climbs out of.
    let dir = &std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::canonicalize(dir))
        .map_err(|e| BootstrapError::PrivateCluster {
            dir: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    let fail = |reason: String| BootstrapError::PrivateCluster {
        dir: dir.display().to_string(),
        reason,
    };
    // One process at a time initializes, moves or starts the cluster (two trackd started
    // together, or test processes): the others wait on the lock, then find it running.
    let lock_path = dir.with_extension("lock");
    let _lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(format!("locking the cluster's folder: {e}")))?;
    let bin = find_postgres_bin().ok_or(BootstrapError::NotInstalled)?;
    let data = dir.join("data");
    let port_file = dir.join("port");
    let password_file = dir.join("password");
    let as_root = running_as_root();

    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&data).map_err(|e| fail(e.to_string()))?;
        let port = free_port().map_err(|e| fail(e.to_string()))?;
        std::fs::write(&port_file, port.to_string()).map_err(|e| fail(e.to_string()))?;
        write_password(&password_file).map_err(|e| fail(format!("the password file: {e}")))?;
        if as_root {
            run(
                Path::new("chown"),
                &["-R", "postgres:postgres", &path_str(dir)],
                false,
            )
            .await
            .map_err(fail)?;
        }
        tracing::info!(dir = %data.display(), "initializing a private PostgreSQL cluster");
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &path_str(&data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", path_str(&password_file)),
                "-E",
                "UTF8",
            ],
            as_root,
        )
        .await
        .map_err(fail)?;
    }
    let mut port: u16 = std::fs::read_to_string(&port_file)
        .map_err(|e| fail(e.to_string()))?
        .trim()
        .parse()
        .map_err(|e| fail(format!("bad port file: {e}")))?;

    let running = run(
        &bin.join("pg_ctl"),
        &["status", "-D", &path_str(&data)],
        as_root,
    )
    .await
    .is_ok();
    if !running {
        // The port chosen at init may be another program's by now: then a new one.
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            port = free_port().map_err(|e| fail(e.to_string()))?;
            tracing::warn!(port, "the private cluster's port is taken: moving it");
            std::fs::write(&port_file, port.to_string()).map_err(|e| fail(e.to_string()))?;
        }
        let log = dir.join("postgres.log");
        start_cluster(&bin, &data, &log, port, as_root)
            .await
            .map_err(|err| fail(format!("{err}; its log ends with:\n{}", log_tail(&log))))?;
        tracing::info!(port, "private PostgreSQL cluster started");
    }
    let user = match std::fs::read_to_string(&password_file) {
        Ok(password) => format!("postgres:{}", password.trim()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => "postgres".to_owned(),
        Err(err) => return Err(fail(format!("the password file: {err}"))),
    };
    Ok(format!("postgres://{user}@127.0.0.1:{port}/{DEFAULT_DB}"))
}

/// Draws the cluster's password into `path`, readable by its owner only: 32 hex digits, nothing
/// a URL needs to escape. One already there is kept: the initdb of a start racing this one, or
/// of one that failed before it finished, may have read it.
fn write_password(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file.write_all(hex::encode(bytes).as_bytes()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// `pg_ctl start` of the cluster in `data` on `port`, waiting until it accepts connections.
async fn start_cluster(
    bin: &Path,
    data: &Path,
    log: &Path,
    port: u16,
    as_root: bool,
) -> Result<(), String> {
    // TCP only: the suite connects over 127.0.0.1, and a socket folder would be one more path
    // for pg_ctl's shell to split and for the socket-path limit to refuse.
    let options = format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''");
    run(
        &bin.join("pg_ctl"),
        &[
            "start",
            "-w",
            "-D",
            &path_str(data),
            "-l",
            &path_str(log),
            "-o",
            &options,
        ],
        as_root,
    )
    .await
}

/// The last lines of the server's log: why a start failed.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// A PostgreSQL cluster of its own, under a folder: for fault tests that stop the database hard
/// and start it again. Stopped (immediately) when dropped.
pub struct PrivateCluster {
    dir: PathBuf,
}

impl PrivateCluster {
    /// Initializes and starts a cluster under `dir`; its URL (default database).
    pub async fn start(dir: &Path) -> Result<(PrivateCluster, String), BootstrapError> {
        let url = start_private_cluster(dir).await?;
        Ok((
            PrivateCluster {
                dir: dir.to_path_buf(),
            },
            url,
        ))
    }

    /// Stops the server at once, as a crash would: connections are cut, nothing is flushed
    /// beyond what is committed.
    pub async fn stop_immediately(&self) -> Result<(), BootstrapError> {
        let bin = find_postgres_bin().ok_or(BootstrapError::NotInstalled)?;
        run(
            &bin.join("pg_ctl"),
            &[
                "stop",
                "-m",
                "immediate",
                "-w",
                "-D",
                &path_str(&self.dir.join("data")),
            ],
            running_as_root(),
        )
        .await
        .map_err(|reason| BootstrapError::PrivateCluster {
            dir: self.dir.display().to_string(),
            reason,
        })
    }

    /// Starts the (stopped) server again, on the same port unless another program has taken it
    /// meanwhile: its URL.
    pub async fn start_again(&self) -> Result<String, BootstrapError> {
        start_private_cluster(&self.dir).await
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some(bin) = find_postgres_bin() {
            let data = path_str(&self.dir.join("data"));
            let pg_ctl = bin.join("pg_ctl");
            let mut cmd = if running_as_root() {
                let mut cmd = std::process::Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
                cmd
            } else {
                std::process::Command::new(pg_ctl)
            };
            let _ = cmd
                .args(["stop", "-m", "immediate", "-D", &data])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates the URL's database if it is missing.
pub async fn create_database(url: &str) -> Result<(), BootstrapError> {
    ensure_database(url).await
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// Runs a PostgreSQL tool, as the `postgres` user when `as_postgres` (we are root).
async fn run(program: &Path, args: &[&str], as_postgres: bool) -> Result<(), String> {
    let mut cmd = if as_postgres {
        let mut cmd = tokio::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        tokio::process::Command::new(program)
    };
    let output = cmd
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The folder holding `initdb` and `pg_ctl`: on PATH, else the newest Debian/Ubuntu install.
fn find_postgres_bin() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stops the cluster under `dir`, if it runs.
    async fn stop(dir: &Path) {
        if let Some(bin) = find_postgres_bin() {
            let data = path_str(&dir.join("data"));
            let _ = run(
                &bin.join("pg_ctl"),
                &["stop", "-w", "-m", "fast", "-D", &data],
                running_as_root(),
            )
            .await;
        }
    }

    /// A fresh machine without a running server: the private cluster is initialized, started,
    /// and serves the suite's database (as root too: initdb then runs as `postgres`).
    #[tokio::test]
    async fn starts_a_private_cluster_and_creates_the_database() {
        if find_postgres_bin().is_none() {
            eprintln!("no PostgreSQL binaries installed; nothing to test");
            return;
        }
        // Deeper than the working folder, so that its relative name (below) is wrong from
        // anywhere but the working folder.
        let top = std::env::temp_dir().join(format!("tracking-private-pg-{}", std::process::id()));
        let dir = top.join("a/b/c/d/e/f/g/h");
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // Named relative to the working folder, as trackd's default `.trackd/postgres` is.
        let depth = std::env::current_dir()
            .map(|cwd| cwd.components().count().saturating_sub(1))
            .unwrap_or_default();
        let relative: std::path::PathBuf = std::iter::repeat_n(std::path::Path::new(".."), depth)
            .collect::<std::path::PathBuf>()
            .join(dir.strip_prefix("/").unwrap_or(&dir));
        let result = async {
            let url = start_private_cluster(&relative).await?;
            ensure_database(&url).await?;
            // Started again (trackd restarted): finds it running, same URL.
            let again = start_private_cluster(&dir).await?;
            assert_eq!(url, again);
            // Only with its password: another local user cannot come in as `postgres`.
            let password = std::fs::read_to_string(dir.join("password")).unwrap_or_default();
            assert_eq!(password.len(), 32, "a password was drawn");
            let (_, host) = url.split_once('@').unwrap_or_default();
            for guess in ["postgres", "postgres:wrong"] {
                let refused = connect(
                    &format!("postgres://{guess}@{host}"),
                    Duration::from_secs(5),
                )
                .await;
                assert!(refused.is_err(), "{guess} let in");
            }
            // A role with a database of its own, refused the `postgres` database (as managed
            // servers do): its existing database is found without it.
            let mut admin = connect(&url, Duration::from_secs(5)).await?;
            for statement in [
                "create role app login password 'app-secret'",
                "create database appdb owner app",
                "revoke connect on database postgres from public",
            ] {
                diesel::sql_query(statement)
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            let app_url = with_database(&format!("postgres://app:app-secret@{host}"), "appdb");
            ensure_database(&app_url).await?;
            connect(&url, Duration::from_secs(5)).await?;
            // Stopped, and its port taken by another program meanwhile: it starts on a new one.
            drop(admin);
            stop(&dir).await;
            let port: u16 = std::fs::read_to_string(dir.join("port"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_default();
            let squatter =
                std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
            let moved = start_private_cluster(&dir).await?;
            drop(squatter);
            assert_ne!(moved, url, "a new port");
            connect(&moved, Duration::from_secs(5)).await.map(|_| moved)
        }
        .await;
        stop(&dir).await;
        let _ = std::fs::remove_dir_all(&top);
        let url = result.unwrap_or_else(|e| panic!("{e}"));
        assert!(url.ends_with("/tracking"));
    }
}
