//! Reads of a brand's rows by a batch of keys probe the keys even when the table's statistics
//! have never seen the brand ([`tracking_db::stale_statistics`]): `brand_id = $1 and key =
//! any($2)` read all of the new brand's rows. The lookups by whole keys (`(brand_id, key) in
//! (select * from unnest(…))`) are checked the same way, and so are the single-key lookups of
//! report rows and campaigns, a loop of them per test. Pages (a creator's conversions and report
//! days, a campaign's alerts) and a creator's days read their rows from the index that holds them.
//! A new deployment's tables, before any analyze, are probed by a batch of code events and of
//! orders rather than hashed whole.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt};
use tracking_db::stale_statistics::{
    BATCH_BOUND, BATCH_KEYS, BOUND, KEYS, KNOWN, NEW, UNANALYZED, execute, fill, fill_unanalyzed,
    one_connection, rows_read_by, rows_read_through,
};
use tracking_db::{Database, DbError, SchemaSpec, TestDb};

use attribution_service::store::amazon_reports::{self, RowKey};
use attribution_service::store::conversions::Filter;
use attribution_service::store::{alerts, clicks, conversions, pending, projection, reads};

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
        .map(|event| String::from_utf8_lossy(&event.event).into_owned())
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

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test]
async fn code_events_read_their_codes_by_key_and_leave_unchanged_codes_unwritten() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "codes", codes).await;
    let wanted: Vec<(i64, i64)> = (1..=KEYS).map(|n| (2, n * 11)).collect();
    let at = chrono::Utc::now();
    // Every other code gets a new link; the rest come as they are (a pending code activated).
    let before = projection::codes(&mut conn, &wanted)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions: std::collections::HashMap<i64, i64> = before
        .iter()
        .map(|row| (row.code_id, row.version))
        .collect();
    let mut events: Vec<_> = before
        .into_iter()
        .map(|mut row| {
            if row.code_id % 2 == 0 {
                row.destination_url = "https://shop.example/new".to_owned();
            }
            change(row, at)
        })
        .collect();
    let mut new = events[0].row.clone();
    (new.code_id, new.code, new.slug) = (NEW + 1, "C2-NEW".to_owned(), "s2-new".to_owned());
    events.push(change(new, at));

    let (dropped, read) = rows_read_by(&mut conn, "codes", async |conn| {
        projection::upsert_codes(conn, &events).await
    })
    .await;
    assert!(dropped.is_empty(), "{dropped:?}");
    assert!(
        read <= BOUND,
        "{} code events read {read} codes",
        events.len()
    );

    let mut ids = wanted.clone();
    ids.push((2, NEW + 1));
    let rows = projection::codes(&mut conn, &ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), ids.len());
    let changed: BTreeSet<i64> = rows
        .iter()
        .filter(|row| versions.get(&row.code_id) != Some(&row.version))
        .map(|row| row.code_id)
        .collect();
    let expected: BTreeSet<i64> = ids
        .iter()
        .map(|&(_, id)| id)
        .filter(|id| id % 2 == 0 || *id == NEW + 1)
        .collect();
    assert_eq!(changed, expected, "only changed and new codes are written");
    // Not even locked: a conflict that updates nothing still writes its lock into the row.
    use diesel_async::RunQueryDsl;
    let unchanged: Vec<i64> = wanted
        .iter()
        .map(|&(_, id)| id)
        .filter(|id| id % 2 == 1)
        .collect();
    let locked: Vec<Count> = diesel::sql_query(
        "select count(*) as n from codes where brand_id = 2 and code_id = any($1) \
         and xmax::text <> '0'",
    )
    .bind::<Array<BigInt>, _>(unchanged)
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let locked = locked[0].n;
    assert_eq!(locked, 0, "unchanged codes were locked");
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

/// Brand `brand`'s campaigns are `brand * CAMPAIGN + n`, its plans `brand * PLAN + n`: brand 2's
/// are none the statistics saw.
const CAMPAIGN: i64 = 100_000;
const PLAN: i64 = 1_000_000;

/// Report rows of brand `brand`, one per creator `g` (integration `brand`, day 2026-01-0(1 + g %
/// 7)), each crediting its tag's campaign `g / 300` (plan `g / 300`); every 300th is unpriced.
fn report_sales(brand: i64, count: i64) -> String {
    let (campaign, plan) = (brand * CAMPAIGN, brand * PLAN);
    format!(
        "insert into report_sales (brand_id, integration_id, tag_campaign_id, creator_id, day, \
           campaign_id, plan_id, revision, currency, purchases, sales_minor, commission_minor, \
           commission_currency, status, approve_on, priced) \
         select {brand}, {brand}, {campaign} + g / 300, g, date '2026-01-01' + g % 7, \
           {campaign} + g / 300, {plan} + g / 300, 1, 'USD', 1, g, 0, 'USD', 'pending', \
           date '2026-03-01', g % 300 <> 0 \
         from generate_series(1, {count}) g"
    )
}

/// Campaigns `n` of brand `brand`, each linked to plan `n`.
fn campaigns(brand: i64, count: i64) -> String {
    let (campaign, plan) = (brand * CAMPAIGN, brand * PLAN);
    format!(
        "insert into campaigns (brand_id, campaign_id, plan_id) \
         select {brand}, {campaign} + g, {plan} + g from generate_series(1, {count}) g"
    )
}

/// The even plans `n` of brand `brand` (the odd ones are not known yet).
fn plans(brand: i64, count: i64) -> String {
    let plan = brand * PLAN;
    format!(
        "insert into plans (brand_id, plan_id, integration_id, provider) \
         select {brand}, {plan} + g, {brand}, 'amazon' from generate_series(1, {count}) g \
         where g % 2 = 0"
    )
}

/// The key of brand 2's report row of creator `g` (see [`report_sales`]).
fn row_key(g: i64) -> RowKey {
    RowKey {
        brand_id: 2,
        integration_id: 2,
        tag_campaign_id: 2 * CAMPAIGN + g / 300,
        creator_id: g,
        day: NaiveDate::from_ymd_opt(2026, 1, 1 + (g % 7) as u32).expect("a day of January"),
    }
}

#[tokio::test]
async fn report_rows_are_read_and_replaced_row_by_row() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "report_sales", report_sales).await;
    // Creators 1007, 2007, …: their rows credit a second campaign too (a shared plan).
    execute(
        &mut conn,
        &format!(
            "insert into report_sales (brand_id, integration_id, tag_campaign_id, creator_id, \
               day, campaign_id, plan_id, revision, currency, purchases, sales_minor, \
               commission_minor, commission_currency, status, approve_on, shared) \
             select brand_id, integration_id, tag_campaign_id, creator_id, day, {}, plan_id, \
               revision, currency, purchases, sales_minor, commission_minor, \
               commission_currency, status, approve_on, true \
             from report_sales where brand_id = 2 and creator_id % 1000 = 7",
            3 * CAMPAIGN
        ),
    )
    .await;
    let creators: Vec<i64> = (1..=25).map(|n| n * 1000 + 7).collect();
    let mut keys: Vec<RowKey> = creators.iter().map(|&g| row_key(g)).collect();
    keys.push(RowKey {
        integration_id: 1, // another integration's row
        ..row_key(1007)
    });

    let (applied, read) = rows_read_by(&mut conn, "report_sales", async |conn| {
        let mut applied = Vec::new();
        for key in &keys {
            applied.push(amazon_reports::applied(conn, key).await?);
        }
        Ok::<_, DbError>(applied)
    })
    .await;
    let credited: Vec<Vec<(i64, i64, i64)>> = applied
        .iter()
        .map(|sales| {
            sales
                .iter()
                .map(|s| (s.creator_id, s.campaign_id, s.sales_minor))
                .collect()
        })
        .collect();
    let mut expected: Vec<Vec<(i64, i64, i64)>> = creators
        .iter()
        .map(|&g| vec![(g, 2 * CAMPAIGN + g / 300, g), (g, 3 * CAMPAIGN, g)])
        .collect();
    expected.push(Vec::new());
    assert_eq!(credited, expected);
    assert!(read <= BOUND, "{} report rows read {read} rows", keys.len());

    // Each row now credits its tag's campaign only, with new figures.
    let revised: Vec<(RowKey, amazon_reports::ReportSale)> = keys
        .iter()
        .zip(&applied)
        .filter_map(|(key, sales)| {
            let mut sale = sales.first()?.clone();
            sale.revision = 2;
            sale.purchases = 5;
            sale.shared = false;
            Some((*key, sale))
        })
        .collect();
    let (stored, read) = rows_read_by(&mut conn, "report_sales", async |conn| {
        let mut stored = Vec::new();
        for (key, sale) in &revised {
            stored.push(amazon_reports::replace(conn, key, std::slice::from_ref(sale)).await?);
        }
        Ok::<_, DbError>(stored)
    })
    .await;
    let kept: Vec<Vec<(i64, i64, i32, i64)>> = stored
        .iter()
        .map(|sales| {
            sales
                .iter()
                .map(|s| (s.id, s.campaign_id, s.revision, s.purchases))
                .collect()
        })
        .collect();
    let expected: Vec<Vec<(i64, i64, i32, i64)>> = revised
        .iter()
        .map(|(_, sale)| vec![(sale.id, sale.campaign_id, 2, 5)])
        .collect();
    assert_eq!(kept, expected, "the ids are kept");
    assert!(
        read <= BOUND,
        "replacing {} report rows read {read} rows",
        revised.len()
    );

    let (again, _) = rows_read_by(&mut conn, "report_sales", async |conn| {
        let mut applied = Vec::new();
        for (key, _) in &revised {
            applied.push(amazon_reports::applied(conn, key).await?);
        }
        Ok::<_, DbError>(applied)
    })
    .await;
    assert_eq!(again, stored, "the other campaigns' rows are gone");
}

#[tokio::test]
async fn campaign_plans_are_read_campaign_by_campaign() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "campaigns", campaigns).await;

    let mut wanted: Vec<(i64, Option<i64>)> = (1..=25)
        .map(|n| (2 * CAMPAIGN + n * 1000, Some(2 * PLAN + n * 1000)))
        .collect();
    wanted.push((2 * CAMPAIGN + NEW + 1, None)); // no such campaign
    wanted.push((CAMPAIGN + 17, None)); // brand 1's campaign
    let (found, read) = rows_read_by(&mut conn, "campaigns", async |conn| {
        let mut found = Vec::new();
        for &(campaign, _) in &wanted {
            found.push((
                campaign,
                projection::plan_of_campaign(conn, 2, campaign).await?,
            ));
        }
        Ok::<_, DbError>(found)
    })
    .await;
    assert_eq!(found, wanted);
    assert!(
        read <= BOUND,
        "{} campaigns read {read} campaigns",
        wanted.len()
    );

    // The service's read runs the same statement, on a connection of its own.
    for &(campaign, plan) in &wanted {
        let found = projection::campaign_plan(&db, 2, campaign)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found, plan, "campaign {campaign}");
    }
}

#[tokio::test]
async fn unpriced_report_rows_are_found_from_the_brands_own() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, "report_sales", report_sales).await;
    fill(&mut conn, "campaigns", campaigns).await;
    fill(&mut conn, "plans", plans).await;

    // Brand 2's unpriced rows are creators 300 n's, of campaign n, whose plan n is known when
    // n is even.
    let expected: Vec<RowKey> = (1..=NEW / 300)
        .filter(|n| n % 2 == 0)
        .map(|n| row_key(300 * n))
        .collect();
    for table in ["report_sales", "campaigns", "plans"] {
        let (keys, read) = rows_read_by(&mut conn, table, async |conn| {
            amazon_reports::unpriced(conn, 2).await
        })
        .await;
        assert_eq!(keys, expected);
        assert!(
            read <= BOUND,
            "{} unpriced rows read {read} of {table}",
            NEW / 300
        );
    }
}

/// Brand `brand`'s creators are `brand * CREATOR + n`: brand 2's are none the statistics saw.
const CREATOR: i64 = 10_000;

/// One row `g` per order of brand `brand` (ids follow `g`: brand 2's are `KNOWN + g`), of creator
/// `brand * CREATOR + g % 1000`: brand 1's spread over 20 campaigns, brand 2's in its first
/// (`2 * CAMPAIGN + 1`), the big campaign the statistics never saw. Every third is by link.
fn campaign_conversions(brand: i64, count: i64) -> String {
    let (campaign, creator) = (brand * CAMPAIGN + 1, brand * CREATOR);
    let campaigns = if brand == 1 { 20 } else { 1 };
    format!(
        "insert into conversions (brand_id, integration_id, store_order_id, campaign_id, \
           creator_id, code_id, plan_id, method, matched, split_rule, share_bps, status, \
           order_status, order_rank, currency, order_total_minor, base_revenue_minor, \
           base_discount_minor, base_commission_minor, revenue_minor, discount_minor, \
           commission_minor, commission_currency, ordered_at) \
         select {brand}, {brand}, 'order-' || g, {campaign} + g % {campaigns}, \
           {creator} + g % 1000, 1, 1, case when g % 3 = 0 then 'link' else 'code' end, 'code', \
           'even', 10000, 'pending', 'paid', 1, 'USD', 100, 100, 0, 10, 100, 0, 10, 'USD', now() \
         from generate_series(1, {count}) g"
    )
}

/// A test database with `table` filled by [`fill`], and a pool of one connection to it for
/// [`rows_read_through`].
async fn filled_through_one_connection(
    table: &str,
    rows: impl Fn(i64, i64) -> String,
) -> (TestDb, Database) {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = one_connection(&test_db, attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill(&mut conn, table, rows).await;
    drop(conn);
    (test_db, db)
}

#[tokio::test]
async fn a_creators_conversions_are_paged_from_the_campaign_index() {
    let (_test_db, db) = filled_through_one_connection("conversions", campaign_conversions).await;
    let campaign = 2 * CAMPAIGN + 1;
    // Creator 7's conversions are orders 7, 1007, …, 29007.
    let orders: Vec<i64> = (0..30).rev().map(|n| 7 + n * 1000).collect();
    let ids = |rows: &[conversions::ConversionRow]| rows.iter().map(|r| r.id).collect::<Vec<_>>();

    let creator = Filter {
        creator_id: Some(2 * CREATOR + 7),
        ..Filter::default()
    };
    let (page, read) = rows_read_through(&db, "conversions", async |db| {
        conversions::list(db, 2, campaign, &creator, None, 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        orders.iter().map(|g| KNOWN + g).collect::<Vec<_>>()
    );
    assert!(read <= BOUND, "a creator's page read {read} conversions");

    let by_link = Filter {
        method: Some("link"),
        ..creator.clone()
    };
    let (page, read) = rows_read_through(&db, "conversions", async |db| {
        conversions::list(db, 2, campaign, &by_link, Some(40_000), 50).await
    })
    .await;
    let expected: Vec<i64> = orders
        .iter()
        .filter(|&&g| g % 3 == 0 && KNOWN + g < 40_000)
        .map(|g| KNOWN + g)
        .collect();
    assert_eq!(ids(&page), expected);
    assert!(
        read <= BOUND,
        "a creator's page by link read {read} conversions"
    );

    let (page, read) = rows_read_through(&db, "conversions", async |db| {
        conversions::list(db, 2, campaign, &Filter::default(), None, 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        (NEW - 49..=NEW)
            .rev()
            .map(|g| KNOWN + g)
            .collect::<Vec<_>>()
    );
    assert!(read <= BOUND, "the campaign's page read {read} conversions");
}

#[tokio::test]
async fn a_campaigns_alerts_are_paged_from_the_campaign_index() {
    // Brand 1's alerts over 20 campaigns; brand 2's first half in its campaign 1, the newer half
    // in its campaign 2 (ids follow `g`: brand 2's are `KNOWN + g`).
    let (_test_db, db) = filled_through_one_connection("code_alerts", |brand, count| {
        let campaign = if brand == 1 {
            format!("{} + g % 20", CAMPAIGN + 1)
        } else {
            format!("{} + (g > {count} / 2)::int", 2 * CAMPAIGN + 1)
        };
        format!(
            "insert into code_alerts (brand_id, code_id, kind, campaign_id, creator_id, code, \
               evidence) \
             select {brand}, g, 'leaked', {campaign}, g, 'C' || g, 'evidence' \
             from generate_series(1, {count}) g"
        )
    })
    .await;
    let ids = |rows: &[alerts::AlertRow]| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    let newest = |last: i64| (last - 49..=last).rev().collect::<Vec<_>>();

    let (page, read) = rows_read_through(&db, "code_alerts", async |db| {
        alerts::list(db, 2, Some(2 * CAMPAIGN + 1), None, 50).await
    })
    .await;
    assert_eq!(ids(&page), newest(KNOWN + NEW / 2));
    assert!(read <= BOUND, "a campaign's page read {read} alerts");

    let (page, read) = rows_read_through(&db, "code_alerts", async |db| {
        alerts::list(db, 2, Some(2 * CAMPAIGN + 1), Some(30_000), 50).await
    })
    .await;
    assert_eq!(ids(&page), newest(29_999));
    assert!(read <= BOUND, "a campaign's next page read {read} alerts");

    let (page, read) = rows_read_through(&db, "code_alerts", async |db| {
        alerts::list(db, 2, None, None, 50).await
    })
    .await;
    assert_eq!(ids(&page), newest(KNOWN + NEW));
    assert!(read <= BOUND, "the brand's page read {read} alerts");
}

/// Report days of brand `brand`, in campaigns as [`campaign_conversions`]: row `g` (id `KNOWN + g`
/// for brand 2) is day `g / 1000` of creator `brand * CREATOR + g % 1000`; every tenth is approved.
fn campaign_report_sales(brand: i64, count: i64) -> String {
    let (campaign, creator) = (brand * CAMPAIGN + 1, brand * CREATOR);
    let campaigns = if brand == 1 { 20 } else { 1 };
    let plan = brand * PLAN;
    format!(
        "insert into report_sales (brand_id, integration_id, tag_campaign_id, creator_id, day, \
           campaign_id, plan_id, revision, currency, purchases, sales_minor, commission_minor, \
           commission_currency, status, approve_on) \
         select {brand}, {brand}, {campaign} + g % {campaigns}, {creator} + g % 1000, \
           date '2026-01-01' + g / 1000, {campaign} + g % {campaigns}, {plan}, 1, 'USD', 1, g, 0, \
           'USD', case when g % 10 = 0 then 'approved' else 'pending' end, date '2026-03-01' \
         from generate_series(1, {count}) g"
    )
}

#[tokio::test]
async fn a_creators_report_days_are_paged_from_the_campaign_index() {
    let (_test_db, db) = filled_through_one_connection("report_sales", campaign_report_sales).await;
    let campaign = 2 * CAMPAIGN + 1;
    let ids = |rows: &[amazon_reports::ReportSale]| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    // Creator n's days are rows n, 1000 + n, …, 29000 + n.
    let days = |n: i64| (0..30).rev().map(move |d| KNOWN + d * 1000 + n);

    let (page, read) = rows_read_through(&db, "report_sales", async |db| {
        amazon_reports::list(db, 2, campaign, Some(2 * CREATOR + 7), None, None, 50).await
    })
    .await;
    assert_eq!(ids(&page), days(7).collect::<Vec<_>>());
    assert!(read <= BOUND, "a creator's page read {read} report days");

    let (page, read) = rows_read_through(&db, "report_sales", async |db| {
        let creator = Some(2 * CREATOR + 10);
        amazon_reports::list(db, 2, campaign, creator, Some("approved"), Some(40_000), 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        days(10).filter(|id| *id < 40_000).collect::<Vec<_>>()
    );
    assert!(
        read <= BOUND,
        "a creator's approved page read {read} report days"
    );

    let (page, read) = rows_read_through(&db, "report_sales", async |db| {
        amazon_reports::list(db, 2, campaign, None, None, None, 50).await
    })
    .await;
    assert_eq!(
        ids(&page),
        (NEW - 49..=NEW)
            .rev()
            .map(|g| KNOWN + g)
            .collect::<Vec<_>>()
    );
    assert!(read <= BOUND, "the campaign's page read {read} report days");
}

/// Day `n` of brand 2's figures: 2026-02-01 onwards (brand 1's are January's).
fn february(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 2, 1 + u32::try_from(n).expect("a small day number"))
        .expect("a day of February")
}

#[tokio::test]
async fn a_creators_days_are_read_from_the_primary_key() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = one_connection(&test_db, attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    // Row `g` is day `g / 1000` of creator `brand * CREATOR + g % 1000` (brand 1's over 20
    // campaigns, brand 2's in one, from February: days the statistics never saw); even rows are in
    // euros. The figures are `g`.
    let days = |table: &'static str, columns: &'static str, values: &'static str| {
        move |brand: i64, count: i64| {
            let campaign = brand * CAMPAIGN + 1;
            let campaigns = if brand == 1 { 20 } else { 1 };
            format!(
                "insert into {table} (brand_id, campaign_id, creator_id, day, {columns}) \
                 select {brand}, {campaign} + g % {campaigns}, {} + g % 1000, \
                   date '2026-01-01' + {} + g / 1000, {values} \
                 from generate_series(1, {count}) g",
                brand * CREATOR,
                (brand - 1) * 31,
            )
        }
    };
    let sales = days(
        "daily_sales",
        "currency, orders, revenue_minor",
        "case when g % 2 = 0 then 'EUR' else 'USD' end, 1, g",
    );
    fill(&mut conn, "daily_sales", sales).await;
    fill(
        &mut conn,
        "daily_clicks",
        days("daily_clicks", "clicks", "g"),
    )
    .await;
    drop(conn);
    let campaign = 2 * CAMPAIGN + 1;
    let week = (february(9), february(15));

    let (rows, read) = rows_read_through(&db, "daily_sales", async |db| {
        reads::sales(db, 2, campaign, Some(2 * CREATOR + 7), week).await
    })
    .await;
    let figures: Vec<(NaiveDate, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.day, r.currency.clone(), r.orders, r.revenue_minor))
        .collect();
    let expected: Vec<(NaiveDate, String, i64, i64)> = (9..=15)
        .map(|n| (february(n), "USD".to_owned(), 1, n * 1000 + 7))
        .collect();
    assert_eq!(figures, expected);
    assert!(read <= BOUND, "a creator's week read {read} days of sales");

    let (rows, read) = rows_read_through(&db, "daily_clicks", async |db| {
        reads::clicks(db, 2, campaign, Some(2 * CREATOR + 7), week).await
    })
    .await;
    let clicks: Vec<(NaiveDate, i64)> = rows.iter().map(|r| (r.day, r.clicks)).collect();
    let expected: Vec<(NaiveDate, i64)> = (9..=15).map(|n| (february(n), n * 1000 + 7)).collect();
    assert_eq!(clicks, expected);
    assert!(read <= BOUND, "a creator's week read {read} days of clicks");

    // Every creator: the 1,000 rows of each day of the week, an index entry and a row apiece at
    // most.
    let week_rows = 2 * 7 * 1000;
    let (rows, read) = rows_read_through(&db, "daily_sales", async |db| {
        reads::sales(db, 2, campaign, None, week).await
    })
    .await;
    let figures: Vec<(NaiveDate, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.day, r.currency.clone(), r.orders, r.revenue_minor))
        .collect();
    // Day n's rows are 1000 n to 1000 n + 999: 500 even ones in euros, 500 odd ones in dollars.
    let expected: Vec<(NaiveDate, String, i64, i64)> = (9..=15)
        .flat_map(|n| {
            [
                (february(n), "EUR".to_owned(), 500, 500_000 * n + 249_500),
                (february(n), "USD".to_owned(), 500, 500_000 * n + 250_000),
            ]
        })
        .collect();
    assert_eq!(figures, expected);
    assert!(
        read <= week_rows,
        "the campaign's week read {read} days of sales"
    );

    let (rows, read) = rows_read_through(&db, "daily_clicks", async |db| {
        reads::clicks(db, 2, campaign, None, week).await
    })
    .await;
    let clicks: Vec<(NaiveDate, i64)> = rows.iter().map(|r| (r.day, r.clicks)).collect();
    let expected: Vec<(NaiveDate, i64)> = (9..=15)
        .map(|n| (february(n), 1_000_000 * n + 499_500))
        .collect();
    assert_eq!(clicks, expected);
    assert!(
        read <= week_rows,
        "the campaign's week read {read} days of clicks"
    );
}

#[tokio::test]
async fn a_new_deployments_codes_and_conversions_are_probed_by_key_before_any_analyze() {
    let test_db = TestDb::new(SCHEMAS).await;
    let db = test_db.pool(attribution_service::SCHEMA);
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    fill_unanalyzed(&mut conn, "codes", codes).await;
    fill_unanalyzed(&mut conn, "conversions", campaign_conversions).await;
    // Keys spread over the tables: every one of a batch on a page of its own.
    let step = UNANALYZED / BATCH_KEYS;

    let wanted: Vec<(i64, i64)> = (1..=BATCH_KEYS).map(|n| (2, n * step)).collect();
    let at = chrono::Utc::now();
    let events: Vec<_> = projection::codes(&mut conn, &wanted)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|mut row| {
            row.destination_url = "https://shop.example/new".to_owned();
            change(row, at)
        })
        .collect();
    assert_eq!(events.len(), wanted.len());
    let (dropped, read) = rows_read_by(&mut conn, "codes", async |conn| {
        projection::upsert_codes(conn, &events).await
    })
    .await;
    assert!(dropped.is_empty(), "{dropped:?}");
    assert!(
        read <= BATCH_BOUND,
        "{BATCH_KEYS} code events read {read} codes"
    );
    let stored = projection::codes(&mut conn, &wanted)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stored
            .iter()
            .all(|row| row.destination_url == "https://shop.example/new"),
        "every code event is stored"
    );

    let mut orders: Vec<conversions::OrderKey> = (1..=BATCH_KEYS)
        .map(|n| (2, 2, format!("order-{}", n * step)))
        .collect();
    orders.sort();
    let (found, read) = rows_read_by(&mut conn, "conversions", async |conn| {
        conversions::of_orders(conn, &orders).await
    })
    .await;
    let mut found: Vec<conversions::OrderKey> = found
        .into_iter()
        .map(|row| (row.brand_id, row.integration_id, row.store_order_id))
        .collect();
    found.sort();
    assert_eq!(found, orders);
    assert!(
        read <= BATCH_BOUND,
        "{BATCH_KEYS} orders read {read} conversions"
    );
}

/// A code as its event would bring it, at `at`.
fn change(row: projection::CodeRow, at: chrono::DateTime<chrono::Utc>) -> projection::CodeChange {
    projection::CodeChange {
        row,
        changed_at: at,
        renamed_from: String::new(),
        collided: false,
    }
}
