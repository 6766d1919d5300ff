//! Campaigns and rosters: one plan per campaign, shared plans with a visible warning, the
//! outreach lock, archive, and the roster's life cycle.

use suite_tests::{Suite, brand, register};
use tonic::Code;
use tracking_api::common::v1::{PageRequest, Provider};
use tracking_api::plan::v1::{
    AddCreatorRequest, ApproveCreatorRequest, ArchiveCampaignRequest, Campaign,
    CreateCampaignRequest, CreatePlanRequest, CreatorProfile, Discount, GetCampaignRequest,
    LinkPlanRequest, ListCampaignsRequest, ListRosterRequest, Plan, RemoveCreatorRequest,
    RosterStatus, StartOutreachRequest, UpdateCreatorProfileRequest, discount,
};
use tracking_testkit::authed;

async fn plan(suite: &Suite, token: &str, integration_id: i64, name: &str) -> i64 {
    suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: name.into(),
                    integration_id,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1000)),
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
        .unwrap_or_else(|s| panic!("{s}"))
}

async fn campaign(suite: &Suite, token: &str, name: &str, plan_id: i64) -> Campaign {
    suite
        .plan()
        .create_campaign(authed(
            CreateCampaignRequest {
                name: name.into(),
                plan_id,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"))
}

async fn get(suite: &Suite, token: &str, id: i64) -> Campaign {
    suite
        .plan()
        .get_campaign(authed(GetCampaignRequest { campaign_id: id }, token))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"))
}

fn profile(first: &str) -> CreatorProfile {
    CreatorProfile {
        first_name: first.into(),
        last_name: "Creator".into(),
        email: format!("{}@example.com", first.to_lowercase()),
        username: first.to_lowercase(),
        social_handles: [("instagram".to_owned(), format!("@{}", first.to_lowercase()))].into(),
    }
}

/// The campaign's roster, its first page.
async fn roster_of(
    suite: &Suite,
    token: &str,
    campaign_id: i64,
) -> Vec<tracking_api::plan::v1::RosterEntry> {
    suite
        .plan()
        .list_roster(authed(
            ListRosterRequest {
                campaign_id,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_else(|s| panic!("{s}"))
}

/// Each entry's creator, status and first name.
fn summary(entries: &[tracking_api::plan::v1::RosterEntry]) -> Vec<(i64, i32, String)> {
    entries
        .iter()
        .map(|e| {
            let name = e.profile.as_ref().map(|p| p.first_name.clone());
            (e.creator_id, e.status, name.unwrap_or_default())
        })
        .collect()
}

#[tokio::test]
async fn a_shared_plan_needs_consent_and_warns_both_campaigns() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let shared = plan(&suite, &token, integration, "Shared").await;
    let first = campaign(&suite, &token, "First", shared).await;
    assert!(first.shared_plan_warning.is_none());
    let second = campaign(&suite, &token, "Second", 0).await;
    let mut client = suite.plan();

    let status = client
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: second.id,
                plan_id: shared,
                allow_shared: false,
            },
            &token,
        ))
        .await
        .expect_err("needs allow_shared");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("allow_shared"));
    assert_eq!(get(&suite, &token, second.id).await.plan_id, 0);

    let linked = client
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: second.id,
                plan_id: shared,
                allow_shared: true,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let warning = linked.shared_plan_warning.unwrap_or_default();
    assert_eq!(warning.other_campaign_ids, vec![first.id]);
    assert!(warning.message.contains("recorded in each"));
    let first_now = get(&suite, &token, first.id).await;
    assert_eq!(
        first_now.shared_plan_warning.map(|w| w.other_campaign_ids),
        Some(vec![second.id])
    );

    // Moving the second campaign to its own plan clears both warnings.
    let own = plan(&suite, &token, integration, "Own").await;
    client
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: second.id,
                plan_id: own,
                allow_shared: false,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert!(
        get(&suite, &token, first.id)
            .await
            .shared_plan_warning
            .is_none()
    );
    assert!(
        get(&suite, &token, second.id)
            .await
            .shared_plan_warning
            .is_none()
    );

    // Linking the plan it already has changes nothing.
    let again = client
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: second.id,
                plan_id: own,
                allow_shared: false,
            },
            &token,
        ))
        .await;
    assert!(again.is_ok());

    // Campaigns filter by plan.
    let by_plan = client
        .list_campaigns(authed(
            ListCampaignsRequest {
                plan_id: shared,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .campaigns
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        });
    assert_eq!(by_plan.ok(), Some(vec![first.id]));
}

#[tokio::test]
async fn outreach_locks_the_campaigns_plan() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let a = plan(&suite, &token, integration, "A").await;
    let b = plan(&suite, &token, integration, "B").await;
    let c = campaign(&suite, &token, "Launch", 0).await;
    let mut client = suite.plan();

    let status = client
        .start_outreach(authed(StartOutreachRequest { campaign_id: c.id }, &token))
        .await
        .expect_err("no plan yet");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Before launch the plan may change.
    for plan_id in [a, b] {
        let linked = client
            .link_plan(authed(
                LinkPlanRequest {
                    campaign_id: c.id,
                    plan_id,
                    allow_shared: false,
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner().campaign.unwrap_or_default().plan_id);
        assert_eq!(linked.ok(), Some(plan_id));
    }
    for _ in 0..2 {
        let started = client
            .start_outreach(authed(StartOutreachRequest { campaign_id: c.id }, &token))
            .await
            .map(|r| r.into_inner().campaign.unwrap_or_default().outreach_started);
        assert_eq!(started.ok(), Some(true));
    }
    let status = client
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: c.id,
                plan_id: a,
                allow_shared: false,
            },
            &token,
        ))
        .await
        .expect_err("locked");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("locked"));
    // Archived since, the campaign still answers a retry of its start as the start did.
    client
        .archive_campaign(authed(ArchiveCampaignRequest { campaign_id: c.id }, &token))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let retried = client
        .start_outreach(authed(StartOutreachRequest { campaign_id: c.id }, &token))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default().outreach_started);
    assert_eq!(retried.ok(), Some(true));
}

#[tokio::test]
async fn archived_campaigns_stay_readable_and_take_no_new_creators() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let p = plan(&suite, &token, integration, "P").await;
    let c = campaign(&suite, &token, "Old", p).await;
    let mut client = suite.plan();
    client
        .add_creator(authed(
            AddCreatorRequest {
                campaign_id: c.id,
                creator_id: 7,
                profile: Some(profile("Ana")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    for _ in 0..2 {
        let archived = client
            .archive_campaign(authed(ArchiveCampaignRequest { campaign_id: c.id }, &token))
            .await
            .map(|r| r.into_inner().campaign.unwrap_or_default().archived);
        assert_eq!(archived.ok(), Some(true));
    }
    let read = get(&suite, &token, c.id).await;
    assert!(read.archived && read.plan_id == p);
    let roster = client
        .list_roster(authed(
            ListRosterRequest {
                campaign_id: c.id,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().entries.len());
    assert_eq!(roster.ok(), Some(1));
    let status = client
        .add_creator(authed(
            AddCreatorRequest {
                campaign_id: c.id,
                creator_id: 8,
                profile: Some(profile("Bo")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect_err("archived");
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Hidden from the default list, shown on request.
    let default = client
        .list_campaigns(authed(ListCampaignsRequest::default(), &token))
        .await
        .map(|r| r.into_inner().campaigns.len());
    assert_eq!(default.ok(), Some(0));
    let all = client
        .list_campaigns(authed(
            ListCampaignsRequest {
                include_archived: true,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaigns.len());
    assert_eq!(all.ok(), Some(1));
}

#[tokio::test]
async fn roster_life_cycle() {
    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Roster", 0).await;
    let mut client = suite.plan();
    let add = |creator_id: i64, profile: CreatorProfile, request_id: &str| AddCreatorRequest {
        campaign_id: c.id,
        creator_id,
        profile: Some(profile),
        approved: false,
        request_id: request_id.into(),
    };

    let entry = client
        .add_creator(authed(add(1, profile("Jose"), "add-1"), &token))
        .await
        .map(|r| r.into_inner().entry.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(entry.status, RosterStatus::Added as i32);
    // The same request again, or the same add without a request id, is a no-op.
    assert!(
        client
            .add_creator(authed(add(1, profile("Jose"), "add-1"), &token))
            .await
            .is_ok()
    );
    assert!(
        client
            .add_creator(authed(add(1, profile("Jose"), ""), &token))
            .await
            .is_ok()
    );
    // The id reused for another add, even in another campaign or naming none, is refused and
    // adds nothing.
    let other = campaign(&suite, &token, "Roster too", 0).await;
    for campaign_id in [other.id, 999_999] {
        let reused = client
            .add_creator(authed(
                AddCreatorRequest {
                    campaign_id,
                    ..add(9, profile("Ines"), "add-1")
                },
                &token,
            ))
            .await
            .expect_err("another add under the same request id");
        assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
        assert!(reused.message().starts_with("request_id:"), "{reused:?}");
    }
    let listed = client
        .list_roster(authed(
            ListRosterRequest {
                campaign_id: other.id,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().entries.len());
    assert_eq!(listed.ok(), Some(0));
    // A different add of the same creator is refused.
    let status = client
        .add_creator(authed(add(1, profile("Other"), ""), &token))
        .await
        .expect_err("already there");
    assert_eq!(status.code(), Code::AlreadyExists);

    // Incomplete profiles are accepted (minting reports what is missing); malformed ones are not.
    let incomplete = CreatorProfile {
        first_name: String::new(),
        email: String::new(),
        ..profile("Kim")
    };
    assert!(
        client
            .add_creator(authed(add(2, incomplete, ""), &token))
            .await
            .is_ok()
    );
    let bad = CreatorProfile {
        social_handles: [("myspace".to_owned(), "x".to_owned())].into(),
        ..profile("Lee")
    };
    let status = client
        .add_creator(authed(add(3, bad, ""), &token))
        .await
        .expect_err("network");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("profile.social_handles.myspace")
    );
    let status = client
        .add_creator(authed(add(0, profile("Zed"), ""), &token))
        .await
        .expect_err("id");
    assert!(status.message().starts_with("creator_id"));
    // A control character reaches no table (PostgreSQL refuses a NUL: it was INTERNAL).
    let nul = CreatorProfile {
        social_handles: [("instagram".to_owned(), "jo\0se".to_owned())].into(),
        ..profile("Jo")
    };
    for (request, field) in [
        (add(4, nul, ""), "profile.social_handles.instagram"),
        (add(4, profile("Jo"), "key\0"), "request_id"),
    ] {
        let status = client
            .add_creator(authed(request, &token))
            .await
            .expect_err("control character");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    // A key is counted in characters, as documented.
    assert!(
        client
            .add_creator(authed(add(4, profile("Jo"), &"键".repeat(100)), &token))
            .await
            .is_ok()
    );

    let approved = client
        .approve_creator(authed(
            ApproveCreatorRequest {
                campaign_id: c.id,
                creator_id: 1,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().entry.unwrap_or_default());
    assert!(
        approved
            .as_ref()
            .is_ok_and(|e| e.status == RosterStatus::Approved as i32 && e.approved_at.is_some())
    );

    let updated = client
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: c.id,
                creator_id: 2,
                profile: Some(profile("Kim")),
            },
            &token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .entry
                .unwrap_or_default()
                .profile
                .unwrap_or_default()
                .first_name
        });
    assert_eq!(updated.ok().as_deref(), Some("Kim"));

    for _ in 0..2 {
        let removed = client
            .remove_creator(authed(
                RemoveCreatorRequest {
                    campaign_id: c.id,
                    creator_id: 1,
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner().entry.unwrap_or_default().status);
        assert_eq!(removed.ok(), Some(RosterStatus::Removed as i32));
    }
    let status = client
        .approve_creator(authed(
            ApproveCreatorRequest {
                campaign_id: c.id,
                creator_id: 1,
            },
            &token,
        ))
        .await
        .expect_err("removed");
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Adding a removed creator again restores them.
    let back = client
        .add_creator(authed(add(1, profile("Jose"), ""), &token))
        .await
        .map(|r| r.into_inner().entry.unwrap_or_default());
    assert!(back.is_ok_and(|e| e.status == RosterStatus::Added as i32 && e.removed_at.is_none()));

    let status = client
        .approve_creator(authed(
            ApproveCreatorRequest {
                campaign_id: c.id,
                creator_id: 99,
            },
            &token,
        ))
        .await
        .expect_err("not on roster");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn roster_pages_and_filters_and_is_tenant_scoped() {
    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Big", 0).await;
    let mut client = suite.plan();
    for creator_id in 1..=9 {
        client
            .add_creator(authed(
                AddCreatorRequest {
                    campaign_id: c.id,
                    creator_id,
                    profile: Some(profile(&format!("C{creator_id}"))),
                    approved: creator_id % 3 == 0,
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .unwrap_or_else(|s| panic!("{s}"));
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_roster(authed(
                ListRosterRequest {
                    campaign_id: c.id,
                    page: Some(PageRequest {
                        page_size: 4,
                        page_token: page_token.clone(),
                    }),
                    status: 0,
                },
                &token,
            ))
            .await
            .unwrap_or_else(|s| panic!("{s}"))
            .into_inner();
        seen.extend(page.entries.iter().map(|e| e.creator_id));
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, (1..=9).collect::<Vec<_>>());
    let approved = client
        .list_roster(authed(
            ListRosterRequest {
                campaign_id: c.id,
                status: RosterStatus::Approved as i32,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .entries
                .iter()
                .map(|e| e.creator_id)
                .collect::<Vec<_>>()
        });
    assert_eq!(approved.ok(), Some(vec![3, 6, 9]));

    let other = brand(2);
    for status in [
        client
            .list_roster(authed(
                ListRosterRequest {
                    campaign_id: c.id,
                    ..Default::default()
                },
                &other,
            ))
            .await
            .err(),
        client
            .get_campaign(authed(GetCampaignRequest { campaign_id: c.id }, &other))
            .await
            .err(),
        client
            .add_creator(authed(
                AddCreatorRequest {
                    campaign_id: c.id,
                    creator_id: 50,
                    profile: Some(profile("X")),
                    ..Default::default()
                },
                &other,
            ))
            .await
            .err(),
        client
            .remove_creator(authed(
                RemoveCreatorRequest {
                    campaign_id: c.id,
                    creator_id: 1,
                },
                &other,
            ))
            .await
            .err(),
        client
            .start_outreach(authed(StartOutreachRequest { campaign_id: c.id }, &other))
            .await
            .err(),
    ] {
        assert_eq!(status.map(|s| s.code()), Some(Code::NotFound));
    }
}

#[tokio::test]
async fn bulk_adds_restore_removed_creators_and_announce_only_what_they_add() {
    use futures::StreamExt;
    use tracking_api::plan::v1::plan_event::Subject;
    use tracking_api::plan::v1::{
        AddCreatorsRequest, EventKind, NewRosterEntry, WatchEventsRequest,
    };

    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Restore", 0).await;
    let mut client = suite.plan();
    let entry = |creator_id: i64, first: &str, approved: bool| NewRosterEntry {
        creator_id,
        profile: Some(profile(first)),
        approved,
    };
    let add = |creators: Vec<NewRosterEntry>| {
        authed(
            AddCreatorsRequest {
                campaign_id: c.id,
                request_id: String::new(),
                creators,
            },
            &token,
        )
    };
    client
        .add_creators(add(vec![entry(1, "Ana", false), entry(2, "Bo", false)]))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    client
        .remove_creator(authed(
            RemoveCreatorRequest {
                campaign_id: c.id,
                creator_id: 2,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));

    // A new creator, the removed one back (approved, new profile), and one already there.
    let added = client
        .add_creators(add(vec![
            entry(9, "Cy", false),
            entry(2, "Bea", true),
            entry(1, "Ana", false),
        ]))
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        summary(&added),
        vec![
            (9, RosterStatus::Added as i32, "Cy".to_owned()),
            (2, RosterStatus::Approved as i32, "Bea".to_owned()),
            (1, RosterStatus::Added as i32, "Ana".to_owned()),
        ]
    );
    // Approving through an add is refused: that is ApproveCreator's.
    let status = client
        .add_creators(add(vec![entry(1, "Ana", true)]))
        .await
        .expect_err("creator 1 is on the roster, not approved");
    assert_eq!(status.code(), Code::AlreadyExists);

    // The events: the first batch's two adds, the removal, the second batch's two adds in its
    // order, and nothing for creator 1 again: the next is this approval's.
    client
        .approve_creator(authed(
            ApproveCreatorRequest {
                campaign_id: c.id,
                creator_id: 9,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let mut events = client
        .watch_events(authed(WatchEventsRequest { after_seq: 0 }, &token))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let mut roster = Vec::new();
    while roster.len() < 6 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), events.next()).await;
        let Ok(Some(Ok(response))) = next else {
            panic!("no event after {roster:?}");
        };
        let event = response.event.unwrap_or_default();
        if let Some(Subject::RosterEntry(e)) = event.subject {
            roster.push((event.kind, e.creator_id));
        }
    }
    let (added, removed, approved) = (
        EventKind::CreatorAdded as i32,
        EventKind::CreatorRemoved as i32,
        EventKind::CreatorApproved as i32,
    );
    assert_eq!(
        roster,
        vec![
            (added, 1),
            (added, 2),
            (removed, 2),
            (added, 9),
            (added, 2),
            (approved, 9)
        ]
    );
}

#[tokio::test]
async fn bulk_adds_are_all_or_nothing_and_idempotent() {
    use tracking_api::plan::v1::{AddCreatorsRequest, NewRosterEntry};

    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Bulk", 0).await;
    let mut client = suite.plan();
    let entry = |creator_id: i64, first: &str| NewRosterEntry {
        creator_id,
        profile: Some(profile(first)),
        approved: creator_id % 2 == 0,
    };
    let batch = AddCreatorsRequest {
        campaign_id: c.id,
        request_id: String::new(),
        creators: vec![entry(1, "Ana"), entry(2, "Bo"), entry(3, "Cy")],
    };
    let added = client
        .add_creators(authed(batch.clone(), &token))
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        added.iter().map(|e| e.creator_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(added[1].status, RosterStatus::Approved as i32);
    // The same batch again changes nothing.
    assert!(client.add_creators(authed(batch, &token)).await.is_ok());

    // One conflicting entry refuses the whole batch.
    let status = client
        .add_creators(authed(
            AddCreatorsRequest {
                campaign_id: c.id,
                request_id: String::new(),
                creators: vec![entry(4, "Di"), entry(1, "Other")],
            },
            &token,
        ))
        .await
        .expect_err("creator 1 differs");
    assert_eq!(status.code(), Code::AlreadyExists);
    for (creators, field) in [
        (
            vec![entry(5, "Ed"), entry(5, "Ed")],
            "creators[1].creator_id",
        ),
        (
            vec![NewRosterEntry {
                profile: Some(CreatorProfile {
                    email: "nope".into(),
                    ..profile("Fi")
                }),
                ..entry(6, "Fi")
            }],
            "creators[0].profile.email",
        ),
        (vec![], "creators"),
    ] {
        let status = client
            .add_creators(authed(
                AddCreatorsRequest {
                    campaign_id: c.id,
                    request_id: String::new(),
                    creators,
                },
                &token,
            ))
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    let roster: Vec<i64> = roster_of(&suite, &token, c.id)
        .await
        .iter()
        .map(|e| e.creator_id)
        .collect();
    assert_eq!(
        roster,
        vec![1, 2, 3],
        "nothing of the refused batches was written"
    );
}

/// A batch retried under its request id after the brand removed one of its creators and changed
/// another's profile changes nothing: without the key the retry would put the removed creator
/// back (and get them a new code), or be refused for the changed profile.
#[tokio::test]
async fn a_bulk_add_retried_under_its_request_id_changes_nothing() {
    use tracking_api::plan::v1::{AddCreatorsRequest, NewRosterEntry};

    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Import", 0).await;
    let mut client = suite.plan();
    let entry = |creator_id: i64, first: &str| NewRosterEntry {
        creator_id,
        profile: Some(profile(first)),
        approved: true,
    };
    let batch = AddCreatorsRequest {
        campaign_id: c.id,
        request_id: "import-1".into(),
        creators: vec![entry(3, "Cy"), entry(1, "Ana"), entry(2, "Bo")],
    };
    client
        .add_creators(authed(batch.clone(), &token))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    client
        .remove_creator(authed(
            RemoveCreatorRequest {
                campaign_id: c.id,
                creator_id: 1,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    client
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: c.id,
                creator_id: 2,
                profile: Some(profile("Bob")),
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));

    let retried = client
        .add_creators(authed(batch, &token))
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(
        summary(&retried),
        vec![
            (3, RosterStatus::Approved as i32, "Cy".to_owned()),
            (1, RosterStatus::Removed as i32, "Ana".to_owned()),
            (2, RosterStatus::Approved as i32, "Bob".to_owned()),
        ],
        "the entries as they are now, in request order"
    );
    let removed: Vec<(i64, i32)> = roster_of(&suite, &token, c.id)
        .await
        .iter()
        .map(|e| (e.creator_id, e.status))
        .collect();
    assert_eq!(
        removed,
        vec![
            (1, RosterStatus::Removed as i32),
            (2, RosterStatus::Approved as i32),
            (3, RosterStatus::Approved as i32)
        ],
        "creator 1 stays removed"
    );

    // The request id with another batch is refused, adding nobody.
    let reused = client
        .add_creators(authed(
            AddCreatorsRequest {
                campaign_id: c.id,
                request_id: "import-1".into(),
                creators: vec![entry(4, "Di")],
            },
            &token,
        ))
        .await
        .expect_err("another batch under the same request id");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert!(reused.message().starts_with("request_id:"), "{reused:?}");
    assert_eq!(roster_of(&suite, &token, c.id).await.len(), 3);
}

/// A link writes an event for every campaign sharing the plan; one archived at the same moment
/// is announced as it is stored (archived): the link waits for it, so the link's copy of it is
/// never a stale one announced after the archive's.
#[tokio::test]
async fn a_link_announces_a_campaign_archived_meanwhile_as_it_is() {
    use futures::StreamExt;
    use tracking_api::plan::v1::WatchEventsRequest;
    use tracking_api::plan::v1::plan_event::Subject;

    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let shared = plan(&suite, &token, integration, "Shared").await;
    let first = campaign(&suite, &token, "First", shared).await;
    let second = campaign(&suite, &token, "Second", 0).await;
    let mut client = suite.plan();
    let request = authed(
        LinkPlanRequest {
            campaign_id: second.id,
            plan_id: shared,
            allow_shared: true,
        },
        &token,
    );
    // The archive of the first campaign, under way: its row changed, not yet committed.
    suite
        .while_held(
            "plan",
            &[format!(
                "update campaigns set archived_at = now() where id = {}",
                first.id
            )],
            async move { client.link_plan(request).await },
        )
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert!(get(&suite, &token, first.id).await.archived);

    let stored = suite
        .count("plan", "select count(*) as n from events")
        .await;
    let mut events = suite
        .plan()
        .watch_events(authed(WatchEventsRequest { after_seq: 0 }, &token))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let mut last = None;
    for _ in 0..stored {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), events.next()).await;
        let Ok(Some(Ok(response))) = next else {
            panic!("fewer than {stored} events");
        };
        if let Some(Subject::Campaign(c)) = response.event.unwrap_or_default().subject
            && c.id == first.id
        {
            last = Some(c);
        }
    }
    let last = last.unwrap_or_else(|| panic!("no event for campaign {}", first.id));
    assert!(
        last.archived && last.shared_plan_warning.is_some(),
        "the last word on the first campaign: {last:?}"
    );
}

#[tokio::test]
async fn an_add_that_meets_another_add_of_the_creator_under_way_is_already_exists() {
    let suite = Suite::start().await;
    let token = brand(1);
    let c = campaign(&suite, &token, "Race", 0).await;
    let mut client = suite.plan();
    let request = authed(
        AddCreatorRequest {
            campaign_id: c.id,
            creator_id: 7,
            profile: Some(profile("Bo")),
            approved: false,
            request_id: String::new(),
        },
        &token,
    );
    // Another add of creator 7, approved and with another profile, under way: not yet committed.
    let held = format!(
        "insert into roster (brand_id, campaign_id, creator_id, profile, status, approved_at) \
         values (1, {}, 7, '{}', 'approved', now())",
        c.id,
        r#"{"first_name":"Ana","last_name":"Creator","email":"ana@example.com","username":"ana","social_handles":{}}"#
    );
    let answer = suite
        .while_held(
            "plan",
            &[held],
            async move { client.add_creator(request).await },
        )
        .await;
    assert_eq!(answer.err().map(|s| s.code()), Some(Code::AlreadyExists));
    let kept = suite
        .count(
            "plan",
            &format!(
                "select count(*) as n from roster where campaign_id = {} and creator_id = 7 \
                 and status = 'approved' and profile->>'first_name' = 'Ana'",
                c.id
            ),
        )
        .await;
    assert_eq!(kept, 1, "the entry is the other add's, not overwritten");
}

/// Two `LinkPlan` calls of the same link at once (a double submit, a retry after a deadline):
/// the one that waited for the plans' locks while the other linked finds the link made and
/// answers it, not FAILED_PRECONDITION. A campaign linked to a third plan meanwhile is a race the
/// caller may simply retry (UNAVAILABLE).
#[tokio::test]
async fn a_link_that_waited_for_the_same_link_is_done() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let first = plan(&suite, &token, integration, "First").await;
    let second = plan(&suite, &token, integration, "Second").await;
    let third = plan(&suite, &token, integration, "Third").await;
    let launch = campaign(&suite, &token, "Launch", first).await;
    let link = |plan_id: i64| {
        let mut client = suite.plan();
        let request = authed(
            LinkPlanRequest {
                campaign_id: launch.id,
                plan_id,
                allow_shared: false,
            },
            &token,
        );
        async move { client.link_plan(request).await }
    };
    // The other call: the second plan locked and the campaign moved to it, committed once this
    // call waits for that lock.
    let moved_to = |plan_id: i64| {
        [
            format!("select 1 from plans where id = {second} for update"),
            format!(
                "update campaigns set plan_id = {plan_id} where id = {}",
                launch.id
            ),
        ]
    };
    let linked = suite
        .while_held("plan", &moved_to(second), link(second))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default().plan_id);
    assert_eq!(linked.ok(), Some(second));

    let raced = suite
        .while_held("plan", &moved_to(third), link(second))
        .await
        .expect_err("moved to a third plan meanwhile");
    assert_eq!(raced.code(), Code::Unavailable, "{raced}");
    assert_eq!(get(&suite, &token, launch.id).await.plan_id, third);
}

/// A campaign's request id answers a retry of that request and refuses any other.
#[tokio::test]
async fn a_campaign_request_id_answers_only_its_own_request() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut client = suite.plan();
    let request = CreateCampaignRequest {
        name: "Launch".into(),
        request_id: "launch-1".into(),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            client
                .create_campaign(authed(request.clone(), &token))
                .await
                .map(|r| r.into_inner().campaign.map(|c| c.id))
                .unwrap_or_else(|s| panic!("{s}")),
        );
    }
    assert!(ids[0].is_some() && ids[0] == ids[1], "{ids:?}");
    let reused = client
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Relaunch".into(),
                ..request
            },
            &token,
        ))
        .await
        .expect_err("another campaign under the same request id");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert!(reused.message().starts_with("request_id:"), "{reused:?}");
    let listed = client
        .list_campaigns(authed(ListCampaignsRequest::default(), &token))
        .await
        .map(|r| r.into_inner().campaigns.len());
    assert_eq!(listed.ok(), Some(1));
}
