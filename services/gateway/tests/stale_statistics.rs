//! The sandbox store looks codes up one by one even when the table's statistics have never seen
//! the integration ([`tracking_db::stale_statistics`]): `lower(code) = any($3)` read all of the
//! new integration's codes. Orders are looked up by their store id the same way, Amazon tags by
//! their whole key, and pages (changed orders, an integration's report rows) read their rows from
//! the index that holds them. The intake's group commits, planned once, probe only their keys
//! (also when they look for an order's return to an earlier state); a group whose plain insert
//! meets a stored order state stores nothing.

use std::collections::BTreeSet;

use chrono::{NaiveDate, TimeDelta};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use prost::Message;
use tracking_api::gateway::v1 as pb;
use tracking_db::stale_statistics::{
    BOUND, KEYS, KNOWN, NEW, execute, fill, one_connection, rows_read_by, rows_read_through,
};
use tracking_db::{Database, PoolOptions, SchemaSpec, Taken, TestDb};

use gateway_service::adapters::amazon::ReportRow;
use gateway_service::domain::amazon::TagSubject;
use gateway_service::domain::orders::{NormalizedOrder, OrderStatus};
use gateway_service::intake::{DeliveryKey, Incoming, Outcome, Submission};
use gateway_service::store::{amazon, orders, sandbox};

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

/// An order's stored body: a paid order of 100.00, `store_order_id`.
fn body(store_order_id: &str) -> Vec<u8> {
    pb::Order {
        store_order_id: store_order_id.to_owned(),
        status: pb::OrderStatus::Paid as i32,
        currency: "USD".to_owned(),
        subtotal_minor: 10_000,
        total_minor: 10_000,
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
    let hex = hex::encode(body);
    format!("'\\x{hex}'::bytea")
}

/// Fills `orders` with paid, unrefunded orders `o1`, `o2`, … of 90.00 (as [`delivery`]'s) as the
/// intake stores them, each brand's on its own integration ([`fill`]: brand 1's analyzed, brand
/// 2's unseen).
async fn fill_orders(conn: &mut diesel_async::AsyncPgConnection) {
    let unrefunded = literal(&body("any"));
    fill(conn, "orders", |brand, count| {
        format!(
            "insert into orders (brand_id, integration_id, store_order_id, status, total_minor, \
             source, body, store_updated_at) \
             select {brand}, {brand}, 'o' || g, 'paid', 9000, 'webhook', {unrefunded}, \
               '2025-11-01T00:00:00Z' \
             from generate_series(1, {count}) g"
        )
    })
    .await;
}

#[tokio::test]
async fn sandbox_orders_are_looked_up_by_their_store_id() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(
        &mut conn,
        "insert into integrations (brand_id, id, provider, name, credentials_sealed) values \
         (1, 1, 'PROVIDER_SANDBOX', 'known', '\\x00'), (2, 2, 'PROVIDER_SANDBOX', 'new', '\\x00')",
    )
    .await;
    fill(&mut conn, "sandbox_orders", |brand, count| {
        format!(
            "insert into sandbox_orders (brand_id, integration_id, store_order_id, body) \
             select {brand}, {brand}, 'o' || g, convert_to('o' || g, 'UTF8') \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    let wanted: Vec<i64> = (1..=KEYS / 2).map(|n| n * 500).collect();
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

/// Integration 1 of brand 1, analyzed; integrations 2 and 3 of brand 2, unseen by the statistics.
const INTEGRATIONS: &str = "insert into integrations (brand_id, id, provider, name, \
       credentials_sealed) values \
     (1, 1, 'PROVIDER_SANDBOX', 'known', '\\x00'), (2, 2, 'PROVIDER_SANDBOX', 'new', '\\x00'), \
     (2, 3, 'PROVIDER_SANDBOX', 'other', '\\x00')";

#[tokio::test]
async fn changed_orders_are_paged_from_the_index_by_change() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    // Order g of brand b changed at second g / 3 of month b of 2026: three orders a second.
    fill(&mut conn, "sandbox_orders", |brand, count| {
        format!(
            "insert into sandbox_orders (brand_id, integration_id, store_order_id, body, \
               updated_at) \
             select {brand}, {brand}, 'o' || g, convert_to('o' || g, 'UTF8'), \
               timestamptz '2026-0{brand}-01 00:00:00+00' + g / 3 * interval '1 second' \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    // The page of the orders changed at `second` or later: by change, then by store id.
    let page = |second: i64| {
        let mut changed: Vec<(i64, String)> = (1..=NEW)
            .filter(|g| g / 3 >= second)
            .map(|g| (g / 3, format!("o{g}")))
            .collect();
        changed.sort();
        changed
            .into_iter()
            .take(50)
            .map(|(_, order)| order.into_bytes())
            .collect::<Vec<_>>()
    };
    let february = NaiveDate::from_ymd_opt(2026, 2, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a time")
        .and_utc();

    for second in [0, 1000] {
        let since = february + TimeDelta::seconds(second);
        let (changed, read) = rows_read_by(&mut conn, "sandbox_orders", async |conn| {
            sandbox::orders_since(conn, 2, 2, since, 50).await
        })
        .await;
        let bodies: Vec<Vec<u8>> = changed.into_iter().map(|(body, _)| body).collect();
        assert_eq!(bodies, page(second), "orders changed from second {second}");
        assert!(read <= BOUND, "a page of changes read {read} orders");
    }
}

#[tokio::test]
async fn an_integrations_report_rows_are_paged_from_its_index() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = one_connection(&test_db, gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    // Brand 2's rows (ids `KNOWN + g`): integration 3's, then integration 2's last 1,000.
    fill(&mut conn, "amazon_report_rows", |brand, count| {
        let integration = if brand == 1 {
            "1".to_owned()
        } else {
            format!("case when g <= {count} - 1000 then 3 else 2 end")
        };
        format!(
            "insert into amazon_report_rows (brand_id, integration_id, tag_campaign_id, \
               tag_ad_group_id, tag_creative_id, day, purchases, sales_minor, currency) \
             select {brand}, {integration}, 'c' || g, 'a', 'x', date '2026-01-01', 1, g, 'USD' \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    drop(conn);
    let ids = |rows: &[amazon::ReportRowRecord]| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    let last = KNOWN + NEW;

    for (integration, after, expected) in [
        (2, None, last - 999..=last - 950),
        (2, Some(last - 10), last - 9..=last),
        (3, None, KNOWN + 1..=KNOWN + 50),
    ] {
        let (rows, read) = rows_read_through(&db, "amazon_report_rows", async |db| {
            amazon::list_report_rows(db, 2, integration, after, 50).await
        })
        .await;
        assert_eq!(
            ids(&rows),
            expected.collect::<Vec<_>>(),
            "integration {integration}"
        );
        assert!(
            read <= BOUND,
            "a page of integration {integration} read {read} rows"
        );
    }
}

/// Brand `brand`'s tags (integration `brand`): creator `g` of campaign `1000 * brand + g / 1000`,
/// Amazon ids `c{g}`, `a{g}`, `x{g}`.
fn tags(brand: i64, count: i64) -> String {
    format!(
        "insert into attribution_tags (brand_id, integration_id, campaign_id, creator_id, \
           tag_campaign_id, tag_ad_group_id, tag_creative_id, tag) \
         select {brand}, {brand}, 1000 * {brand} + g / 1000, g, 'c' || g, 'a' || g, 'x' || g, \
           't' || g \
         from generate_series(1, {count}) g"
    )
}

#[tokio::test]
async fn tags_are_read_creator_by_creator() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    fill(&mut conn, "attribution_tags", tags).await;
    let subject = |g: i64| TagSubject {
        campaign_id: 2000 + g / 1000,
        creator_id: g,
    };
    let creators: Vec<i64> = (1..=KEYS).map(|n| n * 250).collect();
    let mut subjects: Vec<TagSubject> = creators.iter().map(|&g| subject(g)).collect();
    subjects.push(subject(250)); // asked twice
    subjects.push(subject(NEW + 1)); // no tag
    subjects.push(TagSubject {
        campaign_id: 1000,
        creator_id: 7, // brand 1's
    });

    let (rows, read) = rows_read_by(&mut conn, "attribution_tags", async |conn| {
        amazon::tags(conn, 2, 2, &subjects).await
    })
    .await;
    let mut found: Vec<(i64, i64, String)> = rows
        .iter()
        .map(|r| (r.campaign_id, r.creator_id, r.tag.clone()))
        .collect();
    found.sort();
    let expected: Vec<(i64, i64, String)> = creators
        .iter()
        .map(|&g| (2000 + g / 1000, g, format!("t{g}")))
        .collect();
    assert_eq!(found, expected, "each creator's tag, once");
    assert!(read <= BOUND, "{KEYS} creators read {read} tags");
}

#[tokio::test]
async fn imported_report_rows_find_their_tags_row_by_row() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    fill(&mut conn, "attribution_tags", tags).await;
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a day");
    let mut rows: Vec<ReportRow> = (1..=KEYS)
        .map(|n| n * 250)
        .map(|g| ReportRow {
            campaign_id: format!("c{g}"),
            ad_group_id: format!("a{g}"),
            creative_id: format!("x{g}"),
            date: day,
            purchases: 1,
            sales_minor: 100,
            currency: "USD".to_owned(),
        })
        .collect();
    rows.push(ReportRow {
        campaign_id: "c-unknown".to_owned(), // no creator's tag
        ..rows[0].clone()
    });

    let (stored, read) = rows_read_by(&mut conn, "attribution_tags", async |conn| {
        amazon::store_report(conn, 2, 2, (day, day), &rows, true, chrono::Utc::now()).await
    })
    .await;
    let created = rows.len();
    assert_eq!(
        stored,
        amazon::Stored {
            reported: created,
            created,
            revised: 0,
            unchanged: 0,
        }
    );
    assert!(read <= BOUND, "importing {created} rows read {read} tags");
    let credited = diesel::sql_query(
        "select count(*) as n from amazon_report_rows where brand_id = 2 \
         and creator_id = substr(tag_creative_id, 2)::bigint \
         and campaign_id = 2000 + creator_id / 1000",
    )
    .get_result::<Count>(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(credited.n, KEYS, "each row of a tag credits its creator");
    let uncredited =
        diesel::sql_query("select count(*) as n from amazon_report_rows where creator_id is null")
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(uncredited.n, 1);
}

/// A webhook delivery of one paid order, `store_order_id`, of brand 2's integration 2.
fn delivery(delivery_id: &str, store_order_id: &str) -> Submission {
    Submission {
        orders: vec![Incoming {
            brand_id: 2,
            integration_id: 2,
            order: NormalizedOrder {
                store_order_id: store_order_id.to_owned(),
                status: OrderStatus::Paid,
                codes: vec!["ANNA10".to_owned()],
                click_id: None,
                currency: "USD".to_owned(),
                subtotal_minor: 10_000,
                discount_minor: 1_000,
                total_minor: 9_000,
                refunded_minor: 0,
                country: None,
                customer_hash: None,
                lines: Vec::new(),
                occurred_at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
                // Later than the stored states' (`fill_orders`): each stored one is looked at as
                // a possible return to an earlier state.
                updated_at: chrono::DateTime::from_timestamp(1_764_000_000, 0),
                test: false,
            },
        }],
        source: pb::OrderSource::Webhook,
        delivery: Some(DeliveryKey {
            brand_id: 2,
            integration_id: 2,
            id: delivery_id.to_owned(),
            topic: "orders/paid".to_owned(),
        }),
    }
}

/// Stores `submissions` as a group commit does (in a transaction of their own) and returns the
/// outcomes with the rows read from `table`.
async fn stored(
    conn: &mut diesel_async::AsyncPgConnection,
    table: &str,
    submissions: &[Submission],
) -> (Vec<Outcome>, i64) {
    rows_read_by(conn, table, async |conn| {
        orders::store(conn, submissions, Taken::Skip).await
    })
    .await
}

#[tokio::test]
async fn group_commits_planned_on_empty_tables_probe_only_their_keys_once_the_tables_grow() {
    let test_db = TestDb::new(SCHEMAS).await;
    // The group-commit pool: statements planned once, at their first execution.
    let options = PoolOptions::default().planned_once(1);
    let db = Database::new(test_db.url(), gateway_service::SCHEMA, options)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    // Planned while the tables are empty.
    let (first, _) = stored(&mut conn, "orders", &[delivery("first", "first")]).await;
    assert_eq!(first[0].accepted, 1);
    fill_orders(&mut conn).await;
    fill(&mut conn, "webhook_deliveries", |brand, count| {
        format!(
            "insert into webhook_deliveries (brand_id, integration_id, delivery_id, topic) \
             select {brand}, {brand}, 'd' || g, 'orders/paid' from generate_series(1, {count}) g"
        )
    })
    .await;
    // New deliveries of new orders, new deliveries of orders stored in that state already, and
    // redeliveries.
    let group: Vec<Submission> = (1..=KEYS)
        .map(|n| match n % 3 {
            0 => delivery(&format!("new{n}"), &format!("new{n}")),
            1 => delivery(&format!("new{n}"), &format!("o{}", n * 100)),
            _ => delivery(&format!("d{}", n * 100), &format!("o{}", n * 100)),
        })
        .collect();
    for table in ["orders", "webhook_deliveries"] {
        let (outcomes, read) = stored(&mut conn, table, &group).await;
        assert!(
            read <= BOUND,
            "a group of {KEYS} read {read} rows of {table}"
        );
        let counted = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as i64;
        if table == "orders" {
            assert_eq!(counted(|o| o.accepted == 1), KEYS / 3, "new orders");
            assert_eq!(
                counted(|o| o.duplicates == 1),
                (KEYS + 2) / 3,
                "states stored before"
            );
            assert_eq!(
                counted(|o| o.redelivery),
                (KEYS + 1) / 3,
                "deliveries seen before"
            );
        } else {
            assert_eq!(counted(|o| o.redelivery), KEYS, "the same group again");
        }
    }
}

#[tokio::test]
async fn a_plain_insert_meeting_a_stored_order_state_stores_nothing_of_its_group() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(gateway_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    execute(&mut conn, INTEGRATIONS).await;
    let store = async |conn: &mut diesel_async::AsyncPgConnection, group: &[Submission], taken| {
        conn.transaction::<_, tracking_db::DbError, _>(async |conn| {
            orders::store(conn, group, taken).await
        })
        .await
    };
    let first = store(&mut conn, &[delivery("d1", "o1")], Taken::Fail).await;
    assert_eq!(first.map(|o| o[0].accepted).ok(), Some(1));
    // o1 is stored in that state already: the group's plain insert fails, and nothing of the
    // group is kept (not even d2's new order, nor the deliveries).
    let group = [delivery("d2", "o2"), delivery("d3", "o1")];
    let failed = store(&mut conn, &group, Taken::Fail).await;
    assert!(
        matches!(failed, Err(tracking_db::DbError::UniqueViolation { .. })),
        "{failed:?}"
    );
    let counts = "select (select count(*) from webhook_deliveries) * 100 \
                    + (select count(*) from orders) * 10 + (select count(*) from events) as n";
    let count = async |conn: &mut diesel_async::AsyncPgConnection| {
        diesel::sql_query(counts)
            .get_result::<Count>(conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .n
    };
    assert_eq!(count(&mut conn).await, 111, "deliveries, orders, events");
    // Written again, skipping stored states: o2 is new, o1 a duplicate.
    let outcomes = store(&mut conn, &group, Taken::Skip)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes
            .iter()
            .map(|o| (o.accepted, o.duplicates, o.redelivery))
            .collect::<Vec<_>>(),
        [(1, 0, false), (0, 1, false)]
    );
    assert_eq!(count(&mut conn).await, 322);
}
