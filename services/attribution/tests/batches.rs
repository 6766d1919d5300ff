//! Order events applied a batch at a time (one transaction, set-based statements) must leave
//! exactly what applying them one at a time leaves. Each scenario runs on two fresh databases,
//! event by event (one transaction each) on one and as one batch on the other, and every table
//! attribution writes is compared: conversions, adjustments, daily figures, leak counts and
//! alerts, pending orders and the conversion events. Figures are also checked against values
//! worked out by hand. The last test, on the same fixtures, forgets orders that waited too long.

use chrono::{DateTime, Duration, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bytea, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use prost::Message;
use tracking_api::attribution::v1::{ConversionEvent, ConversionStatus};
use tracking_api::gateway::v1::{Order, OrderEvent, OrderLine, OrderStatus};
use tracking_api::mint::v1::{
    Code, CodeChange as Renamed, CodeEvent, CodeStatus, MANUAL, STORE_COLLISION,
};
use tracking_api::plan::v1::{Commission, Plan, PlanEvent, commission, plan_event};
use tracking_db::{Database, DbError, SchemaSpec, Taken, TestDb};
use tracking_events::Apply;

use attribution_service::attribute::{Orders, approve_due, retry_pending};
use attribution_service::domain::attribution::PENDING_WAIT;
use attribution_service::projection::{Codes, Plans};
use attribution_service::store::clicks::{self, ClickRow};
use attribution_service::store::pending;
use attribution_service::store::projection::{self, CodeChange, CodeRow, PlanRow};

static SCHEMAS: &[SchemaSpec] = &[("attribution", attribution_service::MIGRATIONS)];

const INTEGRATION: i64 = 100;

/// When every test order is placed (2025-11-24T16:00:00Z); received a minute later.
fn placed() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default()
}

fn ts(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

/// Runs `$body` in a transaction of `$store`, with `$conn` the transaction's connection.
macro_rules! tx {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let mut conn = $store.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        conn.transaction::<_, DbError, _>(async |$conn| $body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }};
}

struct Store {
    db: Database,
    _test_db: TestDb,
}

async fn store() -> Store {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let store = Store {
        db,
        _test_db: test_db,
    };
    tx!(store, |conn| {
        // Brand 1: plan 10 (10 %, 30 days' holding) for campaign 20 with Anna's and Bob's
        // codes; plan 11 (20 %, approved when paid) for campaign 21; plan 12 shared by
        // campaigns 22 and 23; plan 13 (5.00 USD per order) for campaign 24.
        // Brand 2: its own plan 10 (5 %) and campaign 20, with a code spelled like Anna's.
        for (brand, plan, bps, fixed, holding) in [
            (1, 10, Some(1000), None, 30),
            (1, 11, Some(2000), None, 0),
            (1, 12, Some(1000), None, 30),
            (1, 13, None, Some(500), 30),
            (2, 10, Some(500), None, 30),
        ] {
            let row = plan_row(brand, plan, bps, fixed, holding);
            projection::upsert_plan(conn, &row, placed() - Duration::days(1)).await?;
        }
        for (brand, campaign, plan) in [
            (1, 20, 10),
            (1, 21, 11),
            (1, 22, 12),
            (1, 23, 12),
            (1, 24, 13),
            (2, 20, 10),
        ] {
            projection::upsert_campaign(conn, brand, campaign, plan, false).await?;
        }
        let codes: Vec<_> = [
            (1, 1, 20, 501, 10, "ANNA10"),
            (1, 2, 20, 502, 10, "BOB10"),
            (1, 3, 21, 503, 11, "CARL0"),
            (1, 4, 22, 504, 12, "DORA5"),
            (1, 5, 24, 505, 13, "EVA"),
            (1, 16, 21, 501, 11, "ANNA20"),
            (1, 17, 23, 504, 12, "DORA6"),
            // A code of plan 11 left in campaign 20 from before it was linked to plan 10.
            (1, 31, 20, 501, 11, "ANNAOLD"),
            // Fay's codes: plan 11's has the lower code id.
            (1, 32, 21, 506, 11, "FAY20"),
            (1, 33, 20, 506, 10, "FAY10"),
            (2, 1, 20, 601, 10, "anna10"),
        ]
        .into_iter()
        .map(
            |(brand, code_id, campaign, creator, plan, code)| CodeChange {
                row: code_row(brand, code_id, campaign, creator, plan, code),
                changed_at: placed() - Duration::days(1),
                renamed_from: String::new(),
                collided: false,
            },
        )
        .collect();
        projection::upsert_codes(conn, &codes).await?;
        // Anna's link was clicked an hour before the orders.
        clicks::insert(
            conn,
            &[click("c_anna", 1, 20, 501, placed() - Duration::hours(1))],
            Taken::Skip,
        )
        .await?;
        Ok(())
    });
    store
}

fn plan_row(brand: i64, plan: i64, bps: Option<i32>, fixed: Option<i64>, holding: i32) -> PlanRow {
    PlanRow {
        brand_id: brand,
        plan_id: plan,
        integration_id: INTEGRATION,
        provider: "SANDBOX".to_owned(),
        commission_bps: bps,
        commission_fixed_minor: fixed,
        commission_currency: fixed.map(|_| "USD".to_owned()),
        attribution_window_days: 30,
        holding_period_days: holding,
        ends_at: None,
        report_visible: false,
    }
}

fn code_row(
    brand: i64,
    code_id: i64,
    campaign: i64,
    creator: i64,
    plan: i64,
    code: &str,
) -> CodeRow {
    CodeRow {
        brand_id: brand,
        code_id,
        campaign_id: campaign,
        creator_id: creator,
        plan_id: plan,
        integration_id: INTEGRATION,
        code: code.to_owned(),
        slug: format!("s{brand}x{code_id}"),
        destination_url: "https://shop.example/".to_owned(),
        expires_at: None,
        active: true,
        version: 0,
        text_since: Some(placed() - Duration::days(90)),
    }
}

fn click(id: &str, code_id: i64, campaign: i64, creator: i64, at: DateTime<Utc>) -> ClickRow {
    ClickRow {
        brand_id: 1,
        click_id: id.to_owned(),
        code_id,
        integration_id: INTEGRATION,
        campaign_id: campaign,
        creator_id: creator,
        plan_id: 10,
        clicked_at: at,
        referrer_host: String::new(),
        country: String::new(),
        agent_class: "mobile".to_owned(),
        visitor_hash: String::new(),
    }
}

impl Store {
    async fn one_at_a_time(&self, events: &[OrderEvent]) {
        for (n, event) in events.iter().enumerate() {
            tx!(self, |conn| Orders.apply(conn, n as i64 + 1, event).await);
        }
    }

    async fn as_one_batch(&self, events: &[OrderEvent]) {
        let batch: Vec<(i64, OrderEvent)> = events
            .iter()
            .enumerate()
            .map(|(n, e)| (n as i64 + 1, e.clone()))
            .collect();
        tx!(self, |conn| Orders.apply_batch(conn, &batch).await);
    }

    async fn lines(&self, sql: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Line {
            #[diesel(sql_type = Text)]
            line: String,
        }
        let mut conn = self.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<Line> = diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.line).collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let row: Count = diesel::sql_query(sql)
            .get_result(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }

    /// Every row attribution writes, less the times the database stamps on them, and every
    /// conversion event (less its update time), in order.
    async fn snapshot(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (table, without, order) in [
            ("conversions", "'created_at' - 'updated_at'", "id"),
            ("adjustments", "'at'", "brand_id, conversion_id, id"),
            (
                "daily_sales",
                "'-'",
                "brand_id, campaign_id, creator_id, day, currency",
            ),
            ("code_daily", "'-'", "brand_id, code_id, day"),
            // Same order, but not the same ids: an upsert takes a number even when it updates.
            ("code_alerts", "'raised_at' - 'id'", "id"),
            (
                "pending_orders",
                "'received_at'",
                "brand_id, integration_id, store_order_id",
            ),
        ] {
            all.extend(
                self.lines(&format!(
                    "select '{table} ' || (to_jsonb(t) - {without})::text as line from {table} t order by {order}"
                ))
                .await,
            );
        }
        for mut event in self.events().await {
            if let Some(conversion) = event.conversion.as_mut() {
                conversion.updated_at = None;
                for adjustment in &mut conversion.adjustments {
                    adjustment.at = None;
                }
            }
            all.push(format!("event {event:?}"));
        }
        all
    }

    /// The events written, in order.
    async fn events(&self) -> Vec<ConversionEvent> {
        #[derive(QueryableByName)]
        struct Payload {
            #[diesel(sql_type = Bytea)]
            payload: Vec<u8>,
        }
        let mut conn = self.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let events: Vec<Payload> = diesel::sql_query("select payload from events order by seq")
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        events
            .iter()
            .map(|e| {
                ConversionEvent::decode(e.payload.as_slice()).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }
}

/// An order of `brand` with `codes` (one line per code), `total_minor` after a 10.00 discount.
fn order(
    brand: i64,
    id: &str,
    status: OrderStatus,
    codes: &[&str],
    total: i64,
    refunded: i64,
) -> OrderEvent {
    let lines = codes.len().max(1) as i64;
    OrderEvent {
        seq: 0,
        brand_id: brand,
        order: Some(Order {
            integration_id: INTEGRATION,
            store_order_id: id.to_owned(),
            status: status as i32,
            codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            currency: "EUR".to_owned(),
            subtotal_minor: total + 1_000,
            discount_minor: 1_000,
            total_minor: total,
            refunded_minor: refunded,
            lines: (0..lines as usize)
                .map(|i| OrderLine {
                    product_id: format!("p{i}"),
                    quantity: 1,
                    amount_minor: (total + 1_000) / lines,
                    discount_minor: 1_000 / lines,
                    codes: codes
                        .get(i)
                        .map(|c| vec![(*c).to_owned()])
                        .unwrap_or_default(),
                    ..Default::default()
                })
                .collect(),
            occurred_at: Some(ts(placed())),
            ..Default::default()
        }),
        source: 0,
        received_at: Some(ts(placed() + Duration::minutes(1))),
        report_row: None,
    }
}

fn with_click(mut event: OrderEvent, click_id: &str) -> OrderEvent {
    if let Some(order) = event.order.as_mut() {
        order.click_id = click_id.to_owned();
    }
    event
}

fn test_order(mut event: OrderEvent) -> OrderEvent {
    if let Some(order) = event.order.as_mut() {
        order.test = true;
    }
    event
}

/// Runs `events` one at a time on one database and as one batch on another; both must agree.
async fn both_ways(events: &[OrderEvent]) -> (Store, Store) {
    let (single, batched) = (store().await, store().await);
    single.one_at_a_time(events).await;
    batched.as_one_batch(events).await;
    assert_same(&single, &batched).await;
    (single, batched)
}

async fn assert_same(single: &Store, batched: &Store) {
    let (one, all) = (single.snapshot().await, batched.snapshot().await);
    for (a, b) in one.iter().zip(&all) {
        assert_eq!(a, b, "one at a time (left) and as one batch (right) differ");
    }
    assert_eq!(one.len(), all.len(), "{one:#?}\nagainst\n{all:#?}");
}

#[tokio::test]
async fn several_events_of_one_order_in_one_batch_chain_as_if_applied_one_at_a_time() {
    use OrderStatus::*;
    let events = vec![
        // Through its whole life in one batch: reversed in the end.
        order(1, "A1", Created, &["anna10"], 10_000, 0),
        order(1, "A1", Paid, &["anna10"], 10_000, 0),
        order(1, "A1", PartiallyRefunded, &["anna10"], 10_000, 2_000),
        order(1, "A1", Refunded, &["anna10"], 10_000, 10_000),
        // Approved when paid (no holding period), then refunds are adjustments.
        order(1, "A2", Paid, &["carl0"], 10_000, 0),
        order(1, "A2", PartiallyRefunded, &["carl0"], 10_000, 5_000),
        order(1, "A2", Cancelled, &["carl0"], 10_000, 5_000),
        // Two creators' codes, each on its own line.
        order(1, "A3", Paid, &["Anna10", "bob10"], 8_000, 0),
        // A shared plan: recorded in both campaigns, then partly refunded in both.
        order(1, "A4", Paid, &["DORA5"], 6_000, 0),
        order(1, "A4", PartiallyRefunded, &["DORA5"], 6_000, 3_000),
        // An unknown code: waits, replaced by its later state, a stale state changes nothing.
        order(1, "A5", Created, &["LATER1"], 4_000, 0),
        order(1, "A5", Paid, &["LATER1"], 4_000, 0),
        order(1, "A5", Created, &["LATER1"], 4_000, 0),
        // Waiting, then cancelled: waits at its cancelled state (nothing owed if its code
        // comes, and a late older state changes nothing).
        order(1, "A6", Paid, &["nobody"], 4_000, 0),
        order(1, "A6", Cancelled, &["nobody"], 4_000, 0),
        // A fixed commission in its own currency.
        order(1, "A7", Paid, &["EVA"], 2_000, 0),
        // Test orders and orders with no code or click are never attributed.
        test_order(order(1, "A8", Paid, &["anna10"], 9_000, 0)),
        order(1, "A9", Paid, &[], 9_000, 0),
        // Created then cancelled.
        order(1, "A10", Created, &["bob10"], 1_000, 0),
        order(1, "A10", Cancelled, &["bob10"], 1_000, 0),
        // By click, within the window.
        with_click(order(1, "A11", Paid, &[], 5_000, 0), "c_anna"),
        // Cancelled first, its paid state arriving late: nothing is owed.
        order(1, "A12", Cancelled, &["anna10"], 3_000, 0),
        order(1, "A12", Paid, &["anna10"], 3_000, 0),
    ];
    let (single, batched) = both_ways(&events).await;

    for store in [&single, &batched] {
        let status = |id: &str| {
            format!(
                "select status || ' ' || order_status || ' ' || revenue_minor || ' ' || commission_minor \
                 || ' ' || adjusted_revenue_minor || ' ' || adjusted_commission_minor || ' ' || method \
                 || ' ' || campaign_id || ' ' || creator_id as line \
                 from conversions where store_order_id = '{id}' order by id"
            )
        };
        assert_eq!(
            store.lines(&status("A1")).await,
            ["reversed refunded 0 800 0 0 code 20 501"]
        );
        assert_eq!(
            store.lines(&status("A2")).await,
            ["approved cancelled 10000 2000 -10000 -2000 code 21 503"]
        );
        assert_eq!(
            store
                .lines(
                    "select revenue_minor || ' ' || commission_minor || ' ' || reason as line \
                        from adjustments order by id"
                )
                .await,
            [
                "-5000 -1000 partial refund after approval",
                "-5000 -1000 order cancelled after approval"
            ]
        );
        // Each of A2's events carries the adjustments it had then.
        let announced: Vec<usize> = store
            .events()
            .await
            .iter()
            .filter_map(|e| e.conversion.as_ref())
            .filter(|c| c.store_order_id == "A2")
            .map(|c| c.adjustments.len())
            .collect();
        assert_eq!(announced, [0, 1, 2]);
        assert_eq!(
            store.lines(&status("A3")).await,
            [
                "pending paid 4000 400 0 0 code 20 501",
                "pending paid 4000 400 0 0 code 20 502"
            ]
        );
        assert_eq!(
            store.lines(&status("A4")).await,
            [
                "pending partially_refunded 3000 300 0 0 code 22 504",
                "pending partially_refunded 3000 300 0 0 code 23 504"
            ]
        );
        assert_eq!(
            store
                .lines(
                    "select commission_minor || ' ' || commission_currency as line \
                        from conversions where store_order_id = 'A7'"
                )
                .await,
            ["500 USD"]
        );
        assert_eq!(
            store.lines(&status("A10")).await,
            ["reversed cancelled 0 100 0 0 code 20 502"]
        );
        assert_eq!(
            store.lines(&status("A11")).await,
            ["pending paid 5000 500 0 0 click 20 501"]
        );
        assert_eq!(
            store.lines(&status("A12")).await,
            ["reversed cancelled 0 300 0 0 code 20 501"]
        );
        assert_eq!(
            store.count("select count(*) as n from conversions where store_order_id in ('A5', 'A6', 'A8', 'A9')").await,
            0
        );
        assert_eq!(
            store
                .lines(
                    "select store_order_id || ' ' || codes_lower::text as line from pending_orders"
                )
                .await,
            ["A5 {later1}", "A6 {nobody}"]
        );
        // Campaign 20, brand 1: A3's two shares and A11 are live; A1 (800 still owed after its
        // partial refund), A10 (100) and A12 (300) were reversed.
        assert_eq!(
            store
                .lines("select sum(orders) || ' ' || sum(revenue_minor) || ' ' || sum(commission_pending_minor) \
                        || ' ' || sum(commission_reversed_minor) as line \
                        from daily_sales where brand_id = 1 and campaign_id = 20")
                .await,
            ["3 13000 1300 1200"]
        );
        // Campaign 21: A2, approved and then cancelled, is no order any more (its approved
        // commission stays, and the cancellation's adjustment takes it back).
        assert_eq!(
            store
                .lines(
                    "select sum(orders) || ' ' || sum(code_uses) || ' ' || sum(revenue_minor) \
                        || ' ' || sum(discount_minor) || ' ' || sum(commission_approved_minor) \
                        || ' ' || sum(commission_adjusted_minor) as line \
                        from daily_sales where brand_id = 1 and campaign_id = 21"
                )
                .await,
            ["0 0 0 0 2000 -2000"]
        );
        // One event per change: A1 ×4, A2 ×3, A3 ×2, A4 ×4, A7, A10 ×2, A11, A12 (its late paid
        // state changes nothing).
        assert_eq!(store.count("select count(*) as n from events").await, 18);
    }

    // The code A5 waited for arrives: A5 is attributed in its latest state.
    let code = CodeEvent {
        seq: 0,
        brand_id: 1,
        kind: 0,
        occurred_at: None,
        code: Some(Code {
            id: 6,
            campaign_id: 20,
            creator_id: 506,
            plan_id: 10,
            integration_id: INTEGRATION,
            code: "Later1".to_owned(),
            status: CodeStatus::Active as i32,
            // Active at the store before A5 was placed; its event reaches attribution late.
            updated_at: Some(ts(placed() - Duration::days(1))),
            ..Default::default()
        }),
    };
    for store in [&single, &batched] {
        tx!(store, |conn| Codes.apply(conn, 1, &code).await);
        assert_eq!(
            store
                .lines(
                    "select status || ' ' || order_status || ' ' || creator_id as line \
                        from conversions where store_order_id = 'A5'"
                )
                .await,
            ["pending paid 506"]
        );
        assert_eq!(
            store
                .lines("select store_order_id as line from pending_orders")
                .await,
            ["A6"],
            "A6 still waits for its code"
        );
    }
    assert_same(&single, &batched).await;

    // The holding period ends: everything pending and paid is approved, in one batch.
    for store in [&single, &batched] {
        let approved = tx!(store, |conn| {
            approve_due(conn, placed() + Duration::days(31), 500).await
        });
        assert_eq!(approved, 7, "A3 ×2, A4 ×2, A5, A7, A11");
    }
    assert_same(&single, &batched).await;
}

#[tokio::test]
async fn a_batch_mixing_brands_keeps_each_brands_orders_apart() {
    use OrderStatus::*;
    // The same store order id and the same code text in two brands.
    let events = vec![
        order(1, "M1", Paid, &["anna10"], 10_000, 0),
        order(2, "M1", Paid, &["ANNA10"], 10_000, 0),
        order(2, "M1", Refunded, &["ANNA10"], 10_000, 10_000),
        order(2, "M2", Paid, &["bob10"], 10_000, 0),
    ];
    let (single, batched) = both_ways(&events).await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines("select brand_id || ' ' || creator_id || ' ' || status || ' ' || commission_minor as line \
                        from conversions order by brand_id")
                .await,
            ["1 501 pending 1000", "2 601 reversed 500"]
        );
        assert_eq!(
            store
                .lines(
                    "select brand_id || ' ' || orders || ' ' || commission_pending_minor || ' ' \
                        || commission_reversed_minor as line from daily_sales order by brand_id"
                )
                .await,
            ["1 1 1000 0", "2 0 0 500"]
        );
        // Bob's code is brand 1's: brand 2's order waits for a code of its own.
        assert_eq!(
            store
                .lines("select brand_id || ' ' || store_order_id as line from pending_orders")
                .await,
            ["2 M2"]
        );
    }
}

#[tokio::test]
async fn duplicate_events_in_a_batch_and_across_batches_change_nothing() {
    use OrderStatus::*;
    let paid = order(1, "D1", Paid, &["bob10"], 10_000, 0);
    let refunded = order(1, "D1", PartiallyRefunded, &["bob10"], 10_000, 1_000);
    let events = vec![
        paid.clone(),
        paid.clone(),
        order(1, "D1", Created, &["bob10"], 10_000, 0),
        refunded.clone(),
        refunded.clone(),
    ];
    let (single, batched) = both_ways(&events).await;
    // Redelivered in a later batch.
    single.one_at_a_time(&events).await;
    batched.as_one_batch(&events).await;
    assert_same(&single, &batched).await;
    for store in [&single, &batched] {
        assert_eq!(
            store.count("select count(*) as n from conversions").await,
            1
        );
        assert_eq!(
            store.count("select count(*) as n from events").await,
            2,
            "paid, refunded"
        );
        assert_eq!(
            store
                .lines("select orders || ' ' || revenue_minor || ' ' || commission_pending_minor as line \
                        from daily_sales")
                .await,
            ["1 9000 900"]
        );
        assert_eq!(
            store
                .lines("select orders::text as line from code_daily")
                .await,
            ["1"]
        );
    }
}

#[tokio::test]
async fn leak_alerts_count_every_order_of_a_batch_in_turn() {
    // Bob's code had one order ten days ago; today twelve, with no click on his links (Anna's
    // link was clicked, so her orders are not counted as without click).
    let mut events = Vec::new();
    for n in 0..12 {
        events.push(order(
            1,
            &format!("L{n}"),
            OrderStatus::Paid,
            &["bob10"],
            1_000,
            0,
        ));
    }
    for n in 0..3 {
        events.push(order(
            1,
            &format!("K{n}"),
            OrderStatus::Paid,
            &["anna10"],
            1_000,
            0,
        ));
    }
    let (single, batched) = (store().await, store().await);
    for store in [&single, &batched] {
        let mut earlier = order(1, "L-old", OrderStatus::Paid, &["bob10"], 1_000, 0);
        if let Some(order) = earlier.order.as_mut() {
            order.occurred_at = Some(ts(placed() - Duration::days(10)));
        }
        tx!(store, |conn| Orders.apply(conn, 1, &earlier).await);
    }
    single.one_at_a_time(&events).await;
    batched.as_one_batch(&events).await;
    assert_same(&single, &batched).await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines("select kind || ': ' || evidence as line from code_alerts order by id")
                .await,
            [
                "orders_without_clicks: 13 of 13 orders had no click on the creator's links before them",
                "spike: 12 orders on 2025-11-24, against 0.035 a day over the 28 days before",
            ]
        );
        assert_eq!(
            store
                .lines("select code_id || ' ' || day || ' ' || orders || ' ' || orders_without_click as line \
                        from code_daily order by code_id, day")
                .await,
            ["1 2025-11-24 3 0", "2 2025-11-14 1 1", "2 2025-11-24 12 12"]
        );
    }
}

#[tokio::test]
async fn only_orders_placed_after_a_click_count_as_clicked() {
    // Anna's link was clicked at 13:00 and 15:00. In one batch, her orders at 14:00 (between
    // the clicks), 15:30 and 16:00 (after both), one 40 days before (no click in the 30 days
    // before it) and one 31 days after the last click.
    let at = |id: &str, when: DateTime<Utc>| {
        let mut event = order(1, id, OrderStatus::Paid, &["anna10"], 1_000, 0);
        if let Some(order) = event.order.as_mut() {
            order.occurred_at = Some(ts(when));
        }
        event
    };
    let events = [
        at("A-late", placed() - Duration::hours(1) + Duration::days(31)),
        at("A-between", placed() - Duration::hours(2)),
        at("A-long-before", placed() - Duration::days(40)),
        at("A-after", placed() - Duration::minutes(30)),
        at("A-now", placed()),
    ];
    let (single, batched) = (store().await, store().await);
    for store in [&single, &batched] {
        tx!(store, |conn| {
            let early = click("c_anna_early", 1, 20, 501, placed() - Duration::hours(3));
            clicks::insert(conn, &[early], Taken::Skip).await?;
            Ok(())
        });
    }
    single.one_at_a_time(&events).await;
    batched.as_one_batch(&events).await;
    assert_same(&single, &batched).await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines(
                    "select day || ' ' || orders || ' ' || orders_without_click as line \
                        from code_daily where code_id = 1 order by day"
                )
                .await,
            ["2025-10-15 1 1", "2025-11-24 3 0", "2025-12-25 1 1"]
        );
    }
}

/// A code event of brand 1's code `id` with `text`, as of `at`.
/// `event` with its order placed at `at`.
fn placed_at(mut event: OrderEvent, at: DateTime<Utc>) -> OrderEvent {
    if let Some(order) = event.order.as_mut() {
        order.occurred_at = Some(ts(at));
    }
    event
}

fn code_event(id: i64, creator: i64, text: &str, at: DateTime<Utc>) -> CodeEvent {
    CodeEvent {
        seq: 0,
        brand_id: 1,
        kind: 0,
        occurred_at: None,
        code: Some(Code {
            id,
            campaign_id: 20,
            creator_id: creator,
            plan_id: 10,
            integration_id: INTEGRATION,
            code: text.to_owned(),
            status: CodeStatus::Active as i32,
            updated_at: Some(ts(at)),
            ..Default::default()
        }),
    }
}

/// `event` with the brand's renames `(from, to, at)` as its history.
fn edited(mut event: CodeEvent, renames: &[(&str, &str, DateTime<Utc>)]) -> CodeEvent {
    if let Some(code) = event.code.as_mut() {
        code.history = renames
            .iter()
            .map(|(from, to, at)| Renamed {
                from_code: (*from).to_owned(),
                to_code: (*to).to_owned(),
                reason: MANUAL.to_owned(),
                changed_at: Some(ts(*at)),
                ..Default::default()
            })
            .collect();
    }
    event
}

#[tokio::test]
async fn code_events_in_one_batch_end_as_if_applied_one_at_a_time() {
    use OrderStatus::*;
    let (single, batched) = (store().await, store().await);
    // Orders with codes attribution does not know yet wait for them.
    let waiting = [
        order(1, "W1", Paid, &["LATER1"], 5_000, 0),
        order(1, "W2", Paid, &["later2"], 7_000, 0),
    ];
    single.one_at_a_time(&waiting).await;
    batched.one_at_a_time(&waiting).await;
    // The codes arrive; code 7 is renamed twice within the batch (R1 until an hour after the
    // orders, then R2, then R3).
    let codes = [
        code_event(6, 506, "Later1", placed() - Duration::days(2)),
        code_event(7, 507, "R1", placed() - Duration::days(2)),
        code_event(8, 508, "Later2", placed() - Duration::days(2)),
        edited(
            code_event(7, 507, "R2", placed() + Duration::hours(1)),
            &[("R1", "R2", placed() + Duration::hours(1))],
        ),
        edited(
            code_event(7, 507, "R3", placed() + Duration::hours(2)),
            &[
                ("R1", "R2", placed() + Duration::hours(1)),
                ("R2", "R3", placed() + Duration::hours(2)),
            ],
        ),
    ];
    for (n, event) in codes.iter().enumerate() {
        tx!(single, |conn| Codes.apply(conn, n as i64 + 1, event).await);
    }
    let batch: Vec<(i64, CodeEvent)> = codes
        .iter()
        .enumerate()
        .map(|(n, e)| (n as i64 + 1, e.clone()))
        .collect();
    tx!(batched, |conn| Codes.apply_batch(conn, &batch).await);
    // A late order placed while code 7 read R1 is still code 7's.
    let late = [order(1, "L1", Paid, &["r1"], 3_000, 0)];
    single.one_at_a_time(&late).await;
    batched.one_at_a_time(&late).await;
    assert_same(&single, &batched).await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines(
                    "select store_order_id || ' ' || creator_id as line \
                        from conversions order by store_order_id"
                )
                .await,
            ["L1 507", "W1 506", "W2 508"]
        );
        assert_eq!(
            store
                .lines(
                    "select code_id || ' ' || code_lower || ' ' || valid_until as line \
                        from code_texts order by valid_until"
                )
                .await
                .len(),
            2,
            "both former texts of code 7 are kept"
        );
    }
    let texts = "select code_id || ' ' || code_lower || ' ' || valid_until::text as line \
        from code_texts order by valid_until";
    assert_eq!(single.lines(texts).await, batched.lines(texts).await);
    let codes = "select code_id || ' ' || code || ' ' || active::text as line \
        from codes order by brand_id, code_id";
    assert_eq!(single.lines(codes).await, batched.lines(codes).await);
}

/// A creator's code is not credited the orders placed before it had its text (the brand's own
/// promotion of that text, waiting here for a holder); and a text the store turned down as taken
/// (suffixed: a store collision) was never the code's, so orders with it after the rename stay
/// nobody's.
#[tokio::test]
async fn orders_placed_before_a_code_had_its_text_are_not_the_codes() {
    use OrderStatus::*;
    let store = store().await;
    // The brand's promotion PROMO10, used the day before the creator's code of that text.
    store
        .one_at_a_time(&[order(1, "B1", Paid, &["PROMO10"], 5_000, 0)])
        .await;
    let minted_at = placed() + Duration::days(1);
    let mut minted = code_event(40, 540, "PROMO10", minted_at);
    if let Some(code) = minted.code.as_mut() {
        code.created_at = Some(ts(minted_at));
        code.status = CodeStatus::Pending as i32;
    }
    tx!(store, |conn| Codes.apply(conn, 1, &minted).await);
    store
        .one_at_a_time(&[placed_at(
            order(1, "B2", Paid, &["PROMO10"], 6_000, 0),
            minted_at + Duration::hours(1),
        )])
        .await;
    // The push found the store holding PROMO10: the code became PROMO10X.
    let renamed_at = minted_at + Duration::hours(2);
    let mut suffixed = minted.clone();
    if let Some(code) = suffixed.code.as_mut() {
        code.code = "PROMO10X".to_owned();
        code.updated_at = Some(ts(renamed_at));
        code.history = vec![Renamed {
            from_code: "PROMO10".to_owned(),
            to_code: "PROMO10X".to_owned(),
            reason: STORE_COLLISION.to_owned(),
            changed_at: Some(ts(renamed_at)),
            ..Default::default()
        }];
    }
    tx!(store, |conn| Codes.apply(conn, 2, &suffixed).await);
    let later = renamed_at + Duration::hours(1);
    store
        .one_at_a_time(&[
            placed_at(order(1, "B3", Paid, &["PROMO10"], 7_000, 0), later),
            placed_at(order(1, "B4", Paid, &["PROMO10X"], 8_000, 0), later),
            placed_at(
                order(1, "B5", Paid, &["PROMO10X"], 9_000, 0),
                minted_at + Duration::minutes(90),
            ),
        ])
        .await;
    // B2, placed while the code waited for its push, was credited to it until the store's
    // answer told whose the text was: taken back. B5 used PROMO10X before the code had it.
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || creator_id || ' ' || status || ' ' \
                    || revenue_minor as line \
                    from conversions where store_order_id like 'B%' order by store_order_id"
            )
            .await,
        ["B2 540 reversed 0", "B4 540 pending 8000"],
    );
    let reversed: Vec<(String, i32)> = store
        .events()
        .await
        .iter()
        .filter_map(|e| e.conversion.as_ref())
        .map(|c| (c.store_order_id.clone(), c.status))
        .collect();
    assert_eq!(
        reversed.last(),
        Some(&("B4".to_owned(), ConversionStatus::Pending as i32))
    );
    assert!(
        reversed.contains(&("B2".to_owned(), ConversionStatus::Reversed as i32)),
        "{reversed:?}"
    );
    let figures = "select sum(orders) || ' ' || sum(revenue_minor) as line from daily_sales \
        where creator_id = 540";
    assert_eq!(
        store.lines(figures).await,
        ["1 8000"],
        "the figures count B4 alone"
    );
    // The rename seen again (a replay, or the code's later events) takes nothing more back.
    let before = store.snapshot().await;
    tx!(store, |conn| Codes.apply(conn, 3, &suffixed).await);
    assert_eq!(store.snapshot().await, before);
    assert!(
        store
            .lines("select code_lower as line from code_texts where code_id = 40")
            .await
            .is_empty(),
        "a text the store turned down is not kept as the code's"
    );
    // B2's later states are still shown (its total edited at the end), and nothing is owed
    // again.
    for (status, total, refunded, shown) in [
        (PartiallyRefunded, 6_000, 1_000, "partially_refunded 6000"),
        (Paid, 6_000, 0, "partially_refunded 6000"),
        (Cancelled, 5_500, 1_000, "cancelled 5500"),
    ] {
        store
            .one_at_a_time(&[placed_at(
                order(1, "B2", status, &["PROMO10"], total, refunded),
                minted_at + Duration::hours(1),
            )])
            .await;
        assert_eq!(
            store
                .lines(
                    "select status || ' ' || revenue_minor || ' ' || order_status || ' ' \
                        || order_total_minor as line from conversions where store_order_id = 'B2'"
                )
                .await,
            [format!("reversed 0 {shown}")],
        );
    }
    assert_eq!(
        store.lines(figures).await,
        ["1 8000"],
        "the figures still count B4 alone"
    );
}

/// A code announced with an edit's text while the store was asked, then put back when the store
/// refused it: the refused text was never the code's. It is not kept as a former text of it, and
/// a sale credited by it meanwhile is taken back.
#[tokio::test]
async fn a_refused_edits_text_announced_meanwhile_is_not_kept_as_the_codes() {
    use OrderStatus::*;
    let store = store().await;
    let minted = code_event(44, 544, "ANNA", placed() - Duration::days(2));
    tx!(store, |conn| Codes.apply(conn, 1, &minted).await);
    let edited_at = placed() - Duration::hours(2);
    let announced = edited(
        code_event(44, 544, "ANNAVIP", edited_at),
        &[("ANNA", "ANNAVIP", edited_at)],
    );
    tx!(store, |conn| Codes.apply(conn, 2, &announced).await);
    // Credited while attribution held the refused text: taken back when the code is put back.
    store
        .one_at_a_time(&[placed_at(
            order(1, "V0", Paid, &["annavip"], 3_000, 0),
            edited_at + Duration::minutes(10),
        )])
        .await;
    assert_eq!(
        store
            .lines("select status as line from conversions where store_order_id = 'V0'")
            .await,
        ["pending"]
    );
    let mut back = minted.clone();
    if let Some(code) = back.code.as_mut() {
        code.updated_at = Some(ts(placed() - Duration::hours(1)));
    }
    tx!(store, |conn| Codes.apply(conn, 3, &back).await);
    assert_eq!(
        store
            .lines("select code_lower as line from code_texts where code_id = 44")
            .await,
        ["anna"],
        "the text the edit left, not the refused one"
    );
    assert_eq!(
        store
            .lines(
                "select status || ' ' || revenue_minor as line from conversions \
                    where store_order_id = 'V0'"
            )
            .await,
        ["reversed 0"]
    );
    // An order placed with the refused text while the store was asked, arriving now, is not
    // hers (at the store that text was another discount's).
    store
        .one_at_a_time(&[placed_at(
            order(1, "V1", Paid, &["annavip"], 4_000, 0),
            edited_at + Duration::minutes(30),
        )])
        .await;
    assert!(
        store
            .lines("select store_order_id as line from conversions where store_order_id = 'V1'")
            .await
            .is_empty()
    );
}

/// A sale approved at once (no holding period) by a text the store then turned down is taken
/// back by an adjustment, once.
#[tokio::test]
async fn an_approved_sale_of_a_turned_down_text_is_adjusted_back() {
    use OrderStatus::*;
    let store = store().await;
    let minted_at = placed() - Duration::hours(1);
    let mut minted = code_event(42, 542, "DEAL20", minted_at);
    if let Some(code) = minted.code.as_mut() {
        code.campaign_id = 21;
        code.plan_id = 11;
        code.created_at = Some(ts(minted_at));
        code.status = CodeStatus::Pending as i32;
    }
    tx!(store, |conn| Codes.apply(conn, 1, &minted).await);
    // D1, and Z1, free (the code took it all): worth nothing, approved at once too.
    store
        .one_at_a_time(&[
            order(1, "D1", Paid, &["deal20"], 5_000, 0),
            order(1, "Z1", Paid, &["deal20"], 0, 0),
        ])
        .await;
    let renamed_at = placed() + Duration::hours(1);
    let mut suffixed = minted.clone();
    if let Some(code) = suffixed.code.as_mut() {
        code.code = "DEAL20K".to_owned();
        code.updated_at = Some(ts(renamed_at));
        code.history = vec![Renamed {
            from_code: "DEAL20".to_owned(),
            to_code: "DEAL20K".to_owned(),
            reason: STORE_COLLISION.to_owned(),
            changed_at: Some(ts(renamed_at)),
            ..Default::default()
        }];
    }
    let counted = "select sum(orders) || ' ' || sum(code_uses) as line from daily_sales \
        where creator_id = 542";
    assert_eq!(
        store.lines(counted).await,
        ["2 2"],
        "D1 and Z1 count before the rename"
    );
    for seq in [2, 3] {
        tx!(store, |conn| Codes.apply(conn, seq, &suffixed).await);
    }
    assert_eq!(
        store
            .lines(
                "select status || ' ' || revenue_minor || ' ' || adjusted_revenue_minor || ' ' \
                    || commission_minor || ' ' || adjusted_commission_minor as line \
                    from conversions where store_order_id = 'D1'"
            )
            .await,
        ["approved 5000 -5000 1000 -1000"],
    );
    assert_eq!(
        store
            .lines("select revenue_minor || ' ' || commission_minor as line from adjustments")
            .await,
        ["-5000 -1000"],
        "one adjustment, though the rename was seen twice"
    );
    assert_eq!(
        store.lines(counted).await,
        ["0 0"],
        "Z1, which no adjustment takes back, counts no more either"
    );
    // Later states of the order (shown) do not bring the sale back, nor take anything more
    // back, also once the order is void at the store; and it counts no more.
    for (status, refunded, shown) in [
        (PartiallyRefunded, 1_000, "partially_refunded"),
        (Cancelled, 1_000, "cancelled"),
        (Refunded, 5_000, "refunded"),
    ] {
        store
            .one_at_a_time(&[order(1, "D1", status, &["deal20"], 5_000, refunded)])
            .await;
        assert_eq!(
            store
                .lines(
                    "select order_status || ' ' || revenue_minor || ' ' || adjusted_revenue_minor \
                        as line from conversions where store_order_id = 'D1'"
                )
                .await,
            [format!("{shown} 5000 -5000")],
        );
        assert_eq!(
            store
                .lines("select revenue_minor || ' ' || commission_minor as line from adjustments")
                .await,
            ["-5000 -1000"],
        );
        assert_eq!(
            store
                .lines(
                    "select sum(orders) || ' ' || sum(revenue_minor) as line from daily_sales \
                        where creator_id = 542"
                )
                .await,
            ["0 0"],
        );
    }
}

/// A text a code had before a brand's rename is the code's for orders placed between when the
/// code got it and the rename, not for one placed before (the brand's own promotion of that
/// text, deleted since).
#[tokio::test]
async fn a_former_text_counts_only_from_when_the_code_had_it() {
    use OrderStatus::*;
    let store = store().await;
    let active_at = placed() + Duration::days(1);
    let mut active = code_event(41, 541, "ZOE10", active_at);
    if let Some(code) = active.code.as_mut() {
        code.created_at = Some(ts(active_at));
    }
    tx!(store, |conn| Codes.apply(conn, 1, &active).await);
    let renamed_at = active_at + Duration::days(1);
    let mut renamed = code_event(41, 541, "ZOE15", renamed_at);
    if let Some(code) = renamed.code.as_mut() {
        code.created_at = Some(ts(active_at));
        code.history = vec![Renamed {
            from_code: "ZOE10".to_owned(),
            to_code: "ZOE15".to_owned(),
            reason: "manual".to_owned(),
            changed_at: Some(ts(renamed_at)),
            ..Default::default()
        }];
    }
    tx!(store, |conn| Codes.apply(conn, 2, &renamed).await);
    let mut during = order(1, "A2", Paid, &["ZOE10"], 6_000, 0);
    if let Some(order) = during.order.as_mut() {
        order.occurred_at = Some(ts(active_at + Duration::hours(1)));
    }
    // A1 was placed at placed(), a day before the code had ZOE10.
    store
        .one_at_a_time(&[order(1, "A1", Paid, &["ZOE10"], 5_000, 0), during])
        .await;
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || creator_id as line \
                    from conversions where store_order_id like 'A%' order by store_order_id"
            )
            .await,
        ["A2 541"]
    );
}

/// A former text the store went on taking after a brand's edit (its discount there could not
/// be changed at once) is the code's until the store stopped taking it: an order placed with it
/// meanwhile waits, and is the creator's once that is known; one placed after is not.
#[tokio::test]
async fn a_former_text_is_the_codes_until_the_store_stopped_taking_it() {
    use OrderStatus::*;
    let store = store().await;
    let active_at = placed() - Duration::days(1);
    let mut active = code_event(43, 543, "LEA10", active_at);
    if let Some(code) = active.code.as_mut() {
        code.created_at = Some(ts(active_at));
    }
    tx!(store, |conn| Codes.apply(conn, 1, &active).await);
    let renamed_at = placed();
    let edit = Renamed {
        from_code: "LEA10".to_owned(),
        to_code: "LEA15".to_owned(),
        reason: "manual".to_owned(),
        changed_at: Some(ts(renamed_at)),
        ..Default::default()
    };
    let mut renamed = code_event(43, 543, "LEA15", renamed_at);
    if let Some(code) = renamed.code.as_mut() {
        code.created_at = Some(ts(active_at));
        code.status = CodeStatus::Pending as i32;
        code.history = vec![edit.clone()];
    }
    tx!(store, |conn| Codes.apply(conn, 2, &renamed).await);
    let released_at = renamed_at + Duration::hours(2);
    store
        .one_at_a_time(&[
            placed_at(
                order(1, "L1", Paid, &["LEA10"], 5_000, 0),
                renamed_at + Duration::hours(1),
            ),
            placed_at(
                order(1, "L2", Paid, &["LEA10"], 6_000, 0),
                released_at + Duration::hours(1),
            ),
        ])
        .await;
    let conversions = "select store_order_id || ' ' || creator_id as line from conversions \
        where store_order_id like 'L%' order by store_order_id";
    assert!(store.lines(conversions).await.is_empty(), "both wait");
    // The pusher disabled LEA10 at the store two hours after the edit.
    let mut released = renamed.clone();
    if let Some(code) = released.code.as_mut() {
        code.status = CodeStatus::Active as i32;
        code.updated_at = Some(ts(released_at));
        code.history = vec![Renamed {
            released_at: Some(ts(released_at)),
            ..edit
        }];
    }
    tx!(store, |conn| Codes.apply(conn, 3, &released).await);
    assert_eq!(store.lines(conversions).await, ["L1 543"]);
    // Seen again (a replay, or the code's later events), it changes nothing.
    let before = store.snapshot().await;
    tx!(store, |conn| Codes.apply(conn, 4, &released).await);
    assert_eq!(store.snapshot().await, before);
}

/// A text that left a code, came back and left again within the store's clock skew has two
/// spans: the release extends one, once, seen as often as it may be.
#[tokio::test]
async fn a_release_of_a_text_the_code_had_twice_is_applied_once() {
    let store = store().await;
    let at = placed();
    let edit = |from: &str, to: &str, minutes: i64| Renamed {
        from_code: from.to_owned(),
        to_code: to.to_owned(),
        reason: "manual".to_owned(),
        changed_at: Some(ts(at + Duration::minutes(minutes))),
        ..Default::default()
    };
    let history = [
        edit("A44", "B44", 0),
        edit("B44", "A44", 1),
        edit("A44", "C44", 2),
    ];
    let mut events = Vec::new();
    for (n, text) in ["A44", "B44", "A44", "C44"].iter().enumerate() {
        let mut event = code_event(44, 544, text, at + Duration::minutes(n as i64 - 1));
        if let Some(code) = event.code.as_mut() {
            code.created_at = Some(ts(at - Duration::days(1)));
            code.history = history[..n].to_vec();
        }
        events.push(event);
    }
    let mut released = events[3].clone();
    if let Some(code) = released.code.as_mut() {
        code.updated_at = Some(ts(at + Duration::hours(1)));
        code.history[2].released_at = Some(ts(at + Duration::hours(1)));
    }
    events.push(released.clone());
    for (seq, event) in (1..).zip(&events) {
        tx!(store, |conn| Codes.apply(conn, seq, event).await);
    }
    let spans = "select code_lower || ' ' || valid_until::text as line from code_texts \
        where code_id = 44 order by valid_until";
    let before = store.lines(spans).await;
    assert_eq!(before.len(), 3, "{before:?}");
    tx!(store, |conn| Codes.apply(conn, 6, &released).await);
    assert_eq!(store.lines(spans).await, before);
}

#[tokio::test]
async fn a_code_event_that_changes_nothing_writes_nothing() {
    let store = store().await;
    let version = "select version::text as line from codes where brand_id = 1 and code_id = 9";
    let mut minted = code_event(9, 509, "NEW9", placed());
    if let Some(code) = minted.code.as_mut() {
        code.status = CodeStatus::Pending as i32;
    }
    tx!(store, |conn| Codes.apply(conn, 1, &minted).await);
    let first = store.lines(version).await;
    assert_eq!(first.len(), 1);
    // The store took the code: pending -> active, the same as far as attribution is concerned.
    let mut activated = minted.clone();
    if let Some(code) = activated.code.as_mut() {
        code.status = CodeStatus::Active as i32;
        code.updated_at = Some(ts(placed() + Duration::minutes(1)));
    }
    tx!(store, |conn| Codes.apply(conn, 2, &activated).await);
    assert_eq!(
        store.lines(version).await,
        first,
        "no new version: nothing to follow"
    );
    // A real change (disabled) is written.
    let mut disabled = activated.clone();
    if let Some(code) = disabled.code.as_mut() {
        code.status = CodeStatus::Disabled as i32;
    }
    tx!(store, |conn| Codes.apply(conn, 3, &disabled).await);
    assert_ne!(store.lines(version).await, first);
}

#[tokio::test]
async fn orders_waiting_longer_than_the_pending_wait_are_forgotten() {
    use OrderStatus::*;
    let store = store().await;
    // Three orders with a code nobody holds yet; the latest states of two arrived 31 days ago.
    store
        .one_at_a_time(&[
            order(1, "W-old1", Paid, &["LATER1"], 5_000, 0),
            order(1, "W-old2", Paid, &["later1"], 6_000, 0),
            order(1, "W-new", Paid, &["later1"], 7_000, 0),
        ])
        .await;
    tx!(store, |conn| {
        diesel::sql_query(
            "update pending_orders set received_at = now() - interval '31 days' \
             where store_order_id like 'W-old%'",
        )
        .execute(conn)
        .await?;
        Ok(())
    });
    let expire = async |limit| {
        let before = Utc::now() - PENDING_WAIT;
        tx!(store, |conn| pending::expire(conn, before, limit).await)
    };
    assert_eq!(expire(1).await, 1, "at most the limit");
    assert_eq!(expire(100).await, 1);
    assert_eq!(expire(100).await, 0, "the order that waited less stays");
    // The code arrives: only the order still waiting is attributed.
    let code = code_event(6, 506, "Later1", placed() - Duration::days(2));
    tx!(store, |conn| Codes.apply(conn, 1, &code).await);
    assert_eq!(
        store
            .lines("select store_order_id as line from conversions order by 1")
            .await,
        ["W-new"]
    );
    assert_eq!(
        store
            .count("select count(*) as n from pending_orders")
            .await,
        0
    );
}

#[tokio::test]
async fn a_plain_click_insert_meeting_a_taken_id_writes_nothing() {
    let store = store().await;
    let counts = "select count(*)::text || ' clicks, ' || \
                      coalesce((select sum(clicks) from daily_clicks), 0)::text || ' counted' \
                  as line from clicks";
    let later = placed() + Duration::hours(1);
    let fresh = click("c_fresh", 2, 20, 502, later);
    let mut conn = store.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // The store's Anna click is taken: the plain insert fails whole, Bob's click included.
    let failed = clicks::insert(
        &mut conn,
        &[fresh.clone(), click("c_anna", 1, 20, 501, later)],
        Taken::Fail,
    )
    .await;
    assert!(
        matches!(failed, Err(DbError::UniqueViolation { .. })),
        "{failed:?}"
    );
    assert_eq!(store.lines(counts).await, ["1 clicks, 1 counted"]);
    // Skipping the taken id stores and counts the new one only; twice in a batch, once.
    let stored = clicks::insert(
        &mut conn,
        &[fresh.clone(), click("c_anna", 1, 20, 501, later), fresh],
        Taken::Skip,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, 1);
    assert_eq!(store.lines(counts).await, ["2 clicks, 2 counted"]);
}

#[tokio::test]
async fn an_order_whose_plan_has_not_arrived_waits_for_it() {
    use OrderStatus::*;
    let store = store().await;
    // Fay's code and her link belong to plan 14 (15 %, 30 days' holding), whose event has not
    // reached attribution yet: the plan stream is behind the code and order streams.
    let mut fay = code_event(7, 507, "FAY15", placed() - Duration::days(2));
    if let Some(code) = fay.code.as_mut() {
        code.plan_id = 14;
        code.campaign_id = 25;
    }
    tx!(store, |conn| Codes.apply(conn, 1, &fay).await);
    tx!(store, |conn| {
        clicks::insert(
            conn,
            &[ClickRow {
                plan_id: 14,
                campaign_id: 25,
                ..click("c_fay", 7, 25, 507, placed() - Duration::hours(1))
            }],
            Taken::Skip,
        )
        .await?;
        Ok(())
    });
    store
        .one_at_a_time(&[
            order(1, "P-code", Paid, &["fay15"], 10_000, 0),
            with_click(order(1, "P-click", Paid, &[], 20_000, 0), "c_fay"),
            order(1, "P-other", Paid, &["nobody"], 5_000, 0),
        ])
        .await;
    assert_eq!(
        store.count("select count(*) as n from conversions").await,
        0,
        "priced without the plan"
    );
    // Meanwhile the brand renames Fay's code: the order still names its text of the time.
    let mut renamed = code_event(7, 507, "FAY20", placed() + Duration::hours(1));
    if let Some(code) = renamed.code.as_mut() {
        code.plan_id = 14;
        code.campaign_id = 25;
    }
    let renamed = edited(
        renamed,
        &[("FAY15", "FAY20", placed() + Duration::hours(1))],
    );
    tx!(store, |conn| Codes.apply(conn, 2, &renamed).await);
    // The plan arrives: the orders its code and its click claim are attributed with its
    // commission; the order nobody claims keeps waiting.
    let plan = PlanEvent {
        brand_id: 1,
        subject: Some(plan_event::Subject::Plan(Plan {
            id: 14,
            integration_id: INTEGRATION,
            commission: Some(Commission {
                kind: Some(commission::Kind::PercentBps(1500)),
            }),
            holding_period_days: 30,
            updated_at: Some(ts(placed() - Duration::days(3))),
            ..Default::default()
        })),
        ..Default::default()
    };
    tx!(store, |conn| Plans.apply(conn, 1, &plan).await);
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || method || ' ' || commission_minor || ' ' \
                 || status as line from conversions order by 1"
            )
            .await,
        ["P-click click 3000 pending", "P-code code 1500 pending"]
    );
    assert_eq!(
        store
            .lines("select store_order_id as line from pending_orders")
            .await,
        ["P-other"]
    );
}

#[tokio::test]
async fn approval_is_due_from_payment_even_when_a_refund_was_seen_first_or_came_late() {
    use OrderStatus::*;
    let received = |mut event: OrderEvent, at: DateTime<Utc>| {
        event.received_at = Some(ts(at));
        event
    };
    let paid_at = placed() + Duration::minutes(1);
    // An order with a code attribution does not know yet is paid, then partly refunded ten days
    // later, both before the code arrives; plan 10 holds commissions for 30 days.
    let (store, _) = both_ways(&[
        order(1, "A-wait", Paid, &["LATER2"], 10_000, 0),
        received(
            order(1, "A-wait", PartiallyRefunded, &["LATER2"], 10_000, 2_500),
            placed() + Duration::days(10),
        ),
    ])
    .await;
    let code = code_event(8, 508, "later2", placed() - Duration::days(2));
    tx!(store, |conn| Codes.apply(conn, 1, &code).await);
    let approve_at = "select store_order_id || ' ' || status || ' ' || commission_minor || ' ' \
                      || (approve_at = $$WHEN$$::timestamptz)::text as line \
                      from conversions order by 1";
    let due = (paid_at + Duration::days(30)).to_rfc3339();
    assert_eq!(
        store.lines(&approve_at.replace("WHEN", &due)).await,
        ["A-wait pending 750 true"],
        "due 30 days after it was paid, not after the refund"
    );

    // Anna's order is paid; its partial refund is seen a day after its approval was due, before
    // the approver ran: the commission was owed by then, so the refund is an adjustment.
    let (store, _) = both_ways(&[
        order(1, "A-late", Paid, &["ANNA10"], 10_000, 0),
        received(
            order(1, "A-late", PartiallyRefunded, &["ANNA10"], 10_000, 2_500),
            paid_at + Duration::days(31),
        ),
    ])
    .await;
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || status || ' ' || commission_minor || ' ' \
                 || adjusted_commission_minor as line from conversions order by 1"
            )
            .await,
        ["A-late approved 1000 -250"]
    );
    assert_eq!(
        store
            .lines("select reason || ' ' || commission_minor as line from adjustments")
            .await,
        ["partial refund after approval -250"]
    );
}

#[tokio::test]
async fn a_partial_refund_of_a_split_order_takes_back_what_the_whole_loses() {
    use OrderStatus::*;
    // Anna and Bob split an order of 10,001 (5,000 each by their lines); a third is refunded:
    // 6,668 of 10,001 is left, which their 10,000 is worth 6,667 of (3,333.67 each).
    let (store, _) = both_ways(&[
        order(1, "S-1", Paid, &["ANNA10", "BOB10"], 10_001, 0),
        order(
            1,
            "S-1",
            PartiallyRefunded,
            &["ANNA10", "BOB10"],
            10_001,
            3_333,
        ),
    ])
    .await;
    assert_eq!(
        store
            .lines(
                "select creator_id || ' ' || base_revenue_minor || ' ' || revenue_minor \
                 as line from conversions order by creator_id"
            )
            .await,
        ["501 5000 3334", "502 5000 3333"]
    );
}

#[tokio::test]
async fn a_creators_codes_of_two_campaigns_on_one_order_credit_both_and_of_one_plan_once() {
    use OrderStatus::*;
    // Anna's codes of campaigns 20 (plan 10) and 21 (plan 11); Dora's of campaigns 22 and 23,
    // which share plan 12 and each record its sales.
    let (store, _) = both_ways(&[
        order(1, "S-2", Paid, &["ANNA10", "ANNA20"], 10_000, 0),
        order(1, "S-3", Paid, &["DORA5", "DORA6"], 10_000, 0),
        // Anna's codes of two plans both record in campaign 20: once.
        order(1, "S-4", Paid, &["ANNA10", "ANNAOLD"], 10_000, 0),
        // An odd total split, then part refunded: the remainder stays with the same claimant.
        order(1, "S-5", Paid, &["FAY10", "FAY20"], 10_001, 0),
        order(
            1,
            "S-5",
            PartiallyRefunded,
            &["FAY10", "FAY20"],
            10_001,
            3_333,
        ),
    ])
    .await;
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || campaign_id || ' ' || creator_id || ' ' || \
                 revenue_minor || ' ' || commission_minor || ' ' || adjusted_revenue_minor \
                 as line from conversions order by store_order_id, campaign_id"
            )
            .await,
        [
            "S-2 20 501 5000 500 0",
            "S-2 21 501 5000 1000 0",
            "S-3 22 504 10000 1000 0",
            "S-3 23 504 10000 1000 0",
            "S-4 20 501 5000 500 0",
            "S-4 21 501 5000 1000 0",
            // 6,667 of the 10,000 claimed is left: the unit the rounding leaves goes to the
            // first claimant (plan 10's, as it was priced), pending; plan 11's was approved
            // when paid and is adjusted.
            "S-5 20 506 3334 333 0",
            "S-5 21 506 5000 1000 -1667",
        ]
    );
}

#[tokio::test]
async fn a_new_plan_takes_the_pricing_lock_before_the_matching_lock_as_orders_do() {
    use attribution_service::store::amazon_reports::lock_pricing;
    let store = store().await;
    // The order consumer, in a batch with report rows and orders: it holds the pricing lock and
    // will take the matching lock next.
    let mut orders = store.db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("begin")
        .execute(&mut orders)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    lock_pricing(&mut orders)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A plan attribution has not seen arrives meanwhile.
    let db = store.db.clone();
    let plan = PlanEvent {
        brand_id: 1,
        subject: Some(plan_event::Subject::Plan(Plan {
            id: 15,
            integration_id: INTEGRATION,
            ..Default::default()
        })),
        ..Default::default()
    };
    let plans = tokio::spawn(async move {
        let mut conn = db.conn().await?;
        conn.transaction::<_, DbError, _>(async |conn| Plans.apply(conn, 1, &plan).await)
            .await
    });
    let mut watcher = store.db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
    tracking_db::until_lock_wait(&mut watcher, &plans).await;
    // The order consumer goes on to the matching lock: no deadlock.
    let matched = pending::lock_matching(&mut orders).await;
    assert!(matched.is_ok(), "{matched:?}");
    diesel::sql_query("commit")
        .execute(&mut orders)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let applied = plans.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(applied.is_ok(), "{applied:?}");
}

#[tokio::test]
async fn a_waiting_orders_cancellation_sent_without_its_click_is_the_state_attributed() {
    use OrderStatus::*;
    // Paid through a click attribution has not seen yet, then cancelled with the order id alone.
    let (store, _) = both_ways(&[
        with_click(order(1, "X-late", Paid, &[], 10_000, 0), "c_late"),
        order(1, "X-late", Cancelled, &[], 10_000, 0),
    ])
    .await;
    // The click is written: the order is attributed at its latest state, not the paid one.
    tx!(store, |conn| {
        let late = click("c_late", 1, 20, 501, placed() - Duration::hours(1));
        clicks::insert(conn, &[late], Taken::Skip).await?;
        let waiting = pending::take_for_clicks(conn, 1, &["c_late"]).await?;
        assert_eq!(waiting.len(), 1);
        retry_pending(conn, waiting).await
    });
    assert_eq!(
        store
            .lines(
                "select store_order_id || ' ' || status || ' ' || order_status as line \
                 from conversions"
            )
            .await,
        ["X-late reversed cancelled"]
    );
}

/// `event` as the store last changed it `hours` after the orders were placed.
fn changed(mut event: OrderEvent, hours: i64) -> OrderEvent {
    if let Some(order) = event.order.as_mut() {
        order.updated_at = Some(ts(placed() + Duration::hours(hours)));
    }
    event
}

/// An order reported again in another currency (an AST conversion the pixel sent in EUR and the
/// brand's server in USD) is priced again in it while its commission is pending: its figures move
/// to that currency, none stays behind in the first. An approved one keeps its currency and
/// amounts: an approved commission is not adjusted across currencies.
#[tokio::test]
async fn an_order_in_another_currency_is_priced_in_it_until_approved() {
    use OrderStatus::*;
    let in_usd = |mut event: OrderEvent| {
        if let Some(order) = event.order.as_mut() {
            order.currency = "USD".to_owned();
        }
        event
    };
    let (single, batched) = both_ways(&[
        // Anna's (10 %, held 30 days): pending.
        order(1, "X1", Paid, &["anna10"], 10_000, 0),
        in_usd(order(1, "X1", Paid, &["anna10"], 10_800, 0)),
        // Carl's (20 %, approved once paid).
        order(1, "X2", Paid, &["carl0"], 10_000, 0),
        in_usd(order(1, "X2", Paid, &["carl0"], 10_800, 0)),
        // Carl's again, then cancelled in the other currency: nothing is owed in any.
        order(1, "X3", Paid, &["carl0"], 10_000, 0),
        in_usd(order(1, "X3", Cancelled, &["carl0"], 10_800, 0)),
    ])
    .await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines(
                    "select store_order_id || ' ' || status || ' ' || currency || ' ' \
                     || revenue_minor || ' ' || commission_minor || ' ' || commission_currency \
                     || ' ' || adjusted_commission_minor as line from conversions \
                     order by store_order_id"
                )
                .await,
            [
                "X1 pending USD 10800 1080 USD 0",
                "X2 approved EUR 10000 2000 EUR 0",
                "X3 approved EUR 10000 2000 EUR -2000"
            ]
        );
        assert_eq!(
            store.count("select count(*) as n from adjustments").await,
            1
        );
        assert_eq!(
            store
                .lines(
                    "select currency || ' ' || sum(orders) || ' ' || sum(revenue_minor) || ' ' \
                     || sum(commission_pending_minor) || ' ' || sum(commission_approved_minor) \
                     as line from daily_sales group by currency order by currency"
                )
                .await,
            ["EUR 1 10000 0 4000", "USD 1 10800 1080 0"]
        );
    }
}

#[tokio::test]
async fn an_edit_of_an_orders_total_prices_it_again_and_an_older_edit_changes_nothing() {
    use OrderStatus::*;
    let (single, batched) = both_ways(&[
        // Anna's order (10 %, held 30 days) is edited from 10,000 to 15,000; an edit the store
        // made before that one arrives late; then 3,000 is refunded.
        changed(order(1, "E1", Paid, &["anna10"], 10_000, 0), 0),
        changed(order(1, "E1", Paid, &["anna10"], 15_000, 0), 2),
        changed(order(1, "E1", Paid, &["anna10"], 12_000, 0), 1),
        changed(
            order(1, "E1", PartiallyRefunded, &["anna10"], 15_000, 3_000),
            3,
        ),
        // Carl's (20 %, approved once paid) is edited down after approval: an adjustment.
        changed(order(1, "E2", Paid, &["carl0"], 10_000, 0), 0),
        changed(order(1, "E2", Paid, &["carl0"], 5_000, 0), 1),
        // Anna's and Bob's codes each on a line: both lines grow, each share with them.
        changed(order(1, "E3", Paid, &["anna10", "bob10"], 8_000, 0), 0),
        changed(order(1, "E3", Paid, &["anna10", "bob10"], 12_000, 0), 1),
        // A store that does not say when: the later arrival is the order.
        order(1, "E4", Paid, &["bob10"], 10_000, 0),
        order(1, "E4", Paid, &["bob10"], 11_000, 0),
        // An order waiting for its code is edited, and an older edit arrives late.
        changed(order(1, "E5", Paid, &["LATER3"], 4_000, 0), 0),
        changed(order(1, "E5", Paid, &["LATER3"], 6_000, 0), 2),
        changed(order(1, "E5", Paid, &["LATER3"], 5_000, 0), 1),
        // An edit, then one back to the first total (the gateway passes the return on).
        changed(order(1, "E6", Paid, &["anna10"], 10_000, 0), 0),
        changed(order(1, "E6", Paid, &["anna10"], 14_000, 0), 1),
        changed(order(1, "E6", Paid, &["anna10"], 10_000, 0), 2),
    ])
    .await;
    let code = code_event(9, 509, "later3", placed() - Duration::days(2));
    for store in [&single, &batched] {
        tx!(store, |conn| Codes.apply(conn, 1, &code).await);
    }
    assert_same(&single, &batched).await;
    for store in [&single, &batched] {
        assert_eq!(
            store
                .lines(
                    "select store_order_id || ' ' || creator_id || ' ' || status || ' ' \
                     || order_total_minor || ' ' || base_revenue_minor || ' ' || revenue_minor \
                     || ' ' || commission_minor || ' ' || adjusted_revenue_minor || ' ' \
                     || adjusted_commission_minor as line from conversions \
                     order by store_order_id, creator_id"
                )
                .await,
            [
                "E1 501 pending 15000 15000 12000 1200 0 0",
                "E2 503 approved 5000 5000 10000 2000 -5000 -1000",
                "E3 501 pending 12000 6000 6000 600 0 0",
                "E3 502 pending 12000 6000 6000 600 0 0",
                "E4 502 pending 11000 11000 11000 1100 0 0",
                "E5 509 pending 6000 6000 6000 600 0 0",
                "E6 501 pending 10000 10000 10000 1000 0 0",
            ]
        );
        assert_eq!(
            store
                .lines("select reason || ' ' || commission_minor as line from adjustments")
                .await,
            ["order edited after approval -1000"]
        );
        // What the creators sold, by day: each order once, at its edited worth.
        assert_eq!(
            store
                .count("select sum(revenue_minor)::bigint as n from daily_sales")
                .await,
            12_000 + 5_000 + 12_000 + 11_000 + 6_000 + 10_000
        );
    }
}
