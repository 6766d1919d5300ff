//! ProviderGateway's gRPC handlers: proto ↔ domain, nothing else.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracking_events::EventLog;

use tonic::{Request, Response, Status};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_api::gateway::v1::provider_gateway_server::ProviderGateway;
use tracking_db::Database;
use tracking_server::paging::Page;
use tracking_server::streams::{self, ResponseStream};
use tracking_server::{Claims, Role};

use crate::adapters::{AdapterConfig, AdapterError, Adapters, StoreAdapter};
use crate::amazon_ads::AmazonAds;
use crate::crypto::Sealer;
use crate::domain::amazon::{self, TagSubject};
use crate::domain::capabilities::{Capabilities, capabilities};
use crate::domain::discount::{
    self, DisableOutcome, DisableResult, Discount, DiscountGroup, DiscountUpdate, DiscountValue,
    Money, PushOutcome, PushResult, Terms,
};
use crate::domain::integration::NewIntegration;
use crate::domain::orders::NormalizedOrder;
use crate::error::Error;
use crate::intake::{self, Incoming, Intake, IntakePools};
use crate::store::amazon::TagRow;
use crate::store::sandbox::StoredDiscount;
use crate::store::{self, IntegrationRow, NewIntegrationRow, Registered};

/// The gateway's state, shared by every call.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub(crate) db: Database,
    pub(crate) sealer: Sealer,
    pub(crate) adapters: Adapters,
    pub(crate) intake: Intake,
    amazon: AmazonAds,
    log: EventLog,
}

/// How long GetIntegration waits for a store to tell its currency.
const STORE_CURRENCY_WAIT: Duration = Duration::from_secs(2);

/// How far back BackfillOrders may reach.
const MAX_BACKFILL_DAYS: i64 = 90;

impl Gateway {
    /// The gateway on `pools.db` (and the intake's other pools, see [`Intake::new`]): `sealer`
    /// seals credentials at rest and opens them for the adapters; the `WatchOrders` listener
    /// stops with `shutdown`.
    pub fn new(
        pools: IntakePools,
        sealer: Sealer,
        adapters: AdapterConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, AdapterError> {
        let db = pools.db.clone();
        let adapters = Adapters::new(db.clone(), sealer.clone(), adapters)?;
        Ok(Self {
            intake: Intake::new(pools, sealer.clone(), adapters.clone()),
            amazon: AmazonAds::new(db.clone(), adapters.amazon().clone()),
            log: EventLog::start(db.clone(), shutdown),
            adapters,
            db,
            sealer,
        })
    }

    /// The order intake (the HTTP routes share it).
    pub fn intake(&self) -> Intake {
        self.intake.clone()
    }

    /// Amazon Ads tags and report imports (the report importer shares it).
    pub fn amazon_ads(&self) -> AmazonAds {
        self.amazon.clone()
    }

    /// `push`es those of `items` whose terms (each one's `discount`) fit the currency the store
    /// keeps its prices in, and answers the others FAILED, not retryable (the plan's amounts
    /// must change), all in input order. The store is asked its currency only when some terms
    /// name an amount of money.
    async fn in_shop_currency<T>(
        &self,
        adapter: &dyn StoreAdapter,
        integration: &IntegrationRow,
        items: Vec<T>,
        discount: impl Fn(&T) -> &Discount,
        push: impl AsyncFnOnce(Vec<T>) -> Result<Vec<PushResult>, AdapterError>,
    ) -> Result<Vec<PushResult>, Error> {
        let shop = if items.iter().any(|item| discount(item).terms.has_amounts()) {
            self.adapters.shop_currency(adapter, integration).await
        } else {
            None
        };
        let refused: Vec<Option<PushResult>> = items
            .iter()
            .map(|item| {
                let discount = discount(item);
                let why = discount.terms.currency_mismatch(shop.as_deref()?)?;
                Some(PushResult {
                    code: discount.code.clone(),
                    outcome: PushOutcome::Failed {
                        message: why,
                        retryable: false,
                    },
                })
            })
            .collect();
        let fit: Vec<T> = items
            .into_iter()
            .zip(&refused)
            .filter(|(_, refused)| refused.is_none())
            .map(|(item, _)| item)
            .collect();
        let mut pushed = if fit.is_empty() {
            Vec::new()
        } else {
            push(fit).await?
        }
        .into_iter();
        refused
            .into_iter()
            .map(|refused| refused.or_else(|| pushed.next()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::Store(AdapterError::Unavailable(
                    "the store adapter answered fewer results than it was given".to_owned(),
                ))
            })
    }

    /// An integration of `brand_id` (another brand's is NOT_FOUND, as a missing one).
    async fn integration(&self, brand_id: i64, id: i64) -> Result<IntegrationRow, Error> {
        if id <= 0 {
            return Err(Error::invalid("integration_id", "must be a positive id"));
        }
        store::get_integration(&self.db, brand_id, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("integration {id} not found")))
    }

    /// The `index`th order of an `IngestOrders` stream, checked: present, valid, and for an
    /// integration of `brand_id` (`owned` remembers the answers).
    async fn ingested(
        &self,
        brand_id: i64,
        owned: &mut HashMap<i64, bool>,
        message: Result<pb::IngestOrdersRequest, Status>,
        index: usize,
    ) -> Result<Incoming, Status> {
        let field = format!("orders[{index}]");
        let order = message
            .map_err(tracking_server::status::inbound)?
            .order
            .ok_or_else(|| Error::invalid(&field, "order is required"))?;
        let integration_id = order.integration_id;
        if integration_id <= 0 {
            return Err(Error::invalid(
                &format!("{field}.integration_id"),
                "must be a positive id",
            )
            .into());
        }
        let mine = match owned.get(&integration_id) {
            Some(mine) => *mine,
            None => {
                let mine = store::get_integration(&self.db, brand_id, integration_id)
                    .await
                    .map_err(Error::from)?
                    .is_some();
                owned.insert(integration_id, mine);
                mine
            }
        };
        if !mine {
            return Err(Error::NotFound(format!(
                "{field}.integration_id: integration {integration_id} not found"
            ))
            .into());
        }
        Ok(Incoming {
            brand_id,
            integration_id,
            order: NormalizedOrder::from_proto(order, &field)?,
        })
    }
}

/// The brand a push or disable acts for. Only the suite's services (and on-call engineers) change
/// codes at a store: brands edit codes through CodeMintService, which keeps its records in step.
fn internal_scope(claims: &Claims) -> Result<i64, Status> {
    match claims.role {
        Role::Service | Role::Ops => Ok(claims.brand_id),
        Role::Brand | Role::Creator => Err(Status::permission_denied(
            "only service and ops tokens change codes at a store; brands edit codes through CodeMintService",
        )),
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
        sandbox_down: row.sandbox_down,
    }
}

fn money_from_proto(money: tracking_api::common::v1::Money) -> Money {
    Money {
        amount_minor: money.amount_minor,
        currency: money.currency,
    }
}

/// A pushed discount as the domain sees it; only the timestamps can fail to convert. `field`
/// names the spec in errors (`discounts[1]`, `updates[0].discount`).
fn discount_from_proto(field: &str, spec: pb::DiscountSpec) -> Result<Discount, Error> {
    use pb::discount_spec::Value;
    let at = |name: &str, ts: Option<prost_types::Timestamp>| {
        ts.map(|ts| {
            u32::try_from(ts.nanos)
                .ok()
                .and_then(|nanos| chrono::DateTime::from_timestamp(ts.seconds, nanos))
                .ok_or_else(|| Error::invalid(&format!("{field}.{name}"), "not a valid timestamp"))
        })
        .transpose()
    };
    let group = (!spec.group_ref.is_empty()).then(|| DiscountGroup {
        title: if spec.group_title.is_empty() {
            spec.title.clone()
        } else {
            spec.group_title
        },
        group_ref: spec.group_ref,
    });
    Ok(Discount {
        code: spec.code,
        external_ref: spec.external_ref,
        title: spec.title,
        group,
        terms: Terms {
            value: spec.value.map(|value| match value {
                Value::PercentBps(bps) => DiscountValue::PercentBps(bps),
                Value::Fixed(money) => DiscountValue::Fixed(money_from_proto(money)),
            }),
            usage_limit: spec.usage_limit,
            once_per_customer: spec.once_per_customer,
            minimum_purchase: spec.minimum_purchase.map(money_from_proto),
            product_ids: spec.product_ids,
            category_ids: spec.category_ids,
            starts_at: at("starts_at", spec.starts_at)?,
            ends_at: at("ends_at", spec.ends_at)?,
        },
    })
}

fn update_from_proto(index: usize, update: pb::DiscountUpdate) -> Result<DiscountUpdate, Error> {
    let field = format!("updates[{index}].discount");
    let spec = update
        .discount
        .ok_or_else(|| Error::invalid(&field, "is required"))?;
    Ok(DiscountUpdate {
        previous_code: update.previous_code,
        discount: discount_from_proto(&field, spec)?,
    })
}

/// How many results were created, already taken, and failed.
fn tally(results: &[PushResult]) -> (usize, usize, usize) {
    let created = results
        .iter()
        .filter(|r| matches!(r.outcome, PushOutcome::Created { .. }))
        .count();
    let already_exists = results
        .iter()
        .filter(|r| matches!(r.outcome, PushOutcome::AlreadyExists { .. }))
        .count();
    (
        created,
        already_exists,
        results.len() - created - already_exists,
    )
}

fn push_result_to_proto(result: PushResult) -> pb::PushResult {
    let (outcome, store_discount_id, message, retryable) = match result.outcome {
        PushOutcome::Created { store_discount_id } => (
            pb::PushOutcome::Created,
            store_discount_id,
            String::new(),
            false,
        ),
        PushOutcome::AlreadyExists { message } => (
            pb::PushOutcome::AlreadyExists,
            String::new(),
            message,
            false,
        ),
        PushOutcome::Failed { message, retryable } => {
            (pb::PushOutcome::Failed, String::new(), message, retryable)
        }
    };
    pb::PushResult {
        code: result.code,
        outcome: outcome as i32,
        store_discount_id,
        message,
        retryable,
    }
}

fn disable_result_to_proto(result: DisableResult) -> pb::DisableResult {
    let (outcome, message, retryable) = match result.outcome {
        DisableOutcome::Disabled => (pb::DisableOutcome::Disabled, String::new(), false),
        DisableOutcome::NotFound { message } => (pb::DisableOutcome::NotFound, message, false),
        DisableOutcome::Failed { message, retryable } => {
            (pb::DisableOutcome::Failed, message, retryable)
        }
    };
    pb::DisableResult {
        code: result.code,
        outcome: outcome as i32,
        message,
        retryable,
    }
}

fn store_discount_to_proto(row: StoredDiscount) -> pb::StoreDiscount {
    pb::StoreDiscount {
        code: row.code,
        external_ref: row.external_ref,
        title: row.title,
        active: row.active,
        created_at: Some(timestamp(row.created_at)),
        disabled_at: row.disabled_at.map(timestamp),
    }
}

fn tag_to_proto(row: TagRow) -> pb::AttributionTag {
    pb::AttributionTag {
        campaign_id: row.campaign_id,
        creator_id: row.creator_id,
        tag: row.tag,
        tag_campaign_id: row.tag_campaign_id,
        tag_ad_group_id: row.tag_ad_group_id,
        tag_creative_id: row.tag_creative_id,
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
        products_or_categories_only: caps.products_or_categories_only,
        numeric_restriction_ids: caps.numeric_restriction_ids,
        product_gid_prefix: caps.product_gid_prefix.to_owned(),
        category_gid_prefix: caps.category_gid_prefix.to_owned(),
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

/// The call's optional idempotency key, with the digest of the request it came with.
fn request_key(
    value: &str,
    request: &impl prost::Message,
) -> Result<Option<tracking_db::request_keys::RequestKey>, Error> {
    tracking_server::fields::request_key(value, request)
        .map_err(|message| Error::invalid("request_id", message))
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
        let rid = request_key(&req.request_id, &req)?;
        let provider = provider_of(req.provider)?;
        let credentials: BTreeMap<String, String> = req.credentials.into_iter().collect();
        let new = NewIntegration::validate(
            provider,
            &req.name,
            &req.shop_domain,
            &req.base_url,
            credentials,
            &req.webhook_secret,
            self.adapters.local_stores(),
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
        let created = match store::insert_integration(&self.db, row, rid.as_ref())
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
        let req = request.into_inner();
        let row = self.integration(brand_id, req.integration_id).await?;
        let store_currency = if req.ask_store_currency {
            self.adapters
                .shop_currency_within(&row, STORE_CURRENCY_WAIT)
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::GetIntegrationResponse {
            integration: Some(integration_to_proto(row)),
            store_currency,
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

    #[tracing::instrument(skip_all)]
    async fn push_discounts(
        &self,
        request: Request<pb::PushDiscountsRequest>,
    ) -> Result<Response<pb::PushDiscountsResponse>, Status> {
        let brand_id = internal_scope(Claims::of(&request)?)?;
        let req = request.into_inner();
        discount::validate_batch("discounts", req.discounts.len())?;
        let discounts = req
            .discounts
            .into_iter()
            .enumerate()
            .map(|(i, spec)| discount_from_proto(&format!("discounts[{i}]"), spec))
            .collect::<Result<Vec<_>, _>>()?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let (adapter, caps) = self.adapters.adapter_for(integration.provider())?;
        discount::validate_discounts(&caps, &discounts)?;
        let results = self
            .in_shop_currency(
                adapter,
                &integration,
                discounts,
                |discount| discount,
                async |fit| adapter.create_discounts(&integration, &fit).await,
            )
            .await?;
        let (created, already_exists, failed) = tally(&results);
        tracing::info!(
            brand_id,
            integration_id = integration.id,
            provider = %integration.provider,
            pushed = results.len(),
            created,
            already_exists,
            failed,
            "discounts pushed"
        );
        Ok(Response::new(pb::PushDiscountsResponse {
            results: results.into_iter().map(push_result_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_discounts(
        &self,
        request: Request<pb::UpdateDiscountsRequest>,
    ) -> Result<Response<pb::UpdateDiscountsResponse>, Status> {
        let brand_id = internal_scope(Claims::of(&request)?)?;
        let req = request.into_inner();
        discount::validate_batch("updates", req.updates.len())?;
        let updates = req
            .updates
            .into_iter()
            .enumerate()
            .map(|(i, update)| update_from_proto(i, update))
            .collect::<Result<Vec<_>, _>>()?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let (adapter, caps) = self.adapters.adapter_for(integration.provider())?;
        discount::validate_updates(&caps, &updates)?;
        let results = self
            .in_shop_currency(
                adapter,
                &integration,
                updates,
                |update| &update.discount,
                async |fit| adapter.update_discounts(&integration, &fit).await,
            )
            .await?;
        let (updated, already_exists, failed) = tally(&results);
        tracing::info!(
            brand_id,
            integration_id = integration.id,
            provider = %integration.provider,
            requested = results.len(),
            updated,
            already_exists,
            failed,
            "discounts updated"
        );
        Ok(Response::new(pb::UpdateDiscountsResponse {
            results: results.into_iter().map(push_result_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn disable_discounts(
        &self,
        request: Request<pb::DisableDiscountsRequest>,
    ) -> Result<Response<pb::DisableDiscountsResponse>, Status> {
        let brand_id = internal_scope(Claims::of(&request)?)?;
        let req = request.into_inner();
        discount::validate_batch("codes", req.codes.len())?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let (adapter, caps) = self.adapters.adapter_for(integration.provider())?;
        for (i, code) in req.codes.iter().enumerate() {
            discount::validate_code(&format!("codes[{i}]"), code, &caps)?;
        }
        let targets = discount::disable_targets(req.codes, req.external_refs)?;
        let results = adapter
            .disable_discounts(&integration, &targets)
            .await
            .map_err(Error::from)?;
        let disabled = results
            .iter()
            .filter(|r| r.outcome == DisableOutcome::Disabled)
            .count();
        tracing::info!(
            brand_id,
            integration_id = integration.id,
            provider = %integration.provider,
            requested = results.len(),
            disabled,
            "discounts disabled"
        );
        Ok(Response::new(pb::DisableDiscountsResponse {
            results: results.into_iter().map(disable_result_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_store_discounts(
        &self,
        request: Request<pb::ListStoreDiscountsRequest>,
    ) -> Result<Response<pb::ListStoreDiscountsResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let page = Page::parse(req.page.as_ref())?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let rows = self
            .adapters
            .sandbox()
            .list(&integration, page.after, page.fetch_limit())
            .await?;
        let (rows, page) = page.finish(rows, |row| row.id);
        Ok(Response::new(pb::ListStoreDiscountsResponse {
            discounts: rows.into_iter().map(store_discount_to_proto).collect(),
            page: Some(page),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_sandbox_outage(
        &self,
        request: Request<pb::SetSandboxOutageRequest>,
    ) -> Result<Response<pb::SetSandboxOutageResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let integration = self.integration(brand_id, req.integration_id).await?;
        let updated = self
            .adapters
            .sandbox()
            .set_outage(&integration, req.down)
            .await?;
        Ok(Response::new(pb::SetSandboxOutageResponse {
            integration: Some(integration_to_proto(updated)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn place_sandbox_order(
        &self,
        request: Request<pb::PlaceSandboxOrderRequest>,
    ) -> Result<Response<pb::PlaceSandboxOrderResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let order = req
            .order
            .ok_or_else(|| Error::invalid("order", "is required"))?;
        let order = NormalizedOrder::from_proto(order, "order")?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let delivered = self.intake.place_sandbox_order(&integration, order).await?;
        Ok(Response::new(pb::PlaceSandboxOrderResponse { delivered }))
    }

    type WatchOrdersStream = ResponseStream<pb::WatchOrdersResponse>;

    #[tracing::instrument(skip_all)]
    async fn watch_orders(
        &self,
        request: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let stream = streams::watch(
            &self.log,
            Claims::of(&request)?,
            request.get_ref().after_seq,
            |stored| {
                Ok(Some(pb::WatchOrdersResponse {
                    event: Some(intake::decode_event(stored)?),
                }))
            },
        )?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn ingest_orders(
        &self,
        request: Request<tonic::Streaming<pb::IngestOrdersRequest>>,
    ) -> Result<Response<pb::IngestOrdersResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let mut chunks = request.into_inner().ready_chunks(intake::BATCH);
        let mut owned: HashMap<i64, bool> = HashMap::new();
        let mut response = pb::IngestOrdersResponse::default();
        let mut index = 0usize;
        while let Some(chunk) = chunks.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            let mut refused = None;
            for message in chunk {
                match self.ingested(brand_id, &mut owned, message, index).await {
                    Ok(incoming) => batch.push(incoming),
                    Err(status) => {
                        refused = Some(status);
                        break;
                    }
                }
                index += 1;
            }
            // The orders before an invalid one are kept, as the contract says.
            if !batch.is_empty() {
                let outcome = self
                    .intake
                    .accept(&batch, pb::OrderSource::Ingest, None)
                    .await
                    .map_err(Error::from)?;
                response.received += batch.len() as i64;
                response.accepted += outcome.accepted as i64;
                response.duplicates += outcome.duplicates as i64;
            }
            if let Some(status) = refused {
                return Err(status);
            }
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn backfill_orders(
        &self,
        request: Request<pb::BackfillOrdersRequest>,
    ) -> Result<Response<pb::BackfillOrdersResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let now = chrono::Utc::now();
        let since = req
            .since
            .ok_or_else(|| Error::invalid("since", "is required"))
            .and_then(|ts| {
                u32::try_from(ts.nanos)
                    .ok()
                    .and_then(|nanos| chrono::DateTime::from_timestamp(ts.seconds, nanos))
                    .ok_or_else(|| Error::invalid("since", "not a valid timestamp"))
            })?;
        if since > now || now - since > chrono::Duration::days(MAX_BACKFILL_DAYS) {
            return Err(Error::invalid(
                "since",
                format!("must be in the last {MAX_BACKFILL_DAYS} days"),
            )
            .into());
        }
        let integration = self.integration(brand_id, req.integration_id).await?;
        let done = self
            .intake
            .backfill(&integration, since, pb::OrderSource::Backfill)
            .await?;
        Ok(Response::new(pb::BackfillOrdersResponse {
            listed: done.listed as i64,
            accepted: done.outcome.accepted as i64,
            duplicates: done.outcome.duplicates as i64,
            resume_from: done.resume_from.map(|t| prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: t.timestamp_subsec_nanos() as i32,
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_attribution_tags(
        &self,
        request: Request<pb::CreateAttributionTagsRequest>,
    ) -> Result<Response<pb::CreateAttributionTagsResponse>, Status> {
        let brand_id = internal_scope(Claims::of(&request)?)?;
        let req = request.into_inner();
        let subjects: Vec<TagSubject> = req
            .tags
            .iter()
            .map(|spec| TagSubject {
                campaign_id: spec.campaign_id,
                creator_id: spec.creator_id,
            })
            .collect();
        amazon::validate_subjects("tags", &subjects)?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let tags = self.amazon.tags(&integration, &subjects).await?;
        Ok(Response::new(pb::CreateAttributionTagsResponse {
            tags: tags.into_iter().map(tag_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_amazon_report(
        &self,
        request: Request<pb::ImportAmazonReportRequest>,
    ) -> Result<Response<pb::ImportAmazonReportResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let days = amazon::report_range(
            &req.start_date,
            &req.end_date,
            chrono::Utc::now().date_naive(),
        )?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let stored = self.amazon.import(&integration, days).await?;
        Ok(Response::new(pb::ImportAmazonReportResponse {
            reported: stored.reported as i64,
            created: stored.created as i64,
            revised: stored.revised as i64,
            unchanged: stored.unchanged as i64,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_amazon_report_rows(
        &self,
        request: Request<pb::ListAmazonReportRowsRequest>,
    ) -> Result<Response<pb::ListAmazonReportRowsResponse>, Status> {
        let brand_id = Claims::of(&request)?.brand_scope()?;
        let req = request.into_inner();
        let page = Page::parse(req.page.as_ref())?;
        let integration = self.integration(brand_id, req.integration_id).await?;
        let rows = store::amazon::list_report_rows(
            &self.db,
            brand_id,
            integration.id,
            page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(Error::from)?;
        let (rows, page) = page.finish(rows, |row| row.id);
        Ok(Response::new(pb::ListAmazonReportRowsResponse {
            rows: rows.iter().map(|row| row.to_proto()).collect(),
            page: Some(page),
        }))
    }
}
