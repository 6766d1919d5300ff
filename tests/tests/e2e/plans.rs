//! PlanService's plans: validation against the provider's capabilities, idempotent creation,
//! updates by field mask, archive, paging and tenant isolation.

use prost_types::{FieldMask, Timestamp};
use suite_tests::{Suite, brand, register};
use tonic::Code;
use tracking_api::common::v1::{Money, PageRequest, Provider};
use tracking_api::plan::v1::{
    ArchivePlanRequest, CodeTrigger, Commission, CreateCampaignRequest, CreatePlanRequest,
    Discount, GetPlanRequest, ListPlansRequest, Plan, SetCodeGenerationRequest,
    SetReportVisibilityRequest, StartOutreachRequest, UpdatePlanRequest, commission, discount,
};
use tracking_testkit::authed;

fn percent(bps: i32) -> Option<Discount> {
    Some(Discount {
        kind: Some(discount::Kind::PercentBps(bps)),
    })
}

fn money(amount_minor: i64, currency: &str) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// A plan valid for any provider with discount codes.
fn code_plan(name: &str, integration_id: i64) -> Plan {
    Plan {
        name: name.to_owned(),
        integration_id,
        discount: percent(2000),
        code_pattern: "{username}{discount}".to_owned(),
        commission: Some(Commission {
            kind: Some(commission::Kind::PercentBps(1000)),
        }),
        ..Plan::default()
    }
}

/// A plan for providers that track without codes.
fn link_plan(name: &str, integration_id: i64) -> Plan {
    Plan {
        name: name.to_owned(),
        integration_id,
        click_url: "https://brand.example.com/shop".to_owned(),
        ..Plan::default()
    }
}

async fn create(suite: &Suite, token: &str, plan: Plan) -> Result<Plan, tonic::Status> {
    suite
        .plan()
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(plan),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default())
}

#[tokio::test]
async fn plans_may_only_ask_for_what_their_provider_can_do() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut ids = std::collections::HashMap::new();
    for provider in [
        Provider::Shopify,
        Provider::Woocommerce,
        Provider::Bigcommerce,
        Provider::Magento,
        Provider::AmazonAds,
        Provider::Ast,
    ] {
        ids.insert(provider, register(&suite, &token, provider).await);
    }
    let id = |p: Provider| ids.get(&p).copied().unwrap_or_default();

    // What each provider accepts.
    let shopify_full = Plan {
        minimum_purchase: money(5000, "USD"),
        starts_at: at(1_900_000_000),
        ends_at: at(1_910_000_000),
        product_ids: vec!["gid://shopify/Product/1".into()],
        usage_limit: 100,
        once_per_customer: true,
        ..code_plan("shopify ok", id(Provider::Shopify))
    };
    assert!(create(&suite, &token, shopify_full).await.is_ok());
    assert!(
        create(
            &suite,
            &token,
            code_plan("woo ok", id(Provider::Woocommerce))
        )
        .await
        .is_ok()
    );
    // Elsewhere a line qualifies through either restriction.
    for provider in [
        Provider::Woocommerce,
        Provider::Bigcommerce,
        Provider::Magento,
    ] {
        let both = Plan {
            product_ids: vec!["11".into()],
            category_ids: vec!["22".into()],
            ..code_plan(&format!("both ok {provider:?}"), id(provider))
        };
        let created = create(&suite, &token, both).await;
        assert!(created.is_ok(), "{provider:?}: {created:?}");
    }
    assert!(
        create(&suite, &token, link_plan("ast ok", id(Provider::Ast)))
            .await
            .is_ok()
    );
    assert!(
        create(
            &suite,
            &token,
            link_plan("amazon ok", id(Provider::AmazonAds))
        )
        .await
        .is_ok()
    );

    // What each refuses: (provider, plan, field, provider named in the message).
    let refused: Vec<(Provider, Plan, &str)> = vec![
        (
            Provider::Woocommerce,
            Plan {
                minimum_purchase: money(5000, "USD"),
                ..code_plan("w1", 0)
            },
            "minimum_purchase",
        ),
        (
            Provider::Bigcommerce,
            Plan {
                minimum_purchase: money(5000, "USD"),
                ..code_plan("b1", 0)
            },
            "minimum_purchase",
        ),
        (
            Provider::Magento,
            Plan {
                minimum_purchase: money(5000, "USD"),
                ..code_plan("m1", 0)
            },
            "minimum_purchase",
        ),
        (
            Provider::Woocommerce,
            Plan {
                starts_at: at(1_900_000_000),
                ..code_plan("w2", 0)
            },
            "starts_at",
        ),
        (
            Provider::Woocommerce,
            Plan {
                ends_at: at(1_900_000_000),
                ..code_plan("w3", 0)
            },
            "ends_at",
        ),
        (
            Provider::Shopify,
            Plan {
                discount: None,
                ..code_plan("s1", 0)
            },
            "discount",
        ),
        (
            Provider::Shopify,
            Plan {
                code_pattern: String::new(),
                ..code_plan("s2", 0)
            },
            "code_pattern",
        ),
        (Provider::Ast, code_plan("a1", 0), "discount"),
        (
            Provider::Ast,
            Plan {
                code_pattern: "{username}".into(),
                ..link_plan("a2", 0)
            },
            "code_pattern",
        ),
        (
            Provider::AmazonAds,
            Plan {
                product_ids: vec!["p".into()],
                ..link_plan("z1", 0)
            },
            "product_ids",
        ),
        (
            Provider::AmazonAds,
            Plan {
                usage_limit: 5,
                ..link_plan("z2", 0)
            },
            "usage_limit",
        ),
        (
            Provider::AmazonAds,
            Plan {
                once_per_customer: true,
                ..link_plan("z3", 0)
            },
            "once_per_customer",
        ),
        // Without a code, a link that leads nowhere could never track a sale.
        (
            Provider::Ast,
            Plan {
                click_url: String::new(),
                ..link_plan("a3", 0)
            },
            "click_url",
        ),
        (
            Provider::AmazonAds,
            Plan {
                click_url: String::new(),
                ..link_plan("z4", 0)
            },
            "click_url",
        ),
        // A Shopify discount applies to products or to collections, never both.
        (
            Provider::Shopify,
            Plan {
                product_ids: vec!["gid://shopify/Product/1".into()],
                category_ids: vec!["gid://shopify/Collection/2".into()],
                ..code_plan("s3", 0)
            },
            "category_ids",
        ),
        // Ids these stores would refuse at every push: their own ids are numbers.
        (
            Provider::Shopify,
            Plan {
                product_ids: vec!["gid://shopify/Product/1".into(), "SKU-123".into()],
                ..code_plan("s4", 0)
            },
            "product_ids[1]",
        ),
        (
            Provider::Woocommerce,
            Plan {
                category_ids: vec!["hats".into()],
                ..code_plan("w4", 0)
            },
            "category_ids[0]",
        ),
        (
            Provider::Bigcommerce,
            Plan {
                product_ids: vec!["12x".into()],
                ..code_plan("b2", 0)
            },
            "product_ids[0]",
        ),
        (
            Provider::Bigcommerce,
            Plan {
                category_ids: vec!["99999999999999999999".into()],
                ..code_plan("b3", 0)
            },
            "category_ids[0]",
        ),
        // A global id only where the store writes them, and only of the field's kind.
        (
            Provider::Woocommerce,
            Plan {
                product_ids: vec!["gid://shopify/Product/5".into()],
                ..code_plan("w5", 0)
            },
            "product_ids[0]",
        ),
        (
            Provider::Shopify,
            Plan {
                product_ids: vec!["gid://shopify/Collection/9".into()],
                ..code_plan("s5", 0)
            },
            "product_ids[0]",
        ),
    ];
    for (provider, mut plan, field) in refused {
        plan.integration_id = id(provider);
        let status = create(&suite, &token, plan).await.expect_err("refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{provider:?} {field}: {status:?}"
        );
        assert!(
            status.message().starts_with(field),
            "{provider:?}: {}",
            status.message()
        );
        assert!(
            status.message().contains(provider.as_str_name()),
            "message names the provider: {}",
            status.message()
        );
    }

    // Field rules independent of the provider.
    let shopify = id(Provider::Shopify);
    let invalid: Vec<(Plan, &str)> = vec![
        (
            Plan {
                code_pattern: "{nickname}".into(),
                ..code_plan("x1", shopify)
            },
            "code_pattern",
        ),
        (
            Plan {
                code_pattern: "{username".into(),
                ..code_plan("x2", shopify)
            },
            "code_pattern",
        ),
        // Every creator would render the same code, told apart by a suffix only.
        (
            Plan {
                code_pattern: "SUMMER{discount}".into(),
                ..code_plan("x2b", shopify)
            },
            "code_pattern",
        ),
        (
            Plan {
                discount: percent(0),
                ..code_plan("x3", shopify)
            },
            "discount.percent_bps",
        ),
        (
            Plan {
                discount: percent(10_001),
                ..code_plan("x4", shopify)
            },
            "discount.percent_bps",
        ),
        (
            Plan {
                discount: Some(Discount {
                    kind: Some(discount::Kind::Fixed(Money {
                        amount_minor: 500,
                        currency: "usd".into(),
                    })),
                }),
                ..code_plan("x5", shopify)
            },
            "discount.fixed.currency",
        ),
        (
            Plan {
                click_url: "ftp://files".into(),
                ..code_plan("x6", shopify)
            },
            "click_url",
        ),
        (
            Plan {
                starts_at: at(1_900_000_000),
                ends_at: at(1_800_000_000),
                ..code_plan("x7", shopify)
            },
            "ends_at",
        ),
        (
            Plan {
                commission: Some(Commission {
                    kind: Some(commission::Kind::PercentBps(20_000)),
                }),
                ..code_plan("x8", shopify)
            },
            "commission.percent_bps",
        ),
        (
            Plan {
                usage_limit: -1,
                ..code_plan("x9", shopify)
            },
            "usage_limit",
        ),
        (
            Plan {
                name: String::new(),
                ..code_plan("", shopify)
            },
            "plan.name",
        ),
        (
            Plan {
                code_trigger: 42,
                ..code_plan("x10", shopify)
            },
            "code_trigger",
        ),
        (
            Plan {
                integration_id: 0,
                ..code_plan("x11", 0)
            },
            "plan.integration_id",
        ),
        // A control character reaches no table (PostgreSQL refuses a NUL: it was INTERNAL).
        (
            Plan {
                code_pattern: "MIA\0{discount}".into(),
                ..code_plan("x12", shopify)
            },
            "code_pattern",
        ),
        (
            Plan {
                product_ids: vec!["1\0".into()],
                ..code_plan("x13", shopify)
            },
            "product_ids[0]",
        ),
    ];
    for (plan, field) in invalid {
        let status = create(&suite, &token, plan).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }

    // Another brand's integration is not found, exactly as a missing one.
    let status = create(&suite, &brand(2), code_plan("theirs", shopify))
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn creation_is_idempotent_and_names_unique() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let mut client = suite.plan();
    let request = CreatePlanRequest {
        plan: Some(code_plan("Summer", integration)),
        request_id: "create-summer".into(),
    };
    let first = client.create_plan(authed(request.clone(), &token)).await;
    let second = client.create_plan(authed(request.clone(), &token)).await;
    let first = first.map(|r| r.into_inner().plan.unwrap_or_default());
    let second = second.map(|r| r.into_inner().plan.unwrap_or_default());
    assert!(first.is_ok());
    assert_eq!(
        first.as_ref().ok().map(|p| p.id),
        second.as_ref().ok().map(|p| p.id)
    );
    // Sent again as read back (the fields the call ignores filled in), it is the same request.
    let mut read_back = request.clone();
    if let Some(plan) = read_back.plan.as_mut() {
        plan.id = first.as_ref().map(|p| p.id).unwrap_or_default();
        plan.provider = Provider::Sandbox as i32;
        plan.created_at = first.as_ref().ok().and_then(|p| p.created_at);
    }
    let again = client
        .create_plan(authed(read_back, &token))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id));
    assert_eq!(again.ok(), Some(first.as_ref().ok().map(|p| p.id)));
    // The same request id with another plan is refused (naming the field), creating nothing.
    let mut other = request;
    if let Some(plan) = other.plan.as_mut() {
        plan.name = "Summer sale".into();
    }
    let reused = client
        .create_plan(authed(other.clone(), &token))
        .await
        .expect_err("another plan under the same request id");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert!(reused.message().starts_with("request_id:"), "{reused:?}");
    // A key kept before requests were fingerprinted answers as before.
    let unmarked = suite
        .count(
            "plan",
            "with k as (update request_keys set fingerprint = null \
             where request_id = 'create-summer' returning 1) select count(*) as n from k",
        )
        .await;
    assert_eq!(unmarked, 1);
    let legacy = client
        .create_plan(authed(other, &token))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id));
    assert_eq!(legacy.ok(), Some(first.as_ref().ok().map(|p| p.id)));

    // Same name, no request id: refused, case-insensitively.
    let status = create(&suite, &token, code_plan("SUMMER", integration))
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::AlreadyExists);

    // Concurrent duplicates with one request id create one plan.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = suite.plan();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_plan(authed(
                    CreatePlanRequest {
                        plan: Some(code_plan("Winter", integration)),
                        request_id: "create-winter".into(),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.ok().and_then(Result::ok));
    }
    assert!(
        ids.iter().all(|id| id.is_some() && *id == ids[0]),
        "{ids:?}"
    );

    let listed = client
        .list_plans(authed(ListPlansRequest::default(), &token))
        .await
        .map(|r| r.into_inner().plans.len());
    assert_eq!(listed.ok(), Some(2));

    // A retry whose first answer was lost gets the plan, even once the gateway can no longer
    // answer for the integration (the plan is not validated again).
    let request = CreatePlanRequest {
        plan: Some(code_plan("Autumn", integration)),
        request_id: "create-autumn".into(),
    };
    let first = client
        .create_plan(authed(request.clone(), &token))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id))
        .unwrap_or_else(|s| panic!("{s}"));
    let gone = suite
        .count(
            "gateway",
            &format!(
                "with gone as (delete from integrations where id = {integration} returning 1) \
                 select count(*) as n from gone"
            ),
        )
        .await;
    assert_eq!(gone, 1);
    let retried = client
        .create_plan(authed(request, &token))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id));
    assert_eq!(retried.ok(), Some(first));
}

#[tokio::test]
async fn a_plans_amounts_must_be_in_its_stores_currency() {
    use axum::routing::get;
    use tracking_api::gateway::v1::GetIntegrationRequest;

    // A WooCommerce store keeping its prices in euros.
    let store = axum::Router::new().route(
        "/wp-json/wc/v3/data/currencies/current",
        get(|| async {
            axum::Json(serde_json::json!({ "code": "EUR", "name": "Euro", "symbol": "&euro;" }))
        }),
    );
    let base = crate::store_orders::serve(store).await;
    let suite = Suite::start().await;
    let token = brand(1);
    let woo = crate::store_orders::register(&suite, Provider::Woocommerce, &base).await;
    let currency = |ask_store_currency: bool| {
        let mut gateway = suite.gateway();
        let token = token.clone();
        async move {
            gateway
                .get_integration(authed(
                    GetIntegrationRequest {
                        integration_id: woo,
                        ask_store_currency,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner().store_currency)
                .unwrap_or_else(|s| panic!("{s}"))
        }
    };
    assert_eq!(currency(true).await, "EUR");
    assert_eq!(currency(false).await, "", "asked for only");

    let fixed = |name: &str, currency: &str| Plan {
        discount: Some(Discount {
            kind: Some(discount::Kind::Fixed(Money {
                amount_minor: 500,
                currency: currency.to_owned(),
            })),
        }),
        ..code_plan(name, woo)
    };
    let status = create(&suite, &token, fixed("Five off", "USD"))
        .await
        .expect_err("dollars at a euro store");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "discount.fixed.currency: the store keeps its prices in EUR and would take this amount \
         as EUR, not USD; give it in EUR"
    );
    let plan = create(&suite, &token, fixed("Five off", "EUR"))
        .await
        .unwrap_or_else(|s| panic!("{s}"));

    // An update to an amount in another currency is refused as well.
    let status = suite
        .plan()
        .update_plan(authed(
            UpdatePlanRequest {
                plan: Some(Plan {
                    id: plan.id,
                    ..fixed("", "USD")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["discount".to_owned()],
                }),
            },
            &token,
        ))
        .await
        .expect_err("dollars at a euro store");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("discount.fixed.currency"));

    // A store that cannot tell its currency (a WooCommerce before 3.5 has no such route) does
    // not hold plans up: their codes are checked when pushed.
    let old_store = axum::Router::new().route(
        "/wp-json/wc/v3/data/currencies/current",
        get(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "code": "rest_no_route",
                    "message": "No route was found matching the URL and request method.",
                    "data": { "status": 404 } })),
            )
        }),
    );
    let old_store = crate::store_orders::serve(old_store).await;
    let mut registration = suite_tests::valid_registration(Provider::Woocommerce, "old store");
    registration.base_url = old_store;
    let old = suite
        .gateway()
        .register_integration(authed(registration, &token))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let unchecked = Plan {
        integration_id: old,
        ..fixed("Five off at the old store", "USD")
    };
    assert!(create(&suite, &token, unchecked).await.is_ok());
}

#[tokio::test]
async fn updates_follow_the_mask_and_stop_at_outreach() {
    let suite = Suite::start().await;
    let token = brand(1);
    let woo = register(&suite, &token, Provider::Woocommerce).await;
    let plan = create(&suite, &token, code_plan("Spring", woo))
        .await
        .unwrap_or_default();
    let mut client = suite.plan();
    let update = |plan: Plan, paths: &[&str]| UpdatePlanRequest {
        plan: Some(plan),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };

    // Only masked fields change.
    let changed = client
        .update_plan(authed(
            update(
                Plan {
                    id: plan.id,
                    discount: percent(1500),
                    code_pattern: "IGNORED{username}".into(),
                    ..Plan::default()
                },
                &["discount"],
            ),
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(changed.discount, percent(1500));
    assert_eq!(changed.code_pattern, "{username}{discount}");

    // The whole result is validated against the provider.
    let status = client
        .update_plan(authed(
            update(
                Plan {
                    id: plan.id,
                    starts_at: at(1_900_000_000),
                    ..Plan::default()
                },
                &["starts_at"],
            ),
            &token,
        ))
        .await
        .expect_err("woocommerce has no start dates");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("starts_at"));
    // A link-only plan keeps a page for its links to lead to.
    let ast = register(&suite, &token, Provider::Ast).await;
    let links = create(&suite, &token, link_plan("Links", ast))
        .await
        .unwrap_or_default();
    let status = client
        .update_plan(authed(
            update(
                Plan {
                    id: links.id,
                    ..Plan::default()
                },
                &["click_url"],
            ),
            &token,
        ))
        .await
        .expect_err("a link plan's page cleared");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("click_url"), "{status:?}");

    for (paths, field) in [
        (&[][..], "update_mask"),
        (&["bogus"][..], "update_mask"),
        (&["code_trigger"][..], "update_mask"),
    ] {
        let status = client
            .update_plan(authed(
                update(
                    Plan {
                        id: plan.id,
                        ..Plan::default()
                    },
                    paths,
                ),
                &token,
            ))
            .await
            .expect_err("bad mask");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field));
    }

    // Outreach locks the plan; settings still change.
    let campaign = client
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Launch".into(),
                plan_id: plan.id,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    client
        .start_outreach(authed(
            StartOutreachRequest {
                campaign_id: campaign.id,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let locked = client
        .get_plan(authed(GetPlanRequest { plan_id: plan.id }, &token))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default().locked);
    assert_eq!(locked.ok(), Some(true));
    let status = client
        .update_plan(authed(
            update(
                Plan {
                    id: plan.id,
                    name: "Renamed".into(),
                    ..Plan::default()
                },
                &["name"],
            ),
            &token,
        ))
        .await
        .expect_err("locked");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let trigger = client
        .set_code_generation(authed(
            SetCodeGenerationRequest {
                plan_id: plan.id,
                code_trigger: CodeTrigger::OnAdd as i32,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default().code_trigger);
    assert_eq!(trigger.ok(), Some(CodeTrigger::OnAdd as i32));
    let visible = client
        .set_report_visibility(authed(
            SetReportVisibilityRequest {
                plan_id: plan.id,
                report_visible: true,
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default().report_visible);
    assert_eq!(visible.ok(), Some(true));
    let status = client
        .set_code_generation(authed(
            SetCodeGenerationRequest {
                plan_id: plan.id,
                code_trigger: 0,
            },
            &token,
        ))
        .await
        .expect_err("unspecified trigger");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("code_trigger"));
}

#[tokio::test]
async fn archive_needs_no_active_campaign_and_frees_the_name() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let plan = create(&suite, &token, code_plan("Autumn", integration))
        .await
        .unwrap_or_default();
    let mut client = suite.plan();
    let campaign = client
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Fall".into(),
                plan_id: plan.id,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let status = client
        .archive_plan(authed(ArchivePlanRequest { plan_id: plan.id }, &token))
        .await
        .expect_err("in use");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains(&campaign.id.to_string()));

    client
        .archive_campaign(authed(
            tracking_api::plan::v1::ArchiveCampaignRequest {
                campaign_id: campaign.id,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    for _ in 0..2 {
        let archived = client
            .archive_plan(authed(ArchivePlanRequest { plan_id: plan.id }, &token))
            .await
            .map(|r| r.into_inner().plan.unwrap_or_default().archived);
        assert_eq!(archived.ok(), Some(true));
    }
    // An archived plan keeps its trigger: asking for the one it has (a retry) is answered as
    // set, another is refused.
    let trigger = |code_trigger: i32| {
        let mut client = suite.plan();
        let request = authed(
            SetCodeGenerationRequest {
                plan_id: plan.id,
                code_trigger,
            },
            &token,
        );
        async move { client.set_code_generation(request).await }
    };
    let kept = trigger(plan.code_trigger)
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default().code_trigger);
    assert_eq!(kept.ok(), Some(plan.code_trigger));
    let other = if plan.code_trigger == CodeTrigger::OnAdd as i32 {
        CodeTrigger::OnApproval
    } else {
        CodeTrigger::OnAdd
    };
    let status = trigger(other as i32).await.expect_err("archived");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");
    // Archived plans leave the default list but stay readable, and the name is free again.
    let listed = client
        .list_plans(authed(ListPlansRequest::default(), &token))
        .await
        .map(|r| r.into_inner().plans.len());
    assert_eq!(listed.ok(), Some(0));
    let all = client
        .list_plans(authed(
            ListPlansRequest {
                include_archived: true,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plans.len());
    assert_eq!(all.ok(), Some(1));
    assert!(
        create(&suite, &token, code_plan("Autumn", integration))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn plans_page_newest_first_and_stay_within_their_brand() {
    let suite = Suite::start().await;
    let token = brand(1);
    let integration = register(&suite, &token, Provider::Sandbox).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            create(&suite, &token, code_plan(&format!("plan {i}"), integration))
                .await
                .unwrap_or_default()
                .id,
        );
    }
    let mut client = suite.plan();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_plans(authed(
                ListPlansRequest {
                    page: Some(PageRequest {
                        page_size: 3,
                        page_token: page_token.clone(),
                    }),
                    include_archived: false,
                },
                &token,
            ))
            .await
            .unwrap_or_else(|s| panic!("{s}"))
            .into_inner();
        seen.extend(page.plans.iter().map(|p| p.id));
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    created.reverse();
    assert_eq!(seen, created);

    // Brand 2 sees none of it and gets NOT_FOUND for brand 1's ids, on reads and writes alike.
    let other = brand(2);
    let status = client
        .get_plan(authed(
            GetPlanRequest {
                plan_id: created[0],
            },
            &other,
        ))
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .set_report_visibility(authed(
            SetReportVisibilityRequest {
                plan_id: created[0],
                report_visible: true,
            },
            &other,
        ))
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .archive_plan(authed(
            ArchivePlanRequest {
                plan_id: created[0],
            },
            &other,
        ))
        .await
        .expect_err("tenant");
    assert_eq!(status.code(), Code::NotFound);
    let listed = client
        .list_plans(authed(ListPlansRequest::default(), &other))
        .await
        .map(|r| r.into_inner().plans.len());
    assert_eq!(listed.ok(), Some(0));
}

/// A plan under an `UpdatePlan` and a campaign of it under a `StartOutreach`, each racing the
/// other: `StartOutreach` (held open: the plan locked, the campaign started) commits once
/// `UpdatePlan` waits for the plan, which then sees it locked; and a campaign archived while
/// `StartOutreach` waits for it gets no outreach.
#[tokio::test]
async fn the_outreach_lock_holds_against_racing_calls() {
    let suite = Suite::start().await;
    let token = brand(1);
    let woo = register(&suite, &token, Provider::Woocommerce).await;
    let plan = create(&suite, &token, code_plan("Spring", woo))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let other = create(&suite, &token, code_plan("Autumn", woo))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    let campaign = |name: &str, plan_id: i64| {
        let mut client = suite.plan();
        let request = CreateCampaignRequest {
            name: name.to_owned(),
            plan_id,
            ..Default::default()
        };
        let token = token.clone();
        async move {
            client
                .create_campaign(authed(request, &token))
                .await
                .map(|r| r.into_inner().campaign.unwrap_or_default())
                .unwrap_or_else(|s| panic!("{s}"))
        }
    };
    let launch = campaign("Launch", plan.id).await;
    let autumn = campaign("Autumn", other.id).await;

    let mut client = suite.plan();
    let edit = UpdatePlanRequest {
        plan: Some(Plan {
            id: plan.id,
            name: "Renamed".into(),
            ..Plan::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["name".to_owned()],
        }),
    };
    let request = authed(edit, &token);
    let edited = suite
        .while_held(
            "plan",
            &[
                format!("select 1 from plans where id = {} for update", plan.id),
                format!(
                    "update campaigns set outreach_started_at = now() where id = {}",
                    launch.id
                ),
            ],
            async move { client.update_plan(request).await },
        )
        .await;
    let status = edited.expect_err("the plan is locked by the outreach");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");

    let mut client = suite.plan();
    let request = authed(
        StartOutreachRequest {
            campaign_id: autumn.id,
        },
        &token,
    );
    let started = suite
        .while_held(
            "plan",
            &[format!(
                "update campaigns set archived_at = now() where id = {}",
                autumn.id
            )],
            async move { client.start_outreach(request).await },
        )
        .await;
    let status = started.expect_err("the campaign was archived");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");
    assert_eq!(
        suite
            .count(
                "plan",
                &format!(
                    "select count(*) as n from campaigns where id = {} \
                     and outreach_started_at is not null",
                    autumn.id
                ),
            )
            .await,
        0
    );
}
