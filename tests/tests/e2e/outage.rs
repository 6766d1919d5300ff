//! PostgreSQL stopped hard in the middle of mint and order loads, on a private cluster: calls
//! fail fast with UNAVAILABLE while it is down (a click recorded then within seconds, naming
//! its id), the suite recovers without a restart, and
//! afterwards every acknowledged code exists exactly once and every order is attributed once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use suite_tests::flow::{attributed, ingest, mint_on, orders, scenario, totals};
use suite_tests::{brand, config};
use tonic::Code;
use tracking_api::attribution::v1::RecordClickRequest;
use tracking_api::attribution::v1::attribution_service_client::AttributionServiceClient;
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

    // A click recorded elsewhere, once the link is known to attribution.
    let slug = CodeMintServiceClient::new(channel.clone())
        .mint_code(authed(
            MintCodeRequest {
                campaign_id: s.campaign,
                creator_id: 1,
            },
            &brand(1),
        ))
        .await
        .ok()
        .and_then(|r| r.into_inner().code)
        .and_then(|c| c.links)
        .map(|l| l.slug)
        .unwrap_or_default();
    let click = |click_id: &str| {
        let mut attribution = AttributionServiceClient::new(channel.clone());
        let request = authed(
            RecordClickRequest {
                slug: slug.clone(),
                click_id: click_id.to_owned(),
                user_agent: "Mozilla/5.0 (iPhone) Mobile".into(),
                ..RecordClickRequest::default()
            },
            &brand(1),
        );
        async move { attribution.record_click(request).await }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(status) = click("").await {
        assert!(Instant::now() < deadline, "link never known: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster
        .stop_immediately()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A click sent while it is down is queued, not stored: UNAVAILABLE within seconds, naming
    // the id under which a retry counts it once.
    let started = Instant::now();
    let unstored = click("")
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    let Some((Code::Unavailable, message)) = unstored else {
        panic!("{unstored:?}");
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    let click_id = message
        .split("click_id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .to_owned();
    assert!(!click_id.is_empty(), "{message}");
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
    // The queued click, written once the database is back, and its retry: counted once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(status) = click(&click_id).await {
        assert!(Instant::now() < deadline, "click not recorded: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        totals(&channel, s.campaign).await.clicks,
        2,
        "each click once"
    );
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
