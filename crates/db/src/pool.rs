//! The connection pool and the one classification of database errors every service uses.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::url::{redacted, with_search_path};

/// A pooled connection whose `search_path` is the service's schema. Dropped while a transaction
/// is still open on it, or a statement under way (the future using it was dropped: a deadline
/// passed, or the client went away), it leaves the pool: PostgreSQL is asked to cancel the
/// statement it may still be running or waiting on, so the work stops with the call instead of
/// running on (holding locks) until it finishes, and the connection is then closed, which rolls
/// the transaction back. Back in the pool, it would sit idle in its transaction, holding its
/// locks (an outbox lock, say), until the pool next handed it out and found it broken; or the
/// next caller's statements would queue behind the abandoned one.
pub struct Conn(Option<Object<AsyncPgConnection>>);

/// Counts a connection's statements under way (started, not yet finished), set on every pooled
/// connection: one dropped before it finished leaves the count above zero.
#[derive(Default)]
struct UnderWay(usize);

impl diesel::connection::Instrumentation for UnderWay {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent;
        match event {
            InstrumentationEvent::StartQuery { .. } => self.0 += 1,
            InstrumentationEvent::FinishQuery { .. } => self.0 = self.0.saturating_sub(1),
            _ => {}
        }
    }
}

/// Whether a statement was left under way on `conn`. Its instrumentation is shared only while
/// a statement's future lives, which borrows the connection: when unsure, it is.
fn statement_under_way(conn: &mut AsyncPgConnection) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        diesel_async::AsyncConnection::instrumentation(conn)
            .downcast_ref::<UnderWay>()
            .is_some_and(|under_way| under_way.0 > 0)
    }))
    .unwrap_or(true)
}

impl std::ops::Deref for Conn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        self.0
            .as_deref()
            .expect("a Conn holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        self.0
            .as_deref_mut()
            .expect("a Conn holds its connection until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        use diesel_async::TransactionManager;
        type Manager = <AsyncPgConnection as diesel_async::AsyncConnection>::TransactionManager;
        let Some(object) = self.0.as_mut() else {
            return;
        };
        if !Manager::is_broken_transaction_manager(&mut **object) && !statement_under_way(object) {
            return;
        }
        let Some(object) = self.0.take() else {
            return;
        };
        let conn = Object::take(object);
        let token = conn.cancel_token();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = token.cancel_query(tokio_postgres::NoTls).await {
                    tracing::debug!(error = %err, "cancelling an abandoned statement failed");
                }
                drop(conn);
            });
        }
    }
}

/// Pool sizing, from each service's config, and how its connections plan statements.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    pub max_size: usize,
    /// How long a caller waits for a free connection (or a new one) before UNAVAILABLE.
    pub wait_timeout: Duration,
    /// Plan each prepared statement ([`crate::prepared`]) once per connection
    /// (`plan_cache_mode=force_generic_plan`, with sequential scans off) instead of at each
    /// execution. Only for a pool whose every prepared statement has one right plan whatever its
    /// values and whatever the tables held when it was planned (possibly nothing): rows inserted
    /// (probing only the unique indexes) or each probed by its key in a `lateral (… limit 1)`
    /// lookup, no join of a table the planner could hash or merge instead. A statement that needs
    /// such a join is prepared at each execution ([`crate::Prepared::planned_each_time`]), and
    /// rarely run ones follow [`plan_each_execution`]. See [`crate::url::with_search_path`].
    pub generic_plans: bool,
}

impl PoolOptions {
    /// These options for a service's second pool, of `max_size` connections, whose statements
    /// are planned once ([`PoolOptions::generic_plans`]): a hot path's own (mint's batches,
    /// the gateway's group commits, attribution's click writer).
    pub fn planned_once(self, max_size: usize) -> Self {
        Self {
            max_size,
            generic_plans: true,
            ..self
        }
    }
}

/// For the rest of the caller's transaction on a connection of a [`PoolOptions::generic_plans`]
/// pool, plans statements as every other pool does (for their values, at each execution, with
/// sequential scans allowed): before statements written for such pools (rarely run ones, say)
/// that do not follow their rule. Outside a transaction it changes nothing.
pub async fn plan_each_execution(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    conn.batch_execute(
        "set local plan_cache_mode = force_custom_plan; set local enable_seqscan = on",
    )
    .await?;
    Ok(())
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            generic_plans: false,
        }
    }
}

/// What can go wrong talking to PostgreSQL, sorted by what a caller should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database is down, unreachable or saturated: retry later (gRPC UNAVAILABLE).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write (gRPC ALREADY_EXISTS, or handled by the caller).
    #[error("unique violation on {constraint}")]
    UniqueViolation { constraint: String },
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A client request id came back with a different request (gRPC INVALID_ARGUMENT, naming
    /// `request_id`).
    #[error("request_id was used for a different {rpc} request")]
    RequestIdReused { rpc: String },
    /// Anything else: a bug or a schema mismatch (gRPC INTERNAL, logged, not sent).
    #[error("database error: {0}")]
    Other(String),
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        classify(err)
    }
}

impl From<PoolError> for DbError {
    fn from(err: PoolError) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

/// The single mapping from Diesel's errors to [`DbError`].
pub fn classify(err: DieselError) -> DbError {
    match err {
        DieselError::NotFound => DbError::NotFound,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            DbError::UniqueViolation {
                constraint: info.constraint_name().unwrap_or_default().to_owned(),
            }
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            DbError::Unavailable(info.message().to_owned())
        }
        DieselError::BrokenTransactionManager => {
            DbError::Unavailable("connection lost inside a transaction".to_owned())
        }
        // A write reaching a standby or a demoted primary during a failover (25006).
        DieselError::DatabaseError(
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ReadOnlyTransaction,
            info,
        ) => DbError::Unavailable(info.message().to_owned()),
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            if is_passing(&message) {
                DbError::Unavailable(message)
            } else {
                DbError::Other(format!("{kind:?}: {message}"))
            }
        }
        other => DbError::Other(other.to_string()),
    }
}

/// Whether a database error says nothing about the query itself, only about this moment, so a
/// retry may well succeed: the server went away or is starting or stopping (SQLSTATE classes 08
/// and 57), the statement was cancelled or timed out (57014), a lock could not be had (55P03),
/// a deadlock or a serialization failure ended the transaction (40P01, 40001), the server ran
/// short of connections, memory or disk (class 53), or the server is a standby (25006). Diesel
/// keeps only a few SQLSTATEs, so these are told by PostgreSQL's (English) message.
fn is_passing(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "connection closed",
        "terminating connection",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "connection reset",
        "broken pipe",
        "error communicating",
        "canceling statement due to",
        "could not obtain lock",
        "deadlock detected",
        "could not serialize access",
        "too many clients",
        "too many connections",
        "out of memory",
        "out of shared memory",
        "no space left on device",
        "read-only transaction",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// A service's handle on its schema: a pool of connections pinned to it.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    schema: &'static str,
    /// Shared: a `Database` is cloned into every handler and task that uses it.
    url: std::sync::Arc<str>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("schema", &self.schema)
            .field("url", &redacted(&self.url))
            .finish()
    }
}

impl Database {
    /// A pool on `base_url` whose connections use `schema`. Connections are opened lazily, so a
    /// service starts even while PostgreSQL is briefly down and recovers when it is back.
    pub fn new(
        base_url: &str,
        schema: &'static str,
        options: PoolOptions,
    ) -> Result<Self, DbError> {
        let url = with_search_path(base_url, schema, options.generic_plans);
        // Fast recycling: a broken connection surfaces as an error on first use (classified
        // UNAVAILABLE) instead of costing every checkout a round trip.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| {
            use diesel_async::AsyncConnection;
            use futures::FutureExt;
            async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.set_instrumentation(UnderWay::default());
                Ok(conn)
            }
            .boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.clone(), config);
        let pool = Pool::builder(manager)
            .max_size(options.max_size)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .recycle_timeout(Some(options.wait_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|err| DbError::Other(format!("invalid pool configuration: {err}")))?;
        Ok(Self {
            pool,
            schema,
            url: url.into(),
        })
    }

    /// A pooled connection; UNAVAILABLE-class error when none comes within the wait timeout.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        Ok(Conn(Some(self.pool.get().await?)))
    }

    /// A connection outside the pool, for LISTEN and session advisory locks that must outlive
    /// a single request.
    pub async fn dedicated(&self) -> Result<AsyncPgConnection, DbError> {
        use diesel_async::AsyncConnection;
        AsyncPgConnection::establish(&self.url)
            .await
            .map_err(|err| DbError::Unavailable(err.to_string()))
    }

    pub fn schema(&self) -> &'static str {
        self.schema
    }

    /// Connections in use and idle, for metrics and leak checks.
    pub fn pool_status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size - status.available, status.available)
    }
}

#[cfg(test)]
mod tests {
    use diesel::QueryableByName;
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use super::*;
    use crate::TestDb;

    #[derive(QueryableByName)]
    struct Settings {
        #[diesel(sql_type = Text)]
        application_name: String,
        #[diesel(sql_type = Text)]
        search_path: String,
        #[diesel(sql_type = Text)]
        random_page_cost: String,
        #[diesel(sql_type = Text)]
        keepalives: String,
    }

    #[tokio::test]
    async fn a_service_connection_names_its_service_and_runs_with_its_settings() {
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let mut conn = test_db
            .pool("plan")
            .conn()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let settings: Settings = diesel::sql_query(
            "select current_setting('application_name') as application_name, \
                    current_setting('search_path') as search_path, \
                    current_setting('random_page_cost') as random_page_cost, \
                    concat_ws(' ', current_setting('tcp_keepalives_idle'), \
                        current_setting('tcp_keepalives_interval'), \
                        current_setting('tcp_keepalives_count')) as keepalives",
        )
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.application_name, "tracking-plan");
        assert_eq!(settings.search_path, "plan");
        assert_eq!(settings.random_page_cost, "1.1");
        assert_eq!(settings.keepalives, "30 10 3");
    }

    #[test]
    fn errors_of_the_moment_are_unavailable_and_others_internal() {
        let error = |kind, message: &str| {
            classify(DieselError::DatabaseError(
                kind,
                Box::new(message.to_owned()),
            ))
        };
        for message in [
            "deadlock detected",
            "canceling statement due to statement timeout",
            "could not obtain lock on row in relation \"codes\"",
            "sorry, too many clients already",
            "terminating connection due to administrator command",
            "could not extend file \"base/16384/16385\": No space left on device",
        ] {
            assert!(
                matches!(
                    error(DatabaseErrorKind::Unknown, message),
                    DbError::Unavailable(_)
                ),
                "{message}"
            );
        }
        assert!(matches!(
            error(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize"
            ),
            DbError::Unavailable(_)
        ));
        assert!(matches!(
            error(DatabaseErrorKind::Unknown, "column \"x\" does not exist"),
            DbError::Other(_)
        ));
    }

    /// A write meeting a standby (a failover under way) is refused as one in a read-only
    /// transaction: the moment's, not the query's.
    #[tokio::test]
    async fn a_write_in_a_read_only_transaction_is_unavailable() {
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let mut conn = test_db
            .pool("plan")
            .dedicated()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let written = conn
            .transaction::<_, DbError, _>(async |conn| {
                diesel::sql_query("set transaction read only")
                    .execute(conn)
                    .await?;
                diesel::sql_query("create table written (a int)")
                    .execute(conn)
                    .await?;
                Ok(())
            })
            .await;
        assert!(
            matches!(written, Err(DbError::Unavailable(_))),
            "{written:?}"
        );
    }

    #[tokio::test]
    async fn a_deadlock_is_unavailable() {
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let db = test_db.pool("plan");
        let (mut a, mut b) = (
            db.dedicated().await.unwrap_or_else(|e| panic!("{e}")),
            db.dedicated().await.unwrap_or_else(|e| panic!("{e}")),
        );
        let run = async |conn: &mut AsyncPgConnection, sql: &str| -> Result<(), DbError> {
            diesel::sql_query(sql).execute(conn).await?;
            Ok(())
        };
        for conn in [&mut a, &mut b] {
            run(conn, "begin").await.unwrap_or_else(|e| panic!("{e}"));
        }
        run(&mut a, "select pg_advisory_xact_lock(1)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        run(&mut b, "select pg_advisory_xact_lock(2)")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Each waits for the other's lock: PostgreSQL ends one of them.
        let (first, second) = tokio::join!(
            run(&mut a, "select pg_advisory_xact_lock(2)"),
            run(&mut b, "select pg_advisory_xact_lock(1)"),
        );
        let failed = first.err().or(second.err());
        assert!(
            matches!(failed, Some(DbError::Unavailable(_))),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_dropped_in_a_transaction_leaves_the_pool_and_lets_go_of_its_locks() {
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let db = test_db.pool("plan");
        let mut other = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        let locked = async |conn: &mut AsyncPgConnection| -> Result<bool, DbError> {
            #[derive(QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                locked: bool,
            }
            let row: Locked = diesel::sql_query("select pg_try_advisory_lock(4242) as locked")
                .get_result(conn)
                .await?;
            Ok(row.locked)
        };
        // A call takes a transaction's lock and is abandoned before it commits.
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            conn.transaction::<(), DbError, _>(async |conn| {
                diesel::sql_query("select pg_advisory_xact_lock(4242)")
                    .execute(conn)
                    .await?;
                std::future::pending::<()>().await;
                Ok(())
            }),
        )
        .await;
        assert!(abandoned.is_err(), "the call was abandoned");
        drop(conn);
        // The lock goes with the connection, though the pool hands out no connection meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !locked(&mut other).await.unwrap_or_else(|e| panic!("{e}")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the abandoned transaction still holds its lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.pool_status(), (0, 0), "the connection left the pool");
    }

    #[tokio::test]
    async fn a_connection_dropped_with_a_statement_under_way_leaves_the_pool_and_cancels_it() {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let db = test_db.pool("plan");
        let mut other = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        let sleeping = async |conn: &mut AsyncPgConnection| -> i64 {
            diesel::sql_query(
                "select count(*) as n from pg_stat_activity \
                 where query like 'select pg_sleep(30)%' and state = 'active'",
            )
            .get_result::<Count>(conn)
            .await
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{e}"))
        };
        // Finished statements, in and out of a transaction, leave the connection to the pool.
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel::sql_query("select 1")
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        conn.transaction::<_, DbError, _>(async |conn| {
            diesel::sql_query("select 2").execute(conn).await?;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let failed = diesel::sql_query("select 1 / (random() > 2)::int")
            .execute(&mut *conn)
            .await;
        assert!(failed.is_err());
        drop(conn);
        assert_eq!(
            db.pool_status(),
            (0, 1),
            "the connection went back to the pool"
        );

        // A call outside any transaction is abandoned while its statement runs.
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let abandoned = tokio::time::timeout(
            Duration::from_millis(300),
            diesel::sql_query("select pg_sleep(30)").execute(&mut *conn),
        )
        .await;
        assert!(abandoned.is_err(), "the call was abandoned");
        drop(conn);
        assert_eq!(db.pool_status(), (0, 0), "the connection left the pool");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sleeping(&mut other).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the abandoned statement still runs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Planning {
        #[diesel(sql_type = Text)]
        plan_cache_mode: String,
        #[diesel(sql_type = Text)]
        enable_seqscan: String,
    }

    async fn planning(conn: &mut AsyncPgConnection) -> Result<Planning, DbError> {
        Ok(diesel::sql_query(
            "select current_setting('plan_cache_mode') as plan_cache_mode, \
                    current_setting('enable_seqscan') as enable_seqscan",
        )
        .get_result(conn)
        .await?)
    }

    #[tokio::test]
    async fn a_pool_that_plans_once_plans_each_execution_for_the_rest_of_a_transaction_when_told() {
        let test_db = TestDb::new(&[("plan", &[])]).await;
        let options = PoolOptions::default().planned_once(1);
        let db = Database::new(test_db.url(), "plan", options).unwrap_or_else(|e| panic!("{e}"));
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let once = Planning {
            plan_cache_mode: "force_generic_plan".to_owned(),
            enable_seqscan: "off".to_owned(),
        };
        let (before, inside) = conn
            .transaction::<_, DbError, _>(async |conn| {
                let before = planning(conn).await?;
                plan_each_execution(conn).await?;
                Ok((before, planning(conn).await?))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(before, once);
        assert_eq!(
            inside,
            Planning {
                plan_cache_mode: "force_custom_plan".to_owned(),
                enable_seqscan: "on".to_owned(),
            }
        );
        let after = planning(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(after, once, "only for the rest of that transaction");
    }
}
