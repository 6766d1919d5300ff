//! The sandbox store looks codes up one by one even when the table's statistics have never seen
//! the integration (its codes arrive faster than autovacuum analyzes the table). Integration 1's
//! codes are analyzed; integration 2's are added after, with autovacuum off, so the planner
//! believes it holds hardly any. Each call must read a few rows per code
//! ([`tracking_db::rows_read_by`]); `lower(code) = any($3)` read all of integration 2's codes.

use std::collections::BTreeSet;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracking_db::{Database, PoolOptions, SchemaSpec, TestDb, rows_read_by};

use gateway_service::store::sandbox;

static SCHEMAS: &[SchemaSpec] = &[("gateway", gateway_service::MIGRATIONS)];

/// Integration 1's codes, analyzed.
const KNOWN: i64 = 20_000;
/// Integration 2's codes, added after the analyze.
const NEW: i64 = 30_000;
/// Codes per call.
const KEYS: i64 = 100;
/// Rows a call of `KEYS` codes may read, far below `NEW`.
const BOUND: i64 = 4 * KEYS;

async fn sql(conn: &mut AsyncPgConnection, sql: &str) {
    if let Err(err) = diesel::sql_query(sql).execute(conn).await {
        panic!("{sql}: {err}");
    }
}

async fn setup() -> (TestDb, Database) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = Database::new(
        test_db.url(),
        gateway_service::SCHEMA,
        PoolOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let insert = |integration: i64, count: i64| {
        format!(
            "insert into sandbox_discounts (brand_id, integration_id, code, external_ref, terms) \
             select 7, {integration}, 'I{integration}x' || g, 'ref-' || g, '{{}}' \
             from generate_series(1, {count}) g"
        )
    };
    sql(
        &mut conn,
        "alter table sandbox_discounts set (autovacuum_enabled = false)",
    )
    .await;
    sql(&mut conn, &insert(1, KNOWN)).await;
    sql(&mut conn, "analyze sandbox_discounts").await;
    sql(&mut conn, &insert(2, NEW)).await;
    (test_db, db)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test]
async fn held_and_disabled_codes_are_looked_up_code_by_code() {
    let (_test_db, db) = setup().await;
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let mut asked: Vec<String> = (1..=KEYS).map(|n| format!("i2x{n}")).collect();
    asked.push("nobody-has-this".to_owned());
    let expected: BTreeSet<String> = (1..=KEYS).map(|n| format!("i2x{n}")).collect();

    let (held, read) = rows_read_by(&mut conn, "sandbox_discounts", async |conn| {
        sandbox::held(conn, 7, 2, &asked).await
    })
    .await;
    assert_eq!(
        held.iter()
            .map(|row| row.code.to_lowercase())
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert!(held.iter().all(|row| row.active));
    assert!(read <= BOUND, "looking up {KEYS} codes read {read} rows");

    let (disabled, read) = rows_read_by(&mut conn, "sandbox_discounts", async |conn| {
        sandbox::disable(conn, 7, 2, &asked).await
    })
    .await;
    assert_eq!(disabled.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(read <= BOUND, "disabling {KEYS} codes read {read} rows");
    let inactive = diesel::sql_query(
        "select count(*) as n from sandbox_discounts where not active and disabled_at is not null",
    )
    .get_result::<Count>(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inactive.n, KEYS, "exactly the codes asked for are disabled");
}
