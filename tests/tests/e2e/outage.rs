//! PostgreSQL stopped hard in the middle of mint and order loads, on a private cluster: calls
//! fail fast with UNAVAILABLE while it is down, the suite recovers without a restart, and
//! afterwards every acknowledged code exists exactly once and every order is attributed once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use suite_tests::flow::{attributed, ingest, mint_on, orders, scenario};
use suite_tests::{brand, config};
use tonic::Code;
use tracking_api::mint::v1::MintCodeRequest;
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_db::PrivateCluster;
use tracking_testkit::{TestServer, authed};

#[tokio::test]
async fn a_database_outage_fails_fast_and_recovers_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("tracking-outage-{}", std::process::id()));
    let Ok((cluster, server)) = PrivateCluster::start(&dir).await else {
        eprintln!("no PostgreSQL binaries to start a private cluster; skipped");
        return;
    };
    let url = tracking_db::url::with_database(&server, "outage");
    tracking_db::create_database(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let suite = TestServer::spawn({
        let url = url.clone();
        move |grpc, http, shutdown| trackd::run(config(&url), grpc, http, shutdown)
    })
    .await;
    let channel = suite.channel();
    let s = scenario(channel.clone(), 40).await;
    let mut codes = Vec::new();
    for creator in 1..=20 {
        codes.push(mint_on(&channel, s.campaign, creator).await);
    }
    assert_eq!(
        ingest(&channel, orders(s.integration, &codes, 0, 100))
            .await
            .ok(),
        Some(100)
    );

    cluster
        .stop_immediately()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // While it is down: mint and order calls end at once with UNAVAILABLE.
    for creator in 21..=23 {
        let started = Instant::now();
        let status = CodeMintServiceClient::new(channel.clone())
            .mint_code(authed(
                MintCodeRequest {
                    campaign_id: s.campaign,
                    creator_id: creator,
                },
                &brand(1),
            ))
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(status, Some(Code::Unavailable));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let refused = ingest(&channel, orders(s.integration, &codes, 100, 200)).await;
    assert_eq!(refused.err().map(|s| s.code()), Some(Code::Unavailable));
    assert!(started.elapsed() < Duration::from_secs(3));

    cluster
        .start_again()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = Instant::now();
    // Back without a restart: within 5 s calls succeed again.
    loop {
        if ingest(&channel, orders(s.integration, &codes, 100, 200))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut after = Vec::new();
    for creator in 21..=40 {
        after.push(mint_on(&channel, s.campaign, creator).await);
    }
    // Everything again: duplicates change nothing.
    ingest(&channel, orders(s.integration, &codes, 0, 200))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while attributed(&channel, s.campaign).await < 200 {
        assert!(
            Instant::now() < deadline,
            "orders not attributed after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        attributed(&channel, s.campaign).await,
        200,
        "each order once"
    );
    let all: Vec<String> = codes.into_iter().chain(after).collect();
    let distinct: HashSet<String> = all.iter().map(|c| c.to_lowercase()).collect();
    assert_eq!(distinct.len(), 40, "every creator one code of their own");
    for creator in 1..=20 {
        assert_eq!(
            mint_on(&channel, s.campaign, creator).await,
            all[creator as usize - 1],
            "minting again returns the same code"
        );
    }
    drop(suite);
}
