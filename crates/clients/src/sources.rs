//! `Watch*` streams of other services as sources for the shared stream consumer.

use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{OrderEvent, WatchOrdersRequest};
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_api::mint::v1::{CodeEvent, WatchCodesRequest};
use tracking_api::plan::v1::plan_service_client::PlanServiceClient;
use tracking_api::plan::v1::{PlanEvent, WatchEventsRequest};
use tracking_events::{BoxFuture, EventStream, Source, SourceError};

use crate::{ServiceTokens, authorized, lazy_channel};

/// A `Watch*` response stream as (seq, event) pairs; `event_of` takes the event out of a
/// response and `seq_of` reads its position.
fn pairs<R, E>(
    stream: tonic::Streaming<R>,
    rpc: &'static str,
    event_of: fn(R) -> Option<E>,
    seq_of: fn(&E) -> i64,
) -> EventStream<E>
where
    R: Send + 'static,
    E: Send + 'static,
{
    stream
        .map_err(|status| Box::new(status) as SourceError)
        .and_then(move |response| async move {
            let event = event_of(response)
                .ok_or_else(|| SourceError::from(format!("{rpc} sent an empty event")))?;
            Ok((seq_of(&event), event))
        })
        .boxed()
}

/// PlanService's `WatchEvents`, every brand's (a service token).
pub struct PlanEventsSource {
    client: PlanServiceClient<Channel>,
    tokens: ServiceTokens,
}

impl PlanEventsSource {
    pub fn lazy(url: &str, tokens: ServiceTokens) -> Result<Self, String> {
        Ok(Self {
            client: PlanServiceClient::new(lazy_channel(url)?),
            tokens,
        })
    }
}

impl Source for PlanEventsSource {
    type Event = PlanEvent;

    fn open(
        &mut self,
        after_seq: i64,
    ) -> BoxFuture<'_, Result<EventStream<PlanEvent>, SourceError>> {
        Box::pin(async move {
            let request = authorized(WatchEventsRequest { after_seq }, &self.tokens.for_brand(0))?;
            let stream = self.client.watch_events(request).await?.into_inner();
            Ok(pairs(stream, "WatchEvents", |r| r.event, |e| e.seq))
        })
    }
}

/// CodeMintService's `WatchCodes`, every brand's.
pub struct CodeEventsSource {
    client: CodeMintServiceClient<Channel>,
    tokens: ServiceTokens,
}

impl CodeEventsSource {
    pub fn lazy(url: &str, tokens: ServiceTokens) -> Result<Self, String> {
        Ok(Self {
            client: CodeMintServiceClient::new(lazy_channel(url)?),
            tokens,
        })
    }
}

impl Source for CodeEventsSource {
    type Event = CodeEvent;

    fn open(
        &mut self,
        after_seq: i64,
    ) -> BoxFuture<'_, Result<EventStream<CodeEvent>, SourceError>> {
        Box::pin(async move {
            let request = authorized(WatchCodesRequest { after_seq }, &self.tokens.for_brand(0))?;
            let stream = self.client.watch_codes(request).await?.into_inner();
            Ok(pairs(stream, "WatchCodes", |r| r.event, |e| e.seq))
        })
    }
}

/// ProviderGateway's `WatchOrders`, every brand's.
pub struct OrderEventsSource {
    client: ProviderGatewayClient<Channel>,
    tokens: ServiceTokens,
}

impl OrderEventsSource {
    pub fn lazy(url: &str, tokens: ServiceTokens) -> Result<Self, String> {
        Ok(Self {
            client: ProviderGatewayClient::new(lazy_channel(url)?),
            tokens,
        })
    }
}

impl Source for OrderEventsSource {
    type Event = OrderEvent;

    fn open(
        &mut self,
        after_seq: i64,
    ) -> BoxFuture<'_, Result<EventStream<OrderEvent>, SourceError>> {
        Box::pin(async move {
            let request = authorized(WatchOrdersRequest { after_seq }, &self.tokens.for_brand(0))?;
            let stream = self.client.watch_orders(request).await?.into_inner();
            Ok(pairs(stream, "WatchOrders", |r| r.event, |e| e.seq))
        })
    }
}
