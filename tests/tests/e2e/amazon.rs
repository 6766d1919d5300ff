//! Amazon Ads end to end, against a local server that answers as Amazon Attribution does (Login
//! with Amazon, the profile, the publisher's non-macro tag template, the PERFORMANCE report): a
//! creator added to a campaign of an Amazon Ads plan gets the attribution tag as their link, the
//! report imported for a day becomes the creator's figures in AttributionService, and the same
//! day imported again after Amazon revised it replaces them instead of counting twice. Each report
//! day is also an entry of ListConversions, StreamConversions (live, on each revision) and the
//! creator's CSV report, scoped like orders' conversions. While Amazon is unreachable the link
//! waits pending, and is made once Amazon is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use suite_tests::{
    Suite, add, brand, code_when, eventually, mint_when_known, profile, register_integration,
    update_plan, valid_registration,
};
use tonic::Code as Status;
use tracking_api::attribution::v1::{
    AttributionMethod, Conversion, ConversionKind, ConversionStatus, DayRange, Figures,
    GetCreatorPerformanceRequest, ListConversionsRequest, StreamConversionsRequest,
    StreamConversionsResponse,
};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{
    ImportAmazonReportRequest, ImportAmazonReportResponse, ListAmazonReportRowsRequest,
};
use tracking_api::mint::v1::{Code, CodeStatus, Links};
use tracking_api::plan::v1::{
    CodeTrigger, Commission, CreateCampaignRequest, CreatePlanRequest, CreatorProfile, Plan,
    SetReportVisibilityRequest, commission,
};
use tracking_testkit::{authed, creator_token};

const TEMPLATE: &str = "?maas=maas_adg_api_587419284_static_9_129&ref_=aa_maas&tag=maas&aa_campaignid={insertCampaignId}&aa_adgroupid={insertAdGroupId}&aa_creativeid={insertAdId}";

/// What the mock Amazon answers: the report's entries (those in the requested range are
/// reported), and whether the tag API is down.
#[derive(Default)]
struct Amazon {
    report: Mutex<Vec<Value>>,
    down: AtomicBool,
}

impl Amazon {
    fn report(&self, entries: Vec<Value>) {
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = entries;
    }
}

/// Amazon Attribution on a loopback port; its base URL.
async fn serve(amazon: Arc<Amazon>) -> String {
    let router = Router::new()
        .route(
            "/auth/o2/token",
            post(|| async {
                axum::Json(
                    json!({ "access_token": "Atza|access", "refresh_token": "Atzr|x",
                    "token_type": "bearer", "expires_in": 3600 }),
                )
            }),
        )
        .route(
            "/v2/profiles/123",
            get(|| async {
                axum::Json(
                    json!({ "profileId": 123, "countryCode": "US", "currencyCode": "USD",
                    "timezone": "America/Los_Angeles" }),
                )
            }),
        )
        .route(
            "/attribution/tags/nonMacroTemplateTag",
            get(|State(amazon): State<Arc<Amazon>>| async move {
                if amazon.down.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let map = json!({ "advertiserAttributionTagMap": { "987": { "pub-1": TEMPLATE } } });
                axum::Json(map).into_response()
            }),
        )
        .route(
            "/attribution/report",
            post(
                |State(amazon): State<Arc<Amazon>>, axum::Json(body): axum::Json<Value>| async move {
                    let range = body["startDate"].as_str().unwrap_or_default()
                        ..=body["endDate"].as_str().unwrap_or_default();
                    let reports: Vec<Value> = amazon
                        .report
                        .lock()
                        .map(|entries| entries.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|e| range.contains(&e["date"].as_str().unwrap_or_default()))
                        .collect();
                    let page = json!({ "reports": reports, "cursorId": "", "size": reports.len() });
                    axum::Json(page)
                },
            ),
        )
        .with_state(amazon);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// One entry of the PERFORMANCE report grouped by creative, as Amazon sends it: `ids` are the
/// tag's campaign, ad group and creative ids.
fn entry(day: &str, ids: [&str; 3], purchases: i64, sales: f64) -> Value {
    json!({ "date": day.replace('-', ""), "campaignId": ids[0], "adGroupId": ids[1],
        "creativeId": ids[2], "publisher": "Influencers", "advertiserName": "Brand",
        "attributedPurchases14d": purchases, "attributedSales14d": sales })
}

async fn import(
    suite: &Suite,
    token: &str,
    integration: i64,
    day: &str,
) -> Result<ImportAmazonReportResponse, tonic::Status> {
    suite
        .gateway()
        .import_amazon_report(authed(
            ImportAmazonReportRequest {
                integration_id: integration,
                start_date: day.to_owned(),
                end_date: day.to_owned(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn performance(suite: &Suite, campaign: i64, creator: i64) -> Figures {
    suite
        .attribution()
        .get_creator_performance(authed(
            GetCreatorPerformanceRequest {
                campaign_id: campaign,
                creator_id: creator,
                range: Some(DayRange::default()),
            },
            &brand(1),
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

/// (orders, USD revenue, pending commission) once they are `expected`.
async fn figures_become(suite: &Suite, campaign: i64, creator: i64, expected: (i64, i64, i64)) {
    eventually(&format!("creator figures {expected:?}"), || async {
        let totals = performance(suite, campaign, creator).await;
        let usd = totals.currencies.iter().find(|c| c.currency == "USD");
        let seen = (
            totals.orders,
            usd.map_or(0, |c| c.revenue_minor),
            usd.map_or(0, |c| c.commission_pending_minor),
        );
        (seen == expected).then_some(())
    })
    .await;
}

struct World {
    suite: Suite,
    amazon: Arc<Amazon>,
    integration: i64,
    plan: i64,
    campaign: i64,
}

/// The suite with an Amazon Ads integration on the mock Amazon, a plan (10 % commission,
/// minting when a creator is added) and a campaign.
async fn world() -> World {
    let suite = Suite::start().await;
    let token = brand(1);
    let amazon = Arc::new(Amazon::default());
    let mut registration = valid_registration(Provider::AmazonAds, "Amazon");
    registration.base_url = serve(amazon.clone()).await;
    let integration = register_integration(&suite, &token, registration).await;
    let plan = suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: "Amazon summer".into(),
                    integration_id: integration,
                    click_url: "https://www.amazon.com/dp/B0TESTASIN".into(),
                    commission: Some(Commission {
                        kind: Some(commission::Kind::PercentBps(1000)),
                    }),
                    code_trigger: CodeTrigger::OnAdd as i32,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create plan: {s}"));
    let campaign = suite
        .plan()
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Amazon summer".into(),
                plan_id: plan,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("create campaign: {s}"));

    World {
        suite,
        amazon,
        integration,
        plan,
        campaign,
    }
}

/// The code minted for `creator`, added approved to `campaign` with `profile` (its link may
/// still wait for its tag).
async fn joined(suite: &Suite, campaign: i64, creator: i64, profile: CreatorProfile) -> Code {
    let token = brand(1);
    add(suite, &token, campaign, creator, profile, true).await;
    mint_when_known(suite, &token, campaign, creator)
        .await
        .unwrap_or_else(|s| panic!("mint: {s}"))
        .0
}

/// The creator's links once their code is active.
async fn active_links(suite: &Suite, code_id: i64) -> Links {
    code_when(
        suite,
        &brand(1),
        code_id,
        "the creator's amazon link",
        |code| code.status == CodeStatus::Active as i32,
    )
    .await
    .links
    .unwrap_or_default()
}

#[tokio::test]
async fn an_amazon_creator_gets_a_tag_link_and_a_revised_report_day_counts_once() {
    let World {
        suite,
        amazon,
        integration,
        campaign,
        ..
    } = world().await;
    let token = brand(1);
    // The creator's link: pending until the gateway has made their tag, then the plan's page
    // with it.
    let code = joined(&suite, campaign, 42, profile("Ann", "Lee", "ann")).await;
    assert!(code.code.is_empty(), "Amazon Ads has no codes");
    let links = active_links(&suite, code.id).await;
    let tag_campaign = format!("campaign-{campaign}");
    let creative = format!("campaign-{campaign}-creator-42");
    let ids = [tag_campaign.as_str(), "creator-42", creative.as_str()];
    let brands_own = ["spring-sale", "video", "ad-1"];
    assert_eq!(
        links.affiliate_url,
        format!(
            "https://www.amazon.com/dp/B0TESTASIN?maas=maas_adg_api_587419284_static_9_129&ref_=aa_maas&tag=maas&aa_campaignid=campaign-{campaign}&aa_adgroupid=creator-42&aa_creativeid={creative}"
        )
    );
    assert!(
        links
            .destination_url
            .ends_with(&format!("aa_creativeid={creative}")),
        "the tracking link leads to the tagged page: {}",
        links.destination_url
    );

    // Amazon reports the creator's tag (and an ad of the brand's own) for a recent day.
    let day = (chrono::Utc::now().date_naive() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    amazon.report(vec![
        entry(&day, ids, 3, 89.97),
        entry(&day, brands_own, 9, 500.0),
    ]);
    let imported = import(&suite, &token, integration, &day)
        .await
        .unwrap_or_else(|s| panic!("import: {s}"));
    assert_eq!((imported.reported, imported.created), (2, 2));
    figures_become(&suite, campaign, 42, (3, 8_997, 899)).await;

    // Amazon revised the day: importing it again replaces the figures.
    amazon.report(vec![
        entry(&day, ids, 4, 109.97),
        entry(&day, brands_own, 9, 500.0),
    ]);
    let revised = import(&suite, &token, integration, &day)
        .await
        .unwrap_or_else(|s| panic!("import: {s}"));
    assert_eq!((revised.revised, revised.unchanged), (1, 1));
    figures_become(&suite, campaign, 42, (4, 10_997, 1_099)).await;
    let again = import(&suite, &token, integration, &day)
        .await
        .unwrap_or_else(|s| panic!("import: {s}"));
    assert_eq!(again.unchanged, 2);

    let rows = suite
        .gateway()
        .list_amazon_report_rows(authed(
            ListAmazonReportRowsRequest {
                integration_id: integration,
                page: None,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("list: {s}"))
        .into_inner()
        .rows;
    let mine = rows
        .iter()
        .find(|r| r.tag_creative_id == creative)
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            mine.campaign_id,
            mine.creator_id,
            mine.purchases,
            mine.revision
        ),
        (campaign, 42, 4, 2)
    );
    assert_eq!(mine.sales.map(|m| m.amount_minor), Some(10_997));
    // Settled: the figures stay (a late duplicate of an event would not add either).
    figures_become(&suite, campaign, 42, (4, 10_997, 1_099)).await;

    // Another brand's token sees no such integration.
    let status = import(&suite, &brand(2), integration, &day)
        .await
        .expect_err("another brand");
    assert_eq!(status.code(), Status::NotFound);
    let status = import(&suite, &token, integration, "2020-13-01")
        .await
        .expect_err("bad day");
    assert_eq!(status.code(), Status::InvalidArgument);
    assert!(status.message().starts_with("start_date:"), "{status:?}");
}

#[tokio::test]
async fn an_amazon_link_waits_while_amazon_is_unreachable() {
    let World {
        suite,
        amazon,
        campaign,
        ..
    } = world().await;
    amazon.down.store(true, Ordering::SeqCst);
    let code = joined(&suite, campaign, 7, profile("Bo", "Kim", "bo")).await;
    let waiting = code_when(
        &suite,
        &brand(1),
        code.id,
        "the link to wait with Amazon's error",
        |code| !code.store_error.is_empty(),
    )
    .await;
    assert_eq!(waiting.status, CodeStatus::Pending as i32);
    let links = waiting.links.unwrap_or_default();
    assert_eq!(
        (links.affiliate_url.as_str(), links.destination_url.as_str()),
        ("", "")
    );
    // Its tracking link leads nowhere meanwhile: untagged, Amazon could credit no sale to Bo.
    let target = format!("/r/{}", links.slug);
    eventually("the waiting link known to the redirect", || async {
        let reply = suite
            .http("GET", &target, &[("user-agent", "Mozilla/5.0")], b"")
            .await;
        (reply.status == 404 && String::from_utf8_lossy(&reply.body).contains("no destination"))
            .then_some(())
    })
    .await;

    // Amazon is back: the next retry makes the link.
    amazon.down.store(false, Ordering::SeqCst);
    let links = active_links(&suite, code.id).await;
    assert!(
        links
            .affiliate_url
            .ends_with(&format!("aa_creativeid=campaign-{campaign}-creator-7")),
        "{}",
        links.affiliate_url
    );
}

async fn list(
    suite: &Suite,
    token: &str,
    request: ListConversionsRequest,
) -> Result<Vec<Conversion>, tonic::Status> {
    suite
        .attribution()
        .list_conversions(authed(request, token))
        .await
        .map(|r| r.into_inner().conversions)
}

/// The next conversion the stream sends live.
async fn next_conversion(stream: &mut tonic::Streaming<StreamConversionsResponse>) -> Conversion {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .and_then(|r| r.event)
        .and_then(|e| e.conversion)
        .unwrap_or_else(|| panic!("no live conversion"))
}

#[tokio::test]
async fn amazon_report_days_are_conversions_in_the_list_the_stream_and_the_creators_report() {
    let World {
        suite,
        amazon,
        integration,
        plan,
        campaign,
    } = world().await;
    let token = brand(1);
    for (creator, name) in [(42, "ann"), (43, "bea")] {
        let code = joined(&suite, campaign, creator, profile("Ann", "Lee", name)).await;
        active_links(&suite, code.id).await;
    }
    let mut stream = suite
        .attribution()
        .stream_conversions(authed(
            StreamConversionsRequest {
                campaign_id: campaign,
                after_seq: 0,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("stream: {s}"))
        .into_inner();

    let day = (chrono::Utc::now().date_naive() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let tag = |creator: i64| {
        [
            format!("campaign-{campaign}"),
            format!("creator-{creator}"),
            format!("campaign-{campaign}-creator-{creator}"),
        ]
    };
    let (ann, bea) = (tag(42), tag(43));
    let ids = |t: &[String; 3]| [t[0].clone(), t[1].clone(), t[2].clone()];
    let entries = |ann_sales: (i64, f64)| {
        let [a0, a1, a2] = ids(&ann);
        let [b0, b1, b2] = ids(&bea);
        vec![
            entry(&day, [&a0, &a1, &a2], ann_sales.0, ann_sales.1),
            entry(&day, [&b0, &b1, &b2], 1, 20.0),
        ]
    };
    amazon.report(entries((3, 89.97)));
    import(&suite, &token, integration, &day)
        .await
        .unwrap_or_else(|s| panic!("import: {s}"));

    // Live: each creator's day as it is applied, marked as a report day, not an order.
    let mut first: Vec<Conversion> = vec![
        next_conversion(&mut stream).await,
        next_conversion(&mut stream).await,
    ];
    first.sort_by_key(|c| c.creator_id);
    let applied = first[0].clone();
    assert_eq!(applied.kind, ConversionKind::AmazonReportDay as i32);
    assert_eq!(
        (
            applied.campaign_id,
            applied.creator_id,
            applied.revenue_minor,
            applied.commission_minor,
            applied.currency.as_str(),
            applied.status,
            applied.store_order_id.as_str(),
            applied.method,
        ),
        (
            campaign,
            42,
            8_997,
            899,
            "USD",
            ConversionStatus::Pending as i32,
            "",
            AttributionMethod::Unspecified as i32,
        )
    );
    let report_day = applied.amazon_report_day.clone().unwrap_or_default();
    assert_eq!(
        (
            report_day.day.as_str(),
            report_day.purchases,
            report_day.revision,
            report_day.priced
        ),
        (day.as_str(), 3, 1, true)
    );
    assert!(
        applied.approve_at.is_some(),
        "priced: its approval is scheduled"
    );

    // A revision is streamed live too, as the same entry.
    amazon.report(entries((4, 109.97)));
    import(&suite, &token, integration, &day)
        .await
        .unwrap_or_else(|s| panic!("import: {s}"));
    let revised = next_conversion(&mut stream).await;
    assert_eq!(
        (
            revised.id,
            revised.revenue_minor,
            revised.commission_minor,
            revised.amazon_report_day.map(|d| (d.purchases, d.revision)),
        ),
        (applied.id, 10_997, 1_099, Some((4, 2)))
    );

    // ListConversions: both creators' days, filterable by kind, creator and status; an order
    // method or the order kind excludes them.
    let request = ListConversionsRequest {
        campaign_id: campaign,
        ..Default::default()
    };
    let listed = list(&suite, &token, request.clone())
        .await
        .unwrap_or_else(|s| panic!("list: {s}"));
    assert_eq!(listed.len(), 2);
    let mine = listed
        .iter()
        .find(|c| c.creator_id == 42)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            mine.id,
            mine.kind,
            mine.revenue_minor,
            mine.commission_minor
        ),
        (
            applied.id,
            ConversionKind::AmazonReportDay as i32,
            10_997,
            1_099
        )
    );
    let count = async |request: ListConversionsRequest| {
        list(&suite, &token, request)
            .await
            .map(|c| c.len())
            .unwrap_or_else(|s| panic!("list: {s}"))
    };
    let by_kind = |kind: ConversionKind| ListConversionsRequest {
        kind: kind as i32,
        ..request.clone()
    };
    assert_eq!(count(by_kind(ConversionKind::AmazonReportDay)).await, 2);
    assert_eq!(count(by_kind(ConversionKind::Order)).await, 0);
    let one_creator = ListConversionsRequest {
        creator_id: 43,
        ..request.clone()
    };
    assert_eq!(count(one_creator).await, 1);
    let coded = ListConversionsRequest {
        method: AttributionMethod::Code as i32,
        ..request.clone()
    };
    assert_eq!(count(coded).await, 0);
    let approved = ListConversionsRequest {
        status: ConversionStatus::Approved as i32,
        ..request.clone()
    };
    assert_eq!(count(approved).await, 0);
    let paged = suite
        .attribution()
        .list_conversions(authed(
            ListConversionsRequest {
                page: Some(tracking_api::common::v1::PageRequest {
                    page_size: 1,
                    page_token: String::new(),
                }),
                ..request.clone()
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("list: {s}"))
        .into_inner();
    assert_eq!(paged.conversions.len(), 1);
    let rest = list(
        &suite,
        &token,
        ListConversionsRequest {
            page: Some(tracking_api::common::v1::PageRequest {
                page_size: 1,
                page_token: paged.page.unwrap_or_default().next_page_token,
            }),
            ..request.clone()
        },
    )
    .await
    .unwrap_or_else(|s| panic!("list: {s}"));
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].id, paged.conversions[0].id, "pages do not overlap");

    // The creator's report: one row for the day, marked as a report day, with the purchases,
    // the sales, the commission and its status.
    let csv = suite
        .export_report(&token, campaign, 42)
        .await
        .unwrap_or_else(|s| panic!("export: {s}"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with(",kind,report_day,purchases"), "{csv}");
    assert_eq!(
        lines[1..],
        [format!(
            ",,,pending,,,USD,109.97,,10.99,USD,0.00,10000,,false,amazon_report_day,{day},4"
        )],
        "{csv}"
    );

    // Scoped as orders are: a creator sees only their own report, once the brand allows it;
    // another brand sees nothing.
    let own = creator_token(1, 42);
    let denied = suite
        .export_report(&own, campaign, 42)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(denied, Some(Status::PermissionDenied), "visibility is off");
    suite
        .plan()
        .set_report_visibility(authed(
            SetReportVisibilityRequest {
                plan_id: plan,
                report_visible: true,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let mine = eventually("visibility projected", || async {
        suite.export_report(&own, campaign, 42).await.ok()
    })
    .await;
    assert_eq!(mine, csv);
    let theirs = suite
        .export_report(&own, campaign, 43)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(theirs, Some(Status::PermissionDenied));
    let listed_by_creator = list(&suite, &own, request.clone())
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(listed_by_creator, Some(Status::PermissionDenied));
    let other = brand(2);
    assert_eq!(
        suite
            .export_report(&other, campaign, 42)
            .await
            .err()
            .map(|s| s.code()),
        Some(Status::NotFound)
    );
    assert_eq!(
        list(&suite, &other, request).await.err().map(|s| s.code()),
        Some(Status::NotFound)
    );
}

#[tokio::test]
async fn an_amazon_link_follows_its_plan_to_a_new_page_with_its_tag() {
    let World {
        suite,
        plan,
        campaign,
        ..
    } = world().await;
    let token = brand(1);
    let code = joined(&suite, campaign, 9, profile("Cy", "Ode", "cy")).await;
    let tag = format!("aa_creativeid=campaign-{campaign}-creator-9");
    let links = active_links(&suite, code.id).await;
    assert!(links.destination_url.ends_with(&tag), "{links:?}");
    // Before outreach the brand moves the plan to another product.
    let other_page = Plan {
        id: plan,
        click_url: "https://www.amazon.com/dp/B0OTHERASIN".into(),
        ..Plan::default()
    };
    update_plan(&suite, &token, other_page, &["click_url"])
        .await
        .unwrap_or_else(|s| panic!("update plan: {s}"));
    let moved = code_when(
        &suite,
        &token,
        code.id,
        "the link tagged on the new page",
        |c| {
            c.status == CodeStatus::Active as i32
                && c.links.as_ref().is_some_and(|l| {
                    l.affiliate_url
                        .starts_with("https://www.amazon.com/dp/B0OTHERASIN?")
                })
        },
    )
    .await
    .links
    .unwrap_or_default();
    assert!(moved.affiliate_url.ends_with(&tag), "{moved:?}");
    assert!(
        moved
            .destination_url
            .starts_with("https://www.amazon.com/dp/B0OTHERASIN?")
            && moved.destination_url.ends_with(&tag),
        "the tracking link leads to the new page with the tag: {moved:?}"
    );
}
