//! What CodeMintService asks ProviderGateway: each provider's code rules, each integration's
//! details (for affiliate links), pushing, updating or disabling codes at the store, and Amazon
//! Ads creators' attribution tags. Calls are made on the brand's behalf with a service token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::{
    AttributionTag, AttributionTagSpec, Capabilities, DisableResult, DiscountSpec, DiscountUpdate,
    PushResult,
};
use tracking_clients::{GatewayClient, ServiceTokens};
use tracking_pattern::Rules;

use crate::domain::render::rules_for;
use crate::error::Error;

#[derive(Clone, Debug)]
pub struct Stores {
    gateway: GatewayClient,
    tokens: ServiceTokens,
    /// Shop domains by (brand, integration): they do not change.
    shop_domains: Arc<RwLock<HashMap<(i64, i64), String>>>,
}

impl Stores {
    pub fn new(gateway: GatewayClient, tokens: ServiceTokens) -> Self {
        Self {
            gateway,
            tokens,
            shop_domains: Arc::default(),
        }
    }

    pub async fn capabilities(
        &self,
        brand_id: i64,
        provider: Provider,
    ) -> Result<Capabilities, Error> {
        // The client keeps each provider's capabilities for a while: a mint batch asks nothing.
        Ok(self
            .gateway
            .capabilities(&self.tokens.for_brand(brand_id), provider as i32)
            .await?)
    }

    /// The store's code rules; `None` for providers without codes.
    pub async fn rules(&self, brand_id: i64, provider: Provider) -> Result<Option<Rules>, Error> {
        let caps = self.capabilities(brand_id, provider).await?;
        if !caps.discount_codes {
            return Ok(None);
        }
        rules_for(&caps).map(Some).map_err(Error::Internal)
    }

    /// The integration's shop domain (Shopify discount links); empty for other providers.
    pub async fn shop_domain(&self, brand_id: i64, integration_id: i64) -> Result<String, Error> {
        if let Some(domain) = self
            .shop_domains
            .read()
            .ok()
            .and_then(|map| map.get(&(brand_id, integration_id)).cloned())
        {
            return Ok(domain);
        }
        let integration = self
            .gateway
            .integration(&self.tokens.for_brand(brand_id), integration_id)
            .await?;
        if let Ok(mut map) = self.shop_domains.write() {
            map.insert((brand_id, integration_id), integration.shop_domain.clone());
        }
        Ok(integration.shop_domain)
    }

    pub async fn push(
        &self,
        brand_id: i64,
        integration_id: i64,
        discounts: Vec<DiscountSpec>,
    ) -> Result<Vec<PushResult>, Error> {
        Ok(self
            .gateway
            .push_discounts(&self.tokens.for_brand(brand_id), integration_id, discounts)
            .await?)
    }

    /// Changes the store's discounts holding `previous_code`s in place (a brand's code edit).
    pub async fn update(
        &self,
        brand_id: i64,
        integration_id: i64,
        updates: Vec<DiscountUpdate>,
    ) -> Result<Vec<PushResult>, Error> {
        Ok(self
            .gateway
            .update_discounts(&self.tokens.for_brand(brand_id), integration_id, updates)
            .await?)
    }

    pub async fn disable(
        &self,
        brand_id: i64,
        integration_id: i64,
        codes: Vec<String>,
        external_refs: Vec<String>,
    ) -> Result<Vec<DisableResult>, Error> {
        Ok(self
            .gateway
            .disable_discounts(
                &self.tokens.for_brand(brand_id),
                integration_id,
                codes,
                external_refs,
            )
            .await?)
    }

    /// The Amazon attribution tags of creators (Amazon Ads plans' affiliate links).
    pub async fn attribution_tags(
        &self,
        brand_id: i64,
        integration_id: i64,
        tags: Vec<AttributionTagSpec>,
    ) -> Result<Vec<AttributionTag>, Error> {
        Ok(self
            .gateway
            .create_attribution_tags(&self.tokens.for_brand(brand_id), integration_id, tags)
            .await?)
    }
}
