//! Typed clients one service of the suite uses to call another: ProviderGateway (capabilities,
//! integrations, pushing discounts) and the `Watch*` streams as sources for the shared stream
//! consumer. Calls made on a service's own behalf carry a short-lived `service` token signed with
//! the suite's secret.

mod error;
mod gateway;
mod sources;

pub use error::ClientError;
pub use gateway::{GatewayClient, IntegrationFacts};
pub use sources::{CodeEventsSource, OrderEventsSource, PlanEventsSource};

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tracking_server::{JwtKeys, Role};

/// A lazily connecting channel (services may start in any order). An https:// URL is called over
/// TLS with the process's client TLS settings (`tracking_server::tls`). It pings the server
/// every 30 s, also while idle, and drops the connection when a ping goes unanswered for 10 s:
/// a `Watch*` stream sends nothing while there is nothing new, so without pings a consumer
/// would wait for ever on a server that vanished without closing the connection (a crashed
/// host, a network partition), holding its stream's lock.
pub fn lazy_channel(url: &str) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("service URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let tls = tracking_server::tls::client()
            .ok_or_else(|| format!("{url} is https: TRACKING_TLS_CA must name the CA to trust"))?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS for {url}: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Signs the tokens a service uses for its own calls.
#[derive(Clone, Debug)]
pub struct ServiceTokens {
    keys: JwtKeys,
}

impl ServiceTokens {
    pub fn new(keys: JwtKeys) -> Self {
        Self { keys }
    }

    /// A `service` token acting for `brand_id` (0 for calls that span brands, like streams).
    pub fn for_brand(&self, brand_id: i64) -> String {
        self.keys
            .sign(brand_id, Role::Service, None, Duration::from_secs(3600))
    }
}

/// `request` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, bearer: &str) -> Result<tonic::Request<T>, ClientError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {bearer}")
        .parse()
        .map_err(|_| ClientError::Internal("token is not valid metadata".to_owned()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}
