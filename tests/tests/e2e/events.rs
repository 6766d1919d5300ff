//! PlanService's WatchEvents: full state on every change, replay after a restart, live follow,
//! resume from a sequence number, brand scoping.

use std::time::Duration;

use futures::StreamExt;
use suite_tests::{Suite, brand, creator_token, register, token};
use tonic::Code;
use tonic::codec::Streaming;
use tracking_api::common::v1::Provider;
use tracking_api::plan::v1::plan_event::Subject;
use tracking_api::plan::v1::{
    AddCreatorRequest, CreateCampaignRequest, CreatePlanRequest, CreatorProfile, Discount,
    EventKind, LinkPlanRequest, Plan, PlanEvent, WatchEventsRequest, WatchEventsResponse, discount,
};
use tracking_server::Role;
use tracking_testkit::authed;

async fn watch(suite: &Suite, token: &str, after_seq: i64) -> Streaming<WatchEventsResponse> {
    suite
        .plan()
        .watch_events(authed(WatchEventsRequest { after_seq }, token))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchEventsResponse>) -> PlanEvent {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(response))) => response.event.unwrap_or_default(),
        other => panic!("no event: {other:?}"),
    }
}

/// Builds a plan, two campaigns sharing it and a roster entry for `token`'s brand.
async fn activity(suite: &Suite, token: &str) {
    let integration = register(suite, token, Provider::Sandbox).await;
    let mut client = suite.plan();
    let plan_id = client
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: "Evented".into(),
                    integration_id: integration,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1500)),
                    }),
                    code_pattern: "{username}{discount}".into(),
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let mut campaigns = Vec::new();
    for name in ["One", "Two"] {
        campaigns.push(
            client
                .create_campaign(authed(
                    CreateCampaignRequest {
                        name: name.into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
                .unwrap_or_else(|s| panic!("{s}")),
        );
    }
    for (campaign_id, allow_shared) in [(campaigns[0], false), (campaigns[1], true)] {
        client
            .link_plan(authed(
                LinkPlanRequest {
                    campaign_id,
                    plan_id,
                    allow_shared,
                },
                token,
            ))
            .await
            .unwrap_or_else(|s| panic!("{s}"));
    }
    client
        .add_creator(authed(
            AddCreatorRequest {
                campaign_id: campaigns[0],
                creator_id: 5,
                profile: Some(CreatorProfile {
                    username: "ana".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
}

fn kind(event: &PlanEvent) -> EventKind {
    EventKind::try_from(event.kind).unwrap_or(EventKind::Unspecified)
}

#[tokio::test]
async fn events_carry_full_state_and_replay_after_a_restart() {
    let mut suite = Suite::start().await;
    let token = brand(1);
    activity(&suite, &token).await;

    let expected = [
        EventKind::PlanCreated,
        EventKind::CampaignCreated,
        EventKind::CampaignCreated,
        EventKind::CampaignPlanLinked,
        // Linking the second campaign changes both campaigns' shared-plan warning.
        EventKind::CampaignPlanLinked,
        EventKind::CampaignPlanLinked,
        EventKind::CreatorAdded,
    ];
    let mut stream = watch(&suite, &token, 0).await;
    let mut before = Vec::new();
    for _ in expected {
        before.push(next(&mut stream).await);
    }
    assert_eq!(before.iter().map(kind).collect::<Vec<_>>(), expected);
    assert!(before.windows(2).all(|w| w[0].seq < w[1].seq));
    let shared: Vec<_> = before[4..6]
        .iter()
        .map(|e| match &e.subject {
            Some(Subject::Campaign(c)) => c.shared_plan_warning.is_some(),
            _ => false,
        })
        .collect();
    assert_eq!(shared, vec![true, true], "both campaigns carry the warning");
    match &before[6].subject {
        Some(Subject::RosterEntry(entry)) => {
            assert_eq!(
                entry.profile.as_ref().map(|p| p.username.as_str()),
                Some("ana")
            );
        }
        other => panic!("roster entry expected, got {other:?}"),
    }

    suite.restart().await;
    // The old server's stream ended at its shutdown, not OK: its client resumes elsewhere.
    let ended = stream.message().await.err().map(|s| s.code());
    assert_eq!(ended, Some(Code::Unavailable));
    let mut replay = watch(&suite, &token, 0).await;
    let mut after = Vec::new();
    for _ in expected {
        after.push(next(&mut replay).await);
    }
    assert_eq!(before, after, "replay is identical after a restart");

    // Resuming from a seq gives only what follows it.
    let mut resumed = watch(&suite, &token, before[4].seq).await;
    assert_eq!(next(&mut resumed).await.seq, before[5].seq);
}

#[tokio::test]
async fn watchers_follow_live_and_see_only_their_brand() {
    let suite = Suite::start().await;
    let mut own = watch(&suite, &brand(1), 0).await;
    let mut other = watch(&suite, &brand(2), 0).await;
    let mut all = watch(&suite, &token(0, Role::Service), 0).await;

    activity(&suite, &brand(1)).await;
    let first = next(&mut own).await;
    assert_eq!((kind(&first), first.brand_id), (EventKind::PlanCreated, 1));
    assert_eq!(next(&mut all).await.seq, first.seq);

    activity(&suite, &brand(2)).await;
    let theirs = next(&mut other).await;
    assert_eq!(
        (kind(&theirs), theirs.brand_id),
        (EventKind::PlanCreated, 2)
    );
    // The service watcher sees brand 1's remaining events, then brand 2's.
    let mut brands = Vec::new();
    for _ in 0..13 {
        brands.push(next(&mut all).await.brand_id);
    }
    assert_eq!(brands, [vec![1; 6], vec![2; 7]].concat());
}

#[tokio::test]
async fn watch_refuses_creators_and_bad_cursors() {
    let suite = Suite::start().await;
    let mut client = suite.plan();
    let status = client
        .watch_events(authed(
            WatchEventsRequest { after_seq: 0 },
            &creator_token(1, 3),
        ))
        .await
        .expect_err("creator");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client
        .watch_events(authed(WatchEventsRequest { after_seq: -5 }, &brand(1)))
        .await
        .expect_err("negative");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("after_seq"));
}
