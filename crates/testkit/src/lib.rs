//! What every test of the suite needs besides a database (`tracking_db::TestDb`): servers on
//! `127.0.0.1:0`, tokens signed with the test secret, and a wait for health SERVING instead of
//! sleeps.

pub mod http;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracking_server::{JwtKeys, Role};

/// The signing secret test servers are started with.
pub const TEST_SECRET: &str = "test-secret-0123456789-test-secret-0123456789";

pub fn keys() -> JwtKeys {
    JwtKeys::new(TEST_SECRET.as_bytes())
}

/// A one-hour token for `brand` with `role`.
pub fn token(brand: i64, role: Role) -> String {
    keys().sign(brand, role, None, Duration::from_secs(3600))
}

/// A one-hour creator token.
pub fn creator_token(brand: i64, creator: i64) -> String {
    keys().sign(
        brand,
        Role::Creator,
        Some(creator),
        Duration::from_secs(3600),
    )
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A server process-in-a-task, bound to loopback ports chosen by the OS.
pub struct TestServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    channel: Channel,
}

impl TestServer {
    /// Binds two listeners, hands them to `serve`, and returns once health says SERVING.
    ///
    /// # Panics
    /// When the server does not come up within 15 s: the test cannot go on.
    pub async fn spawn<F, Fut>(serve: F) -> TestServer
    where
        F: FnOnce(TcpListener, TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let grpc = bind().await;
        let http = bind().await;
        let grpc_addr = grpc
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let http_addr = http
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(serve(grpc, http, shutdown.clone()));
        let channel = wait_serving(grpc_addr, Duration::from_secs(15)).await;
        TestServer {
            grpc_addr,
            http_addr,
            shutdown,
            handle,
            channel,
        }
    }

    /// A channel to the server (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The shutdown token (cancel it to begin a graceful shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful shutdown; returns what the server returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// Polls `grpc.health.v1` at `addr` until the server reports SERVING.
///
/// # Panics
/// When it does not within `within`.
pub async fn wait_serving(addr: SocketAddr, within: Duration) -> Channel {
    let deadline = Instant::now() + within;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .connect_timeout(Duration::from_secs(1));
    let mut last = String::from("not tried");
    while Instant::now() < deadline {
        match endpoint.connect().await {
            Ok(channel) => {
                let status = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                match status {
                    Ok(response) if response.get_ref().status == ServingStatus::Serving as i32 => {
                        return channel;
                    }
                    Ok(response) => last = format!("status {}", response.get_ref().status),
                    Err(status) => last = status.to_string(),
                }
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server at {addr} not SERVING within {within:?}: {last}");
}
