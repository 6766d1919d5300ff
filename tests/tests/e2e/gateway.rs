//! ProviderGateway's integration registry and capability table, over gRPC.

use diesel::QueryableByName;
use diesel::sql_types::{Binary, Nullable};
use diesel_async::RunQueryDsl;
use suite_tests::{Suite, brand, register, valid_registration};
use tonic::Code;
use tracking_api::common::v1::{PageRequest, Provider};
use tracking_api::gateway::v1::{
    GetCapabilitiesRequest, GetIntegrationRequest, ListIntegrationsRequest,
};
use tracking_testkit::authed;

const ALL: [Provider; 7] = [
    Provider::Shopify,
    Provider::Woocommerce,
    Provider::Bigcommerce,
    Provider::Magento,
    Provider::AmazonAds,
    Provider::Ast,
    Provider::Sandbox,
];

#[tokio::test]
async fn registers_every_provider_and_never_returns_secrets() {
    let suite = Suite::start().await;
    let token = brand(1);
    for provider in ALL {
        let id = register(&suite, &token, provider).await;
        let got = suite
            .gateway()
            .get_integration(authed(
                GetIntegrationRequest {
                    integration_id: id,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner().integration.unwrap_or_default());
        let got = got.unwrap_or_else(|s| panic!("get {provider:?}: {s}"));
        assert_eq!(got.provider, provider as i32);
        let text = format!("{got:?}");
        for secret in [
            "shpat_test_token",
            "cs_x",
            "bc_token",
            "mg_token",
            "Atzr|x",
            "whsec_test_secret",
        ] {
            assert!(!text.contains(secret), "{provider:?} leaked {secret}");
        }
    }

    // At rest, neither credentials nor webhook secrets appear in clear.
    #[derive(QueryableByName)]
    struct Sealed {
        #[diesel(sql_type = Binary)]
        credentials_sealed: Vec<u8>,
        #[diesel(sql_type = Nullable<Binary>)]
        webhook_secret_sealed: Option<Vec<u8>>,
    }
    let db = suite.schema("gateway");
    let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<Sealed> =
        diesel::sql_query("select credentials_sealed, webhook_secret_sealed from integrations")
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), ALL.len());
    for row in rows {
        let mut bytes = row.credentials_sealed;
        bytes.extend(row.webhook_secret_sealed.unwrap_or_default());
        for secret in [
            &b"shpat_test"[..],
            b"whsec_test",
            b"mg_token",
            b"access_token",
        ] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
    }
}

#[tokio::test]
async fn rejects_incomplete_registrations_naming_the_field() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut gateway = suite.gateway();

    let cases = [
        (Provider::Shopify, "shop_domain", {
            let mut r = valid_registration(Provider::Shopify, "a");
            r.shop_domain = "shop.example.com".into();
            r
        }),
        (Provider::Shopify, "credentials.access_token", {
            let mut r = valid_registration(Provider::Shopify, "b");
            r.credentials.clear();
            r
        }),
        (Provider::Shopify, "webhook_secret", {
            let mut r = valid_registration(Provider::Shopify, "c");
            r.webhook_secret.clear();
            r
        }),
        (Provider::Woocommerce, "base_url", {
            let mut r = valid_registration(Provider::Woocommerce, "d");
            r.base_url = "not a url".into();
            r
        }),
        (Provider::Woocommerce, "webhook_secret", {
            let mut r = valid_registration(Provider::Woocommerce, "d2");
            r.webhook_secret = "woo secret <b>%41".into();
            r
        }),
        (Provider::Bigcommerce, "credentials.store_hash", {
            let mut r = valid_registration(Provider::Bigcommerce, "e");
            r.credentials.remove("store_hash");
            r
        }),
        (Provider::Bigcommerce, "webhook_secret", {
            let mut r = valid_registration(Provider::Bigcommerce, "e2");
            r.webhook_secret.clear();
            r
        }),
        (Provider::Sandbox, "credentials.password", {
            let mut r = valid_registration(Provider::Sandbox, "f");
            r.credentials.insert("password".into(), "x".into());
            r
        }),
        (
            Provider::Unspecified,
            "provider",
            valid_registration(Provider::Unspecified, "g"),
        ),
        (
            Provider::Sandbox,
            "name",
            valid_registration(Provider::Sandbox, "  "),
        ),
        // A control character reaches no table (PostgreSQL refuses a NUL: it was INTERNAL).
        (
            Provider::Sandbox,
            "name",
            valid_registration(Provider::Sandbox, "Main\0"),
        ),
        (Provider::Sandbox, "request_id", {
            let mut r = valid_registration(Provider::Sandbox, "h");
            r.request_id = "req\0".into();
            r
        }),
    ];
    for (provider, field, request) in cases {
        let status = gateway
            .register_integration(authed(request, &token))
            .await
            .expect_err("must be refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{provider:?} {field}: {status:?}"
        );
        assert!(
            status.message().starts_with(field),
            "{provider:?}: expected field {field}, got {:?}",
            status.message()
        );
    }
    // Nothing was stored.
    let listed = gateway
        .list_integrations(authed(ListIntegrationsRequest::default(), &token))
        .await
        .map(|r| r.into_inner().integrations.len());
    assert_eq!(listed.ok(), Some(0));
}

#[tokio::test]
async fn registration_is_idempotent_and_names_are_unique_per_brand() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut gateway = suite.gateway();
    let mut request = valid_registration(Provider::Sandbox, "Main");
    request.request_id = "req-1".into();
    let first = gateway
        .register_integration(authed(request.clone(), &token))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id));
    let again = gateway
        .register_integration(authed(request.clone(), &token))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id));
    assert!(first.as_ref().is_ok_and(Option::is_some));
    assert_eq!(first.ok(), again.ok());
    // The same request id with another registration is refused, registering nothing.
    let mut other = request.clone();
    other.name = "Second".into();
    let reused = gateway
        .register_integration(authed(other, &token))
        .await
        .expect_err("another registration under the same request id");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert!(reused.message().starts_with("request_id:"), "{reused:?}");

    request.request_id = "req-2".into();
    request.name = "MAIN".into();
    let taken = gateway
        .register_integration(authed(request.clone(), &token))
        .await
        .expect_err("same name, other case");
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Another brand may use the name.
    let other = gateway
        .register_integration(authed(request, &brand(2)))
        .await;
    assert!(other.is_ok());
}

#[tokio::test]
async fn brands_never_see_each_others_integrations() {
    let suite = Suite::start().await;
    let id = register(&suite, &brand(1), Provider::Sandbox).await;
    let mut gateway = suite.gateway();
    let status = gateway
        .get_integration(authed(
            GetIntegrationRequest {
                integration_id: id,
                ..Default::default()
            },
            &brand(2),
        ))
        .await
        .expect_err("other brand");
    assert_eq!(status.code(), Code::NotFound);
    assert!(!status.message().contains("brand"));
    let listed = gateway
        .list_integrations(authed(ListIntegrationsRequest::default(), &brand(2)))
        .await
        .map(|r| r.into_inner().integrations.len());
    assert_eq!(listed.ok(), Some(0));
}

#[tokio::test]
async fn lists_integrations_page_by_page() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut gateway = suite.gateway();
    for i in 0..5 {
        let request = valid_registration(Provider::Sandbox, &format!("store {i}"));
        assert!(
            gateway
                .register_integration(authed(request, &token))
                .await
                .is_ok()
        );
    }
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = gateway
            .list_integrations(authed(
                ListIntegrationsRequest {
                    page: Some(PageRequest {
                        page_size: 2,
                        page_token: page_token.clone(),
                    }),
                },
                &token,
            ))
            .await
            .unwrap_or_else(|s| panic!("{s}"))
            .into_inner();
        assert!(page.integrations.len() <= 2);
        names.extend(page.integrations.into_iter().map(|i| i.name));
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        (0..5).map(|i| format!("store {i}")).collect::<Vec<_>>()
    );

    let bad = gateway
        .list_integrations(authed(
            ListIntegrationsRequest {
                page: Some(PageRequest {
                    page_size: 10_000,
                    page_token: String::new(),
                }),
            },
            &token,
        ))
        .await
        .expect_err("page too large");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("page.page_size"));
}

#[tokio::test]
async fn capabilities_answer_the_design_rules() {
    let suite = Suite::start().await;
    let token = brand(1);
    let mut gateway = suite.gateway();
    let mut get = async |provider: Provider| {
        gateway
            .get_capabilities(authed(
                GetCapabilitiesRequest {
                    provider: provider as i32,
                },
                &token,
            ))
            .await
            .map(|r| r.into_inner().capabilities.unwrap_or_default())
    };
    let shopify = get(Provider::Shopify).await.unwrap_or_default();
    assert!(
        shopify.minimum_purchase && shopify.affiliate_links && !shopify.tracking_without_discount
    );
    let woo = get(Provider::Woocommerce).await.unwrap_or_default();
    assert!(!woo.active_dates && !woo.affiliate_links && !woo.minimum_purchase);
    let big = get(Provider::Bigcommerce).await.unwrap_or_default();
    assert_eq!(big.max_code_length, 50);
    assert!(!big.affiliate_links);
    let magento = get(Provider::Magento).await.unwrap_or_default();
    assert!(!magento.affiliate_links);
    let ast = get(Provider::Ast).await.unwrap_or_default();
    assert!(ast.click_links && ast.tracking_without_discount && !ast.discount_codes);
    let unspecified = get(Provider::Unspecified).await.expect_err("unspecified");
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    let unknown = gateway
        .get_capabilities(authed(GetCapabilitiesRequest { provider: 99 }, &token))
        .await
        .expect_err("unknown enum value");
    assert_eq!(unknown.code(), Code::InvalidArgument);
}
