//! Test databases: a template is migrated once per migration content, and every test gets its own
//! fresh copy of it, dropped when the test ends. A run that was killed cannot drop its own: the
//! next test process drops those nobody has been connected to for an hour ([`sweep_abandoned`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::sql_types::{Bool, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};

use crate::bootstrap::{DEFAULT_URL, connect};
use crate::migrate::{Migrations, migrate};
use crate::pool::{Database, PoolOptions};
use crate::url::with_database;

/// A service schema and the migration sets that build it, in order.
pub type SchemaSpec = (&'static str, &'static [&'static Migrations]);

/// A fresh, migrated database for one test. Dropped (with its connections) on drop.
pub struct TestDb {
    url: String,
    admin_url: String,
    name: String,
}

#[derive(QueryableByName)]
struct TemplateRow {
    #[diesel(sql_type = Bool)]
    datistemplate: bool,
}

impl TestDb {
    /// The server tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else 127.0.0.1:5432,
    /// else a private cluster started from the installed binaries (shared by every test
    /// process, kept under the system's temp folder), so tests run on a fresh machine too.
    pub async fn server_url() -> Result<String, String> {
        static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
        URL.get_or_try_init(find_server).await.cloned()
    }

    /// A new database holding every schema in `schemas`, migrated.
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached or migrated: a test cannot run without it.
    pub async fn new(schemas: &'static [SchemaSpec]) -> TestDb {
        match Self::try_new(schemas).await {
            Ok(db) => db,
            Err(err) => panic!(
                "test database: {err}. Tests need PostgreSQL: start it (pg_ctlcluster 15 main start) \
                 or set TEST_DATABASE_URL"
            ),
        }
    }

    async fn try_new(schemas: &'static [SchemaSpec]) -> Result<TestDb, String> {
        let server = Self::server_url().await?;
        let admin_url = with_database(&server, "postgres");
        let template = template_name(schemas)?;
        ensure_template(&server, &admin_url, &template, schemas).await?;

        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // Named by its creation time (for [`sweep_abandoned`]), then the process and a counter.
        let name = format!(
            "{TEST_PREFIX}{}_{}_{}",
            unix_seconds(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(&admin_url, std::time::Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT
            .get_or_init(|| async {
                for (name, err) in sweep_abandoned(&mut admin, TEST_PREFIX, ABANDONED_AFTER).await {
                    eprintln!("could not drop abandoned test database {name}: {err}");
                }
            })
            .await;
        diesel::sql_query(format!("create database {name} template {template}"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
        Ok(TestDb {
            url: with_database(&server, &name),
            admin_url,
            name,
        })
    }

    /// The test database's URL (no search_path: each service pins its own).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool on this database whose connections use `schema` (default options).
    ///
    /// # Panics
    /// Never for a valid schema name: the pool connects lazily.
    pub fn pool(&self, schema: &'static str) -> Database {
        Database::new(&self.url, schema, PoolOptions::default())
            .unwrap_or_else(|e| panic!("pool on {}: {e}", self.name))
    }
}

/// Test databases are named this, then their creation time in seconds since the epoch.
const TEST_PREFIX: &str = "tracking_test_";

/// A test database nobody has been connected to for this long was left by a killed run (no test
/// here lasts minutes).
const ABANDONED_AFTER: u64 = 3600;

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Drops the databases named `prefix` and their creation time that were created more than `after`
/// seconds ago and that no session is connected to now: those of test runs that were killed
/// before they could drop their own (a test connects to its database within seconds of making
/// it, and holds it for the test's length). A database someone connects to meanwhile is not
/// dropped (no `force`). The ones that could not be dropped, and why.
async fn sweep_abandoned(
    admin: &mut diesel_async::AsyncPgConnection,
    prefix: &str,
    after: u64,
) -> Vec<(String, String)> {
    #[derive(QueryableByName)]
    struct Unused {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let unused = diesel::sql_query(
        "select datname from pg_database d where not datistemplate and starts_with(datname, $1) \
         and not exists (select 1 from pg_stat_activity a where a.datid = d.oid)",
    )
    .bind::<Text, _>(prefix)
    .load::<Unused>(admin)
    .await;
    let unused = match unused {
        Ok(unused) => unused,
        Err(err) => return vec![("(listing)".to_owned(), err.to_string())],
    };
    let cutoff = unix_seconds().saturating_sub(after);
    // Names from before the creation time led them held a process id there instead: too small
    // to be a time this code ran at, and left alone (they may be a running older build's).
    const EARLIEST: u64 = 1_700_000_000;
    let mut failed = Vec::new();
    for Unused { datname } in unused {
        let created = datname
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| (EARLIEST..cutoff).contains(&created)) {
            let drop = format!("drop database if exists {datname}");
            if let Err(err) = diesel::sql_query(drop).execute(admin).await {
                failed.push((datname, err.to_string()));
            }
        }
    }
    failed
}

/// Returns once a session of the connection's database waits for a lock, or `task` has ended:
/// a test that holds a lock lets go after this, so the call it started has met the lock (or
/// never needed it, which the test's assertions then show).
///
/// # Panics
/// When the query fails (a test helper).
pub async fn until_lock_wait<T>(
    conn: &mut diesel_async::AsyncPgConnection,
    task: &tokio::task::JoinHandle<T>,
) {
    while !task.is_finished() && lock_waits(conn).await == 0 {
        tokio::task::yield_now().await;
    }
}

/// How many sessions of the connection's database wait for a lock.
async fn lock_waits(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "select count(*) as n from pg_stat_activity \
         where datname = current_database() and wait_event_type = 'Lock'",
    )
    .get_result::<Waiting>(conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .n
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread with its own small runtime works in both.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = connect(&admin_url, std::time::Duration::from_secs(5)).await
                {
                    let drop = format!("drop database if exists {name} with (force)");
                    if let Err(err) = diesel::sql_query(drop).execute(&mut admin).await {
                        eprintln!("could not drop test database {name}: {err}");
                    }
                }
            });
        });
        let _ = handle.join();
    }
}

async fn find_server() -> Result<String, String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")) {
        return Ok(url);
    }
    let default_admin = with_database(DEFAULT_URL, "postgres");
    if connect(&default_admin, std::time::Duration::from_secs(2))
        .await
        .is_ok()
    {
        return Ok(DEFAULT_URL.to_owned());
    }
    let dir = std::env::temp_dir().join("tracking-test-postgres");
    crate::bootstrap::start_private_cluster(&dir)
        .await
        .map_err(|e| e.to_string())
}

/// The template's name: a hash of every schema and the SQL of every migration in it, so an edited
/// or added migration gets a new template.
fn template_name(schemas: &[SchemaSpec]) -> Result<String, String> {
    let mut hasher = Sha256::new();
    for (schema, sets) in schemas {
        hasher.update(schema.as_bytes());
        for set in *sets {
            hash_dir(std::path::Path::new(set.source_dir), &mut hasher)
                .map_err(|e| format!("reading migrations in {}: {e}", set.source_dir))?;
        }
    }
    let digest = hasher.finalize();
    Ok(format!("tracking_tpl_{}", hex::encode(&digest[..8])))
}

fn hash_dir(dir: &std::path::Path, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        hasher.update(entry.file_name().as_encoded_bytes());
        if path.is_dir() {
            hash_dir(&path, hasher)?;
        } else {
            hasher.update(std::fs::read(&path)?);
        }
    }
    Ok(())
}

/// Creates and migrates the template once, under an advisory lock shared by every test process.
async fn ensure_template(
    server: &str,
    admin_url: &str,
    template: &str,
    schemas: &'static [SchemaSpec],
) -> Result<(), String> {
    let mut admin = connect(admin_url, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    diesel::sql_query("select pg_advisory_lock(hashtext('tracking-test-template'))")
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let state = diesel::sql_query("select datistemplate from pg_database where datname = $1")
            .bind::<Text, _>(template)
            .get_result::<TemplateRow>(&mut admin)
            .await
            .optional()
            .map_err(|e| e.to_string())?;
        match state {
            Some(row) if row.datistemplate => return Ok(()),
            // Left half-built by a crashed run.
            Some(_) => {
                diesel::sql_query(format!("drop database {template} with (force)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            None => {}
        }
        diesel::sql_query(format!("create database {template}"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let template_url = with_database(server, template);
        for (schema, sets) in schemas {
            migrate(&template_url, schema, sets)
                .await
                .map_err(|e| e.to_string())?;
        }
        diesel::sql_query(format!("alter database {template} with is_template true"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    }
    .await;
    let _ = diesel::sql_query("select pg_advisory_unlock(hashtext('tracking-test-template'))")
        .execute(&mut admin)
        .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn names(admin: &mut diesel_async::AsyncPgConnection) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            datname: String,
        }
        diesel::sql_query("select datname from pg_database")
            .load::<Name>(admin)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|n| n.datname)
            .collect()
    }

    #[tokio::test]
    async fn databases_of_killed_runs_are_dropped_once_old_and_unused() {
        let server = TestDb::server_url().await.unwrap_or_else(|e| panic!("{e}"));
        let mut admin = connect(
            &with_database(&server, "postgres"),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let now = unix_seconds();
        let pid = std::process::id();
        // A prefix of this test's own, out of reach of the sweeps of other test processes.
        let prefix = "tracking_sweeptest_";
        // Left by a killed run two hours ago; one of a run that is going on; one in use.
        let abandoned = format!("{prefix}{}_{pid}_1", now - 7200);
        let recent = format!("{prefix}{}_{pid}_2", now - 60);
        let in_use = format!("{prefix}{}_{pid}_3", now - 7200);
        for name in [&abandoned, &recent, &in_use] {
            diesel::sql_query(format!("create database {name}"))
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut user = connect(
            &with_database(&server, &in_use),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        diesel::sql_query("select 1")
            .execute(&mut user)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let failed = sweep_abandoned(&mut admin, prefix, ABANDONED_AFTER).await;
        assert!(failed.is_empty(), "{failed:?}");
        let left = names(&mut admin).await;
        assert!(
            !left.contains(&abandoned),
            "the killed run's database is dropped"
        );
        assert!(
            left.contains(&recent),
            "a recent one may belong to a running test"
        );
        assert!(left.contains(&in_use), "one in use stays");

        drop(user);
        for name in [&recent, &in_use] {
            diesel::sql_query(format!("drop database if exists {name} with (force)"))
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
