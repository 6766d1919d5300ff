//! Faults between the suite and PostgreSQL, through a fault-injecting TCP proxy: latency, a
//! stall of every byte, and every connection cut. Calls end within their deadline (plus a small
//! margin) while the database stalls, and the suite is fully back within 5 s of the fault ending,
//! with no connection lost from its pools and nothing counted twice.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use suite_tests::flow::{attributed, ingest, mint_on, orders, scenario};
use suite_tests::{brand, config};
use tonic::transport::Channel;
use tracking_api::attribution::v1::GetCampaignPerformanceRequest;
use tracking_api::attribution::v1::attribution_service_client::AttributionServiceClient;
use tracking_db::TestDb;
use tracking_testkit::proxy::{Fault, FaultProxy};
use tracking_testkit::{TestServer, authed};

/// One read RPC with a client deadline; its status code and how long it took.
async fn read(channel: &Channel, campaign: i64, deadline: Duration) -> (tonic::Code, Duration) {
    let mut request = authed(
        GetCampaignPerformanceRequest {
            campaign_id: campaign,
            range: None,
        },
        &brand(1),
    );
    request.set_timeout(deadline);
    let started = Instant::now();
    let code = match AttributionServiceClient::new(channel.clone())
        .get_campaign_performance(request)
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    (code, started.elapsed())
}

/// Waits until 20 concurrent reads all succeed; how long that took.
async fn fully_back(channel: &Channel, campaign: i64) -> Duration {
    let started = Instant::now();
    loop {
        let reads = (0..20).map(|_| read(channel, campaign, Duration::from_secs(2)));
        let results = futures::future::join_all(reads).await;
        if results.iter().all(|(code, _)| *code == tonic::Code::Ok) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not back within 5 s: {results:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn server_addr(url: &str) -> SocketAddr {
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    host.parse()
        .unwrap_or_else(|e| panic!("{host:?} in the test database URL: {e}"))
}

#[tokio::test]
async fn latency_stalls_and_cut_connections_to_the_database() {
    let db = TestDb::new(trackd::SCHEMAS).await;
    let upstream = server_addr(db.url());
    let proxy = FaultProxy::start(upstream)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = db
        .url()
        .replace(&upstream.to_string(), &proxy.addr.to_string());
    let suite = TestServer::spawn(move |grpc, http, shutdown| {
        trackd::run(config(&url), grpc, http, shutdown)
    })
    .await;
    let channel = suite.channel();
    let s = scenario(channel.clone(), 10).await;
    let mut codes = Vec::new();
    for creator in 1..=10 {
        codes.push(mint_on(&channel, s.campaign, creator).await);
    }
    ingest(&channel, orders(s.integration, &codes, 0, 50))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Latency: slower, still correct.
    proxy.set(Fault::Latency(Duration::from_millis(50)));
    let (code, took) = read(&channel, s.campaign, Duration::from_secs(5)).await;
    assert_eq!(code, tonic::Code::Ok);
    assert!(took >= Duration::from_millis(50), "{took:?}");

    // A stall: every call ends at its deadline (plus a margin), none hangs.
    proxy.set(Fault::Stall);
    let reads = (0..10).map(|_| read(&channel, s.campaign, Duration::from_millis(500)));
    for (code, took) in futures::future::join_all(reads).await {
        assert!(
            matches!(code, tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
            "{code:?}"
        );
        assert!(took < Duration::from_millis(800), "ended after {took:?}");
    }
    proxy.set(Fault::None);
    let back = fully_back(&channel, s.campaign).await;
    eprintln!("back {back:?} after the stall");

    // Every connection cut: calls fail for a moment, then the pools reconnect.
    proxy.cut_all();
    let back = fully_back(&channel, s.campaign).await;
    eprintln!("back {back:?} after the cut");

    // Nothing lost or doubled by the faults: everything again, each order counted once.
    ingest(&channel, orders(s.integration, &codes, 0, 100))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while attributed(&channel, s.campaign).await < 100 {
        assert!(
            Instant::now() < deadline,
            "orders not attributed after the faults"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attributed(&channel, s.campaign).await, 100);
}

/// Backends of the test database waiting on a lock with an insert into `plans`.
async fn blocked_plan_inserts(suite: &suite_tests::Suite) -> i64 {
    suite
        .count(
            "public",
            "select count(*)::bigint as n from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query ilike 'insert into plans%'",
        )
        .await
}

#[tokio::test]
async fn a_calls_database_work_stops_at_its_deadline() {
    use diesel_async::RunQueryDsl;
    use tracking_api::common::v1::Provider;
    use tracking_api::plan::v1::{CreatePlanRequest, Discount, Plan, discount};

    let suite = suite_tests::Suite::start().await;
    let token = brand(1);
    let integration =
        suite_tests::register_as(&suite, &token, Provider::Sandbox, "Deadline store").await;
    // Another session holds `plans` so that no plan can be written meanwhile.
    let mut holder = suite
        .schema("plan")
        .dedicated()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("begin")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query("lock table plans in exclusive mode")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut request = authed(
        CreatePlanRequest {
            plan: Some(Plan {
                name: "Never written".into(),
                integration_id: integration,
                discount: Some(Discount {
                    kind: Some(discount::Kind::PercentBps(1000)),
                }),
                code_pattern: "{username}{discount}".into(),
                ..Plan::default()
            }),
            request_id: String::new(),
        },
        &token,
    );
    request.set_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let status = suite
        .plan()
        .create_plan(request)
        .await
        .expect_err("the table is locked");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(900));

    // The abandoned insert does not wait on: PostgreSQL was asked to cancel it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while blocked_plan_inserts(&suite).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the insert still waits on the lock 2 s after its call ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    diesel::sql_query("commit")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        suite
            .count("plan", "select count(*)::bigint as n from plans")
            .await,
        0,
        "nothing was written"
    );
}
