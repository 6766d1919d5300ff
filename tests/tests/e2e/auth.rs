//! Authentication and authorization over every RPC of the suite, and what operators get without a
//! token: health, reflection and metrics.

use std::time::Duration;

use prost::Message;
use suite_tests::{Suite, brand, creator_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tracking_server::{Claims, Role};
use tracking_testkit::keys;

/// Every RPC the suite serves, as `/package.Service/Method`, from the API's own descriptors.
fn every_rpc() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(tracking_api::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("descriptor set: {e}"));
    let mut paths = Vec::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    assert!(paths.len() >= 23, "{paths:?}");
    paths
}

/// Calls `path` with an empty message (any request message decodes from it) and `token`.
async fn call(suite: &Suite, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(suite.server.channel());
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let mut request = tonic::Request::new(());
    request.set_timeout(Duration::from_secs(2));
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    let codec: tonic_prost::ProstCodec<(), ()> = tonic_prost::ProstCodec::default();
    let path = PathAndQuery::try_from(path.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn every_rpc_refuses_missing_and_bad_tokens() {
    let suite = Suite::start().await;
    let expired = keys().sign_claims(&Claims {
        brand_id: 1,
        role: Role::Brand,
        creator_id: None,
        exp: 1_000_000,
        iat: 0,
    });
    let wrong_secret = tracking_server::JwtKeys::new(b"not-the-secret-not-the-secret-xx").sign(
        1,
        Role::Brand,
        None,
        Duration::from_secs(60),
    );
    // The signature's first character changed: always another signature (the last character
    // carries padding bits a decoder may ignore, and must not be the one changed).
    let genuine = brand(1);
    let at = genuine.rfind('.').map_or(0, |dot| dot + 1);
    let mut forged = genuine.clone();
    let swapped = if genuine[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    forged.replace_range(at..at + 1, swapped);
    assert_ne!(forged, genuine);
    for path in every_rpc() {
        for (what, token) in [
            ("missing", None),
            ("garbage", Some("not-a-jwt")),
            ("expired", Some(expired.as_str())),
            ("wrong secret", Some(wrong_secret.as_str())),
            ("forged signature", Some(forged.as_str())),
        ] {
            assert_eq!(
                call(&suite, &path, token).await,
                Code::Unauthenticated,
                "{path} with a {what} token"
            );
        }
    }
}

#[tokio::test]
async fn creator_tokens_cannot_use_brand_rpcs() {
    let suite = Suite::start().await;
    let creator = creator_token(1, 42);
    for path in every_rpc() {
        let code = call(&suite, &path, Some(&creator)).await;
        if path.ends_with("/GetCapabilities") {
            // Static provider facts: any authenticated caller may read them (the empty request
            // names no provider, hence INVALID_ARGUMENT).
            assert_eq!(code, Code::InvalidArgument, "{path}");
        } else if path.ends_with("/ExportCreatorReport") {
            // A creator RPC: the empty request names no creator, hence INVALID_ARGUMENT (the
            // report tests cover whose report a creator may export).
            assert_eq!(code, Code::InvalidArgument, "{path}");
        } else {
            assert_eq!(code, Code::PermissionDenied, "{path}");
        }
    }
}

#[tokio::test]
async fn health_reflection_and_metrics_need_no_token() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let suite = Suite::start().await;
    for service in [
        "",
        "tracking.plan.v1.PlanService",
        "tracking.gateway.v1.ProviderGateway",
        "tracking.mint.v1.CodeMintService",
        "tracking.attribution.v1.AttributionService",
    ] {
        let status = HealthClient::new(suite.server.channel())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status);
        assert_eq!(status.ok(), Some(1), "{service:?} SERVING");
    }

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(suite.server.channel())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let listed = match responses.message().await {
        Ok(Some(response)) => match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    };
    for expected in [
        "tracking.plan.v1.PlanService",
        "tracking.gateway.v1.ProviderGateway",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.iter().any(|s| s == expected),
            "{expected} in {listed:?}"
        );
    }

    // A refused call shows up in the metrics by method and code.
    assert_eq!(
        call(&suite, "/tracking.plan.v1.PlanService/ListPlans", None).await,
        Code::Unauthenticated
    );
    let mut stream = tokio::net::TcpStream::connect(suite.server.http_addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(r#"tracking_grpc_requests_total{method="/tracking.plan.v1.PlanService/ListPlans",code="Unauthenticated"} 1"#),
        "{body}"
    );
    assert!(body.contains("tracking_grpc_request_duration_seconds_bucket"));
    // So is every stream consumer of the process, by consuming schema and stream.
    for (schema, stream) in [
        ("mint", "plan-events"),
        ("attribution", "plan-events"),
        ("attribution", "code-events"),
        ("attribution", "order-events"),
    ] {
        let active =
            format!(r#"tracking_stream_consumer_active{{schema="{schema}",stream="{stream}"}}"#);
        assert!(body.contains(&active), "{active} in {body}");
    }
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_ends_streams() {
    use futures::StreamExt;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tracking_api::plan::v1::WatchEventsRequest;

    let suite = Suite::start().await;
    let mut health = HealthClient::new(suite.server.channel())
        .watch(HealthCheckRequest {
            service: "tracking.plan.v1.PlanService".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();
    let first = health.next().await.and_then(Result::ok).map(|r| r.status);
    assert_eq!(first, Some(1));
    let mut events = suite
        .plan()
        .watch_events(tracking_testkit::authed(
            WatchEventsRequest { after_seq: 0 },
            &brand(1),
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"))
        .into_inner();

    suite.server.shutdown_token().cancel();
    let next = tokio::time::timeout(Duration::from_secs(5), health.next()).await;
    let status = next.ok().flatten().and_then(Result::ok).map(|r| r.status);
    assert_eq!(status, Some(2), "NOT_SERVING after shutdown");
    // The open stream ends instead of holding the server up.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = events.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "watch stream ended on shutdown");
}

/// With a port of their own (`--metrics-addr`), the metrics are served there only: the public
/// HTTP port, which faces stores and shoppers, answers 404 for them.
#[tokio::test]
async fn metrics_on_a_port_of_their_own_are_not_on_the_public_one() {
    let db = tracking_db::TestDb::new(trackd::SCHEMAS).await;
    let config = suite_tests::config(db.url());
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics_addr = metrics.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let server = tracking_testkit::TestServer::spawn(move |grpc, http, shutdown| async move {
        trackd::Suite::prepare(&config, shutdown.clone())
            .await?
            .with_metrics_listener(metrics)
            .serve(grpc, http, shutdown)
            .await
    })
    .await;
    let get = async |addr, target: &str| {
        tracking_testkit::http::request(addr, "GET", target, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"))
    };
    assert_eq!(get(server.http_addr, "/metrics").await.status, 404);
    assert_eq!(get(server.http_addr, "/healthz").await.status, 200);
    let internal = get(metrics_addr, "/metrics").await;
    assert_eq!(internal.status, 200);
    assert!(
        String::from_utf8_lossy(&internal.body).contains("tracking_grpc_in_flight"),
        "{}",
        String::from_utf8_lossy(&internal.body)
    );
}
