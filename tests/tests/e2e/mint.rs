//! CodeMintService end to end: patterns and transliteration, triggers and backfills, idempotent
//! and concurrent minting, collisions (ours and the store's), failures and retries, manual
//! edits, removal, links, store outages, and WatchCodes.

use std::time::Duration;

use futures::StreamExt;
use suite_tests::{
    Suite, add, brand, code_when, eventually, mint, mint_when_known, profile, register,
    register_as, register_integration, sandbox_outage, valid_registration,
};
use tonic::Code as Status;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{DiscountSpec, ListStoreDiscountsRequest, PushDiscountsRequest};
use tracking_api::mint::v1::{
    Code, CodeEventKind, CodePreview, CodeStatus, DisableCodeRequest, FailureReason,
    GetCodeRequest, ListCodesRequest, ListFailuresRequest, MintCodeRequest, MintCodesRequest,
    PreviewCodesRequest, ResolveCodeRequest, RetryCodeRequest, RetryFailedRequest,
    UpdateCodeRequest, WatchCodesRequest, code_preview, mint_codes_response,
};
use tracking_api::plan::v1::{
    ApproveCreatorRequest, CodeTrigger, CreateCampaignRequest, CreatePlanRequest, CreatorProfile,
    Discount, LinkPlanRequest, Plan, RemoveCreatorRequest, SetCodeGenerationRequest,
    UpdateCreatorProfileRequest, Utm, discount,
};
use tracking_server::Role;
use tracking_testkit::authed;

/// A discount someone else made in the store by hand.
fn seed(code: &str) -> DiscountSpec {
    DiscountSpec {
        code: code.into(),
        external_ref: "made-by-hand".into(),
        value: Some(tracking_api::gateway::v1::discount_spec::Value::PercentBps(
            1000,
        )),
        ..Default::default()
    }
}

struct Setup {
    integration: i64,
    plan: i64,
    campaign: i64,
}

async fn setup(
    suite: &Suite,
    token: &str,
    provider: Provider,
    pattern: &str,
    trigger: CodeTrigger,
) -> Setup {
    let integration = register(suite, token, provider).await;
    let dated = provider != Provider::Woocommerce;
    setup_on(
        suite,
        token,
        integration,
        pattern,
        trigger,
        &format!("Summer {}", provider.as_str_name()),
        dated,
    )
    .await
}

async fn setup_on(
    suite: &Suite,
    token: &str,
    integration: i64,
    pattern: &str,
    trigger: CodeTrigger,
    name: &str,
    dated: bool,
) -> Setup {
    let plan = plan_on(suite, token, integration, pattern, trigger, name, dated).await;
    let campaign = suite
        .plan()
        .create_campaign(authed(
            CreateCampaignRequest {
                name: name.into(),
                plan_id: plan,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create campaign: {s}"));
    Setup {
        integration,
        plan,
        campaign,
    }
}

/// A plan on `integration` (20 % off with a code of `pattern`, none without one), linked to no
/// campaign: its id.
async fn plan_on(
    suite: &Suite,
    token: &str,
    integration: i64,
    pattern: &str,
    trigger: CodeTrigger,
    name: &str,
    dated: bool,
) -> i64 {
    let codes = !pattern.is_empty();
    suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: format!("{name} plan"),
                    integration_id: integration,
                    discount: codes.then_some(Discount {
                        kind: Some(discount::Kind::PercentBps(2000)),
                    }),
                    code_pattern: pattern.into(),
                    click_url: "https://brand.example.com/summer".into(),
                    utm: Some(Utm {
                        source: "influencer".into(),
                        ..Default::default()
                    }),
                    ends_at: dated.then_some(prost_types::Timestamp {
                        seconds: 4_102_444_800,
                        nanos: 0,
                    }),
                    code_trigger: trigger as i32,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create plan: {s}"))
}

async fn codes_of(suite: &Suite, token: &str, campaign: i64) -> Vec<Code> {
    suite
        .mint()
        .list_codes(authed(
            ListCodesRequest {
                campaign_id: campaign,
                page: Some(tracking_api::common::v1::PageRequest {
                    page_size: 500,
                    page_token: String::new(),
                }),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().codes)
        .unwrap_or_else(|s| panic!("list codes: {s}"))
}

/// Switches `plan`'s trigger.
async fn set_trigger(suite: &Suite, token: &str, plan: i64, trigger: CodeTrigger) {
    suite
        .plan()
        .set_code_generation(authed(
            SetCodeGenerationRequest {
                plan_id: plan,
                code_trigger: trigger as i32,
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
}

/// Removes `creator` from `campaign`'s roster.
async fn remove(suite: &Suite, token: &str, campaign: i64, creator: i64) {
    suite
        .plan()
        .remove_creator(authed(
            RemoveCreatorRequest {
                campaign_id: campaign,
                creator_id: creator,
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Approves `creator` in `campaign` and waits for the code their approval mints.
async fn approve_and_mint(suite: &Suite, token: &str, campaign: i64, creator: i64) -> Code {
    suite
        .plan()
        .approve_creator(authed(
            ApproveCreatorRequest {
                campaign_id: campaign,
                creator_id: creator,
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    eventually("approval mints", || {
        code_of(suite, token, campaign, creator)
    })
    .await
}

async fn code_of(suite: &Suite, token: &str, campaign: i64, creator: i64) -> Option<Code> {
    codes_of(suite, token, campaign)
        .await
        .into_iter()
        .find(|c| c.creator_id == creator && c.status != CodeStatus::Disabled as i32)
}

async fn store_codes(suite: &Suite, token: &str, integration: i64) -> Vec<(String, bool)> {
    suite
        .gateway()
        .list_store_discounts(authed(
            ListStoreDiscountsRequest {
                integration_id: integration,
                page: None,
            },
            token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .discounts
                .into_iter()
                .map(|d| (d.code, d.active))
                .collect()
        })
        .unwrap_or_else(|s| panic!("list store discounts: {s}"))
}

#[tokio::test]
async fn minting_renders_the_pattern_and_is_idempotent() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{first_name}{discount}-{instagram|trunc:4}",
        CodeTrigger::OnApproval,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("José", "Núñez", "josen"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Łukasz", "Żak", "lukasz"),
        false,
    )
    .await;

    let (jose, created) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(created);
    assert_eq!(jose.code, "JOSE20-JOSE");
    let (lukasz, _) = mint_when_known(&suite, &token, s.campaign, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lukasz.code, "LUKASZ20-LUKA");

    // The same request again returns the same code, never a second one.
    let (again, created) = mint(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!created);
    assert_eq!(again.id, jose.id);
    assert_eq!(codes_of(&suite, &token, s.campaign).await.len(), 2);

    // Links: tracking link on the public base with an unguessable slug, the plan's destination
    // with UTM, the sandbox's discount link, the plan's end date.
    let links = jose.links.clone().unwrap_or_default();
    assert_eq!(
        links.tracking_url,
        format!("http://links.test/r/{}", links.slug)
    );
    assert_eq!(links.slug.len(), 14);
    assert_eq!(
        links.destination_url,
        "https://brand.example.com/summer?utm_source=influencer"
    );
    assert_eq!(
        links.affiliate_url, links.tracking_url,
        "a sandbox code's affiliate link is its tracking link"
    );
    assert_eq!(links.expires_at.map(|t| t.seconds), Some(4_102_444_800));
    assert_ne!(links.slug, lukasz.links.unwrap_or_default().slug);

    // Pushed to the store in the background, then active; resolvable case-insensitively.
    let active = code_when(&suite, &token, jose.id, "code pushed", |code| {
        code.status == CodeStatus::Active as i32
    })
    .await;
    assert_eq!(active.code, "JOSE20-JOSE");
    assert!(
        store_codes(&suite, &token, s.integration)
            .await
            .contains(&("JOSE20-JOSE".to_owned(), true))
    );
    let resolved = suite
        .mint()
        .resolve_code(authed(
            ResolveCodeRequest {
                integration_id: s.integration,
                code: "jose20-jose".into(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().code.map(|c| c.creator_id));
    assert_eq!(resolved.ok().flatten(), Some(1));
    // Text no code can be is refused naming the field (PostgreSQL keeps no NUL: it once failed
    // the lookup with INTERNAL); the length is counted in characters.
    for (code, why) in [
        ("JOSE\0".to_owned(), "a NUL"),
        (" ".to_owned(), "blank"),
        ("É".repeat(256), "too long"),
    ] {
        let status = suite
            .mint()
            .resolve_code(authed(
                ResolveCodeRequest {
                    integration_id: s.integration,
                    code,
                },
                &token,
            ))
            .await
            .expect_err(why);
        assert_eq!(status.code(), Status::InvalidArgument, "{why}");
        assert!(status.message().starts_with("code"), "{why}: {status:?}");
    }
    let greek = suite
        .mint()
        .resolve_code(authed(
            ResolveCodeRequest {
                integration_id: s.integration,
                code: "Ω".repeat(200),
            },
            &token,
        ))
        .await
        .expect_err("not held");
    assert_eq!(greek.code(), Status::NotFound, "200 letters fit: {greek:?}");

    // Another brand sees none of it.
    let status = mint(&suite, &brand(2), s.campaign, 1)
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Status::NotFound);
    let status = suite
        .mint()
        .get_code(authed(GetCodeRequest { code_id: jose.id }, &brand(2)))
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Status::NotFound);
}

/// A campaign relinked to another plan before outreach: its creators' codes of the plan it left
/// are disabled, here and at that plan's store, and each creator gets a code of the new plan, at
/// its store. Before, they kept the old plan's code, terms and store.
#[tokio::test]
async fn a_campaign_relinked_before_outreach_gives_its_creators_codes_of_the_new_plan() {
    let suite = Suite::start().await;
    let token = brand(1);
    let summer = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnAdd,
    )
    .await;
    add(
        &suite,
        &token,
        summer.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let old = eventually("ON_ADD mints", || async {
        code_of(&suite, &token, summer.campaign, 1)
            .await
            .filter(|c| c.status == CodeStatus::Active as i32)
    })
    .await;
    assert_eq!(old.code, "ANA20");

    // The new plan is on another store, with its own pattern.
    let other_store = register_as(&suite, &token, Provider::Sandbox, "Second store").await;
    let winter = plan_on(
        &suite,
        &token,
        other_store,
        "{username}{discount}W",
        CodeTrigger::OnAdd,
        "Winter",
        true,
    )
    .await;
    suite
        .plan()
        .link_plan(authed(
            LinkPlanRequest {
                campaign_id: summer.campaign,
                plan_id: winter,
                allow_shared: false,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let new = eventually("the new plan's code is pushed", || async {
        code_of(&suite, &token, summer.campaign, 1)
            .await
            .filter(|c| c.id != old.id && c.status == CodeStatus::Active as i32)
    })
    .await;
    assert_eq!(new.code, "ANA20W");
    assert_eq!(new.plan_id, winter);
    let codes = codes_of(&suite, &token, summer.campaign).await;
    let old_now = codes.iter().find(|c| c.id == old.id).map(|c| c.status);
    assert_eq!(old_now, Some(CodeStatus::Disabled as i32));
    assert_eq!(
        store_codes(&suite, &token, other_store).await,
        [("ANA20W".to_owned(), true)]
    );
    eventually("the old store stops taking the old code", || async {
        store_codes(&suite, &token, summer.integration)
            .await
            .contains(&("ANA20".to_owned(), false))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn triggers_mint_on_add_or_on_approval_and_switching_backfills() {
    let suite = Suite::start().await;
    let token = brand(1);
    let on_add = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnAdd,
    )
    .await;
    add(
        &suite,
        &token,
        on_add.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let code = eventually("ON_ADD mints at once", || {
        code_of(&suite, &token, on_add.campaign, 1)
    })
    .await;
    assert_eq!(code.code, "ANA20");

    let integration = on_add.integration;
    let on_approval = setup_on(
        &suite,
        &token,
        integration,
        "{username}{discount}X",
        CodeTrigger::OnApproval,
        "Winter",
        true,
    )
    .await;
    add(
        &suite,
        &token,
        on_approval.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        on_approval.campaign,
        2,
        profile("Bo", "B", "bo"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        on_approval.campaign,
        3,
        profile("Cy", "C", "cy"),
        false,
    )
    .await;
    let approved = approve_and_mint(&suite, &token, on_approval.campaign, 1).await;
    assert_eq!(approved.code, "ANA20X");
    // Creators only added got nothing.
    assert_eq!(
        codes_of(&suite, &token, on_approval.campaign).await.len(),
        1
    );

    // Switching to ON_ADD mints for everyone on the roster without a code.
    set_trigger(&suite, &token, on_approval.plan, CodeTrigger::OnAdd).await;
    let all = eventually("backfill", || async {
        let codes = codes_of(&suite, &token, on_approval.campaign).await;
        (codes.len() == 3).then_some(codes)
    })
    .await;
    let mut texts: Vec<_> = all.iter().map(|c| c.code.clone()).collect();
    texts.sort();
    assert_eq!(texts, vec!["ANA20X", "BO20X", "CY20X"]);

    // Switching back to ON_APPROVAL mints nothing new for creators added afterwards.
    set_trigger(&suite, &token, on_approval.plan, CodeTrigger::OnApproval).await;
    add(
        &suite,
        &token,
        on_approval.campaign,
        4,
        profile("Di", "D", "di"),
        false,
    )
    .await;
    // The add is applied once the projection knows creator 4 (a preview lists them).
    eventually("creator 4 projected", || async {
        let previews = plan_previews(&suite, &token, on_approval.campaign).await?;
        previews.iter().any(|p| p.creator_id == 4).then_some(())
    })
    .await;
    assert_eq!(
        codes_of(&suite, &token, on_approval.campaign).await.len(),
        3
    );
}

#[tokio::test]
async fn a_switch_to_on_add_keeps_a_brands_disable_and_mints_for_a_creator_added_again() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    for (id, name) in [(1, "ana"), (2, "bo")] {
        add(
            &suite,
            &token,
            s.campaign,
            id,
            profile(name, "N", name),
            false,
        )
        .await;
    }
    // Ana's code, disabled by the brand.
    let ana = approve_and_mint(&suite, &token, s.campaign, 1).await;
    suite
        .mint()
        .disable_code(authed(DisableCodeRequest { code_id: ana.id }, &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Bo's code went with his removal; he is added again, only added.
    let bo = approve_and_mint(&suite, &token, s.campaign, 2).await;
    remove(&suite, &token, s.campaign, 2).await;
    code_when(&suite, &token, bo.id, "disabled with the removal", |c| {
        c.status == CodeStatus::Disabled as i32
    })
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("bo", "N", "bo"),
        false,
    )
    .await;

    set_trigger(&suite, &token, s.plan, CodeTrigger::OnAdd).await;
    let again = eventually("Bo, added again, minted by the switch", || {
        code_of(&suite, &token, s.campaign, 2)
    })
    .await;
    assert_ne!(again.id, bo.id);
    // A creator added after the switch, minted: the switch's queue has been worked through.
    add(
        &suite,
        &token,
        s.campaign,
        3,
        profile("cy", "N", "cy"),
        false,
    )
    .await;
    eventually("a later creator minted", || {
        code_of(&suite, &token, s.campaign, 3)
    })
    .await;
    assert!(
        code_of(&suite, &token, s.campaign, 1).await.is_none(),
        "the code the brand disabled stays disabled"
    );
}

#[tokio::test]
async fn concurrent_mints_of_one_base_code_get_distinct_suffixes() {
    let suite = Suite::start().await;
    let token = brand(1);
    // Every creator renders the same base code: they share a last name.
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "SUMMER{discount}{last_name}",
        CodeTrigger::OnApproval,
    )
    .await;
    for creator in 1..=64 {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("Same", "Name", &format!("c{creator}")),
            false,
        )
        .await;
    }
    mint_when_known(&suite, &token, s.campaign, 64)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tasks = Vec::new();
    for creator in 1..=64 {
        let mut client = suite.mint();
        let token = token.clone();
        let campaign = s.campaign;
        tasks.push(tokio::spawn(async move {
            client
                .mint_code(authed(
                    MintCodeRequest {
                        campaign_id: campaign,
                        creator_id: creator,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().code.unwrap_or_default().code)
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(
            task.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|s| panic!("{s}")),
        );
    }
    let mut unique: Vec<String> = codes.iter().map(|c| c.to_lowercase()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 64, "{codes:?}");
    assert!(
        codes.iter().all(|c| c.starts_with("SUMMER20NAME")),
        "{codes:?}"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.as_str() == "SUMMER20NAME")
            .count(),
        1
    );
    let stored = codes_of(&suite, &token, s.campaign).await;
    assert_eq!(stored.len(), 64);
}

#[tokio::test]
async fn the_same_code_may_live_in_two_integrations() {
    let suite = Suite::start().await;
    let token = brand(1);
    let first = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    let mut second_request = suite_tests::valid_registration(Provider::Sandbox, "Second store");
    second_request.request_id = String::new();
    let second_integration = suite
        .gateway()
        .register_integration(authed(second_request, &token))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let second = setup_on(
        &suite,
        &token,
        second_integration,
        "{username}",
        CodeTrigger::OnApproval,
        "Other",
        true,
    )
    .await;
    add(
        &suite,
        &token,
        first.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        second.campaign,
        2,
        profile("Ana", "B", "ana"),
        false,
    )
    .await;
    let (a, _) = mint_when_known(&suite, &token, first.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (b, _) = mint_when_known(&suite, &token, second.campaign, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.code.as_str(), b.code.as_str()), ("ANA", "ANA"));
}

#[tokio::test]
async fn a_code_the_store_already_has_is_suffixed() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    // Someone else's JOSEN20 is already in the store.
    suite
        .gateway()
        .push_discounts(authed(
            PushDiscountsRequest {
                integration_id: s.integration,
                discounts: vec![seed("JOSEN20")],
            },
            &suite_tests::token(1, Role::Service),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("José", "N", "josen"),
        false,
    )
    .await;
    let (reserved, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reserved.code, "JOSEN20");
    let settled = eventually("suffixed and pushed", || async {
        let code = suite
            .mint()
            .get_code(authed(
                GetCodeRequest {
                    code_id: reserved.id,
                },
                &token,
            ))
            .await
            .ok()?
            .into_inner()
            .code?;
        (code.status == CodeStatus::Active as i32).then_some(code)
    })
    .await;
    assert!(
        settled.code.starts_with("JOSEN20") && settled.code.len() == 8,
        "{}",
        settled.code
    );
    assert_eq!(settled.history.len(), 1);
    assert_eq!(settled.history[0].reason, "store_collision");
    assert_eq!(settled.history[0].from_code, "JOSEN20");
    let store = store_codes(&suite, &token, s.integration).await;
    assert!(store.contains(&(settled.code.clone(), true)));
}

#[tokio::test]
async fn failures_are_reported_and_retried() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{tiktok}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    let no_email = CreatorProfile {
        email: String::new(),
        last_name: String::new(),
        ..profile("Ana", "A", "ana")
    };
    add(&suite, &token, s.campaign, 1, no_email, false).await;
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Bo", "B", "bo"),
        false,
    )
    .await;

    let status = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .expect_err("profile");
    assert_eq!(status.code(), Status::FailedPrecondition);
    assert!(
        status.message().contains("MISSING_PROFILE_FIELD")
            && status.message().contains("last_name, email"),
        "{}",
        status.message()
    );
    let status = mint_when_known(&suite, &token, s.campaign, 2)
        .await
        .expect_err("tiktok");
    assert!(
        status.message().contains("MISSING_SOCIAL_ACCOUNT") && status.message().contains("tiktok"),
        "{}",
        status.message()
    );

    let failures = suite
        .mint()
        .list_failures(authed(
            ListFailuresRequest {
                campaign_id: s.campaign,
                page: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().failures)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(failures.len(), 2);
    assert_eq!(
        failures[0].reason,
        FailureReason::MissingProfileField as i32
    );
    assert_eq!(failures[0].fields, vec!["last_name", "email"]);
    assert_eq!(
        failures[1].reason,
        FailureReason::MissingSocialAccount as i32
    );
    assert_eq!(failures[1].fields, vec!["tiktok"]);

    // A profile fix retries by itself.
    suite
        .plan()
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: s.campaign,
                creator_id: 1,
                profile: Some(CreatorProfile {
                    social_handles: [("tiktok".to_owned(), "@ana.tt".to_owned())].into(),
                    ..profile("Ana", "A", "ana")
                }),
            },
            &token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fixed = eventually("retried after the profile fix", || {
        code_of(&suite, &token, s.campaign, 1)
    })
    .await;
    assert_eq!(fixed.code, "ANATT20");

    // An explicit retry works once the cause is gone; RetryFailed retries the rest.
    let status = suite
        .mint()
        .retry_code(authed(
            RetryCodeRequest {
                campaign_id: s.campaign,
                creator_id: 2,
            },
            &token,
        ))
        .await
        .expect_err("still no tiktok");
    assert_eq!(status.code(), Status::FailedPrecondition);
    suite
        .plan()
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: s.campaign,
                creator_id: 2,
                profile: Some(CreatorProfile {
                    social_handles: [("tiktok".to_owned(), "@bo".to_owned())].into(),
                    ..profile("Bo", "B", "bo")
                }),
            },
            &token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let retried = eventually("explicit retry", || async {
        let response = suite
            .mint()
            .retry_failed(authed(
                RetryFailedRequest {
                    campaign_id: s.campaign,
                },
                &token,
            ))
            .await
            .ok()?
            .into_inner();
        code_of(&suite, &token, s.campaign, 2)
            .await
            .map(|c| (c, response))
    })
    .await;
    assert_eq!(retried.0.code, "BO20");
    let left = suite
        .mint()
        .list_failures(authed(
            ListFailuresRequest {
                campaign_id: s.campaign,
                page: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().failures.len());
    assert_eq!(left.ok(), Some(0));
}

/// A sandbox campaign minting `{username}{discount}` at approval, with Ana (creator 1, username
/// `ana`) added, not yet approved.
async fn sandbox_with_ana(suite: &Suite, token: &str) -> Setup {
    let s = setup(
        suite,
        token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    add(
        suite,
        token,
        s.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    s
}

#[tokio::test]
async fn manual_edits_are_checked_pushed_and_replace_the_old_code() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = sandbox_with_ana(&suite, &token).await;
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Bo", "B", "bo"),
        false,
    )
    .await;
    let (ana, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (bo, _) = mint_when_known(&suite, &token, s.campaign, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("both pushed", || async {
        let store = store_codes(&suite, &token, s.integration).await;
        (store.len() == 2).then_some(())
    })
    .await;

    let status = suite
        .mint()
        .update_code(authed(
            UpdateCodeRequest {
                code_id: ana.id,
                code: bo.code.to_lowercase(),
            },
            &token,
        ))
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Status::AlreadyExists);
    let status = suite
        .mint()
        .update_code(authed(
            UpdateCodeRequest {
                code_id: ana.id,
                code: "ANA 20!".into(),
            },
            &token,
        ))
        .await
        .expect_err("bad characters");
    assert_eq!(status.code(), Status::InvalidArgument);
    assert!(status.message().starts_with("code"));

    let edited = suite
        .mint()
        .update_code(authed(
            UpdateCodeRequest {
                code_id: ana.id,
                code: "anavip".into(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().code.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(edited.code, "ANAVIP");
    assert_eq!(edited.status, CodeStatus::Active as i32);
    assert_eq!(
        edited
            .history
            .last()
            .map(|h| (h.from_code.as_str(), h.reason.as_str())),
        Some(("ANA20", "manual"))
    );
    // The store's discount was renamed in place (UpdateDiscounts): no second discount, and the
    // old code is gone from the store.
    let store = store_codes(&suite, &token, s.integration).await;
    assert!(store.contains(&("ANAVIP".to_owned(), true)), "{store:?}");
    assert_eq!(store.len(), 2, "{store:?}");
    assert!(!store.iter().any(|(code, _)| code == "ANA20"), "{store:?}");

    // The store refusing the new code leaves the old one in place.
    suite
        .gateway()
        .push_discounts(authed(
            PushDiscountsRequest {
                integration_id: s.integration,
                discounts: vec![seed("TAKEN1")],
            },
            &suite_tests::token(1, Role::Service),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = suite
        .mint()
        .update_code(authed(
            UpdateCodeRequest {
                code_id: ana.id,
                code: "taken1".into(),
            },
            &token,
        ))
        .await
        .expect_err("store has it");
    assert_eq!(status.code(), Status::AlreadyExists);
    let unchanged = suite
        .mint()
        .get_code(authed(GetCodeRequest { code_id: ana.id }, &token))
        .await
        .map(|r| r.into_inner().code.unwrap_or_default().code);
    assert_eq!(unchanged.ok().as_deref(), Some("ANAVIP"));

    // An edit while the store is down: the code waits, then the new code is created at the store
    // and the old one disabled there.
    sandbox_outage(&suite, &token, s.integration, true).await;
    let waiting = suite
        .mint()
        .update_code(authed(
            UpdateCodeRequest {
                code_id: ana.id,
                code: "anadown".into(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().code.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (waiting.code.as_str(), waiting.status),
        ("ANADOWN", CodeStatus::Pending as i32)
    );
    sandbox_outage(&suite, &token, s.integration, false).await;
    let store = eventually("new code pushed, old disabled", || async {
        let store = store_codes(&suite, &token, s.integration).await;
        (store.contains(&("ANADOWN".to_owned(), true))
            && store.contains(&("ANAVIP".to_owned(), false)))
        .then_some(store)
    })
    .await;
    assert_eq!(store.len(), 4, "ANAVIP, BO20, TAKEN1, ANADOWN: {store:?}");

    // The store took ANAVIP until its discount was disabled there: the edit's entry says when,
    // and an order placed with ANAVIP meanwhile (reaching the suite later) is Ana's.
    let edit = eventually("the old text's release recorded", || async {
        let code = suite
            .mint()
            .get_code(authed(GetCodeRequest { code_id: ana.id }, &token))
            .await
            .ok()?
            .into_inner()
            .code?;
        let edit = code.history.last()?.clone();
        (edit.from_code == "ANAVIP" && edit.released_at.is_some()).then_some(edit)
    })
    .await;
    let at = |t: Option<&prost_types::Timestamp>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .unwrap_or_default()
    };
    // The edit's answer came when the edit was recorded, after its history entry was made.
    let edited_at = at(edit.changed_at.as_ref()).max(at(waiting.updated_at.as_ref()));
    let released_at = at(edit.released_at.as_ref());
    assert!(edited_at < released_at, "{edit:?}");
    let channel = suite.server.channel();
    let mut meanwhile = suite_tests::flow::orders(s.integration, &["anavip".to_owned()], 0, 1);
    if let Some(order) = meanwhile[0].order.as_mut() {
        order.store_order_id = "placed-while-the-store-took-anavip".into();
        let placed = edited_at + (released_at - edited_at) / 2;
        order.occurred_at = Some(prost_types::Timestamp {
            seconds: placed.timestamp(),
            nanos: placed.timestamp_subsec_nanos() as i32,
        });
    }
    assert_eq!(
        suite_tests::flow::ingest(&channel, meanwhile).await.ok(),
        Some(1)
    );
    eventually("the order attributed to Ana", || async {
        (suite_tests::flow::attributed(&channel, s.campaign).await == 1).then_some(())
    })
    .await;
}

/// Every page of ListCodes for `campaign`, `page_size` codes at a time.
async fn list_pages(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
    status: CodeStatus,
    page_size: i32,
) -> Vec<Vec<Code>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let response = suite
            .mint()
            .list_codes(authed(
                ListCodesRequest {
                    campaign_id: campaign,
                    creator_id: creator,
                    status: status as i32,
                    page: Some(tracking_api::common::v1::PageRequest {
                        page_size,
                        page_token,
                    }),
                },
                token,
            ))
            .await
            .map(|r| r.into_inner())
            .unwrap_or_else(|s| panic!("list codes: {s}"));
        pages.push(response.codes);
        page_token = response.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            return pages;
        }
    }
}

#[tokio::test]
async fn list_codes_pages_a_campaign_by_id_across_statuses() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    // Another campaign of the same brand and integration, minted in between.
    let other = setup_on(
        &suite,
        &token,
        s.integration,
        "{username}",
        CodeTrigger::OnApproval,
        "Winter",
        true,
    )
    .await;
    let mut ids = Vec::new();
    for creator in 1..=5 {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("C", "C", &format!("c{creator}")),
            false,
        )
        .await;
        add(
            &suite,
            &token,
            other.campaign,
            creator,
            profile("W", "W", &format!("w{creator}")),
            false,
        )
        .await;
        let (code, _) = mint_when_known(&suite, &token, s.campaign, creator)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ids.push(code.id);
        mint_when_known(&suite, &token, other.campaign, creator)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eventually("pushed", || async {
        codes_of(&suite, &token, s.campaign)
            .await
            .iter()
            .all(|c| c.status == CodeStatus::Active as i32)
            .then_some(())
    })
    .await;
    for n in [1, 3] {
        suite
            .mint()
            .disable_code(authed(DisableCodeRequest { code_id: ids[n] }, &token))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // A sixth code stays pending while the store is down.
    sandbox_outage(&suite, &token, s.integration, true).await;
    add(
        &suite,
        &token,
        s.campaign,
        6,
        profile("C", "C", "c6"),
        false,
    )
    .await;
    let (pending, _) = mint_when_known(&suite, &token, s.campaign, 6)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ids.push(pending.id);

    let creators_of = |pages: &[Vec<Code>]| -> Vec<i64> {
        pages.iter().flatten().map(|c| c.creator_id).collect()
    };
    // Pages of two, by id, every status merged, nothing of the other campaign.
    let pages = list_pages(&suite, &token, s.campaign, 0, CodeStatus::Unspecified, 2).await;
    assert!(pages.iter().all(|page| page.len() <= 2), "{pages:?}");
    let listed: Vec<i64> = pages.iter().flatten().map(|c| c.id).collect();
    assert_eq!(listed, ids, "every code once, in id order");
    assert!(pages.iter().flatten().all(|c| c.campaign_id == s.campaign));
    for (status, creators) in [
        (CodeStatus::Active, vec![1, 3, 5]),
        (CodeStatus::Disabled, vec![2, 4]),
        (CodeStatus::Pending, vec![6]),
    ] {
        let pages = list_pages(&suite, &token, s.campaign, 0, status, 1).await;
        assert_eq!(creators_of(&pages), creators, "{status:?}");
        assert!(pages.iter().flatten().all(|c| c.status == status as i32));
    }
    let pages = list_pages(&suite, &token, s.campaign, 4, CodeStatus::Unspecified, 50).await;
    assert_eq!(creators_of(&pages), vec![4]);
    let pages = list_pages(&suite, &token, s.campaign, 4, CodeStatus::Active, 50).await;
    assert_eq!(creators_of(&pages), Vec::<i64>::new());
    let pages = list_pages(&suite, &token, other.campaign, 0, CodeStatus::Active, 50).await;
    assert_eq!(creators_of(&pages), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn removed_creators_lose_their_code_for_good() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnAdd,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let code = eventually("minted", || code_of(&suite, &token, s.campaign, 1)).await;
    eventually("pushed", || async {
        store_codes(&suite, &token, s.integration)
            .await
            .contains(&("ANA".to_owned(), true))
            .then_some(())
    })
    .await;
    remove(&suite, &token, s.campaign, 1).await;
    let disabled = code_when(&suite, &token, code.id, "disabled", |c| {
        c.status == CodeStatus::Disabled as i32
    })
    .await;
    assert_eq!(disabled.code, "ANA");
    eventually("disabled at the store", || async {
        store_codes(&suite, &token, s.integration)
            .await
            .contains(&("ANA".to_owned(), false))
            .then_some(())
    })
    .await;

    // Another creator rendering the same code never gets it.
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Ana", "B", "ana"),
        false,
    )
    .await;
    let other = eventually("second creator minted", || {
        code_of(&suite, &token, s.campaign, 2)
    })
    .await;
    assert_ne!(other.code.to_lowercase(), "ana");
    assert!(other.code.starts_with("ANA"));

    // DisableCode by hand is idempotent.
    for _ in 0..2 {
        let status = suite
            .mint()
            .disable_code(authed(DisableCodeRequest { code_id: other.id }, &token))
            .await
            .map(|r| r.into_inner().code.unwrap_or_default().status);
        assert_eq!(status.ok(), Some(CodeStatus::Disabled as i32));
    }
    // A code the brand disabled stays disabled: the creator's profile update mints no new one.
    let later = (3, profile("Cy", "C", "cy"), false);
    update_profile_then_mint(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Ana", "Bee", "ana"),
        later,
    )
    .await;
    assert!(code_of(&suite, &token, s.campaign, 2).await.is_none());

    // A creator whose mint failed, then removed: the failure, nothing left to fix, goes too.
    let no_email = CreatorProfile {
        email: String::new(),
        ..profile("Dee", "D", "dee")
    };
    add(&suite, &token, s.campaign, 4, no_email, false).await;
    let failures_of_4 = "select count(*)::bigint as n from mint.mint_failures where creator_id = 4";
    suite
        .count_becomes("the failure recorded", "mint", failures_of_4, 1)
        .await;
    remove(&suite, &token, s.campaign, 4).await;
    suite
        .count_becomes(
            "the failure gone with the creator",
            "mint",
            failures_of_4,
            0,
        )
        .await;
}

/// Updates `creator`'s profile in `campaign`, then adds `later` (id, profile, approved), whom the
/// plan's trigger mints for at once, and waits for their code: the plan stream is applied in
/// order, so whatever the update made happen had happened by then.
/// A code the brand disabled stays disabled whatever the minting queue holds for its creator: an
/// entry a worker claimed and never settled (its process died mid-mint) is taken off the queue
/// by the disable, and one there all the same is settled without a mint.
#[tokio::test]
async fn a_disabled_code_is_not_minted_again_from_the_queue() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnAdd,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let code = eventually("minted when added", || {
        code_of(&suite, &token, s.campaign, 1)
    })
    .await;
    let queued = format!(
        "select count(*) as n from mint_queue where campaign_id = {} and creator_id = 1",
        s.campaign
    );
    let queue = |claimed_until: &str| {
        format!(
            "insert into mint_queue (brand_id, campaign_id, creator_id, claimed_until) \
             values (1, {}, 1, {claimed_until})",
            s.campaign
        )
    };
    suite
        .execute("mint", &queue("now() + interval '1 hour'"))
        .await;
    let disabled = suite
        .mint()
        .disable_code(authed(DisableCodeRequest { code_id: code.id }, &token))
        .await
        .map(|r| r.into_inner().code.unwrap_or_default().status);
    assert_eq!(disabled.ok(), Some(CodeStatus::Disabled as i32));
    assert_eq!(suite.count("mint", &queued).await, 0, "taken off the queue");

    suite.execute("mint", &queue("null")).await;
    suite
        .count_becomes("the entry settled", "mint", &queued, 0)
        .await;
    assert_eq!(code_of(&suite, &token, s.campaign, 1).await, None);
    assert_eq!(codes_of(&suite, &token, s.campaign).await.len(), 1);
}

async fn update_profile_then_mint(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
    updated: CreatorProfile,
    later: (i64, CreatorProfile, bool),
) {
    suite
        .plan()
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: campaign,
                creator_id: creator,
                profile: Some(updated),
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (id, profile, approved) = later;
    add(suite, token, campaign, id, profile, approved).await;
    eventually("a creator added later minted", || {
        code_of(suite, token, campaign, id)
    })
    .await;
}

#[tokio::test]
async fn links_follow_the_provider() {
    let suite = Suite::start().await;
    let token = brand(1);
    let ast = setup(&suite, &token, Provider::Ast, "", CodeTrigger::OnApproval).await;
    add(
        &suite,
        &token,
        ast.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let (link, _) = mint_when_known(&suite, &token, ast.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link.code, "");
    assert_eq!(
        link.status,
        CodeStatus::Active as i32,
        "links need no store push"
    );
    let links = link.links.unwrap_or_default();
    assert_eq!(
        links.affiliate_url, links.tracking_url,
        "AST links carry the click id"
    );
    assert_eq!(links.expires_at.map(|t| t.seconds), Some(4_102_444_800));

    let woo = setup(
        &suite,
        &token,
        Provider::Woocommerce,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    add(
        &suite,
        &token,
        woo.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let (code, _) = mint_when_known(&suite, &token, woo.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code.code, "ANA");
    let links = code.links.unwrap_or_default();
    assert!(
        links.affiliate_url.is_empty(),
        "WooCommerce has no affiliate links"
    );
    assert!(links.tracking_url.starts_with("http://links.test/r/"));
}

#[tokio::test]
async fn a_store_outage_leaves_codes_pending_until_it_is_back() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    sandbox_outage(&suite, &token, s.integration, true).await;
    for creator in 1..=3 {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("C", "C", &format!("c{creator}")),
            false,
        )
        .await;
    }
    for creator in 1..=3 {
        mint_when_known(&suite, &token, s.campaign, creator)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pending = eventually("push attempted and failed", || async {
        let codes = codes_of(&suite, &token, s.campaign).await;
        codes
            .iter()
            .all(|c| c.status == CodeStatus::Pending as i32 && !c.store_error.is_empty())
            .then_some(codes)
    })
    .await;
    assert!(
        pending[0].store_error.contains("down") || pending[0].store_error.contains("unavailable"),
        "{}",
        pending[0].store_error
    );
    // The first creator's code has backed off far (many failed pushes): RetryCode pushes it
    // again at once when the store is back.
    let first = pending
        .iter()
        .find(|c| c.creator_id == 1)
        .map_or(0, |c| c.id);
    suite
        .count(
            "mint",
            &format!(
                "with backed_off as (update mint.codes set next_push_at = now() + interval '1 day', \
                   push_attempts = 20 where id = {first} returning 1) \
                 select count(*)::bigint as n from backed_off"
            ),
        )
        .await;
    sandbox_outage(&suite, &token, s.integration, false).await;
    let retried = suite
        .mint()
        .retry_code(authed(
            RetryCodeRequest {
                campaign_id: s.campaign,
                creator_id: 1,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().code.map(|c| c.id));
    assert_eq!(retried.ok().flatten(), Some(first));
    eventually("pushed after recovery", || async {
        let codes = codes_of(&suite, &token, s.campaign).await;
        codes
            .iter()
            .all(|c| c.status == CodeStatus::Active as i32)
            .then_some(())
    })
    .await;
    assert_eq!(store_codes(&suite, &token, s.integration).await.len(), 3);
}

#[tokio::test]
async fn bulk_minting_streams_results_tagged_by_request() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    for creator in 1..=20 {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("C", "C", &format!("bulk{creator}")),
            false,
        )
        .await;
    }
    mint_when_known(&suite, &token, s.campaign, 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut requests: Vec<MintCodesRequest> = (1..=20)
        .map(|creator| MintCodesRequest {
            tag: format!("t{creator}"),
            campaign_id: s.campaign,
            creator_id: creator,
        })
        .collect();
    requests.push(MintCodesRequest {
        tag: "bad".into(),
        campaign_id: s.campaign,
        creator_id: 999,
    });
    // Asked twice in the same stream (so mostly in the same batch): one code, created once.
    requests.extend((1..=5).map(|creator| MintCodesRequest {
        tag: format!("again{creator}"),
        campaign_id: s.campaign,
        creator_id: creator,
    }));
    // Tags are at most 100 characters, not bytes.
    let accented = "é".repeat(60);
    let long = "x".repeat(101);
    for (tag, creator) in [(&accented, 6), (&long, 7)] {
        requests.push(MintCodesRequest {
            tag: tag.clone(),
            campaign_id: s.campaign,
            creator_id: creator,
        });
    }
    let mut responses = suite
        .mint()
        .mint_codes(authed(tokio_stream::iter(requests), &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut by_tag = std::collections::HashMap::new();
    while let Some(response) = responses.next().await {
        let response = response.unwrap_or_else(|e| panic!("{e}"));
        by_tag.insert(response.tag.clone(), response);
    }
    assert_eq!(by_tag.len(), 28);
    match by_tag.get(&accented).and_then(|r| r.result.clone()) {
        Some(mint_codes_response::Result::Code(code)) => assert_eq!(code.code, "BULK6"),
        other => panic!("{other:?}"),
    }
    match by_tag.get(&long).and_then(|r| r.result.clone()) {
        Some(mint_codes_response::Result::Error(error)) => {
            assert_eq!(error.grpc_code, Status::InvalidArgument as i32)
        }
        other => panic!("{other:?}"),
    }
    for creator in 1..=5 {
        let (first, again) = (
            &by_tag[&format!("t{creator}")],
            &by_tag[&format!("again{creator}")],
        );
        assert_eq!(first.result, again.result, "creator {creator}: one code");
        assert_eq!(
            u8::from(first.created) + u8::from(again.created),
            1,
            "creator {creator}: created once ({first:?}, {again:?})"
        );
    }
    // Creator 20's code was minted before the stream, to know the roster had arrived.
    assert_eq!(by_tag.values().filter(|r| r.created).count(), 19);
    match by_tag.get("t7").and_then(|r| r.result.clone()) {
        Some(mint_codes_response::Result::Code(code)) => assert_eq!(code.code, "BULK7"),
        other => panic!("{other:?}"),
    }
    match by_tag.get("bad").and_then(|r| r.result.clone()) {
        Some(mint_codes_response::Result::Error(error)) => {
            assert_eq!(error.grpc_code, Status::FailedPrecondition as i32)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn previews_reserve_nothing_and_flag_collisions() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{first_name}",
        CodeTrigger::OnApproval,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("Ana", "A", "ana1"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        2,
        profile("Ana", "B", "ana2"),
        false,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        3,
        CreatorProfile {
            email: String::new(),
            ..profile("Bo", "B", "bo")
        },
        false,
    )
    .await;
    let previews = eventually("roster projected", || async {
        let previews = suite
            .mint()
            .preview_codes(authed(
                PreviewCodesRequest {
                    campaign_id: s.campaign,
                    pattern: "{username}{discount}".into(),
                    page: None,
                },
                &token,
            ))
            .await
            .ok()?
            .into_inner()
            .previews;
        (previews.len() == 3).then_some(previews)
    })
    .await;
    assert!(matches!(&previews[0].result, Some(code_preview::Result::Code(c)) if c == "ANA120"));
    assert!(
        matches!(&previews[2].result, Some(code_preview::Result::Failure(f)) if f.reason == FailureReason::MissingProfileField as i32)
    );
    // The plan's own pattern gives both Anas the same code.
    let plan_pattern = plan_previews(&suite, &token, s.campaign)
        .await
        .unwrap_or_else(|| panic!("refused"));
    assert!(plan_pattern[0].collides && plan_pattern[1].collides && !plan_pattern[2].collides);
    assert!(
        codes_of(&suite, &token, s.campaign).await.is_empty(),
        "previews reserve nothing"
    );
    let status = suite
        .mint()
        .preview_codes(authed(
            PreviewCodesRequest {
                campaign_id: s.campaign,
                pattern: "{random:1}".into(),
                page: None,
            },
            &token,
        ))
        .await
        .expect_err("keyspace");
    assert_eq!(status.code(), Status::InvalidArgument);
    assert!(status.message().starts_with("pattern"));
}

/// A preview of the campaign's creators under its plan's own pattern (`None` when refused).
async fn plan_previews(suite: &Suite, token: &str, campaign_id: i64) -> Option<Vec<CodePreview>> {
    suite
        .mint()
        .preview_codes(authed(
            PreviewCodesRequest {
                campaign_id,
                ..Default::default()
            },
            token,
        ))
        .await
        .ok()
        .map(|r| r.into_inner().previews)
}

/// A plan whose pattern tells creators apart by random characters only, fewer than the keyspace
/// check asks of a proposed pattern for this roster: minting still mints (suffixes settle
/// clashes), so a preview of the plan's own pattern shows its codes rather than refusing a
/// `pattern` the caller never sent.
#[tokio::test]
async fn the_plans_own_pattern_is_previewed_as_minting_renders_it() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "VIP{random:1}",
        CodeTrigger::OnApproval,
    )
    .await;
    for creator in 1..=3 {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("Ana", "A", &format!("ana{creator}")),
            false,
        )
        .await;
    }
    let previews = eventually("roster projected", || async {
        let previews = plan_previews(&suite, &token, s.campaign).await?;
        (previews.len() == 3).then_some(previews)
    })
    .await;
    for preview in &previews {
        assert!(
            matches!(&preview.result, Some(code_preview::Result::Code(c)) if c.starts_with("VIP") && c.len() == 4),
            "{preview:?}"
        );
    }
    let status = suite
        .mint()
        .preview_codes(authed(
            PreviewCodesRequest {
                campaign_id: s.campaign,
                pattern: "VIP{random:1}".into(),
                page: None,
            },
            &token,
        ))
        .await
        .expect_err("a proposed pattern is held to the keyspace check");
    assert_eq!(status.code(), Status::InvalidArgument);
}

#[tokio::test]
async fn watch_codes_replays_and_follows_live() {
    let mut suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnAdd,
    )
    .await;
    let mut live = suite
        .mint()
        .watch_codes(authed(WatchCodesRequest { after_seq: 0 }, &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("Ana", "A", "ana"),
        false,
    )
    .await;
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(15), live.next())
            .await
            .ok()
            .flatten()
            .and_then(Result::ok)
            .and_then(|r| r.event)
            .unwrap_or_else(|| panic!("no event after {kinds:?}"));
        assert_eq!(event.code.as_ref().map(|c| c.code.as_str()), Some("ANA"));
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        vec![
            CodeEventKind::Minted as i32,
            CodeEventKind::Activated as i32
        ]
    );

    suite.restart().await;
    let mut replay = suite
        .mint()
        .watch_codes(authed(WatchCodesRequest { after_seq: 0 }, &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let first = replay
        .next()
        .await
        .and_then(Result::ok)
        .and_then(|r| r.event)
        .unwrap_or_default();
    assert_eq!(first.kind, CodeEventKind::Minted as i32);
    let other_brand = suite
        .mint()
        .watch_codes(authed(WatchCodesRequest { after_seq: -1 }, &brand(2)))
        .await
        .expect_err("bad cursor");
    assert_eq!(other_brand.code(), Status::InvalidArgument);
}

#[tokio::test]
async fn a_flood_of_mints_is_shed_by_queueing_time_and_a_refused_call_mints_nothing() {
    // Shed as soon as requests wait more than 1 ms for their batch: a flood overloads that.
    flood_is_shed(
        |config| {
            config.mint_shed_after_ms = 1;
            config.mint_max_calls = 0;
        },
        "for their turn",
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_mints_is_shed_beyond_the_calls_limit_and_a_refused_call_mints_nothing() {
    // Four single mints at once at most: a wave of 199 concurrent calls exceeds that.
    flood_is_shed(
        |config| {
            config.mint_shed_after_ms = 0;
            config.mint_max_calls = 4;
        },
        "4 calls to /tracking.mint.v1.CodeMintService/MintCode in flight",
    )
    .await;
}

/// Waves of concurrent `MintCode` calls against a suite tuned to shed them: some are refused
/// (RESOURCE_EXHAUSTED saying `why`), exactly the creators answered OK have a code, and once the
/// flood is over a refused creator mints at once.
async fn flood_is_shed(tune: impl FnOnce(&mut trackd::SuiteConfig), why: &str) {
    use std::collections::{HashMap, HashSet};
    use tracking_api::plan::v1::{AddCreatorsRequest, NewRosterEntry};

    let suite = Suite::start_with(tune).await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    const CREATORS: i64 = 200;
    suite
        .plan()
        .add_creators(authed(
            AddCreatorsRequest {
                campaign_id: s.campaign,
                request_id: String::new(),
                creators: (1..=CREATORS)
                    .map(|n| NewRosterEntry {
                        creator_id: n,
                        profile: Some(profile("Flo", "Od", &format!("flood{n}"))),
                        // Not approved: nothing mints them but the calls below.
                        approved: false,
                    })
                    .collect(),
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("add creators: {s}"));
    mint_when_known(&suite, &token, s.campaign, CREATORS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Waves of concurrent MintCode calls for every creator, until some are refused.
    let mut answered: HashMap<i64, Vec<Result<String, tonic::Status>>> = HashMap::new();
    let mut refused = 0;
    for _wave in 0..20 {
        let calls: Vec<_> = (1..CREATORS)
            .map(|creator| {
                let mut client = suite.mint();
                let token = token.clone();
                let campaign = s.campaign;
                tokio::spawn(async move {
                    let answer = client
                        .mint_code(authed(
                            MintCodeRequest {
                                campaign_id: campaign,
                                creator_id: creator,
                            },
                            &token,
                        ))
                        .await
                        .map(|r| r.into_inner().code.unwrap_or_default().code);
                    (creator, answer)
                })
            })
            .collect();
        for call in calls {
            let (creator, answer) = call.await.unwrap_or_else(|e| panic!("{e}"));
            if let Err(status) = &answer {
                assert_eq!(status.code(), Status::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains(why)
                        && status.message().contains("retry with backoff"),
                    "{}",
                    status.message()
                );
                refused += 1;
            }
            answered.entry(creator).or_default().push(answer);
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no call was refused");

    // Exactly the creators with an OK answer have a code, each the one they were given.
    let stored: HashMap<i64, String> = codes_of(&suite, &token, s.campaign)
        .await
        .into_iter()
        .filter(|c| c.status != CodeStatus::Disabled as i32)
        .map(|c| (c.creator_id, c.code))
        .collect();
    let served: HashSet<i64> = answered
        .iter()
        .filter(|(_, answers)| answers.iter().any(Result::is_ok))
        .map(|(creator, _)| *creator)
        .collect();
    // The creator minted by `mint_when_known` while waiting for the roster has one too.
    let expected: HashSet<i64> = served.iter().copied().chain([CREATORS]).collect();
    assert_eq!(stored.keys().copied().collect::<HashSet<_>>(), expected);
    for (creator, answers) in &answered {
        for code in answers.iter().flatten() {
            assert_eq!(stored.get(creator), Some(code), "creator {creator}");
        }
    }
    // The flood over, a refused creator mints at once.
    let Some(turned_away) = (1..CREATORS).find(|c| !served.contains(c)) else {
        return; // every refused creator was served in a later wave
    };
    let (code, created) = mint(&suite, &token, s.campaign, turned_away)
        .await
        .unwrap_or_else(|e| panic!("after the flood: {e}"));
    assert!(created);
    assert_eq!(code.creator_id, turned_away);
}

#[tokio::test]
async fn a_restarted_suite_keeps_its_configuration() {
    let mut suite =
        Suite::start_with(|config| config.public_base_url = "http://links.restart".to_owned())
            .await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    for creator in [1, 2] {
        add(
            &suite,
            &token,
            s.campaign,
            creator,
            profile("Re", "Start", &format!("restart{creator}")),
            false,
        )
        .await;
    }
    let (before, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    suite.restart().await;
    let (after, _) = mint_when_known(&suite, &token, s.campaign, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for code in [before, after] {
        let url = code.links.unwrap_or_default().tracking_url;
        assert!(url.starts_with("http://links.restart/r/"), "{url}");
    }
}

/// A store that accepts connections and never answers; its base URL and a count of the
/// connections it accepted (each kept open until the test ends).
async fn silent_store() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(socket);
        }
    });
    (format!("http://{addr}"), accepted)
}

/// Sessions of the suite in the test database that have waited inside a transaction for more
/// than 250 ms (a consumer's batch is idle between its statements for far less): such a
/// transaction keeps every table's dead rows from being cleaned up.
async fn idle_in_transaction(suite: &Suite) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Session {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let db = suite.schema("mint");
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel_async::RunQueryDsl::load::<Session>(
        diesel::sql_query(
            "select application_name || ': ' || query as name from pg_stat_activity
             where datname = current_database() and state = 'idle in transaction'
               and application_name like 'tracking-%'
               and state_change < clock_timestamp() - interval '250 milliseconds'",
        ),
        &mut conn,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .into_iter()
    .map(|s| s.name)
    .collect()
}

/// A campaign whose Shopify store accepts connections and never answers, with creator 1 (approved
/// when minted); the store's count of connections accepted.
async fn on_silent_store(
    suite: &Suite,
    token: &str,
) -> (Setup, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (base_url, accepted) = silent_store().await;
    let mut registration = valid_registration(Provider::Shopify, "silent store");
    registration.base_url = base_url;
    let integration = register_integration(suite, token, registration).await;
    let s = setup_on(
        suite,
        token,
        integration,
        "{username}",
        CodeTrigger::OnApproval,
        "Silent",
        true,
    )
    .await;
    add(
        suite,
        token,
        s.campaign,
        1,
        profile("C", "C", "silent"),
        false,
    )
    .await;
    (s, accepted)
}

#[tokio::test]
async fn a_push_the_store_keeps_waiting_holds_no_transaction_open() {
    let suite = Suite::start().await;
    let token = brand(1);
    let (s, accepted) = on_silent_store(&suite, &token).await;
    mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the push reaches the store", || async {
        (accepted.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // The store keeps the call waiting (for its 10 s timeout): meanwhile no session of the
    // suite may wait inside a transaction. Sampled over a second of the wait.
    for _ in 0..10 {
        let idle = idle_in_transaction(&suite).await;
        assert!(idle.is_empty(), "open during the store call: {idle:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let codes = codes_of(&suite, &token, s.campaign).await;
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].status, CodeStatus::Pending as i32, "{codes:?}");
}

#[tokio::test]
async fn an_edit_the_store_keeps_waiting_holds_no_transaction_open() {
    let suite = Suite::start().await;
    let token = brand(1);
    let (s, accepted) = on_silent_store(&suite, &token).await;
    let (code, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The code's push keeps one call to the store waiting; the edit's call is the next.
    let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    eventually("the push reaches the store", || async {
        (connections() > 0).then_some(())
    })
    .await;
    let pushing = connections();
    let mut mint = suite.mint();
    let edit_token = token.clone();
    let edit = tokio::spawn(async move {
        mint.update_code(authed(
            UpdateCodeRequest {
                code_id: code.id,
                code: "SILENTVIP".into(),
            },
            &edit_token,
        ))
        .await
    });
    eventually("the edit reaches the store", || async {
        (connections() > pushing).then_some(())
    })
    .await;
    // The store keeps the edit waiting (for its 10 s timeout): meanwhile no session of the suite
    // may wait inside a transaction. Sampled over a second of the wait.
    for _ in 0..10 {
        let idle = idle_in_transaction(&suite).await;
        assert!(idle.is_empty(), "open during the store call: {idle:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !edit.is_finished(),
        "the store still keeps the edit waiting"
    );
    // Meanwhile another edit of the code is refused, naming why; so is the same edit again,
    // which the store may yet refuse.
    for again in ["SILENTTWO", "SILENTVIP"] {
        let second = suite
            .mint()
            .update_code(authed(
                UpdateCodeRequest {
                    code_id: code.id,
                    code: again.into(),
                },
                &token,
            ))
            .await
            .expect_err("an edit is being made");
        assert_eq!(second.code(), Status::FailedPrecondition);
        assert!(second.message().contains("being edited"), "{second:?}");
    }
    // The code has its new text while the store is asked, pending.
    let codes = codes_of(&suite, &token, s.campaign).await;
    assert_eq!(
        (codes[0].code.as_str(), codes[0].status),
        ("SILENTVIP", CodeStatus::Pending as i32),
        "{codes:?}"
    );
    edit.abort();
}

/// Puts code `id` of brand 1 in the state an edit to `to` leaves it in when its process stops
/// before the store answers (`UpdateCode`'s first transaction), with the edit's hold run out.
async fn abandon_edit(suite: &Suite, id: i64, to: &str) {
    let db = suite.schema("mint");
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "with started as ( \
               insert into code_renames (brand_id, code_id, previous_code, \
                 previous_affiliate_url, previous_status, held_until) \
               select brand_id, id, code, affiliate_url, status, now() - interval '1 second' \
               from codes where brand_id = 1 and id = $1) \
             update codes set code = $2, status = 'pending', next_push_at = 'infinity', \
               history = history || jsonb_build_array(jsonb_build_object( \
                 'from', code, 'to', $2, 'reason', 'manual', 'at', now())) \
             where brand_id = 1 and id = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(id)
        .bind::<diesel::sql_types::Text, _>(to),
        &mut conn,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_edit_whose_process_stopped_is_finished_by_the_pusher() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = sandbox_with_ana(&suite, &token).await;
    let (ana, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("pushed", || async {
        let store = store_codes(&suite, &token, s.integration).await;
        (store == [("ANA20".to_owned(), true)]).then_some(())
    })
    .await;
    let get = || async {
        suite
            .mint()
            .get_code(authed(GetCodeRequest { code_id: ana.id }, &token))
            .await
            .map(|r| r.into_inner().code.unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"))
    };

    // The store takes the new text: the discount is renamed in place, the code active, and
    // attribution learns the new text.
    abandon_edit(&suite, ana.id, "ANAEDIT").await;
    let edited = eventually("the edit is finished", || async {
        let code = get().await;
        (code.status == CodeStatus::Active as i32).then_some(code)
    })
    .await;
    assert_eq!(edited.code, "ANAEDIT");
    let store = store_codes(&suite, &token, s.integration).await;
    assert_eq!(store, [("ANAEDIT".to_owned(), true)]);
    suite
        .count_becomes(
            "attribution has the new text",
            "attribution",
            "select count(*) as n from codes where code = 'ANAEDIT'",
            1,
        )
        .await;

    // The store has the next text for something else: the code gets back what it had.
    suite
        .gateway()
        .push_discounts(authed(
            PushDiscountsRequest {
                integration_id: s.integration,
                discounts: vec![seed("TAKEN2")],
            },
            &suite_tests::token(1, Role::Service),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    abandon_edit(&suite, ana.id, "TAKEN2").await;
    suite
        .count_becomes(
            "the refused edit is put back",
            "mint",
            "select count(*) as n from code_renames",
            0,
        )
        .await;
    let back = get().await;
    assert_eq!(
        (back.code.as_str(), back.status),
        ("ANAEDIT", CodeStatus::Active as i32)
    );
    assert_eq!(
        back.history
            .iter()
            .map(|h| (h.from_code.as_str(), h.to_code.as_str()))
            .collect::<Vec<_>>(),
        [("ANA20", "ANAEDIT")]
    );
    let store = store_codes(&suite, &token, s.integration).await;
    assert!(store.contains(&("ANAEDIT".to_owned(), true)), "{store:?}");
}

#[tokio::test]
async fn a_question_the_gateway_cannot_answer_fails_only_the_requests_that_need_it() {
    let suite = Suite::start().await;
    // Brand 1: sandbox creators with codes already.
    let one = brand(1);
    let s1 = setup(
        &suite,
        &one,
        Provider::Sandbox,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    for creator in 1..=16 {
        add(
            &suite,
            &one,
            s1.campaign,
            creator,
            profile("C", "C", &format!("held{creator}")),
            false,
        )
        .await;
    }
    mint_when_known(&suite, &one, s1.campaign, 16)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for creator in 1..16 {
        mint(&suite, &one, s1.campaign, creator)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Brand 2: a Shopify store whose integration the gateway no longer has, so that the shop
    // domain its discount links need cannot be had.
    let two = brand(2);
    let s2 = setup(
        &suite,
        &two,
        Provider::Shopify,
        "{username}",
        CodeTrigger::OnApproval,
    )
    .await;
    add(
        &suite,
        &two,
        s2.campaign,
        1,
        profile("D", "D", "lost"),
        false,
    )
    .await;
    let gone = suite
        .count(
            "gateway",
            &format!(
                "with gone as (delete from integrations where brand_id = 2 and id = {} \
                 returning 1) select count(*) as n from gone",
                s2.integration
            ),
        )
        .await;
    assert_eq!(gone, 1);
    let lost = eventually("brand 2's roster known to minting", || async {
        match mint(&suite, &two, s2.campaign, 1).await {
            Err(s) if s.message().contains("roster") || s.message().contains("campaign") => None,
            other => Some(other),
        }
    })
    .await;
    assert!(lost.is_err(), "minted without a shop domain: {lost:?}");

    // Both brands' calls at once, coalesced into the same batches: brand 1's creators get the
    // codes they have, whatever the gateway said about brand 2's store.
    let calls = (1..=16).map(|creator| mint(&suite, &one, s1.campaign, creator));
    let (held, lost) = tokio::join!(
        futures::future::join_all(calls),
        mint(&suite, &two, s2.campaign, 1)
    );
    for (n, answer) in held.iter().enumerate() {
        let (code, created) = answer
            .as_ref()
            .unwrap_or_else(|s| panic!("brand 1's creator {}: {s}", n + 1));
        assert_eq!(code.code, format!("HELD{}", n + 1));
        assert!(!created);
    }
    assert!(lost.is_err(), "{lost:?}");
}

#[tokio::test]
async fn after_a_switch_to_approval_a_profile_fix_mints_only_when_the_creator_is_approved() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnAdd,
    )
    .await;
    let no_email = CreatorProfile {
        email: String::new(),
        ..profile("Leo", "L", "leo")
    };
    add(&suite, &token, s.campaign, 1, no_email, false).await;
    // The trigger's mint fails for the missing email, recorded as the trigger's.
    suite
        .count_becomes(
            "the trigger's failure recorded",
            "mint",
            "select count(*)::bigint as n from mint.mint_failures where by_trigger",
            1,
        )
        .await;
    set_trigger(&suite, &token, s.plan, CodeTrigger::OnApproval).await;
    // The fix, then a creator added approved: Leo, only added, gets no code.
    let later = (2, profile("Mo", "M", "mo"), true);
    update_profile_then_mint(
        &suite,
        &token,
        s.campaign,
        1,
        profile("Leo", "L", "leo"),
        later,
    )
    .await;
    assert!(code_of(&suite, &token, s.campaign, 1).await.is_none());
    // Approved, Leo gets his code.
    let leo = approve_and_mint(&suite, &token, s.campaign, 1).await;
    assert_eq!(leo.code, "LEO20");
}

#[tokio::test]
async fn a_failure_the_brand_asked_for_is_retried_after_each_profile_fix() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{username}{discount}",
        CodeTrigger::OnApproval,
    )
    .await;
    let update = |profile: CreatorProfile| {
        let mut plan = suite.plan();
        let request = authed(
            UpdateCreatorProfileRequest {
                campaign_id: s.campaign,
                creator_id: 1,
                profile: Some(profile),
            },
            &token,
        );
        async move {
            plan.update_creator_profile(request)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    let full = profile("Nia", "N", "nia");
    let bare = CreatorProfile {
        last_name: String::new(),
        email: String::new(),
        ..full.clone()
    };
    // Only added, on a plan minting at approval: the brand asks, and the mint fails.
    add(&suite, &token, s.campaign, 1, bare, false).await;
    let refused = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&refused, Some((Status::FailedPrecondition, m)) if m.contains("email")),
        "{refused:?}"
    );
    // The email fixed, the retry fails on the last name: still the brand's failure.
    update(CreatorProfile {
        last_name: String::new(),
        ..full.clone()
    })
    .await;
    suite
        .count_becomes(
            "the retry after the first fix failed",
            "mint",
            "select count(*)::bigint as n from mint.mint_failures \
             where not by_trigger and attempts = 2",
            1,
        )
        .await;
    // The last name fixed too: the code is minted.
    update(full).await;
    let code = eventually("the second fix mints", || {
        code_of(&suite, &token, s.campaign, 1)
    })
    .await;
    assert_eq!(code.code, "NIA20");
}

#[tokio::test]
async fn a_name_the_pattern_cannot_spell_is_retried_once_the_profile_gives_one() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = setup(
        &suite,
        &token,
        Provider::Sandbox,
        "{first_name}{last_name}",
        CodeTrigger::OnAdd,
    )
    .await;
    add(
        &suite,
        &token,
        s.campaign,
        1,
        profile("李", "王", "li"),
        false,
    )
    .await;
    let failure = eventually("the trigger's mint failed", || async {
        suite
            .mint()
            .list_failures(authed(
                ListFailuresRequest {
                    campaign_id: s.campaign,
                    page: None,
                },
                &token,
            ))
            .await
            .ok()?
            .into_inner()
            .failures
            .pop()
    })
    .await;
    assert_eq!(failure.reason, FailureReason::Pattern as i32);
    // The creator's own value is named: a profile update may fix it.
    assert_eq!(failure.fields, vec!["first_name", "last_name"]);
    suite
        .plan()
        .update_creator_profile(authed(
            UpdateCreatorProfileRequest {
                campaign_id: s.campaign,
                creator_id: 1,
                profile: Some(profile("Li", "Wang", "li")),
            },
            &token,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = eventually("retried after the profile fix", || {
        code_of(&suite, &token, s.campaign, 1)
    })
    .await;
    assert_eq!(code.code, "LIWANG");
}

#[tokio::test]
async fn a_disabled_code_takes_its_store_refusal_along_and_a_preview_counts_its_text_taken() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = sandbox_with_ana(&suite, &token).await;
    let (ana, _) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ana.code, "ANA20");
    let preview = async || {
        plan_previews(&suite, &token, s.campaign)
            .await
            .unwrap_or_else(|| panic!("refused"))
    };
    // Her own live code: minting would give it back.
    let before = preview().await;
    assert!(matches!(&before[0].result, Some(code_preview::Result::Code(c)) if c == "ANA20"));
    assert!(!before[0].collides);

    // The store refused her code for good (the pusher's record of it).
    let record_refusal = async || {
        suite
            .count(
                "mint",
                &format!(
                    "with refused as (insert into mint.mint_failures \
                       (brand_id, campaign_id, creator_id, reason, fields, message) \
                     values (1, {}, 1, 'store_error', '{{}}', 'STORE_ERROR: code not allowed') \
                     on conflict (brand_id, campaign_id, creator_id) do nothing returning 1) \
                     select count(*)::bigint as n from refused",
                    s.campaign
                ),
            )
            .await
    };
    let retry_failed = async || {
        suite
            .mint()
            .retry_failed(authed(
                RetryFailedRequest {
                    campaign_id: s.campaign,
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let failures = async || {
        suite
            .count(
                "mint",
                &format!(
                    "select count(*)::bigint as n from mint.mint_failures where campaign_id = {}",
                    s.campaign
                ),
            )
            .await
    };
    assert_eq!(record_refusal().await, 1);
    // Retried: her code is pushed again, not minted anew.
    let retried = retry_failed().await;
    assert_eq!((retried.retried, retried.minted), (1, 0));
    record_refusal().await;
    assert_eq!(failures().await, 1);

    suite
        .mint()
        .disable_code(authed(DisableCodeRequest { code_id: ana.id }, &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Disabled for good: the refusal goes with it, and no retry mints her another code.
    assert_eq!(failures().await, 0);
    let retried = retry_failed().await;
    assert_eq!((retried.retried, retried.minted), (0, 0));
    assert_eq!(codes_of(&suite, &token, s.campaign).await.len(), 1);

    // Her disabled code keeps its text: a mint would be suffixed, and the preview says so.
    let after = preview().await;
    assert!(matches!(&after[0].result, Some(code_preview::Result::Code(c)) if c == "ANA20"));
    assert!(after[0].collides);
    let (again, created) = mint_when_known(&suite, &token, s.campaign, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(created);
    assert!(
        again.code.starts_with("ANA20") && again.code != "ANA20",
        "{}",
        again.code
    );
}

#[tokio::test]
async fn a_streamed_failure_tells_its_attempts_as_list_failures_does() {
    let suite = Suite::start().await;
    let token = brand(1);
    let s = sandbox_with_ana(&suite, &token).await;
    let no_email = CreatorProfile {
        email: String::new(),
        ..profile("Bo", "B", "bo")
    };
    add(&suite, &token, s.campaign, 2, no_email, false).await;
    let first = mint_when_known(&suite, &token, s.campaign, 2).await;
    assert_eq!(
        first.err().map(|s| s.code()),
        Some(Status::FailedPrecondition)
    );
    let request = MintCodesRequest {
        tag: "bo".into(),
        campaign_id: s.campaign,
        creator_id: 2,
    };
    let streamed = suite
        .mint()
        .mint_codes(authed(tokio_stream::iter([request]), &token))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .next()
        .await
        .and_then(Result::ok)
        .and_then(|response| response.result);
    let Some(mint_codes_response::Result::Error(error)) = streamed else {
        panic!("{streamed:?}");
    };
    let listed = suite
        .mint()
        .list_failures(authed(
            ListFailuresRequest {
                campaign_id: s.campaign,
                page: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().failures)
        .unwrap_or_else(|e| panic!("{e}"));
    let failure = error.failure.unwrap_or_else(|| panic!("a failure"));
    assert_eq!(failure.attempts, 2, "the second attempt");
    assert_eq!(listed, vec![failure]);
}
