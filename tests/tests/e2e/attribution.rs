//! AttributionService end to end: the redirect and clicks, attribution by code and by click,
//! multi-creator splits, shared plans, archived campaigns, refunds and approval, exactly-once
//! under duplicates and restarts, performance figures, report permissions, live conversions and
//! leaked-code alerts. Orders enter through the gateway (IngestOrders, AST conversions), codes
//! through CodeMintService, plans and campaigns through PlanService: the whole flow over gRPC.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use suite_tests::{
    Suite, add, brand, code_when, creator_token, eventually, mint_when_known, profile, register_as,
    update_plan,
};
use tonic::Code as Status;
use tracking_api::attribution::v1::{
    AlertKind, AttributionMethod, Conversion, ConversionStatus, DayRange, Figures,
    GetCampaignPerformanceRequest, GetCreatorPerformanceRequest, ListCodeAlertsRequest,
    ListConversionsRequest, RecordClickRequest, RecordClickResponse, SplitRule,
    StreamConversionsRequest,
};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{IngestOrdersRequest, Order, OrderLine, OrderStatus};
use tracking_api::mint::v1::{Code, DisableCodeRequest};
use tracking_api::plan::v1::{
    ArchiveCampaignRequest, CodeTrigger, Commission, CreateCampaignRequest, CreatePlanRequest,
    Discount, Plan, SetReportVisibilityRequest, Utm, commission, discount,
};
use tracking_testkit::authed;

const EUR: &str = "EUR";

/// What a test plan looks like.
struct Terms {
    provider: Provider,
    commission_bps: i32,
    holding_days: i32,
    window_days: i32,
    ends_at: Option<SystemTime>,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            provider: Provider::Sandbox,
            commission_bps: 1000,
            holding_days: 0,
            window_days: 0,
            ends_at: None,
        }
    }
}

struct World {
    integration: i64,
    plan: i64,
    campaign: i64,
}

async fn world(suite: &Suite, token: &str, name: &str, terms: Terms) -> World {
    let integration = register_as(suite, token, terms.provider, &format!("{name} store")).await;
    let codes = terms.provider != Provider::Ast;
    let plan = suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: format!("{name} plan"),
                    integration_id: integration,
                    discount: codes.then_some(Discount {
                        kind: Some(discount::Kind::PercentBps(2000)),
                    }),
                    code_pattern: if codes {
                        "{username}{discount}".into()
                    } else {
                        String::new()
                    },
                    click_url: "https://brand.example.com/summer?ref=ig".into(),
                    utm: Some(Utm {
                        source: "influencer".into(),
                        medium: "social".into(),
                        ..Default::default()
                    }),
                    ends_at: terms.ends_at.map(prost_types::Timestamp::from),
                    commission: Some(Commission {
                        kind: Some(commission::Kind::PercentBps(terms.commission_bps)),
                    }),
                    code_trigger: CodeTrigger::OnAdd as i32,
                    attribution_window_days: terms.window_days,
                    holding_period_days: terms.holding_days,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create plan: {s}"));
    let campaign = campaign(suite, token, name, plan, false).await;
    World {
        integration,
        plan,
        campaign,
    }
}

async fn campaign(suite: &Suite, token: &str, name: &str, plan: i64, allow_shared: bool) -> i64 {
    suite
        .plan()
        .create_campaign(authed(
            CreateCampaignRequest {
                name: name.into(),
                plan_id: plan,
                allow_shared,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create campaign: {s}"))
}

/// Adds a creator and returns their code (minted on add).
async fn creator(suite: &Suite, token: &str, campaign: i64, id: i64, username: &str) -> Code {
    add(
        suite,
        token,
        campaign,
        id,
        profile("Ann", "Lee", username),
        true,
    )
    .await;
    mint_when_known(suite, token, campaign, id)
        .await
        .map(|(code, _)| code)
        .unwrap_or_else(|s| panic!("mint: {s}"))
}

fn order(
    integration: i64,
    id: &str,
    status: OrderStatus,
    codes: &[&str],
    subtotal: i64,
    discount: i64,
) -> Order {
    Order {
        integration_id: integration,
        store_order_id: id.into(),
        status: status as i32,
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        currency: EUR.into(),
        subtotal_minor: subtotal,
        discount_minor: discount,
        total_minor: subtotal - discount,
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        ..Order::default()
    }
}

async fn ingest(suite: &Suite, token: &str, orders: Vec<Order>) -> (i64, i64) {
    let requests: Vec<IngestOrdersRequest> = orders
        .into_iter()
        .map(|o| IngestOrdersRequest { order: Some(o) })
        .collect();
    suite
        .gateway()
        .ingest_orders(authed(tokio_stream::iter(requests), token))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.accepted, r.duplicates)
        })
        .unwrap_or_else(|s| panic!("ingest: {s}"))
}

async fn totals(suite: &Suite, token: &str, campaign: i64) -> Figures {
    suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: campaign,
                range: None,
            },
            token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .performance
                .and_then(|p| p.totals)
                .unwrap_or_default()
        })
        .unwrap_or_else(|s| panic!("performance: {s}"))
}

/// Waits until the campaign's totals satisfy `check`, and returns them.
async fn totals_when(
    suite: &Suite,
    token: &str,
    campaign: i64,
    what: &str,
    check: impl Fn(&Figures) -> bool,
) -> Figures {
    eventually(what, || async {
        let figures = totals(suite, token, campaign).await;
        check(&figures).then_some(figures)
    })
    .await
}

async fn conversions(suite: &Suite, token: &str, campaign: i64) -> Vec<Conversion> {
    suite
        .attribution()
        .list_conversions(authed(
            ListConversionsRequest {
                campaign_id: campaign,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().conversions)
        .unwrap_or_else(|s| panic!("list conversions: {s}"))
}

fn eur(figures: &Figures) -> tracking_api::attribution::v1::CurrencyFigures {
    figures
        .currencies
        .iter()
        .find(|c| c.currency == EUR)
        .cloned()
        .unwrap_or_default()
}

/// Waits until the campaign is known to attribution (its projection follows PlanService).
async fn known(suite: &Suite, token: &str, campaign: i64) {
    eventually("campaign projected", || async {
        suite
            .attribution()
            .get_campaign_performance(authed(
                GetCampaignPerformanceRequest {
                    campaign_id: campaign,
                    range: None,
                },
                token,
            ))
            .await
            .ok()
    })
    .await;
}

#[tokio::test]
async fn orders_are_attributed_by_code_case_insensitively_with_the_plans_commission() {
    let suite = Suite::start().await;
    let token = brand(1);
    let w = world(&suite, &token, "Summer", Terms::default()).await;
    let anna = creator(&suite, &token, w.campaign, 101, "anna").await;
    assert!(!anna.code.is_empty());
    known(&suite, &token, w.campaign).await;
    let lower = anna.code.to_lowercase();
    let mut test_order = order(
        w.integration,
        "T-1",
        OrderStatus::Paid,
        &[&anna.code],
        10_000,
        2_000,
    );
    test_order.test = true;
    ingest(
        &suite,
        &token,
        vec![
            order(
                w.integration,
                "A-1",
                OrderStatus::Paid,
                &[&lower],
                10_000,
                2_000,
            ),
            order(
                w.integration,
                "A-2",
                OrderStatus::Paid,
                &["SOMEONE-ELSE"],
                5_000,
                0,
            ),
            test_order,
        ],
    )
    .await;
    let figures = totals_when(&suite, &token, w.campaign, "A-1 attributed", |f| {
        f.orders == 1
    })
    .await;
    assert_eq!(figures.code_uses, 1);
    let money = eur(&figures);
    assert_eq!((money.revenue_minor, money.discount_minor), (8_000, 2_000));
    // 10 % of the discounted subtotal; no holding period: approved at once.
    assert_eq!(
        (
            money.commission_approved_minor,
            money.commission_pending_minor
        ),
        (800, 0)
    );
    let list = conversions(&suite, &token, w.campaign).await;
    assert_eq!(
        list.len(),
        1,
        "the unknown code and the test order are not attributed"
    );
    let c = &list[0];
    assert_eq!((c.creator_id, c.store_order_id.as_str()), (101, "A-1"));
    assert_eq!(c.method, AttributionMethod::Code as i32);
    assert_eq!(c.matched, lower, "the code as the order carried it");
    assert_eq!(c.split_rule, SplitRule::None as i32);
    assert_eq!(c.status, ConversionStatus::Approved as i32);
    assert!(!c.shared);
    // Another brand sees nothing of it.
    let other = suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: w.campaign,
                range: None,
            },
            &brand(2),
        ))
        .await;
    assert_eq!(other.err().map(|s| s.code()), Some(Status::NotFound));
}

#[tokio::test]
async fn refunds_cancellations_and_approval() {
    let suite = Suite::start().await;
    let token = brand(1);
    let held = world(
        &suite,
        &token,
        "Held",
        Terms {
            holding_days: 30,
            ..Terms::default()
        },
    )
    .await;
    let code = creator(&suite, &token, held.campaign, 7, "bea").await.code;
    known(&suite, &token, held.campaign).await;
    let i = held.integration;
    ingest(
        &suite,
        &token,
        vec![
            order(i, "P-1", OrderStatus::Paid, &[&code], 10_000, 0),
            order(i, "P-2", OrderStatus::Paid, &[&code], 4_000, 0),
            order(i, "P-3", OrderStatus::Created, &[&code], 2_000, 0),
        ],
    )
    .await;
    totals_when(&suite, &token, held.campaign, "three orders", |f| {
        f.orders == 3
    })
    .await;
    let mut partial = order(
        i,
        "P-1",
        OrderStatus::PartiallyRefunded,
        &[&code],
        10_000,
        0,
    );
    partial.refunded_minor = 2_500;
    let mut full = order(i, "P-2", OrderStatus::Refunded, &[&code], 4_000, 0);
    full.refunded_minor = 4_000;
    ingest(
        &suite,
        &token,
        vec![
            partial,
            full,
            order(i, "P-3", OrderStatus::Cancelled, &[&code], 2_000, 0),
        ],
    )
    .await;
    let figures = totals_when(&suite, &token, held.campaign, "refunds applied", |f| {
        f.orders == 1
    })
    .await;
    let money = eur(&figures);
    // P-1: 7,500 left of 10,000, commission 750 pending; P-2 and P-3 reversed (400 + 200).
    assert_eq!(money.revenue_minor, 7_500);
    assert_eq!(money.commission_pending_minor, 750);
    assert_eq!(money.commission_reversed_minor, 600);
    assert_eq!(money.commission_approved_minor, 0);
    // A late "paid" for the cancelled order changes nothing.
    ingest(
        &suite,
        &token,
        vec![order(i, "P-3", OrderStatus::Paid, &[&code], 2_000, 0)],
    )
    .await;

    // No holding period: approved when paid; a refund afterwards is an adjustment.
    let fast = world(&suite, &token, "Fast", Terms::default()).await;
    let code = creator(&suite, &token, fast.campaign, 8, "cleo").await.code;
    known(&suite, &token, fast.campaign).await;
    ingest(
        &suite,
        &token,
        vec![order(
            fast.integration,
            "F-1",
            OrderStatus::Paid,
            &[&code],
            10_000,
            0,
        )],
    )
    .await;
    totals_when(&suite, &token, fast.campaign, "F-1 approved", |f| {
        eur(f).commission_approved_minor == 1_000
    })
    .await;
    let mut refund = order(
        fast.integration,
        "F-1",
        OrderStatus::PartiallyRefunded,
        &[&code],
        10_000,
        0,
    );
    refund.refunded_minor = 5_000;
    ingest(&suite, &token, vec![refund]).await;
    let figures = totals_when(&suite, &token, fast.campaign, "adjustment", |f| {
        eur(f).commission_adjusted_minor != 0
    })
    .await;
    let money = eur(&figures);
    assert_eq!(
        money.commission_approved_minor, 1_000,
        "approved history is kept"
    );
    assert_eq!(money.commission_adjusted_minor, -500);
    assert_eq!(money.revenue_minor, 5_000);
    let list = conversions(&suite, &token, fast.campaign).await;
    assert_eq!(list[0].status, ConversionStatus::Approved as i32);
    assert_eq!(list[0].adjustments.len(), 1);
    assert_eq!(list[0].adjustments[0].commission_minor, -500);
    let held_list = conversions(&suite, &token, held.campaign).await;
    let p3 = held_list.iter().find(|c| c.store_order_id == "P-3");
    assert_eq!(
        p3.map(|c| c.status),
        Some(ConversionStatus::Reversed as i32)
    );
}

#[tokio::test]
async fn split_orders_shared_plans_and_archived_campaigns() {
    let suite = Suite::start().await;
    let token = brand(1);
    let w = world(&suite, &token, "Split", Terms::default()).await;
    let anna = creator(&suite, &token, w.campaign, 1, "anna").await.code;
    let bob = creator(&suite, &token, w.campaign, 2, "bob").await.code;
    known(&suite, &token, w.campaign).await;
    let line = |amount: i64, discount: i64, codes: &[&str]| OrderLine {
        product_id: "p".into(),
        quantity: 1,
        amount_minor: amount,
        discount_minor: discount,
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        ..OrderLine::default()
    };
    let mut by_lines = order(
        w.integration,
        "S-1",
        OrderStatus::Paid,
        &[&anna, &bob],
        10_000,
        1_000,
    );
    by_lines.lines = vec![line(6_000, 600, &[&anna]), line(4_000, 400, &[&bob])];
    let equal = order(
        w.integration,
        "S-2",
        OrderStatus::Paid,
        &[&anna, &bob],
        1_001,
        0,
    );
    ingest(&suite, &token, vec![by_lines, equal]).await;
    totals_when(&suite, &token, w.campaign, "splits", |f| f.orders == 4).await;
    let list = conversions(&suite, &token, w.campaign).await;
    let find = |order: &str, creator: i64| {
        list.iter()
            .find(|c| c.store_order_id == order && c.creator_id == creator)
            .cloned()
            .unwrap_or_else(|| panic!("{order}/{creator} missing"))
    };
    assert_eq!(find("S-1", 1).split_rule, SplitRule::Lines as i32);
    assert_eq!(
        (find("S-1", 1).revenue_minor, find("S-1", 2).revenue_minor),
        (5_400, 3_600)
    );
    assert_eq!(find("S-2", 1).split_rule, SplitRule::Equal as i32);
    assert_eq!(
        (find("S-2", 1).revenue_minor, find("S-2", 2).revenue_minor),
        (501, 500)
    );

    // A second campaign shares the plan: every sale is recorded in both, marked shared.
    let second = campaign(&suite, &token, "Split too", w.plan, true).await;
    known(&suite, &token, second).await;
    ingest(
        &suite,
        &token,
        vec![order(
            w.integration,
            "S-3",
            OrderStatus::Paid,
            &[&anna],
            2_000,
            0,
        )],
    )
    .await;
    totals_when(&suite, &token, second, "shared sale", |f| f.orders == 1).await;
    let shared = conversions(&suite, &token, second).await;
    assert!(shared[0].shared && shared[0].creator_id == 1);
    let first = conversions(&suite, &token, w.campaign).await;
    assert!(first.iter().any(|c| c.store_order_id == "S-3" && c.shared));

    // Archived campaigns keep tracking.
    suite
        .plan()
        .archive_campaign(authed(
            ArchiveCampaignRequest {
                campaign_id: w.campaign,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("archive: {s}"));
    let mut foreign = order(w.integration, "S-4", OrderStatus::Paid, &[&bob], 3_000, 0);
    foreign.country = "BR".into();
    foreign.currency = "BRL".into();
    ingest(&suite, &token, vec![foreign]).await;
    let figures = totals_when(&suite, &token, w.campaign, "archived still tracked", |f| {
        f.orders == 6
    })
    .await;
    let brl = figures
        .currencies
        .iter()
        .find(|c| c.currency == "BRL")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        brl.revenue_minor, 3_000,
        "orders from every country count, per currency"
    );
}

async fn get(suite: &Suite, target: &str, agent: &str) -> tracking_testkit::http::HttpResponse {
    suite
        .http("GET", target, &[("user-agent", agent)], b"")
        .await
}

const BROWSER: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";

/// What the link answers at `at` (now if that has passed).
async fn status_at(suite: &Suite, target: &str, at: SystemTime) -> u16 {
    tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
    get(suite, target, BROWSER).await.status
}

/// The link's first redirect, once the redirect knows its slug (codes reach it on a stream).
/// `RecordClick` of `click`, as a browser's (its user agent set).
async fn record_click(
    suite: &Suite,
    token: &str,
    click: RecordClickRequest,
) -> Result<RecordClickResponse, tonic::Status> {
    let click = RecordClickRequest {
        user_agent: BROWSER.into(),
        ..click
    };
    suite
        .attribution()
        .record_click(authed(click, token))
        .await
        .map(|r| r.into_inner())
}

async fn redirected(suite: &Suite, target: &str) -> tracking_testkit::http::HttpResponse {
    eventually("link live", || async {
        let r = get(suite, target, BROWSER).await;
        (r.status == 302).then_some(r)
    })
    .await
}

/// The shopper's address (for the visitor hash) and country come from a proxy's headers only
/// when the peer is a trusted proxy (`--trusted-proxies`): straight from a client they are its
/// own claims, and the peer's address is the visitor's.
#[tokio::test]
async fn clicks_believe_forwarded_headers_from_trusted_proxies_only() {
    for (proxies, believed) in [("local", true), ("203.0.113.0/24", false)] {
        let suite = Suite::start_with(|config| {
            config.trusted_proxies = proxies.parse().unwrap_or_else(|e| panic!("{e}"));
        })
        .await;
        let token = brand(3);
        let w = world(
            &suite,
            &token,
            "Proxies",
            Terms {
                provider: Provider::Ast,
                ..Terms::default()
            },
        )
        .await;
        let code = creator(&suite, &token, w.campaign, 31, "dana").await;
        known(&suite, &token, w.campaign).await;
        let target = format!("/r/{}", code.links.unwrap_or_default().slug);
        // One click as the test's own (loopback) address, then two "forwarded" from elsewhere;
        // the second claims the first's address in a line ahead of the one its (trusted) proxy
        // added.
        redirected(&suite, &target).await;
        for forwarded in [
            &[("x-forwarded-for", "198.51.100.1")][..],
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "198.51.100.2"),
            ],
        ] {
            let mut headers = vec![("user-agent", BROWSER), ("cf-ipcountry", "de")];
            headers.extend_from_slice(forwarded);
            let answer = suite.http("GET", &target, &headers, b"").await;
            assert_eq!(answer.status, 302);
        }
        suite
            .count_becomes(
                "three clicks stored",
                "attribution",
                "select count(*) as n from clicks",
                3,
            )
            .await;
        let from_de = suite
            .count(
                "attribution",
                "select count(*) as n from clicks where country = 'DE'",
            )
            .await;
        let visitors = suite
            .count(
                "attribution",
                "select count(distinct visitor_hash) as n from clicks where visitor_hash <> ''",
            )
            .await;
        let expected = if believed { (2, 3) } else { (0, 1) };
        assert_eq!((from_de, visitors), expected, "trusted proxies: {proxies}");
    }
}

#[tokio::test]
async fn the_redirect_counts_clicks_and_clicks_attribute_within_the_window() {
    let suite = Suite::start().await;
    let token = brand(3);
    let w = world(
        &suite,
        &token,
        "Links",
        Terms {
            provider: Provider::Ast,
            window_days: 5,
            ..Terms::default()
        },
    )
    .await;
    let code = creator(&suite, &token, w.campaign, 31, "dana").await;
    let slug = code.links.clone().unwrap_or_default().slug;
    assert!(!slug.is_empty());
    known(&suite, &token, w.campaign).await;
    let target = format!("/r/{slug}");
    let first = redirected(&suite, &target).await;
    let location = first.header("location").unwrap_or_default().to_owned();
    assert!(
        location.starts_with("https://brand.example.com/summer?ref=ig"),
        "{location}"
    );
    assert!(
        location.contains("utm_source=influencer") && location.contains("utm_medium=social"),
        "{location}"
    );
    let click_id = location
        .rsplit("click_id=")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(click_id.starts_with("c_"), "{location}");
    assert_eq!(first.header("cache-control"), Some("no-store"));
    // Bots and HEAD requests are sent on but not counted (and get no click id).
    let bot = get(
        &suite,
        &target,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    )
    .await;
    assert_eq!(bot.status, 302);
    assert!(
        !bot.header("location")
            .unwrap_or_default()
            .contains("click_id")
    );
    let head = suite
        .http("HEAD", &target, &[("user-agent", BROWSER)], b"")
        .await;
    assert_eq!(head.status, 302);
    assert_eq!(get(&suite, "/r/no-such-slug", BROWSER).await.status, 404);

    // A click recorded elsewhere, six days ago: outside the plan's five-day window.
    let six_days_ago = SystemTime::now() - Duration::from_secs(6 * 86_400);
    let old = record_click(
        &suite,
        &token,
        RecordClickRequest {
            slug: slug.clone(),
            clicked_at: Some(prost_types::Timestamp::from(six_days_ago)),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|s| panic!("record click: {s}"));
    assert!(old.counted);
    // Answered once stored: a caller told it counted need not retry.
    let stored = suite
        .count(
            "attribution",
            &format!(
                "select count(*) as n from clicks where click_id = '{}'",
                old.click_id
            ),
        )
        .await;
    assert_eq!(stored, 1);
    // The same click recorded again (a client's retry) is stored once: the click writer's plain
    // insert fails on the taken id and the batch is written again, skipping it. A new click sent
    // after it shows when the writer has passed it.
    for click_id in [old.click_id.clone(), String::new()] {
        let again = record_click(
            &suite,
            &token,
            RecordClickRequest {
                slug: slug.clone(),
                click_id,
                clicked_at: Some(prost_types::Timestamp::from(six_days_ago)),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|s| panic!("record click: {s}"));
        assert!(again.counted);
    }
    let figures = totals_when(&suite, &token, w.campaign, "three clicks", |f| {
        f.clicks >= 3
    })
    .await;
    assert_eq!(figures.clicks, 3, "the retried click counted once");
    // A stored click's id on another creator's link is refused, not counted as stored.
    let other = creator(&suite, &token, w.campaign, 32, "dora").await;
    let other_slug = other.links.unwrap_or_default().slug;
    eventually("the other link live", || async {
        let head = suite
            .http(
                "HEAD",
                &format!("/r/{other_slug}"),
                &[("user-agent", BROWSER)],
                b"",
            )
            .await;
        (head.status == 302).then_some(())
    })
    .await;
    let reused = record_click(
        &suite,
        &token,
        RecordClickRequest {
            slug: other_slug.clone(),
            click_id: old.click_id.clone(),
            ..Default::default()
        },
    )
    .await
    .err()
    .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&reused, Some((Status::AlreadyExists, m)) if m.contains(&old.click_id)),
        "{reused:?}"
    );
    // One new id sent for both links at once: the first written keeps it, the other is refused.
    let race = |slug: String| {
        let click = RecordClickRequest {
            slug,
            click_id: "race-1".into(),
            ..Default::default()
        };
        async {
            record_click(&suite, &token, click)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    };
    let (a, b) = tokio::join!(race(slug.clone()), race(other_slug.clone()));
    let mut raced = vec![a, b];
    raced.sort_by_key(|r| r.is_err());
    assert_eq!(raced, vec![Ok(()), Err(Status::AlreadyExists)], "{raced:?}");

    let mut within = order(w.integration, "AST-1", OrderStatus::Paid, &[], 5_000, 0);
    within.click_id = click_id.clone();
    let mut outside = order(w.integration, "AST-2", OrderStatus::Paid, &[], 7_000, 0);
    outside.click_id = old.click_id.clone();
    ingest(&suite, &token, vec![within, outside]).await;
    let figures = totals_when(&suite, &token, w.campaign, "click attribution", |f| {
        f.orders >= 1
    })
    .await;
    assert_eq!(
        eur(&figures).revenue_minor,
        5_000,
        "only the order within the window"
    );
    assert_eq!(
        figures.conversion_rate_bps, 2_500,
        "1 order per 4 clicks (the raced id's among them)"
    );
    let list = conversions(&suite, &token, w.campaign).await;
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].method, list[0].matched.as_str()),
        (AttributionMethod::Click as i32, click_id.as_str())
    );

    // Another brand cannot record clicks on the link; bad input names the field.
    let err = suite
        .attribution()
        .record_click(authed(
            RecordClickRequest {
                slug: slug.clone(),
                ..Default::default()
            },
            &brand(4),
        ))
        .await
        .err();
    assert_eq!(err.map(|s| s.code()), Some(Status::NotFound));
    let err = suite
        .attribution()
        .record_click(authed(
            RecordClickRequest {
                slug: slug.clone(),
                country: "Germany".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&err, Some((Status::InvalidArgument, m)) if m.starts_with("country")),
        "{err:?}"
    );

    // A disabled code's link is gone.
    suite
        .mint()
        .disable_code(authed(DisableCodeRequest { code_id: code.id }, &token))
        .await
        .unwrap_or_else(|s| panic!("disable: {s}"));
    eventually("410 after disabling", || async {
        (get(&suite, &target, BROWSER).await.status == 410).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_click_recorded_again_under_its_request_id_counts_once() {
    let suite = Suite::start().await;
    let token = brand(5);
    let w = world(&suite, &token, "Retried", Terms::default()).await;
    let slug = creator(&suite, &token, w.campaign, 1, "ivy")
        .await
        .links
        .unwrap_or_default()
        .slug;
    redirected(&suite, &format!("/r/{slug}")).await;
    let record = |request_id: &str| {
        let click = RecordClickRequest {
            slug: slug.clone(),
            request_id: request_id.to_owned(),
            ..Default::default()
        };
        async {
            record_click(&suite, &token, click)
                .await
                .map(|r| r.click_id)
                .unwrap_or_else(|s| panic!("record click: {s}"))
        }
    };
    let first = record("req-1").await;
    assert_eq!(
        record("req-1").await,
        first,
        "the retry names the same click"
    );
    assert_ne!(record("req-2").await, first);
    // With the redirect's own click, which showed the link live.
    let figures = totals_when(&suite, &token, w.campaign, "three clicks", |f| {
        f.clicks >= 3
    })
    .await;
    assert_eq!(figures.clicks, 3, "the retried click counted once");
    // The same request id for a click on another link: another request under a used id.
    let other = creator(&suite, &token, w.campaign, 2, "jo")
        .await
        .links
        .unwrap_or_default()
        .slug;
    redirected(&suite, &format!("/r/{other}")).await;
    for (slug, request_id) in [(other, "req-1".to_owned()), (slug.clone(), "r".repeat(101))] {
        let click = RecordClickRequest {
            slug,
            request_id,
            ..Default::default()
        };
        let refused = record_click(&suite, &token, click)
            .await
            .err()
            .map(|s| (s.code(), s.message().to_owned()));
        assert!(
            matches!(&refused, Some((Status::InvalidArgument, m)) if m.starts_with("request_id")),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn links_end_with_the_plan() {
    let suite = Suite::start().await;
    let token = brand(5);
    let ends_at = SystemTime::now() + Duration::from_secs(3);
    let w = world(
        &suite,
        &token,
        "Short",
        Terms {
            ends_at: Some(ends_at),
            ..Terms::default()
        },
    )
    .await;
    let code = creator(&suite, &token, w.campaign, 1, "eve").await;
    let slug = code.links.unwrap_or_default().slug;
    let target = format!("/r/{slug}");
    redirected(&suite, &target).await;
    assert_eq!(status_at(&suite, &target, ends_at).await, 410);
    // A click seen elsewhere before the end, reported after it, still counts; one not dated
    // (now) does not.
    let record = |clicked_at: Option<SystemTime>| {
        let click = RecordClickRequest {
            slug: slug.clone(),
            clicked_at: clicked_at.map(prost_types::Timestamp::from),
            ..Default::default()
        };
        record_click(&suite, &token, click)
    };
    let before_the_end = record(Some(ends_at - Duration::from_secs(1)))
        .await
        .map(|r| r.counted);
    assert_eq!(before_the_end.ok(), Some(true));
    let undated = record(None).await.err().map(|s| s.code());
    assert_eq!(undated, Some(Status::FailedPrecondition));
}

#[tokio::test]
async fn links_follow_a_plan_changed_after_their_codes_were_minted() {
    let suite = Suite::start().await;
    let token = brand(5);
    let w = world(&suite, &token, "Moving", Terms::default()).await;
    let code = creator(&suite, &token, w.campaign, 1, "ida").await;
    let target = format!("/r/{}", code.links.unwrap_or_default().slug);
    let first = redirected(&suite, &target).await;
    let location = first.header("location").unwrap_or_default().to_owned();
    assert!(
        location.starts_with("https://brand.example.com/summer?ref=ig"),
        "{location}"
    );

    // Before outreach the brand moves the landing page and ends the plan in a few seconds.
    let ends_at = SystemTime::now() + Duration::from_secs(6);
    let moved_plan = Plan {
        id: w.plan,
        click_url: "https://brand.example.com/autumn".into(),
        ends_at: Some(prost_types::Timestamp::from(ends_at)),
        ..Plan::default()
    };
    update_plan(&suite, &token, moved_plan, &["click_url", "ends_at"])
        .await
        .unwrap_or_else(|s| panic!("update plan: {s}"));
    let moved = code_when(
        &suite,
        &token,
        code.id,
        "the code's link follows the plan",
        |c| {
            c.links.as_ref().is_some_and(|links| {
                links
                    .destination_url
                    .starts_with("https://brand.example.com/autumn")
                    && links.expires_at.is_some()
            })
        },
    )
    .await
    .links
    .unwrap_or_default();
    assert!(
        moved.destination_url.contains("utm_source=influencer"),
        "{}",
        moved.destination_url
    );
    eventually("the redirect follows the plan", || async {
        let r = get(&suite, &target, BROWSER).await;
        let location = r.header("location").unwrap_or_default().to_owned();
        (r.status == 302 && location.starts_with("https://brand.example.com/autumn")).then_some(())
    })
    .await;
    assert_eq!(status_at(&suite, &target, ends_at).await, 410);
}

#[tokio::test]
async fn no_click_is_lost_across_a_graceful_restart() {
    let mut suite = Suite::start().await;
    let token = brand(6);
    let w = world(&suite, &token, "Busy", Terms::default()).await;
    let code = creator(&suite, &token, w.campaign, 1, "fay").await;
    let target = format!("/r/{}", code.links.unwrap_or_default().slug);
    redirected(&suite, &target).await;
    let clicks: Vec<_> = (0..300).map(|_| get(&suite, &target, BROWSER)).collect();
    let answers = futures::stream::iter(clicks)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(answers.iter().all(|r| r.status == 302));
    suite.restart().await;
    assert_eq!(
        suite
            .count("attribution", "select count(*) as n from clicks")
            .await,
        301,
        "every answered click is stored by the time the server has stopped"
    );
    let figures = totals(&suite, &token, w.campaign).await;
    assert_eq!(figures.clicks, 301);
}

#[tokio::test]
async fn duplicates_and_restarts_change_no_totals() {
    let mut suite = Suite::start().await;
    let token = brand(7);
    let w = world(&suite, &token, "Steady", Terms::default()).await;
    let code = creator(&suite, &token, w.campaign, 1, "gus").await.code;
    known(&suite, &token, w.campaign).await;
    let batch: Vec<Order> = (0..50)
        .map(|n| {
            order(
                w.integration,
                &format!("D-{n}"),
                OrderStatus::Paid,
                &[&code],
                1_000 + n,
                0,
            )
        })
        .collect();
    let expected_revenue: i64 = (0..50).map(|n| 1_000 + n).sum();
    // 10 % of each order, rounded down per order.
    let expected_commission: i64 = (0..50).map(|n| (1_000 + n) / 10).sum::<i64>() + 50;
    assert_eq!(ingest(&suite, &token, batch.clone()).await, (50, 0));
    assert_eq!(ingest(&suite, &token, batch.clone()).await, (0, 50));
    suite.restart().await;
    assert_eq!(ingest(&suite, &token, batch).await, (0, 50));
    ingest(
        &suite,
        &token,
        vec![order(
            w.integration,
            "D-last",
            OrderStatus::Paid,
            &[&code],
            500,
            0,
        )],
    )
    .await;
    let figures = totals_when(&suite, &token, w.campaign, "51 orders", |f| f.orders == 51).await;
    let money = eur(&figures);
    assert_eq!(money.revenue_minor, expected_revenue + 500);
    assert_eq!(money.commission_approved_minor, expected_commission);
    assert_eq!(
        suite
            .count("attribution", "select count(*) as n from conversions")
            .await,
        51
    );
}

#[tokio::test]
async fn performance_figures_match_hand_computed_expectations() {
    let suite = Suite::start().await;
    let token = brand(8);
    let w = world(
        &suite,
        &token,
        "Figures",
        Terms {
            commission_bps: 1500,
            holding_days: 30,
            ..Terms::default()
        },
    )
    .await;
    let hana = creator(&suite, &token, w.campaign, 1, "hana").await;
    let ivan = creator(&suite, &token, w.campaign, 2, "ivan").await;
    known(&suite, &token, w.campaign).await;
    for (code, n) in [(&hana, 4), (&ivan, 1)] {
        let target = format!("/r/{}", code.links.clone().unwrap_or_default().slug);
        for _ in 0..n {
            eventually("click", || async {
                (get(&suite, &target, BROWSER).await.status == 302).then_some(())
            })
            .await;
        }
    }
    ingest(
        &suite,
        &token,
        vec![
            order(
                w.integration,
                "H-1",
                OrderStatus::Paid,
                &[&hana.code],
                12_000,
                2_000,
            ),
            order(
                w.integration,
                "H-2",
                OrderStatus::Paid,
                &[&hana.code],
                3_000,
                0,
            ),
            order(
                w.integration,
                "I-1",
                OrderStatus::Paid,
                &[&ivan.code],
                8_000,
                1_000,
            ),
        ],
    )
    .await;
    let figures = totals_when(&suite, &token, w.campaign, "figures", |f| {
        f.orders == 3 && f.clicks == 5
    })
    .await;
    let money = eur(&figures);
    // Revenue 10,000 + 3,000 + 7,000; commission 15 %: 1,500 + 450 + 1,050, pending for 30 days.
    assert_eq!(money.revenue_minor, 20_000);
    assert_eq!(money.discount_minor, 3_000);
    assert_eq!(money.commission_pending_minor, 3_000);
    assert_eq!(figures.conversion_rate_bps, 6_000, "3 orders / 5 clicks");
    let hana_figures = suite
        .attribution()
        .get_creator_performance(authed(
            GetCreatorPerformanceRequest {
                campaign_id: w.campaign,
                creator_id: 1,
                range: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().performance.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let totals = hana_figures.totals.unwrap_or_default();
    assert_eq!((totals.clicks, totals.orders, totals.code_uses), (4, 2, 2));
    assert_eq!(eur(&totals).revenue_minor, 13_000);
    assert_eq!(totals.conversion_rate_bps, 5_000);
    assert_eq!(hana_figures.daily.len(), 1, "all today");
    // A range without today's orders is empty; a bad range names the field.
    let empty = suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: w.campaign,
                range: Some(DayRange {
                    from: "2020-01-01".into(),
                    to: "2020-01-31".into(),
                }),
            },
            &token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .performance
                .and_then(|p| p.totals)
                .unwrap_or_default()
        })
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!((empty.orders, empty.clicks), (0, 0));
    let bad = suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: w.campaign,
                range: Some(DayRange {
                    from: "2026-13-01".into(),
                    to: String::new(),
                }),
            },
            &token,
        ))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&bad, Some((Status::InvalidArgument, m)) if m.starts_with("range.from")),
        "{bad:?}"
    );
}

#[tokio::test]
async fn creators_export_their_own_report_only_when_the_brand_allows() {
    let suite = Suite::start().await;
    let token = brand(9);
    let w = world(&suite, &token, "Report", Terms::default()).await;
    let code = creator(&suite, &token, w.campaign, 91, "jo").await.code;
    creator(&suite, &token, w.campaign, 92, "kim").await;
    known(&suite, &token, w.campaign).await;
    let mut with_email = order(w.integration, "R-1", OrderStatus::Paid, &[&code], 2_550, 0);
    with_email.customer_hash = "a1b2c3".into();
    ingest(&suite, &token, vec![with_email]).await;
    totals_when(&suite, &token, w.campaign, "R-1", |f| f.orders == 1).await;

    let csv = suite
        .export_report(&token, w.campaign, 91)
        .await
        .unwrap_or_else(|s| panic!("brand export: {s}"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("order_id,ordered_at,"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with("R-1,") && lines[1].contains(",25.50,"),
        "{csv}"
    );
    assert!(!csv.contains("a1b2c3"), "no customer data in the report");

    let own = creator_token(9, 91);
    let denied = suite
        .export_report(&own, w.campaign, 91)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(
        denied,
        Some(Status::PermissionDenied),
        "visibility is off by default"
    );
    suite
        .plan()
        .set_report_visibility(authed(
            SetReportVisibilityRequest {
                plan_id: w.plan,
                report_visible: true,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let mine = eventually("visibility projected", || async {
        suite.export_report(&own, w.campaign, 91).await.ok()
    })
    .await;
    assert_eq!(mine, csv);
    let theirs = suite
        .export_report(&own, w.campaign, 92)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(
        theirs,
        Some(Status::PermissionDenied),
        "another creator's report"
    );
    let other_brand = suite
        .export_report(&brand(10), w.campaign, 91)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(other_brand, Some(Status::NotFound));
    // The brand sees the toggle.
    let performance = suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: w.campaign,
                range: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().performance.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    assert!(performance.report_visible);
    // A creator token reads no brand figures.
    let err = suite
        .attribution()
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: w.campaign,
                range: None,
            },
            &own,
        ))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(err, Some(Status::PermissionDenied));
}

#[tokio::test]
async fn conversions_stream_live_to_dashboards() {
    let suite = Suite::start().await;
    let token = brand(11);
    let w = world(&suite, &token, "Live", Terms::default()).await;
    let code = creator(&suite, &token, w.campaign, 1, "lou").await.code;
    known(&suite, &token, w.campaign).await;
    let mut stream = suite
        .attribution()
        .stream_conversions(authed(
            StreamConversionsRequest {
                campaign_id: w.campaign,
                after_seq: 0,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    ingest(
        &suite,
        &token,
        vec![order(
            w.integration,
            "L-1",
            OrderStatus::Paid,
            &[&code],
            1_000,
            0,
        )],
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .and_then(|r| r.event)
        .unwrap_or_else(|| panic!("no live conversion"));
    let conversion = event.conversion.unwrap_or_default();
    assert_eq!(
        (conversion.store_order_id.as_str(), conversion.campaign_id),
        ("L-1", w.campaign)
    );
    let other = suite
        .attribution()
        .stream_conversions(authed(
            StreamConversionsRequest {
                campaign_id: w.campaign,
                after_seq: 0,
            },
            &brand(12),
        ))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(other, Some(Status::NotFound));
}

#[tokio::test]
async fn leaked_codes_are_flagged_with_evidence() {
    let suite = Suite::start().await;
    let token = brand(13);
    let w = world(&suite, &token, "Leak", Terms::default()).await;
    let leaked = creator(&suite, &token, w.campaign, 1, "max").await;
    let honest = creator(&suite, &token, w.campaign, 2, "ned").await;
    known(&suite, &token, w.campaign).await;
    // The honest creator's audience clicks before buying.
    let target = format!("/r/{}", honest.links.clone().unwrap_or_default().slug);
    eventually("click", || async {
        (get(&suite, &target, BROWSER).await.status == 302).then_some(())
    })
    .await;
    totals_when(&suite, &token, w.campaign, "click stored", |f| {
        f.clicks == 1
    })
    .await;
    let mut orders = Vec::new();
    for n in 0..12 {
        orders.push(order(
            w.integration,
            &format!("X-{n}"),
            OrderStatus::Paid,
            &[&leaked.code],
            1_000,
            0,
        ));
        orders.push(order(
            w.integration,
            &format!("Y-{n}"),
            OrderStatus::Paid,
            &[&honest.code],
            1_000,
            0,
        ));
    }
    ingest(&suite, &token, orders).await;
    totals_when(&suite, &token, w.campaign, "24 orders", |f| f.orders == 24).await;
    let alerts = suite
        .attribution()
        .list_code_alerts(authed(
            ListCodeAlertsRequest {
                campaign_id: w.campaign,
                page: None,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().alerts)
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(
        (alert.creator_id, alert.code.as_str()),
        (1, leaked.code.as_str())
    );
    assert_eq!(alert.kind, AlertKind::OrdersWithoutClicks as i32);
    assert_eq!((alert.orders, alert.orders_without_click), (12, 12));
    assert!(
        alert.evidence.contains("12 of 12 orders"),
        "{}",
        alert.evidence
    );
}

#[tokio::test]
async fn list_conversions_filters_pages_and_validates() {
    let suite = Suite::start().await;
    let token = brand(14);
    let w = world(&suite, &token, "Pages", Terms::default()).await;
    let a = creator(&suite, &token, w.campaign, 1, "ola").await.code;
    let b = creator(&suite, &token, w.campaign, 2, "pia").await.code;
    known(&suite, &token, w.campaign).await;
    let mut orders: Vec<Order> = (0..5)
        .map(|n| {
            order(
                w.integration,
                &format!("A{n}"),
                OrderStatus::Paid,
                &[&a],
                100,
                0,
            )
        })
        .collect();
    orders.push(order(w.integration, "B0", OrderStatus::Paid, &[&b], 100, 0));
    ingest(&suite, &token, orders).await;
    totals_when(&suite, &token, w.campaign, "6 orders", |f| f.orders == 6).await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = suite
            .attribution()
            .list_conversions(authed(
                ListConversionsRequest {
                    campaign_id: w.campaign,
                    creator_id: 1,
                    page: Some(tracking_api::common::v1::PageRequest {
                        page_size: 2,
                        page_token: page_token.clone(),
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner())
            .unwrap_or_else(|s| panic!("{s}"));
        seen.extend(page.conversions.iter().map(|c| c.store_order_id.clone()));
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        vec!["A4", "A3", "A2", "A1", "A0"],
        "newest first, creator 1 only"
    );
    let bad = suite
        .attribution()
        .list_conversions(authed(
            ListConversionsRequest {
                campaign_id: w.campaign,
                status: 99,
                ..Default::default()
            },
            &token,
        ))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&bad, Some((Status::InvalidArgument, m)) if m.starts_with("status")),
        "{bad:?}"
    );
    let missing = suite
        .attribution()
        .list_conversions(authed(
            ListConversionsRequest {
                campaign_id: 0,
                ..Default::default()
            },
            &token,
        ))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(missing, Some(Status::InvalidArgument));
}

#[tokio::test]
async fn an_order_that_arrives_before_its_code_is_attributed_when_the_code_does() {
    let suite = Suite::start().await;
    let token = brand(15);
    let w = world(&suite, &token, "Early", Terms::default()).await;
    known(&suite, &token, w.campaign).await;
    // The order names ZOE20 before Zoe has joined (the streams are consumed independently, so
    // an order can overtake its code).
    ingest(
        &suite,
        &token,
        vec![order(
            w.integration,
            "E-1",
            OrderStatus::Paid,
            &["zoe20"],
            4_000,
            0,
        )],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(totals(&suite, &token, w.campaign).await.orders, 0);
    let code = creator(&suite, &token, w.campaign, 5, "zoe").await.code;
    assert_eq!(code, "ZOE20");
    let figures = totals_when(&suite, &token, w.campaign, "E-1 attributed", |f| {
        f.orders == 1
    })
    .await;
    assert_eq!(eur(&figures).revenue_minor, 4_000);
}

#[tokio::test]
async fn an_order_that_arrives_before_its_click_is_attributed_when_the_click_is_written() {
    let suite = Suite::start().await;
    let token = brand(16);
    let w = world(
        &suite,
        &token,
        "Early click",
        Terms {
            provider: Provider::Ast,
            window_days: 5,
            ..Terms::default()
        },
    )
    .await;
    let code = creator(&suite, &token, w.campaign, 6, "ida").await;
    known(&suite, &token, w.campaign).await;
    // The order carries a click id the click writer has not written yet (a click recorded by
    // another system, sent after the order).
    let mut early = order(w.integration, "EC-1", OrderStatus::Paid, &[], 6_000, 0);
    early.click_id = "c_sent_late_0001".into();
    ingest(&suite, &token, vec![early]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(totals(&suite, &token, w.campaign).await.orders, 0);
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3_600);
    let recorded = eventually("click recorded", || async {
        suite
            .attribution()
            .record_click(authed(
                RecordClickRequest {
                    slug: code.links.clone().unwrap_or_default().slug,
                    click_id: "c_sent_late_0001".into(),
                    clicked_at: Some(prost_types::Timestamp::from(an_hour_ago)),
                    user_agent: BROWSER.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .ok()
    })
    .await;
    assert!(recorded.into_inner().counted);
    // The writer takes the waiting order in the click's transaction and attributes it there.
    let figures = totals_when(&suite, &token, w.campaign, "EC-1 attributed", |f| {
        f.orders == 1
    })
    .await;
    assert_eq!((eur(&figures).revenue_minor, figures.clicks), (6_000, 1));
    let list = conversions(&suite, &token, w.campaign).await;
    assert_eq!(
        (list.len(), list[0].method, list[0].matched.as_str()),
        (1, AttributionMethod::Click as i32, "c_sent_late_0001")
    );
}
