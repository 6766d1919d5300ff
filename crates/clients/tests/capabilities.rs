//! The gateway client's capabilities: reused for a while, asked again after it, and the last
//! answer kept while the gateway is unavailable, against a real gRPC server on a socket that
//! answers `GetCapabilities` as the gateway does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{Capabilities, GetCapabilitiesRequest, GetCapabilitiesResponse};
use tracking_clients::{ClientError, GatewayClient};

/// A stand-in ProviderGateway that serves `GetCapabilities` only, counting the calls.
#[derive(Clone)]
struct Gateway {
    asked: Arc<AtomicUsize>,
}

impl NamedService for Gateway {
    const NAME: &'static str = "tracking.gateway.v1.ProviderGateway";
}

struct Answer;

impl tonic::server::UnaryService<GetCapabilitiesRequest> for Answer {
    type Response = GetCapabilitiesResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<GetCapabilitiesRequest>) -> Self::Future {
        let provider = request.into_inner().provider;
        std::future::ready(Ok(tonic::Response::new(GetCapabilitiesResponse {
            capabilities: Some(Capabilities {
                provider,
                discount_codes: true,
                max_code_length: 64,
                ..Capabilities::default()
            }),
        })))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Gateway {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Answer, request).await)
        })
    }
}

#[tokio::test]
async fn capabilities_are_asked_again_after_a_while_and_kept_through_an_outage() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let asked = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Gateway {
                asked: asked.clone(),
            })
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let url = format!("http://{addr}");
    let sandbox = Provider::Sandbox as i32;
    let kept = GatewayClient::lazy(&url).unwrap_or_else(|e| panic!("{e}"));
    let fresh = kept.clone().with_capabilities_ttl(Duration::ZERO);
    let answered = |caps: Result<Capabilities, ClientError>| {
        caps.map(|c| (c.provider, c.max_code_length))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        answered(kept.capabilities("t", sandbox).await),
        Ok((sandbox, 64))
    );
    assert_eq!(
        answered(kept.capabilities("t", sandbox).await),
        Ok((sandbox, 64))
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1, "reused within the TTL");
    assert_eq!(
        answered(fresh.capabilities("t", sandbox).await),
        Ok((sandbox, 64))
    );
    assert_eq!(asked.load(Ordering::SeqCst), 2, "asked again past the TTL");

    stop.cancel();
    let _ = server.await;
    // The gateway is gone: the last answer stands, but nothing stands in for one never had.
    assert_eq!(
        answered(fresh.capabilities("t", sandbox).await),
        Ok((sandbox, 64))
    );
    let never = fresh.capabilities("t", Provider::Shopify as i32).await;
    assert!(
        matches!(never, Err(ClientError::Unavailable(_))),
        "{never:?}"
    );
}
