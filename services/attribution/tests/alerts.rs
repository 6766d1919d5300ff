//! Leak alerts, raised again for a code: the alert keeps one row per (brand, code, kind) and
//! shows the code's text now.

use chrono::Utc;
use diesel_async::AsyncConnection;
use tracking_db::{DbError, SchemaSpec, TestDb};

use attribution_service::store::alerts::{self, AlertRow};

static SCHEMAS: &[SchemaSpec] = &[("attribution", attribution_service::MIGRATIONS)];

fn alert(code: &str, orders: i64) -> AlertRow {
    AlertRow {
        brand_id: 1,
        code_id: 5,
        kind: "orders_without_clicks".to_owned(),
        campaign_id: 20,
        creator_id: 7,
        code: code.to_owned(),
        evidence: format!("{orders} orders without a click"),
        orders,
        orders_without_click: orders,
        day: None,
        day_orders: 0,
        baseline_milli: 0,
        raised_at: Utc::now(),
        id: 0,
    }
}

#[tokio::test]
async fn an_alert_raised_again_after_an_edit_shows_the_codes_new_text() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    for row in [alert("ANNA10", 12), alert("ANNA10X", 30)] {
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        conn.transaction::<_, DbError, _>(async |conn| alerts::raise(conn, &[row]).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let listed = alerts::list(&db, 1, None, None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen: Vec<(&str, i64)> = listed.iter().map(|a| (a.code.as_str(), a.orders)).collect();
    assert_eq!(seen, vec![("ANNA10X", 30)]);
}
