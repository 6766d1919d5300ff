//! Reads of a brand's rows by a batch of keys probe the keys even when the table's statistics
//! have never seen the brand ([`tracking_db::stale_statistics`]): `brand_id = $1 and key =
//! any($2)` read all of the new brand's rows.

use std::collections::BTreeSet;

use tracking_db::stale_statistics::{BOUND, KEYS, NEW, fill, rows_read_by};
use tracking_db::{SchemaSpec, TestDb};

use attribution_service::store::{conversions, pending};

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
