//! The sandbox store looks codes up one by one even when the table's statistics have never seen
//! the integration ([`tracking_db::stale_statistics`]): `lower(code) = any($3)` read all of the
//! new integration's codes.

use std::collections::BTreeSet;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use tracking_db::stale_statistics::{BOUND, KEYS, fill, rows_read_by};
use tracking_db::{Database, SchemaSpec, TestDb};

use gateway_service::store::sandbox;

static SCHEMAS: &[SchemaSpec] = &[("gateway", gateway_service::MIGRATIONS)];

/// Integration 1's codes analyzed, integration 2's unseen by the statistics.
async fn setup() -> (TestDb, Database) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "sandbox_discounts", |integration, count| {
        format!(
            "insert into sandbox_discounts (brand_id, integration_id, code, external_ref, terms) \
             select 7, {integration}, 'I{integration}x' || g, 'ref-' || g, '{{}}' \
             from generate_series(1, {count}) g"
        )
    })
    .await;
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
