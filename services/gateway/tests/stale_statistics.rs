//! The sandbox store looks codes up one by one even when the table's statistics have never seen
//! the integration ([`tracking_db::stale_statistics`]): `lower(code) = any($3)` read all of the
//! new integration's codes. Orders are looked up by their store id the same way.

use std::collections::BTreeSet;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use prost::Message;
use tracking_api::gateway::v1 as pb;
use tracking_db::stale_statistics::{BOUND, KEYS, NEW, execute, fill, rows_read_by};
use tracking_db::{Database, SchemaSpec, TestDb};

use gateway_service::store::{orders, sandbox};

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

    let ids: Vec<i64> = held.iter().map(|row| row.id).collect();
    let ((), read) = rows_read_by(&mut conn, "sandbox_discounts", async |conn| {
        sandbox::reactivate(conn, 7, 2, &ids).await
    })
    .await;
    assert!(read <= BOUND, "reactivating {KEYS} codes read {read} rows");
    let inactive =
        diesel::sql_query("select count(*) as n from sandbox_discounts where not active")
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inactive.n, 0, "every disabled code is active again");
}

/// An order's stored body: `store_order_id` refunded by `refunded_minor` of 10,000.
fn body(store_order_id: &str, refunded_minor: i64) -> Vec<u8> {
    pb::Order {
        store_order_id: store_order_id.to_owned(),
        status: pb::OrderStatus::Paid as i32,
        currency: "USD".to_owned(),
        subtotal_minor: 10_000,
        total_minor: 10_000,
        refunded_minor,
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_764_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `body` as a bytea literal.
fn literal(body: &[u8]) -> String {
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    format!("'\\x{hex}'::bytea")
}

#[tokio::test]
async fn orders_are_looked_up_by_their_store_id() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into integrations (brand_id, id, provider, name, credentials_sealed) values \
         (1, 1, 'PROVIDER_SANDBOX', 'known', '\\x00'), (2, 2, 'PROVIDER_SANDBOX', 'new', '\\x00')",
    )
    .await;
    let unrefunded = literal(&body("any", 0));
    fill(&mut conn, "orders", |brand, count| {
        format!(
            "insert into orders (brand_id, integration_id, store_order_id, status, source, body) \
             select {brand}, {brand}, 'o' || g, 'ORDER_STATUS_PAID', 'webhook', {unrefunded} \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    fill(&mut conn, "sandbox_orders", |brand, count| {
        format!(
            "insert into sandbox_orders (brand_id, integration_id, store_order_id, body) \
             select {brand}, {brand}, 'o' || g, convert_to('o' || g, 'UTF8') \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    // Of the orders looked up, the even ones were refunded since: two later versions each.
    let wanted: Vec<i64> = (1..=KEYS / 2).map(|n| n * 500).collect();
    for &n in wanted.iter().filter(|n| *n % 2 == 0) {
        for refunded in [300, 200] {
            let body = literal(&body(&format!("o{n}"), refunded));
            execute(
                &mut conn,
                &format!(
                    "insert into orders (brand_id, integration_id, store_order_id, status, \
                       refunded_minor, source, body) \
                     values (2, 2, 'o{n}', 'ORDER_STATUS_PAID', {refunded}, 'webhook', {body})"
                ),
            )
            .await;
        }
    }

    let mut read = 0;
    for &n in &wanted {
        let id = format!("o{n}");
        let (latest, rows) = rows_read_by(&mut conn, "orders", async |conn| {
            orders::latest(conn, 2, 2, &id).await
        })
        .await;
        read += rows;
        let latest = latest.unwrap_or_else(|| panic!("order {id} is stored"));
        let expected = if n % 2 == 0 { 300 } else { 0 };
        assert_eq!(
            latest.refunded_minor, expected,
            "order {id}: the most refunded version"
        );
    }
    assert!(read <= BOUND, "{} orders read {read} rows", wanted.len());

    let mut read = 0;
    for &n in &wanted {
        let id = format!("o{n}");
        let (stored, rows) = rows_read_by(&mut conn, "sandbox_orders", async |conn| {
            sandbox::order(conn, 2, 2, &id).await
        })
        .await;
        read += rows;
        assert_eq!(stored.as_deref(), Some(id.as_bytes()));
    }
    let (absent, rows) = rows_read_by(&mut conn, "sandbox_orders", async |conn| {
        sandbox::order(conn, 2, 2, &format!("o{}", NEW + 1)).await
    })
    .await;
    assert!(absent.is_none());
    read += rows;
    assert!(
        read <= BOUND,
        "{} sandbox orders read {read} rows",
        wanted.len()
    );
}
