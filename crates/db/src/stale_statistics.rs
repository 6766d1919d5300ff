//! Tests of statements that take a batch of keys, under statistics that have never seen the key's
//! brand: a brand's first big campaign grows faster than autovacuum analyzes a table (it stays
//! under the 10 % threshold in a table of millions), and a planner that believes the brand has a
//! handful of rows reads its whole range instead of probing the keys. [`fill`] builds that state;
//! [`fill_unanalyzed`] builds a new deployment's, a table of some thousands of rows no analyze has
//! seen yet. [`rows_read_by`] and [`index_pages_read_by`] count what a statement read, which does
//! not depend on the machine as a timing would. Only tests use this module: its functions panic
//! on any error.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{Database, PoolOptions, TestDb};

/// Rows of brand 1, analyzed.
pub const KNOWN: i64 = 20_000;
/// Rows of brand 2, added after the analyze.
pub const NEW: i64 = 30_000;
/// Keys per call.
pub const KEYS: i64 = 100;
/// Rows a call of [`KEYS`] keys may read: an index entry and a heap row per key with room to
/// spare, far below [`NEW`], which the forms that ignore the keys read.
pub const BOUND: i64 = 4 * KEYS;

/// Fills `table` with `rows(1, KNOWN)` (an `insert` statement), analyzes it, then adds
/// `rows(2, NEW)`, with autovacuum off for the table so that the statistics never see brand 2.
pub async fn fill(conn: &mut AsyncPgConnection, table: &str, rows: impl Fn(i64, i64) -> String) {
    without_autovacuum(conn, table).await;
    execute(conn, &rows(1, KNOWN)).await;
    execute(conn, &format!("analyze {table}")).await;
    execute(conn, &rows(2, NEW)).await;
}

/// Rows of a table no analyze has seen yet, as a new deployment's before autovacuum first reaches
/// it (a minute at least): [`fill_unanalyzed`].
pub const UNANALYZED: i64 = 20_000;
/// Keys per call against an unanalyzed table: as many as the services' batches carry (256 to
/// 500). A planner that prices reads as from disk hashes a batch this size against the whole
/// table instead of probing its keys.
pub const BATCH_KEYS: i64 = 256;
/// Rows a call of [`BATCH_KEYS`] keys may read.
pub const BATCH_BOUND: i64 = 4 * BATCH_KEYS;

/// Fills `table` with `rows(2, UNANALYZED)` (an `insert` statement) and no analyze, with
/// autovacuum off for the table: the planner knows its size from its pages, nothing more.
pub async fn fill_unanalyzed(
    conn: &mut AsyncPgConnection,
    table: &str,
    rows: impl Fn(i64, i64) -> String,
) {
    without_autovacuum(conn, table).await;
    execute(conn, &rows(2, UNANALYZED)).await;
}

/// Turns autovacuum off for `table`, so that no analyze sees what a test adds after.
pub async fn without_autovacuum(conn: &mut AsyncPgConnection, table: &str) {
    execute(
        conn,
        &format!("alter table {table} set (autovacuum_enabled = false)"),
    )
    .await;
}

/// Runs `sql`.
pub async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    if let Err(err) = diesel::sql_query(sql).execute(conn).await {
        panic!("{sql}: {err}");
    }
}

/// Runs `f` in a transaction of its own on `conn` and returns its result with how many rows it read
/// from `table`: index entries returned by the table's indexes plus heap rows scanned or fetched,
/// from PostgreSQL's per-transaction statistics.
pub async fn rows_read_by<T, E: std::fmt::Display>(
    conn: &mut AsyncPgConnection,
    table: &str,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> (T, i64) {
    counted_by(conn, ROWS_READ, table, f).await
}

/// As [`rows_read_by`], counting the pages read from `table`'s indexes instead: a scan that checks
/// a key against every entry of a range inside the index (a key after a column the statement does
/// not bind) returns few entries but reads the whole range.
pub async fn index_pages_read_by<T, E: std::fmt::Display>(
    conn: &mut AsyncPgConnection,
    table: &str,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> (T, i64) {
    counted_by(conn, INDEX_PAGES_READ, table, f).await
}

/// A pool of one connection to `schema` of `test_db`, for [`rows_read_through`].
pub fn one_connection(test_db: &TestDb, schema: &'static str) -> Database {
    let options = PoolOptions {
        max_size: 1,
        ..PoolOptions::default()
    };
    Database::new(test_db.url(), schema, options).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`rows_read_by`], for a function that takes its connection from `db`, a pool of
/// [`one_connection`]: the counting transaction, begun in SQL (which the pool does not track),
/// stays open on that one connection while `f` borrows it.
pub async fn rows_read_through<T, E: std::fmt::Display>(
    db: &Database,
    table: &str,
    f: impl AsyncFnOnce(&Database) -> Result<T, E>,
) -> (T, i64) {
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, "begin").await;
    let before = count(&mut conn, ROWS_READ, table).await;
    drop(conn);
    let value = f(db).await.unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let read = count(&mut conn, ROWS_READ, table).await - before;
    execute(&mut conn, "commit").await;
    (value, read)
}

const ROWS_READ: &str = "select (pg_stat_get_xact_tuples_returned(t.oid) \
       + pg_stat_get_xact_tuples_fetched(t.oid) \
       + coalesce((select sum(pg_stat_get_xact_tuples_returned(i.indexrelid)) \
           from pg_index i where i.indrelid = t.oid), 0))::bigint as n \
     from (select $1::text::regclass::oid as oid) t";

const INDEX_PAGES_READ: &str = "select coalesce(sum(pg_stat_get_xact_blocks_fetched(i.indexrelid)), \
       0)::bigint as n \
     from pg_index i where i.indrelid = $1::text::regclass";

async fn counted_by<T, E: std::fmt::Display>(
    conn: &mut AsyncPgConnection,
    counter: &str,
    table: &str,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> (T, i64) {
    execute(conn, "begin").await;
    let before = count(conn, counter, table).await;
    let value = f(conn).await.unwrap_or_else(|e| panic!("{e}"));
    let read = count(conn, counter, table).await - before;
    execute(conn, "commit").await;
    (value, read)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, counter: &str, table: &str) -> i64 {
    let row: Result<Count, _> = diesel::sql_query(counter)
        .bind::<Text, _>(table)
        .get_result(conn)
        .await;
    match row {
        Ok(row) => row.n,
        Err(err) => panic!("reading the statistics of {table}: {err}"),
    }
}
