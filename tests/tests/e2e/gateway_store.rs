//! ProviderGateway pushing, updating and disabling discount codes at a store, over gRPC: the
//! sandbox store (simulated inside the gateway, persisted), its outage switch, who may push, and
//! the providers that have no store adapter (yet, or at all).

use suite_tests::{Suite, brand, creator_token, register, token, valid_registration};
use tonic::{Code, Status};
use tracking_api::common::v1::{Money, PageRequest, Provider};
use tracking_api::gateway::v1::{
    DisableDiscountsRequest, DisableOutcome, DisableResult, DiscountSpec, DiscountUpdate,
    GetIntegrationRequest, Integration, ListIntegrationsRequest, ListStoreDiscountsRequest,
    PushDiscountsRequest, PushOutcome, PushResult, SetSandboxOutageRequest, StoreDiscount,
    UpdateDiscountsRequest, discount_spec::Value,
};
use tracking_server::Role;
use tracking_testkit::authed;

fn service(brand_id: i64) -> String {
    token(brand_id, Role::Service)
}

/// A 20 % discount with `code`, owned by `external_ref`.
fn spec(code: &str, external_ref: &str) -> DiscountSpec {
    DiscountSpec {
        code: code.to_owned(),
        external_ref: external_ref.to_owned(),
        title: format!("Summer 20 / {external_ref}"),
        value: Some(Value::PercentBps(2000)),
        usage_limit: 500,
        once_per_customer: true,
        ..DiscountSpec::default()
    }
}

async fn push(
    suite: &Suite,
    token: &str,
    integration_id: i64,
    discounts: Vec<DiscountSpec>,
) -> Result<Vec<PushResult>, Status> {
    suite
        .gateway()
        .push_discounts(authed(
            PushDiscountsRequest {
                integration_id,
                discounts,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().results)
}

async fn update(
    suite: &Suite,
    token: &str,
    integration_id: i64,
    updates: Vec<DiscountUpdate>,
) -> Result<Vec<PushResult>, Status> {
    suite
        .gateway()
        .update_discounts(authed(
            UpdateDiscountsRequest {
                integration_id,
                updates,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().results)
}

/// `previous` becomes `discount`.
fn change(previous: &str, discount: DiscountSpec) -> DiscountUpdate {
    DiscountUpdate {
        previous_code: previous.to_owned(),
        discount: Some(discount),
    }
}

/// `status` is INVALID_ARGUMENT naming `field` first.
fn names(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "expected {field}, got {:?}",
        status.message()
    );
}

async fn disable(
    suite: &Suite,
    token: &str,
    integration_id: i64,
    codes: &[&str],
) -> Result<Vec<DisableResult>, Status> {
    suite
        .gateway()
        .disable_discounts(authed(
            DisableDiscountsRequest {
                integration_id,
                codes: codes.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().results)
}

/// Every code the store holds, paging through `page_size` at a time.
async fn store_codes(
    suite: &Suite,
    token: &str,
    integration_id: i64,
    page_size: i32,
) -> Result<Vec<StoreDiscount>, Status> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let response = suite
            .gateway()
            .list_store_discounts(authed(
                ListStoreDiscountsRequest {
                    integration_id,
                    page: Some(PageRequest {
                        page_size,
                        page_token,
                    }),
                },
                token,
            ))
            .await?
            .into_inner();
        all.extend(response.discounts);
        page_token = response.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            return Ok(all);
        }
    }
}

async fn outage(
    suite: &Suite,
    token: &str,
    integration_id: i64,
    down: bool,
) -> Result<Integration, Status> {
    suite
        .gateway()
        .set_sandbox_outage(authed(
            SetSandboxOutageRequest {
                integration_id,
                down,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().integration.unwrap_or_default())
}

/// Rows in the sandbox store, across every brand and integration.
async fn stored_rows(suite: &Suite) -> i64 {
    suite
        .count("gateway", "select count(*) as n from sandbox_discounts")
        .await
}

fn outcomes(results: &[PushResult]) -> Vec<PushOutcome> {
    results
        .iter()
        .map(|r| PushOutcome::try_from(r.outcome).unwrap_or(PushOutcome::Unspecified))
        .collect()
}

fn ok<T>(result: Result<T, Status>, what: &str) -> T {
    result.unwrap_or_else(|s| panic!("{what}: {s:?}"))
}

#[tokio::test]
async fn pushes_are_retry_safe_and_codes_unique_per_integration() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);

    let first = ok(
        push(&suite, &svc, id, vec![spec("MIA25", "code-1")]).await,
        "push",
    );
    assert_eq!(outcomes(&first), [PushOutcome::Created]);
    assert_eq!(first[0].code, "MIA25");
    assert!(!first[0].store_discount_id.is_empty());
    let listed = ok(store_codes(&suite, &brand(1), id, 50).await, "list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].code.as_str(),
            listed[0].external_ref.as_str(),
            listed[0].title.as_str(),
            listed[0].active
        ),
        ("MIA25", "code-1", "Summer 20 / code-1", true)
    );
    assert!(listed[0].created_at.is_some() && listed[0].disabled_at.is_none());

    // The same push again (a retry) is CREATED with the same store id, and stores nothing new.
    let again = ok(
        push(&suite, &svc, id, vec![spec("MIA25", "code-1")]).await,
        "retry",
    );
    assert_eq!(outcomes(&again), [PushOutcome::Created]);
    assert_eq!(again[0].store_discount_id, first[0].store_discount_id);
    assert_eq!(stored_rows(&suite).await, 1);

    // The code in another case for another owner: taken, as a real store answers.
    let taken = ok(
        push(&suite, &svc, id, vec![spec("mia25", "code-2")]).await,
        "taken",
    );
    assert_eq!(outcomes(&taken), [PushOutcome::AlreadyExists]);
    assert_eq!(taken[0].message, "code mia25 already exists in the store");
    assert!(!taken[0].retryable && taken[0].store_discount_id.is_empty());

    // Uniqueness is per integration: a second sandbox store takes the same code.
    let second = ok(
        suite
            .gateway()
            .register_integration(authed(
                valid_registration(Provider::Sandbox, "Second sandbox"),
                &brand(1),
            ))
            .await
            .map(|r| r.into_inner().integration.unwrap_or_default().id),
        "register second",
    );
    let elsewhere = ok(
        push(&suite, &svc, second, vec![spec("MIA25", "code-2")]).await,
        "push",
    );
    assert_eq!(outcomes(&elsewhere), [PushOutcome::Created]);

    // A mixed batch answers per code, in request order; a code twice in one batch is one code.
    let mixed = ok(
        push(
            &suite,
            &svc,
            id,
            vec![
                spec("NEW10", "code-3"),
                spec("Mia25", "code-4"),
                spec("MIA25", "code-1"),
                spec("new10", "code-5"),
            ],
        )
        .await,
        "mixed",
    );
    assert_eq!(
        mixed.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        ["NEW10", "Mia25", "MIA25", "new10"]
    );
    assert_eq!(
        outcomes(&mixed),
        [
            PushOutcome::Created,
            PushOutcome::AlreadyExists,
            PushOutcome::Created,
            PushOutcome::AlreadyExists
        ]
    );
    assert_eq!(stored_rows(&suite).await, 3);
    let codes: Vec<_> = ok(store_codes(&suite, &brand(1), id, 50).await, "list")
        .into_iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(codes, ["MIA25", "NEW10"]);
}

#[tokio::test]
async fn disabled_codes_stay_taken_and_a_retry_reactivates_them() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);
    ok(
        push(&suite, &svc, id, vec![spec("JOSE20", "code-7")]).await,
        "push",
    );

    let disabled = ok(
        disable(&suite, &svc, id, &["jose20", "NOPE"]).await,
        "disable",
    );
    assert_eq!(
        disabled
            .iter()
            .map(|r| (r.code.as_str(), DisableOutcome::try_from(r.outcome).ok()))
            .collect::<Vec<_>>(),
        [
            ("jose20", Some(DisableOutcome::Disabled)),
            ("NOPE", Some(DisableOutcome::NotFound))
        ]
    );
    assert!(!disabled[1].message.is_empty() && !disabled[1].retryable);
    let listed = ok(store_codes(&suite, &brand(1), id, 50).await, "list");
    assert!(!listed[0].active);
    let disabled_at = listed[0].disabled_at;
    assert!(disabled_at.is_some());

    // Disabling again is DISABLED too, and keeps the first time.
    let again = ok(
        disable(&suite, &svc, id, &["JOSE20"]).await,
        "disable again",
    );
    assert_eq!(again[0].outcome, DisableOutcome::Disabled as i32);
    let listed = ok(store_codes(&suite, &brand(1), id, 50).await, "list");
    assert_eq!(listed[0].disabled_at, disabled_at);

    // A disabled code is still the store's: another owner cannot have it.
    let taken = ok(
        push(&suite, &svc, id, vec![spec("JOSE20", "code-8")]).await,
        "taken",
    );
    assert_eq!(outcomes(&taken), [PushOutcome::AlreadyExists]);

    // Its own owner's retry brings it back.
    let back = ok(
        push(&suite, &svc, id, vec![spec("JOSE20", "code-7")]).await,
        "retry",
    );
    assert_eq!(outcomes(&back), [PushOutcome::Created]);
    let listed = ok(store_codes(&suite, &brand(1), id, 50).await, "list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active && listed[0].disabled_at.is_none());
}

#[tokio::test]
async fn updates_change_codes_in_place() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);
    let pushed = ok(
        push(
            &suite,
            &svc,
            id,
            vec![spec("MIA20", "code-1"), spec("JOSE20", "code-2")],
        )
        .await,
        "push",
    );
    ok(disable(&suite, &svc, id, &["MIA20"]).await, "disable");

    // MIA20 becomes MIA25 at 25 %, in place: the same store discount, active again.
    let mut mia25 = spec("MIA25", "code-1");
    mia25.title = "Autumn 25 / code-1".to_owned();
    mia25.value = Some(Value::PercentBps(2500));
    let updated = ok(
        update(&suite, &svc, id, vec![change("mia20", mia25.clone())]).await,
        "update",
    );
    assert_eq!(outcomes(&updated), [PushOutcome::Created]);
    assert_eq!(updated[0].code, "MIA25");
    assert_eq!(updated[0].store_discount_id, pushed[0].store_discount_id);
    let listed = ok(store_codes(&suite, &brand(1), id, 50).await, "list");
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.code.as_str(), d.title.as_str(), d.active))
            .collect::<Vec<_>>(),
        [
            ("JOSE20", "Summer 20 / code-2", true),
            ("MIA25", "Autumn 25 / code-1", true)
        ]
    );
    assert!(listed[1].disabled_at.is_none());
    let with_new_terms = "select count(*) as n from sandbox_discounts \
        where code = 'MIA25' and (terms->'value'->>'percent_bps')::int = 2500";
    assert_eq!(suite.count("gateway", with_new_terms).await, 1);

    // The same update again (MIA20 is gone): created, which the store already is, nothing new.
    let again = ok(
        update(&suite, &svc, id, vec![change("MIA20", mia25)]).await,
        "retry",
    );
    assert_eq!(outcomes(&again), [PushOutcome::Created]);
    assert_eq!(again[0].store_discount_id, pushed[0].store_discount_id);
    assert_eq!(stored_rows(&suite).await, 2);

    // JOSE20 into another owner's MIA25: taken, nothing changed; a previous code the store does
    // not hold: the new code is created. One answer per update, in request order.
    let mixed = ok(
        update(
            &suite,
            &svc,
            id,
            vec![
                change("JOSE20", spec("mia25", "code-2")),
                change("NOPE", spec("NEW10", "code-3")),
            ],
        )
        .await,
        "mixed",
    );
    assert_eq!(
        mixed.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        ["mia25", "NEW10"]
    );
    assert_eq!(
        outcomes(&mixed),
        [PushOutcome::AlreadyExists, PushOutcome::Created]
    );
    assert_eq!(mixed[0].message, "code mia25 already exists in the store");
    let codes: Vec<_> = ok(store_codes(&suite, &brand(1), id, 50).await, "list")
        .into_iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(codes, ["JOSE20", "MIA25", "NEW10"]);

    // Validation names the field; only services update, for their own brand; an outage is
    // UNAVAILABLE. None of it writes.
    for (field, updates) in [
        ("updates", Vec::new()),
        (
            "updates[1].previous_code",
            vec![change("A1", spec("B1", "r")), change("", spec("B2", "r"))],
        ),
        (
            "updates[1].previous_code",
            vec![change("A1", spec("B1", "r")), change("a1", spec("B2", "r"))],
        ),
        (
            "updates[0].discount.code",
            vec![change("A1", spec("NO SPACES", "r"))],
        ),
        (
            "updates[0].discount",
            vec![DiscountUpdate {
                previous_code: "A1".to_owned(),
                discount: None,
            }],
        ),
    ] {
        let status = update(&suite, &svc, id, updates).await.expect_err(field);
        names(&status, field);
    }
    let one = || vec![change("NEW10", spec("NEW11", "code-3"))];
    let status = update(&suite, &brand(1), id, one())
        .await
        .expect_err("brand");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = update(&suite, &service(2), id, one())
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    ok(outage(&suite, &brand(1), id, true).await, "outage on");
    let status = update(&suite, &svc, id, one()).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(stored_rows(&suite).await, 3);
    let codes: Vec<_> = ok(store_codes(&suite, &brand(1), id, 50).await, "list")
        .into_iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(codes, ["JOSE20", "MIA25", "NEW10"]);
}

#[tokio::test]
async fn a_simulated_outage_refuses_every_store_call_and_writes_nothing() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);
    ok(
        push(&suite, &svc, id, vec![spec("BEFORE", "code-1")]).await,
        "push",
    );

    let down = ok(outage(&suite, &brand(1), id, true).await, "outage on");
    assert!(down.sandbox_down && down.id == id);
    let got = ok(
        suite
            .gateway()
            .get_integration(authed(
                GetIntegrationRequest {
                    integration_id: id,
                    ..Default::default()
                },
                &brand(1),
            ))
            .await
            .map(|r| r.into_inner().integration.unwrap_or_default()),
        "get",
    );
    assert!(got.sandbox_down);
    let listed = ok(
        suite
            .gateway()
            .list_integrations(authed(ListIntegrationsRequest::default(), &brand(1)))
            .await
            .map(|r| r.into_inner().integrations),
        "list integrations",
    );
    assert!(listed.iter().all(|i| i.sandbox_down));

    let refused = push(&suite, &svc, id, vec![spec("DURING", "code-2")])
        .await
        .expect_err("store is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused.message(),
        "sandbox store is down (simulated outage)"
    );
    let refused = disable(&suite, &svc, id, &["BEFORE"])
        .await
        .expect_err("store is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let held = ok(
        store_codes(&suite, &brand(1), id, 50).await,
        "list during outage",
    );
    assert_eq!(held.len(), 1);
    assert!(held[0].active);
    assert_eq!(stored_rows(&suite).await, 1);

    let up = ok(outage(&suite, &service(1), id, false).await, "outage off");
    assert!(!up.sandbox_down);
    let after = ok(
        push(&suite, &svc, id, vec![spec("DURING", "code-2")]).await,
        "push",
    );
    assert_eq!(outcomes(&after), [PushOutcome::Created]);
    assert_eq!(stored_rows(&suite).await, 2);
}

#[tokio::test]
async fn only_services_push_and_only_for_their_brand() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;

    for token in [brand(1), creator_token(1, 42)] {
        let status = push(&suite, &token, id, vec![spec("MIA25", "code-1")])
            .await
            .expect_err("not a service");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = disable(&suite, &token, id, &["MIA25"])
            .await
            .expect_err("not a service");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let creator = creator_token(1, 42);
    let status = store_codes(&suite, &creator, id, 50)
        .await
        .expect_err("creator");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = outage(&suite, &creator, id, true)
        .await
        .expect_err("creator");
    assert_eq!(status.code(), Code::PermissionDenied);

    // Another brand's tokens find no such integration.
    let status = push(&suite, &service(2), id, vec![spec("MIA25", "code-1")])
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = disable(&suite, &service(2), id, &["MIA25"])
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = store_codes(&suite, &brand(2), id, 50)
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound);
    let status = outage(&suite, &brand(2), id, true)
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(stored_rows(&suite).await, 0);

    // An on-call engineer's ops token may push for its brand.
    let pushed = ok(
        push(
            &suite,
            &token(1, Role::Ops),
            id,
            vec![spec("MIA25", "code-1")],
        )
        .await,
        "ops push",
    );
    assert_eq!(outcomes(&pushed), [PushOutcome::Created]);
}

#[tokio::test]
async fn providers_without_codes_are_a_failed_precondition_and_unreachable_stores_unavailable() {
    let suite = Suite::start().await;
    let svc = service(1);
    let shopify = register(&suite, &brand(1), Provider::Shopify).await;
    let ast = register(&suite, &brand(1), Provider::Ast).await;
    let amazon = register(&suite, &brand(1), Provider::AmazonAds).await;

    // The test shop's domain does not resolve here: the real adapter reports the store down.
    let status = push(&suite, &svc, shopify, vec![spec("MIA25", "code-1")])
        .await
        .expect_err("unreachable store");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    for (id, message) in [
        (ast, "PROVIDER_AST has no discount codes"),
        (amazon, "PROVIDER_AMAZON_ADS has no discount codes"),
    ] {
        let status = push(&suite, &svc, id, vec![spec("MIA25", "code-1")])
            .await
            .expect_err("no adapter");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(status.message(), message);
        let status = disable(&suite, &svc, id, &["MIA25"])
            .await
            .expect_err("no adapter");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }

    // Only a sandbox integration has a store the gateway can show or take down.
    let status = store_codes(&suite, &brand(1), shopify, 50)
        .await
        .expect_err("not sandbox");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = outage(&suite, &brand(1), ast, true)
        .await
        .expect_err("not sandbox");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("sandbox"));
}

#[tokio::test]
async fn invalid_pushes_name_the_field_and_write_nothing() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);

    // The first discount of each batch is valid; the second carries the fault.
    let with_second = |edit: &dyn Fn(&mut DiscountSpec)| {
        let mut second = spec("GOOD2", "code-2");
        edit(&mut second);
        vec![spec("GOOD1", "code-1"), second]
    };
    let cases: Vec<(&str, i64, Vec<DiscountSpec>)> = vec![
        ("integration_id", 0, with_second(&|_| {})),
        ("discounts", id, Vec::new()),
        (
            "discounts",
            id,
            (0..501).map(|i| spec(&format!("C{i}"), "r")).collect(),
        ),
        ("discounts[1].code", id, with_second(&|d| d.code.clear())),
        (
            "discounts[1].code",
            id,
            with_second(&|d| d.code = "MIA.25".into()),
        ),
        (
            "discounts[1].code",
            id,
            with_second(&|d| d.code = "A".repeat(65)),
        ),
        (
            "discounts[1].external_ref",
            id,
            with_second(&|d| d.external_ref = "r".repeat(101)),
        ),
        ("discounts[1].value", id, with_second(&|d| d.value = None)),
        (
            "discounts[1].percent_bps",
            id,
            with_second(&|d| d.value = Some(Value::PercentBps(0))),
        ),
        (
            "discounts[1].percent_bps",
            id,
            with_second(&|d| d.value = Some(Value::PercentBps(10_001))),
        ),
        (
            "discounts[1].fixed.currency",
            id,
            with_second(&|d| {
                d.value = Some(Value::Fixed(Money {
                    amount_minor: 500,
                    currency: "usd".into(),
                }))
            }),
        ),
        (
            "discounts[1].fixed.amount_minor",
            id,
            with_second(&|d| {
                d.value = Some(Value::Fixed(Money {
                    amount_minor: 0,
                    currency: "USD".into(),
                }))
            }),
        ),
    ];
    for (field, integration_id, discounts) in cases {
        let status = push(&suite, &svc, integration_id, discounts)
            .await
            .expect_err(field);
        names(&status, field);
    }
    for (field, codes) in [
        ("codes", Vec::new()),
        ("codes[1]", vec!["GOOD1", ""]),
        ("codes[0]", vec!["NO SPACES"]),
    ] {
        let status = disable(&suite, &svc, id, &codes).await.expect_err(field);
        names(&status, field);
    }
    // Refs: none, or one per code.
    for (field, refs) in [
        ("external_refs", vec!["code-1"]),
        ("external_refs[1]", vec!["code-1", &"r".repeat(101)]),
    ] {
        let status = suite
            .gateway()
            .disable_discounts(authed(
                DisableDiscountsRequest {
                    integration_id: id,
                    codes: vec!["GOOD1".into(), "GOOD2".into()],
                    external_refs: refs.into_iter().map(str::to_owned).collect(),
                },
                &svc,
            ))
            .await
            .expect_err(field);
        names(&status, field);
    }
    assert_eq!(stored_rows(&suite).await, 0);
}

#[tokio::test]
async fn five_hundred_codes_go_in_one_call() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);
    let batch: Vec<_> = (0..500)
        .map(|i| {
            let mut d = spec(&format!("BULK{i:03}"), &format!("code-{i}"));
            d.value = Some(Value::Fixed(Money {
                amount_minor: 1500,
                currency: "EUR".into(),
            }));
            d.product_ids = vec!["gid://shopify/Product/1".into()];
            d.starts_at = Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            });
            d
        })
        .collect();

    let results = ok(push(&suite, &svc, id, batch.clone()).await, "bulk push");
    assert_eq!(results.len(), 500);
    assert!(
        results
            .iter()
            .zip(&batch)
            .all(|(r, d)| r.code == d.code && r.outcome == PushOutcome::Created as i32)
    );

    // Paged by 200: 200, 200, 100, in push order.
    let listed = ok(store_codes(&suite, &brand(1), id, 200).await, "list");
    assert_eq!(
        listed.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(),
        batch.iter().map(|d| d.code.as_str()).collect::<Vec<_>>()
    );

    // The whole batch again, half of it now under other refs: one call, per-code answers.
    let mut retry = batch;
    for d in retry.iter_mut().skip(250) {
        d.external_ref = format!("other-{}", d.external_ref);
    }
    let results = ok(push(&suite, &svc, id, retry).await, "bulk retry");
    let outcomes = outcomes(&results);
    assert!(outcomes[..250].iter().all(|o| *o == PushOutcome::Created));
    assert!(
        outcomes[250..]
            .iter()
            .all(|o| *o == PushOutcome::AlreadyExists)
    );
    assert_eq!(stored_rows(&suite).await, 500);
}

#[tokio::test]
async fn concurrent_batches_sharing_codes_give_each_code_one_owner() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let svc = service(1);
    for round in 0..5 {
        let codes: Vec<String> = (0..300).map(|i| format!("R{round}C{i:03}")).collect();
        let forward: Vec<_> = codes.iter().map(|c| spec(c, "owner-a")).collect();
        let backward: Vec<_> = codes.iter().rev().map(|c| spec(c, "owner-b")).collect();
        let (a, b) = tokio::join!(
            push(&suite, &svc, id, forward),
            push(&suite, &svc, id, backward)
        );
        let (a, b) = (ok(a, "forward"), ok(b, "backward"));
        // Each code went to exactly one of the two owners.
        for (i, result) in a.iter().enumerate() {
            let other = &b[b.len() - 1 - i];
            assert_eq!(result.code, other.code);
            let pair = (
                PushOutcome::try_from(result.outcome).ok(),
                PushOutcome::try_from(other.outcome).ok(),
            );
            assert!(
                pair == (Some(PushOutcome::Created), Some(PushOutcome::AlreadyExists))
                    || pair == (Some(PushOutcome::AlreadyExists), Some(PushOutcome::Created)),
                "{}: {pair:?}",
                result.code
            );
        }
    }
    assert_eq!(stored_rows(&suite).await, 1500);
}

/// A WooCommerce `POST /coupons/batch` that creates every coupon it is sent.
async fn echo(axum::Json(batch): axum::Json<serde_json::Value>) -> axum::Json<serde_json::Value> {
    let created: Vec<serde_json::Value> = batch["create"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, mut coupon)| {
            coupon["id"] = serde_json::json!(100 + i);
            coupon
        })
        .collect();
    axum::Json(serde_json::json!({ "create": created }))
}

/// A WooCommerce store keeping its prices in euros, answering its currency as `code` after
/// `delay`, each question counted in `asked`.
fn euro_store(
    code: &'static str,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    delay: std::time::Duration,
) -> axum::Router {
    use axum::extract::State;
    use std::sync::atomic::{AtomicUsize, Ordering};
    axum::Router::new()
        .route(
            "/wp-json/wc/v3/data/currencies/current",
            axum::routing::get(
                move |State(asked): State<std::sync::Arc<AtomicUsize>>| async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    axum::Json(
                        serde_json::json!({ "code": code, "name": "Euro", "symbol": "&euro;" }),
                    )
                },
            ),
        )
        .with_state(asked)
}

/// A fixed amount off or a minimum purchase in another currency than the store's would be taken
/// as that many units of the store's: such a discount is refused for good, naming both
/// currencies, and the store is asked its currency once (not for every push, nor for
/// percentages).
#[tokio::test]
async fn amounts_in_another_currency_than_the_stores_are_refused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::routing::{get, post};

    let asked = Arc::new(AtomicUsize::new(0));
    let store = euro_store("EUR", asked.clone(), std::time::Duration::ZERO)
        .route("/wp-json/wc/v3/coupons/batch", post(echo));
    let base = crate::store_orders::serve(store).await;
    let suite = Suite::start().await;
    let woo = crate::store_orders::register(&suite, Provider::Woocommerce, &base).await;
    let svc = service(1);
    let money = |amount_minor: i64, currency: &str| Money {
        amount_minor,
        currency: currency.to_owned(),
    };
    let fixed = |code: &str, currency: &str| DiscountSpec {
        value: Some(Value::Fixed(money(500, currency))),
        ..spec(code, &format!("ref-{code}"))
    };
    let minimum = DiscountSpec {
        minimum_purchase: Some(money(5_000, "USD")),
        ..spec("MINUSD", "ref-min")
    };
    let results = push(
        &suite,
        &svc,
        woo,
        vec![fixed("FIVEUSD", "USD"), fixed("FIVEEUR", "EUR"), minimum],
    )
    .await
    .unwrap_or_else(|s| panic!("{s}"));
    let outcomes: Vec<(String, i32, bool, String)> = results
        .into_iter()
        .map(|r| (r.code, r.outcome, r.retryable, r.message))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                "FIVEUSD".to_owned(),
                PushOutcome::Failed as i32,
                false,
                "the fixed amount off is in USD, but the store's currency is EUR: give the plan's \
                 amounts in EUR"
                    .to_owned()
            ),
            (
                "FIVEEUR".to_owned(),
                PushOutcome::Created as i32,
                false,
                String::new()
            ),
            (
                "MINUSD".to_owned(),
                PushOutcome::Failed as i32,
                false,
                "the minimum purchase is in USD, but the store's currency is EUR: give the plan's \
                 amounts in EUR"
                    .to_owned()
            ),
        ]
    );
    // Asked once: a second push, and one of percentages only, go on the answer kept.
    let again = push(&suite, &svc, woo, vec![fixed("TENUSD", "USD")])
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(again[0].outcome, PushOutcome::Failed as i32);
    let percent = push(&suite, &svc, woo, vec![spec("MIA20", "ref-mia")])
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(percent[0].outcome, PushOutcome::Created as i32);
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // A store that cannot tell (a WooCommerce before 3.5 has no such route) is pushed to
    // unchecked, and not asked again at each push.
    let unknown = Arc::new(AtomicUsize::new(0));
    let old_store = axum::Router::new()
        .route(
            "/wp-json/wc/v3/data/currencies/current",
            get(|State(asked): State<Arc<AtomicUsize>>| async move {
                asked.fetch_add(1, Ordering::SeqCst);
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({ "code": "rest_no_route",
                        "message": "No route was found matching the URL and request method.",
                        "data": { "status": 404 } })),
                )
            }),
        )
        .route("/wp-json/wc/v3/coupons/batch", post(echo))
        .with_state(unknown.clone());
    let base = crate::store_orders::serve(old_store).await;
    let mut registration = valid_registration(Provider::Woocommerce, "old store");
    registration.base_url = base;
    let old = suite
        .gateway()
        .register_integration(authed(registration, &brand(1)))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("register: {s}"));
    for code in ["OLDUSD", "OLDUSD2"] {
        let pushed = push(&suite, &svc, old, vec![fixed(code, "USD")])
            .await
            .unwrap_or_else(|s| panic!("{s}"));
        assert_eq!(pushed[0].outcome, PushOutcome::Created as i32, "{code}");
    }
    assert_eq!(unknown.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_store_slow_to_tell_its_currency_is_waited_for_two_seconds_and_its_answer_kept() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    // The store answers after 3 s, in lower case.
    let asked = Arc::new(AtomicUsize::new(0));
    let store = euro_store("eur", asked.clone(), Duration::from_secs(3));
    let base = crate::store_orders::serve(store).await;
    let suite = Suite::start().await;
    let woo = crate::store_orders::register(&suite, Provider::Woocommerce, &base).await;
    let currency = || {
        let mut gateway = suite.gateway();
        async move {
            let answer = gateway
                .get_integration(authed(
                    GetIntegrationRequest {
                        integration_id: woo,
                        ask_store_currency: true,
                    },
                    &brand(1),
                ))
                .await
                .map(|r| r.into_inner())
                .unwrap_or_else(|s| panic!("{s}"));
            assert_eq!(answer.integration.map(|i| i.id), Some(woo));
            answer.store_currency
        }
    };
    // Two callers at once: neither waits for the store past 2 s, and the store is asked once.
    let started = Instant::now();
    let (first, second) = tokio::join!(currency(), currency());
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("", ""),
        "cannot tell in time"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited {:?}, not for the store",
        started.elapsed()
    );
    // The store's answer, when it comes, is kept (upper case): later calls find it, and calls
    // before it wait for the same question.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if currency().await == "EUR" {
            break;
        }
        assert!(Instant::now() < deadline, "the answer was not kept");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1, "one question, shared");
}
