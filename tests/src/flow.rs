//! Shared flows of the multi-process and fault tests, over any channel to the suite: a sandbox
//! scenario with a roster, minting, normalized orders, and the attributed count.

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tracking_api::attribution::v1::attribution_service_client::AttributionServiceClient;
use tracking_api::attribution::v1::{Figures, GetCampaignPerformanceRequest};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{IngestOrdersRequest, Order, OrderStatus};
use tracking_api::mint::v1::MintCodeRequest;
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_api::plan::v1::{
    AddCreatorsRequest, CodeTrigger, Commission, CreateCampaignRequest, CreatePlanRequest,
    Discount, NewRosterEntry, Plan, commission, discount,
};
use tracking_testkit::authed;

use crate::{brand, profile, valid_registration};

pub struct Scenario {
    pub integration: i64,
    pub campaign: i64,
}

/// A sandbox integration, a 10 %-commission plan minting on add, a campaign and `creators`.
pub async fn scenario(channel: Channel, creators: i64) -> Scenario {
    let token = brand(1);
    let gateway = tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient::new(
        channel.clone(),
    );
    let mut plan_client =
        tracking_api::plan::v1::plan_service_client::PlanServiceClient::new(channel);
    let integration = gateway
        .clone()
        .register_integration(authed(
            valid_registration(Provider::Sandbox, "Flow store"),
            &token,
        ))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let plan = plan_client
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: "Flow".into(),
                    integration_id: integration,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1000)),
                    }),
                    code_pattern: "{username}{random:4}".into(),
                    click_url: "https://brand.example.com/".into(),
                    commission: Some(Commission {
                        kind: Some(commission::Kind::PercentBps(1000)),
                    }),
                    code_trigger: CodeTrigger::OnApproval as i32,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().plan.map(|p| p.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let campaign = plan_client
        .create_campaign(authed(
            CreateCampaignRequest {
                name: "Flow".into(),
                plan_id: plan,
                ..Default::default()
            },
            &token,
        ))
        .await
        .map(|r| r.into_inner().campaign.map(|c| c.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let roster: Vec<NewRosterEntry> = (1..=creators)
        .map(|id| NewRosterEntry {
            creator_id: id,
            profile: Some(profile("Rep", "Lica", &format!("rep{id}"))),
            approved: false,
        })
        .collect();
    plan_client
        .add_creators(authed(
            AddCreatorsRequest {
                campaign_id: campaign,
                request_id: String::new(),
                creators: roster,
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{s}"));
    Scenario {
        integration,
        campaign,
    }
}

/// Mints for `creator` on `node`, retrying while its mint service has not seen the roster yet.
pub async fn mint_on(channel: &Channel, campaign: i64, creator: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match CodeMintServiceClient::new(channel.clone())
            .mint_code(authed(
                MintCodeRequest {
                    campaign_id: campaign,
                    creator_id: creator,
                },
                &brand(1),
            ))
            .await
        {
            Ok(r) => return r.into_inner().code.map(|c| c.code).unwrap_or_default(),
            Err(s) if Instant::now() < deadline && s.code() != tonic::Code::InvalidArgument => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("mint {creator}: {s}"),
        }
    }
}

pub fn orders(
    integration: i64,
    codes: &[String],
    from: usize,
    to: usize,
) -> Vec<IngestOrdersRequest> {
    (from..to)
        .map(|n| IngestOrdersRequest {
            order: Some(Order {
                integration_id: integration,
                store_order_id: format!("R-{n}"),
                status: OrderStatus::Paid as i32,
                codes: vec![codes[n % codes.len()].clone()],
                currency: "EUR".into(),
                subtotal_minor: 1_000,
                total_minor: 1_000,
                occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                ..Order::default()
            }),
        })
        .collect()
}

pub async fn ingest(
    channel: &Channel,
    batch: Vec<IngestOrdersRequest>,
) -> Result<i64, tonic::Status> {
    ProviderGatewayClient::new(channel.clone())
        .ingest_orders(authed(tokio_stream::iter(batch), &brand(1)))
        .await
        .map(|r| r.into_inner().received)
}

/// The campaign's orders attributed (0 while attribution does not know it).
pub async fn attributed(channel: &Channel, campaign: i64) -> i64 {
    totals(channel, campaign).await.orders
}

/// The campaign's figures, all of the last 30 days (zeros while attribution does not know it).
pub async fn totals(channel: &Channel, campaign: i64) -> Figures {
    AttributionServiceClient::new(channel.clone())
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: campaign,
                range: None,
            },
            &brand(1),
        ))
        .await
        .ok()
        .and_then(|r| r.into_inner().performance)
        .and_then(|p| p.totals)
        .unwrap_or_default()
}
