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
