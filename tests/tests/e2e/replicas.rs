//! Replicas and crashes, with the suite in child processes on one database: both replicas serve
//! RPCs, exactly one consumes each stream, a SIGKILLed consumer's streams are taken over within
//! 10 s, minting spread over both gives no duplicate code, and a SIGKILL in the middle of an
//! order load neither loses nor double counts an order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use suite_tests::flow::{attributed, ingest, mint_on, orders, scenario};
use suite_tests::{Node, brand};
use tracking_api::gateway::v1::GetIntegrationRequest;
use tracking_db::TestDb;
use tracking_testkit::authed;

const NODE: &str = env!("CARGO_BIN_EXE_suite-node");

/// Stream consumers holding their lock in the test database (session advisory locks named
/// `<schema>.consumer.<stream>`): mint's plan stream and attribution's three.
async fn active_consumers(db: &TestDb) -> i64 {
    let pool = db.pool("public");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = pool.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel_async::RunQueryDsl::get_result::<Count>(
        diesel::sql_query(
            "select count(*) as n from pg_locks l
             join (select hashtext(k)::bigint as key from unnest(array[
                 'mint.consumer.plan-events', 'attribution.consumer.plan-events',
                 'attribution.consumer.code-events', 'attribution.consumer.order-events']) as k) c
               on l.classid = ((c.key >> 32) & 4294967295)::oid
              and l.objid = (c.key & 4294967295)::oid and l.objsubid = 1
             where l.locktype = 'advisory' and l.granted
               and l.database = (select oid from pg_database where datname = current_database())",
        ),
        &mut conn,
    )
    .await
    .map(|c| c.n)
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn replicas_share_rpcs_one_consumes_and_the_other_takes_over() {
    let db = TestDb::new(trackd::SCHEMAS).await;
    let mut a = Node::spawn(NODE, db.url()).await;
    wait_for(
        "node A consumes every stream",
        Duration::from_secs(15),
        async || active_consumers(&db).await == 4,
    )
    .await;
    let b = Node::spawn(NODE, db.url()).await;
    let s = scenario(a.channel.clone(), 60).await;
    // Both serve RPCs: what A created, B reads.
    let seen = b
        .gateway()
        .get_integration(authed(
            GetIntegrationRequest {
                integration_id: s.integration,
                ..Default::default()
            },
            &brand(1),
        ))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id));
    assert_eq!(seen.ok().flatten(), Some(s.integration));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        active_consumers(&db).await,
        4,
        "one consumer per stream, not two"
    );

    // Minting spread over both replicas, concurrently: one code per creator, all distinct.
    let mut calls = Vec::new();
    for creator in 1..=60 {
        let (first, second) = if creator % 2 == 0 { (&a, &b) } else { (&b, &a) };
        calls.push(mint_on(&first.channel, s.campaign, creator));
        calls.push(mint_on(&second.channel, s.campaign, creator));
    }
    let codes = futures::future::join_all(calls).await;
    let per_creator: Vec<&String> = codes.iter().step_by(2).collect();
    for pair in codes.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "both replicas gave the creator the same code"
        );
    }
    let distinct: HashSet<String> = per_creator.iter().map(|c| c.to_lowercase()).collect();
    assert_eq!(distinct.len(), 60, "no code given to two creators");

    // The active consumer dies: the standby takes over within 10 s and attribution goes on.
    a.kill();
    let took = wait_for("B takes over", Duration::from_secs(10), async || {
        active_consumers(&db).await == 4
    })
    .await;
    eprintln!("standby took over after {took:?}");
    let codes: Vec<String> = per_creator.into_iter().cloned().collect();
    assert_eq!(
        ingest(&b.channel, orders(s.integration, &codes, 0, 30))
            .await
            .ok(),
        Some(30)
    );
    wait_for(
        "orders attributed by B",
        Duration::from_secs(20),
        async || attributed(&b.channel, s.campaign).await == 30,
    )
    .await;
}

#[tokio::test]
async fn a_sigkill_mid_load_loses_and_doubles_nothing() {
    let db = TestDb::new(trackd::SCHEMAS).await;
    let mut node = Node::spawn(NODE, db.url()).await;
    let s = scenario(node.channel.clone(), 10).await;
    let mut codes = Vec::new();
    for creator in 1..=10 {
        codes.push(mint_on(&node.channel, s.campaign, creator).await);
    }
    // Orders stream in batches; the process is killed while they are being ingested and
    // attributed.
    const TOTAL: usize = 1_500;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let progress = progress.clone();
        let channel = node.channel.clone();
        let codes = codes.clone();
        let integration = s.integration;
        tokio::spawn(async move {
            let client =
                tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient::new(
                    channel,
                );
            let mut acknowledged = 0usize;
            for start in (0..TOTAL).step_by(100) {
                let batch = orders(integration, &codes, start, start + 100);
                match client
                    .clone()
                    .ingest_orders(authed(tokio_stream::iter(batch), &brand(1)))
                    .await
                {
                    Ok(_) => {
                        acknowledged = start + 100;
                        progress.store(acknowledged, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(_) => break,
                }
            }
            acknowledged
        })
    };
    // Killed once a few batches are in: orders are being stored and attributed at that moment.
    wait_for("some orders stored", Duration::from_secs(30), async || {
        progress.load(std::sync::atomic::Ordering::SeqCst) >= 300
    })
    .await;
    node.kill();
    let acknowledged = sender.await.unwrap_or_default();
    eprintln!("{acknowledged} orders acknowledged before the kill");
    assert!(acknowledged < TOTAL, "the kill happened mid-load");

    let node = Node::spawn(NODE, db.url()).await;
    // Everything is sent again: what was stored is a duplicate, the rest is new.
    for start in (0..TOTAL).step_by(500) {
        ingest(
            &node.channel,
            orders(s.integration, &codes, start, start + 500),
        )
        .await
        .unwrap_or_else(|st| panic!("{st}"));
    }
    wait_for(
        "every order attributed",
        Duration::from_secs(120),
        async || attributed(&node.channel, s.campaign).await >= TOTAL as i64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        attributed(&node.channel, s.campaign).await,
        TOTAL as i64,
        "none counted twice"
    );
    let pool = db.pool("attribution");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = pool.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let conversions = diesel_async::RunQueryDsl::get_result::<Count>(
        diesel::sql_query("select count(*) as n from conversions"),
        &mut conn,
    )
    .await
    .map(|c| c.n)
    .unwrap_or_default();
    assert_eq!(conversions, TOTAL as i64);
}
