//! ProviderGateway as the other services see it: an integration's provider and capabilities (the
//! one source of what a plan may contain), pushing, updating or disabling discount codes at the
//! store, and creators' Amazon attribution tags.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{
    AttributionTag, AttributionTagSpec, Capabilities, CreateAttributionTagsRequest,
    DisableDiscountsRequest, DisableResult, DiscountSpec, DiscountUpdate, GetCapabilitiesRequest,
    GetIntegrationRequest, Integration, PushDiscountsRequest, PushResult, UpdateDiscountsRequest,
};

use crate::{ClientError, authorized, lazy_channel};

const SERVICE: &str = "provider gateway";

/// What a plan on one integration is checked against ([`GatewayClient::integration_facts`]).
#[derive(Clone, Debug)]
pub struct IntegrationFacts {
    pub capabilities: Capabilities,
    /// The currency the store keeps its prices in, when asked for and known.
    pub store_currency: Option<String>,
}

#[derive(Clone)]
pub struct GatewayClient {
    client: ProviderGatewayClient<Channel>,
    /// Each provider's capabilities as last asked, with when: facts of the provider (the same for
    /// every brand), reused for `capabilities_ttl` ([`CAPABILITIES_TTL`]).
    capabilities: Arc<RwLock<HashMap<i32, (Instant, Capabilities)>>>,
    capabilities_ttl: Duration,
}

/// How long a provider's capabilities are reused before the gateway is asked again: a gateway
/// release that changes them reaches plans and minting within this.
pub const CAPABILITIES_TTL: Duration = Duration::from_secs(60);

/// While the gateway is unavailable, how long the last capabilities stand before it is asked
/// again.
const STALE_RETRY: Duration = Duration::from_secs(5);

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayClient")
    }
}

impl GatewayClient {
    /// A client that connects on first use.
    pub fn lazy(url: &str) -> Result<Self, String> {
        Ok(Self {
            client: ProviderGatewayClient::new(lazy_channel(url)?),
            capabilities: Arc::default(),
            capabilities_ttl: CAPABILITIES_TTL,
        })
    }

    /// The client with capabilities reused for `ttl` instead of [`CAPABILITIES_TTL`].
    pub fn with_capabilities_ttl(mut self, ttl: Duration) -> Self {
        self.capabilities_ttl = ttl;
        self
    }

    /// One integration of the token's brand (another brand's is NOT_FOUND, as at the gateway).
    pub async fn integration(
        &self,
        bearer: &str,
        integration_id: i64,
    ) -> Result<Integration, ClientError> {
        Ok(self.get_integration(bearer, integration_id, false).await?.0)
    }

    /// The integration, and with `ask_store_currency` the currency its store keeps its prices
    /// in (`None` when the store has none or could not tell).
    async fn get_integration(
        &self,
        bearer: &str,
        integration_id: i64,
        ask_store_currency: bool,
    ) -> Result<(Integration, Option<String>), ClientError> {
        let request = GetIntegrationRequest {
            integration_id,
            ask_store_currency,
        };
        let reply = self
            .client
            .clone()
            .get_integration(authorized(request, bearer)?)
            .await
            .map_err(|status| match ClientError::from_status(SERVICE, status) {
                ClientError::NotFound(_) => {
                    ClientError::NotFound(format!("integration {integration_id} not found"))
                }
                other => other,
            })?
            .into_inner();
        let integration = reply
            .integration
            .ok_or_else(|| ClientError::Internal("gateway returned no integration".to_owned()))?;
        let currency = Some(reply.store_currency).filter(|c| !c.is_empty());
        Ok((integration, currency))
    }

    /// What the token's integration can do (its provider's capabilities), and with
    /// `ask_store_currency` the currency its store keeps its prices in: what a plan is checked
    /// against.
    pub async fn integration_facts(
        &self,
        bearer: &str,
        integration_id: i64,
        ask_store_currency: bool,
    ) -> Result<IntegrationFacts, ClientError> {
        let (integration, store_currency) = self
            .get_integration(bearer, integration_id, ask_store_currency)
            .await?;
        Ok(IntegrationFacts {
            capabilities: self.capabilities(bearer, integration.provider).await?,
            store_currency,
        })
    }

    /// What `provider` can do (asked at most once per `capabilities_ttl` per provider). While
    /// the gateway is unavailable, the last answer stands: minting goes on through an outage
    /// (its codes are pushed once the gateway is back).
    pub async fn capabilities(
        &self,
        bearer: &str,
        provider: i32,
    ) -> Result<Capabilities, ClientError> {
        let cached = self
            .capabilities
            .read()
            .ok()
            .and_then(|map| map.get(&provider).cloned());
        if let Some((at, caps)) = &cached
            && at.elapsed() < self.capabilities_ttl
        {
            return Ok(caps.clone());
        }
        let caps = match self.ask_capabilities(bearer, provider).await {
            Ok(caps) => caps,
            Err(ClientError::Unavailable(why)) => match cached {
                Some((_, caps)) => {
                    tracing::debug!(provider, %why, "gateway unavailable, capabilities kept");
                    // Asked again a few seconds on, not at every call: each ask of a gateway
                    // that is down waits for its connection to fail.
                    let retry = STALE_RETRY.min(self.capabilities_ttl);
                    let asked = Instant::now()
                        .checked_sub(self.capabilities_ttl.saturating_sub(retry))
                        .unwrap_or_else(Instant::now);
                    if let Ok(mut map) = self.capabilities.write() {
                        map.insert(provider, (asked, caps.clone()));
                    }
                    return Ok(caps);
                }
                None => return Err(ClientError::Unavailable(why)),
            },
            Err(err) => return Err(err),
        };
        if let Ok(mut map) = self.capabilities.write() {
            map.insert(provider, (Instant::now(), caps.clone()));
        }
        Ok(caps)
    }

    async fn ask_capabilities(
        &self,
        bearer: &str,
        provider: i32,
    ) -> Result<Capabilities, ClientError> {
        let request = authorized(GetCapabilitiesRequest { provider }, bearer)?;
        let caps = self
            .client
            .clone()
            .get_capabilities(request)
            .await
            .map_err(|status| ClientError::from_status(SERVICE, status))?
            .into_inner()
            .capabilities
            .ok_or_else(|| ClientError::Internal("gateway returned no capabilities".to_owned()))?;
        if caps.provider != provider || Provider::try_from(provider).is_err() {
            return Err(ClientError::Internal(format!(
                "gateway answered capabilities of provider {} for {provider}",
                caps.provider
            )));
        }
        Ok(caps)
    }

    /// Creates `discounts` at the integration's store; one result per discount, in order.
    pub async fn push_discounts(
        &self,
        bearer: &str,
        integration_id: i64,
        discounts: Vec<DiscountSpec>,
    ) -> Result<Vec<PushResult>, ClientError> {
        let expected = discounts.len();
        let request = authorized(
            PushDiscountsRequest {
                integration_id,
                discounts,
            },
            bearer,
        )?;
        let results = self
            .client
            .clone()
            .push_discounts(request)
            .await
            .map_err(|status| ClientError::from_status(SERVICE, status))?
            .into_inner()
            .results;
        one_each(results, expected, "results", "discounts")
    }

    /// Changes codes the integration's store holds (each update's previous code becomes its
    /// discount, in place); one result per update, in order, for the new code.
    pub async fn update_discounts(
        &self,
        bearer: &str,
        integration_id: i64,
        updates: Vec<DiscountUpdate>,
    ) -> Result<Vec<PushResult>, ClientError> {
        let expected = updates.len();
        let request = authorized(
            UpdateDiscountsRequest {
                integration_id,
                updates,
            },
            bearer,
        )?;
        let results = self
            .client
            .clone()
            .update_discounts(request)
            .await
            .map_err(|status| ClientError::from_status(SERVICE, status))?
            .into_inner()
            .results;
        one_each(results, expected, "results", "updates")
    }

    /// Deactivates `codes` at the integration's store; one result per code, in order.
    pub async fn disable_discounts(
        &self,
        bearer: &str,
        integration_id: i64,
        codes: Vec<String>,
        external_refs: Vec<String>,
    ) -> Result<Vec<DisableResult>, ClientError> {
        let expected = codes.len();
        let request = authorized(
            DisableDiscountsRequest {
                integration_id,
                codes,
                external_refs,
            },
            bearer,
        )?;
        let results = self
            .client
            .clone()
            .disable_discounts(request)
            .await
            .map_err(|status| ClientError::from_status(SERVICE, status))?
            .into_inner()
            .results;
        one_each(results, expected, "results", "codes")
    }

    /// The Amazon attribution tags of creators of the integration (made once at the gateway,
    /// then answered as stored); one per requested creator, in order.
    pub async fn create_attribution_tags(
        &self,
        bearer: &str,
        integration_id: i64,
        tags: Vec<AttributionTagSpec>,
    ) -> Result<Vec<AttributionTag>, ClientError> {
        let expected = tags.len();
        let request = authorized(
            CreateAttributionTagsRequest {
                integration_id,
                tags,
            },
            bearer,
        )?;
        let tags = self
            .client
            .clone()
            .create_attribution_tags(request)
            .await
            .map_err(|status| ClientError::from_status(SERVICE, status))?
            .into_inner()
            .tags;
        one_each(tags, expected, "tags", "creators")
    }
}

/// The gateway's answers to a batch, one per item asked for, or an error saying it answered
/// another number (`got` and `asked` name what was counted).
fn one_each<T>(
    answers: Vec<T>,
    expected: usize,
    got: &str,
    asked: &str,
) -> Result<Vec<T>, ClientError> {
    if answers.len() != expected {
        return Err(ClientError::Internal(format!(
            "gateway answered {} {got} for {expected} {asked}",
            answers.len()
        )));
    }
    Ok(answers)
}
