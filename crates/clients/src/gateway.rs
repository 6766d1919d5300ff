//! PlanService's client of ProviderGateway: the integration a plan points at and its provider's
//! capabilities (the one source of what a plan may contain).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{Capabilities, GetCapabilitiesRequest, GetIntegrationRequest};

use crate::error::Error;

#[derive(Clone)]
pub struct GatewayClient {
    client: ProviderGatewayClient<Channel>,
    /// Capabilities are static per provider: asked once, then kept.
    capabilities: Arc<RwLock<HashMap<i32, Capabilities>>>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayClient")
    }
}

impl GatewayClient {
    /// A client that connects on first use (so the services may start in any order).
    pub fn lazy(url: &str) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("gateway URL {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        Ok(Self {
            client: ProviderGatewayClient::new(endpoint.connect_lazy()),
            capabilities: Arc::default(),
        })
    }

    /// The provider of the caller's integration and what it can do. The caller's own token is
    /// forwarded, so another brand's integration is NOT_FOUND here exactly as at the gateway.
    pub async fn integration_capabilities(
        &self,
        bearer: &str,
        integration_id: i64,
    ) -> Result<Capabilities, Error> {
        let mut request = tonic::Request::new(GetIntegrationRequest { integration_id });
        authorize(&mut request, bearer)?;
        let integration = self
            .client
            .clone()
            .get_integration(request)
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => {
                    Error::NotFound(format!("integration {integration_id} not found"))
                }
                _ => upstream(status),
            })?
            .into_inner()
            .integration
            .ok_or_else(|| Error::Internal("gateway returned no integration".to_owned()))?;
        self.capabilities(bearer, integration.provider).await
    }

    async fn capabilities(&self, bearer: &str, provider: i32) -> Result<Capabilities, Error> {
        if let Some(caps) = self
            .capabilities
            .read()
            .ok()
            .and_then(|map| map.get(&provider).cloned())
        {
            return Ok(caps);
        }
        let mut request = tonic::Request::new(GetCapabilitiesRequest { provider });
        authorize(&mut request, bearer)?;
        let caps = self
            .client
            .clone()
            .get_capabilities(request)
            .await
            .map_err(upstream)?
            .into_inner()
            .capabilities
            .ok_or_else(|| Error::Internal("gateway returned no capabilities".to_owned()))?;
        if caps.provider != provider || Provider::try_from(provider).is_err() {
            return Err(Error::Internal(format!(
                "gateway answered capabilities of provider {} for {provider}",
                caps.provider
            )));
        }
        if let Ok(mut map) = self.capabilities.write() {
            map.insert(provider, caps.clone());
        }
        Ok(caps)
    }
}

fn authorize<T>(request: &mut tonic::Request<T>, bearer: &str) -> Result<(), Error> {
    let value = format!("Bearer {bearer}")
        .parse()
        .map_err(|_| Error::Internal("caller token is not valid metadata".to_owned()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

fn upstream(status: tonic::Status) -> Error {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Error::Unavailable(format!(
                "provider gateway unavailable: {}",
                status.message()
            ))
        }
        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
            Error::Upstream(status)
        }
        _ => Error::Internal(format!("provider gateway: {status}")),
    }
}
