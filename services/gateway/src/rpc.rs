//! ProviderGateway's gRPC handlers: proto ↔ domain, nothing else.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_api::gateway::v1::provider_gateway_server::ProviderGateway;
use tracking_db::Database;
use tracking_server::Claims;
use tracking_server::paging::Page;

use crate::crypto::Sealer;
use crate::domain::capabilities::{Capabilities, capabilities};
use crate::domain::integration::NewIntegration;
use crate::error::Error;
use crate::store::{self, IntegrationRow, NewIntegrationRow, Registered};

const MAX_REQUEST_ID: usize = 100;

/// The gateway's state, shared by every call.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub(crate) db: Database,
    pub(crate) sealer: Sealer,
}

impl Gateway {
    pub fn new(db: Database, sealer: Sealer) -> Self {
        Self { db, sealer }
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn integration_to_proto(row: IntegrationRow) -> pb::Integration {
    pb::Integration {
        id: row.id,
        provider: Provider::from_str_name(&row.provider).unwrap_or(Provider::Unspecified) as i32,
        name: row.name,
        shop_domain: row.shop_domain,
        base_url: row.base_url,
        credential_fields: row.credential_fields,
        has_webhook_secret: row.webhook_secret_sealed.is_some(),
        created_at: Some(timestamp(row.created_at)),
    }
}

fn capabilities_to_proto(caps: Capabilities) -> pb::Capabilities {
    pb::Capabilities {
        provider: caps.provider as i32,
        discount_codes: caps.discount_codes,
        affiliate_links: caps.affiliate_links,
        click_links: caps.click_links,
        active_dates: caps.active_dates,
        minimum_purchase: caps.minimum_purchase,
        product_restrictions: caps.product_restrictions,
        usage_limits: caps.usage_limits,
        one_time_use: caps.one_time_use,
        tracking_without_discount: caps.tracking_without_discount,
        max_code_length: caps.max_code_length as i32,
        code_punctuation: caps.code_punctuation.to_owned(),
        required_credentials: caps
            .connection
            .required_credentials
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
        requires_shop_domain: caps.connection.requires_shop_domain,
        requires_base_url: caps.connection.requires_base_url,
        requires_webhook_secret: caps.connection.requires_webhook_secret,
    }
}

fn provider_of(value: i32) -> Result<Provider, Error> {
    Provider::try_from(value)
        .map_err(|_| Error::invalid("provider", format!("unknown provider {value}")))
}

fn request_id(value: &str) -> Result<Option<&str>, Error> {
    if value.len() > MAX_REQUEST_ID {
        return Err(Error::invalid(
            "request_id",
            format!("at most {MAX_REQUEST_ID} characters"),
        ));
    }
    Ok((!value.is_empty()).then_some(value))
}

#[tonic::async_trait]
impl ProviderGateway for Gateway {
    #[tracing::instrument(skip_all)]
    async fn register_integration(
        &self,
        request: Request<pb::RegisterIntegrationRequest>,
    ) -> Result<Response<pb::RegisterIntegrationResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id)?;
        let provider = provider_of(req.provider)?;
        let credentials: BTreeMap<String, String> = req.credentials.into_iter().collect();
        let new = NewIntegration::validate(
            provider,
            &req.name,
            &req.shop_domain,
            &req.base_url,
            credentials,
            &req.webhook_secret,
        )?;
        let plaintext =
            serde_json::to_vec(&new.credentials).map_err(tracking_server::status::internal)?;
        let row = NewIntegrationRow {
            brand_id,
            provider: provider.as_str_name(),
            name: &new.name,
            shop_domain: &new.shop_domain,
            base_url: &new.base_url,
            credential_fields: new.credentials.keys().cloned().collect(),
            credentials_sealed: self
                .sealer
                .seal(brand_id, &plaintext)
                .map_err(Error::from)?,
            webhook_secret_sealed: new
                .webhook_secret
                .as_deref()
                .map(|secret| self.sealer.seal(brand_id, secret.as_bytes()))
                .transpose()
                .map_err(Error::from)?,
        };
        let created = match store::insert_integration(&self.db, row, rid)
            .await
            .map_err(Error::from)?
        {
            Registered::Created(row) => {
                tracing::info!(brand_id, integration_id = row.id, provider = %row.provider, "integration registered");
                row
            }
            Registered::Replayed(id) => store::get_integration(&self.db, brand_id, id)
                .await
                .map_err(Error::from)?
                .ok_or_else(|| Error::NotFound(format!("integration {id} not found")))?,
            Registered::NameTaken => {
                return Err(Error::AlreadyExists(format!(
                    "an integration named {:?} already exists",
                    new.name
                ))
                .into());
            }
        };
        Ok(Response::new(pb::RegisterIntegrationResponse {
            integration: Some(integration_to_proto(created)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> Result<Response<pb::GetIntegrationResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let id = request.get_ref().integration_id;
        if id <= 0 {
            return Err(Error::invalid("integration_id", "must be a positive id").into());
        }
        let row = store::get_integration(&self.db, brand_id, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("integration {id} not found")))?;
        Ok(Response::new(pb::GetIntegrationResponse {
            integration: Some(integration_to_proto(row)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let page = Page::parse(request.get_ref().page.as_ref())?;
        let rows = store::list_integrations(&self.db, brand_id, page.after, page.fetch_limit())
            .await
            .map_err(Error::from)?;
        let (rows, page) = page.finish(rows, |row| row.id);
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: rows.into_iter().map(integration_to_proto).collect(),
            page: Some(page),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_capabilities(
        &self,
        request: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        Claims::of(&request)?;
        let provider = provider_of(request.get_ref().provider)?;
        let caps = capabilities(provider)
            .ok_or_else(|| Error::invalid("provider", "must be set to a known provider"))?;
        Ok(Response::new(pb::GetCapabilitiesResponse {
            capabilities: Some(capabilities_to_proto(caps)),
        }))
    }
}
