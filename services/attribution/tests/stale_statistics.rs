//! Reads of a brand's rows by a batch of keys probe the keys even when the table's statistics
//! have never seen the brand ([`tracking_db::stale_statistics`]): `brand_id = $1 and key =
//! any($2)` read all of the new brand's rows. The lookups by whole keys (`(brand_id, key) in
//! (select * from unnest(…))`) are checked the same way.

use std::collections::BTreeSet;

use tracking_db::stale_statistics::{BOUND, KEYS, NEW, fill, rows_read_by};
use tracking_db::{SchemaSpec, TestDb};

use attribution_service::store::{clicks, conversions, pending, projection};

static SCHEMAS: &[SchemaSpec] = &[("attribution", attribution_service::MIGRATIONS)];

#[tokio::test]
async fn orders_waiting_for_clicks_are_found_click_by_click() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // The event bytes are the order's number: the test reads back which orders it got.
    let insert = |brand: i64, count: i64| {
        format!(
            "insert into pending_orders (brand_id, integration_id, store_order_id, event, click_id) \
             select {brand}, {brand}, 'order-' || g, convert_to(g::text, 'UTF8'), \
               'click-{brand}-' || g \
             from generate_series(1, {count}) g"
        )
    };
    fill(&mut conn, "pending_orders", insert).await;

    let mut clicks: Vec<String> = (1..=KEYS).map(|n| format!("click-2-{n}")).collect();
    clicks.push("click-2-nobody".to_owned());
    clicks.push("click-1-1".to_owned()); // brand 1's: not this brand's order
    let ids: Vec<&str> = clicks.iter().map(String::as_str).collect();
    let (taken, read) = rows_read_by(&mut conn, "pending_orders", async |conn| {
        pending::take_for_clicks(conn, 2, &ids).await
    })
    .await;
    let taken: BTreeSet<String> = taken
        .into_iter()
        .map(|event| String::from_utf8_lossy(&event).into_owned())
        .collect();
    assert_eq!(taken, (1..=KEYS).map(|n| n.to_string()).collect());
    assert!(read <= BOUND, "{KEYS} clicks read {read} pending orders");

    let (again, _) = rows_read_by(&mut conn, "pending_orders", async |conn| {
        pending::take_for_clicks(conn, 2, &ids).await
    })
    .await;
    assert!(again.is_empty(), "taken orders are no longer pending");
}

#[tokio::test]
async fn adjustments_are_read_conversion_by_conversion() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let insert = |brand: i64, count: i64| {
        format!(
            "insert into adjustments (brand_id, conversion_id, revenue_minor, commission_minor, \
               reason) \
             select {brand}, g, -g, -1, 'refund' from generate_series(1, {count}) g"
        )
    };
    fill(&mut conn, "adjustments", insert).await;

    let mut ids: Vec<i64> = (1..=KEYS).map(|n| n * 7).collect();
    ids.push(NEW + 1); // no adjustment
    let (rows, read) = rows_read_by(&mut conn, "adjustments", async |conn| {
        conversions::adjustments(conn, 2, &ids).await
    })
    .await;
    assert_eq!(
        rows.iter()
            .map(|row| (row.conversion_id, row.revenue_minor))
            .collect::<Vec<_>>(),
        (1..=KEYS).map(|n| (n * 7, -n * 7)).collect::<Vec<_>>()
    );
    assert!(read <= BOUND, "{KEYS} conversions read {read} adjustments");
}

/// Codes of brand `brand` numbered 1..=`count`: code `C{brand}-{n}` (id n), integration `brand`.
fn codes(brand: i64, count: i64) -> String {
    format!(
        "insert into codes (brand_id, code_id, campaign_id, creator_id, plan_id, integration_id, \
           code, slug, active) \
         select {brand}, g, 1, g, 1, {brand}, 'C{brand}-' || g, 's{brand}-' || g, true \
         from generate_series(1, {count}) g"
    )
}

#[tokio::test]
async fn codes_are_read_by_id_and_by_text_code_by_code() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "codes", codes).await;
    let wanted: Vec<i64> = (1..=KEYS).map(|n| n * 11).collect();

    let mut ids: Vec<(i64, i64)> = wanted.iter().map(|&id| (2, id)).collect();
    ids.push((2, NEW + 1)); // no such code
    let (rows, read) = rows_read_by(&mut conn, "codes", async |conn| {
        projection::codes(conn, &ids).await
    })
    .await;
    let found: BTreeSet<i64> = rows.iter().map(|row| row.code_id).collect();
    assert_eq!(found, wanted.iter().copied().collect());
    assert!(read <= BOUND, "{KEYS} code ids read {read} codes");

    let texts: Vec<String> = wanted.iter().map(|id| format!("c2-{id}")).collect();
    let mut keys: Vec<(i64, i64, &str)> = texts.iter().map(|t| (2, 2, t.as_str())).collect();
    keys.push((2, 1, "c2-11")); // another integration's text
    keys.push((2, 2, "c1-11")); // brand 1's text
    let (rows, read) = rows_read_by(&mut conn, "codes", async |conn| {
        projection::codes_matching(conn, &keys).await
    })
    .await;
    let matched: Vec<(String, i64)> = rows
        .iter()
        .map(|row| (row.matched.clone(), row.code.code_id))
        .collect();
    let expected: BTreeSet<(String, i64)> =
        wanted.iter().map(|&id| (format!("c2-{id}"), id)).collect();
    assert_eq!(matched.len(), expected.len(), "each text matches once");
    assert_eq!(matched.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(read <= BOUND, "{KEYS} code texts read {read} codes");
}

#[tokio::test]
async fn clicks_are_read_click_by_click() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let insert = |brand: i64, count: i64| {
        format!(
            "insert into clicks (brand_id, click_id, code_id, integration_id, campaign_id, \
               creator_id, plan_id, clicked_at) \
             select {brand}, 'click-' || g, g, {brand}, 1, g, 1, now() \
             from generate_series(1, {count}) g"
        )
    };
    fill(&mut conn, "clicks", insert).await;

    let mut wanted: Vec<String> = (1..=KEYS).map(|n| format!("click-{}", n * 13)).collect();
    wanted.push(format!("click-{}", NEW + 1)); // no such click
    let ids: Vec<(i64, &str)> = wanted.iter().map(|c| (2, c.as_str())).collect();
    let (rows, read) = rows_read_by(&mut conn, "clicks", async |conn| {
        clicks::by_ids(conn, &ids).await
    })
    .await;
    let found: BTreeSet<i64> = rows.iter().map(|row| row.code_id).collect();
    assert_eq!(found, (1..=KEYS).map(|n| n * 13).collect());
    assert!(rows.iter().all(|row| row.brand_id == 2));
    assert!(read <= BOUND, "{KEYS} click ids read {read} clicks");
}

#[tokio::test]
async fn pending_orders_are_read_order_by_order() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let insert = |brand: i64, count: i64| {
        format!(
            "insert into pending_orders (brand_id, integration_id, store_order_id, event) \
             select {brand}, {brand}, 'order-' || g, convert_to(g::text, 'UTF8') \
             from generate_series(1, {count}) g"
        )
    };
    fill(&mut conn, "pending_orders", insert).await;

    let mut orders: Vec<(i64, i64, String)> = (1..=KEYS)
        .map(|n| (2, 2, format!("order-{}", n * 17)))
        .collect();
    orders.push((2, 2, format!("order-{}", NEW + 1))); // not pending
    orders.push((2, 1, "order-17".to_owned())); // another integration's order
    let (rows, read) = rows_read_by(&mut conn, "pending_orders", async |conn| {
        pending::get(conn, &orders).await
    })
    .await;
    let found: BTreeSet<String> = rows.into_iter().map(|(key, _)| key.2).collect();
    assert_eq!(
        found,
        (1..=KEYS).map(|n| format!("order-{}", n * 17)).collect()
    );
    assert!(read <= BOUND, "{KEYS} orders read {read} pending orders");
}
