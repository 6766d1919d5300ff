//! `Watch*` streams of other services as sources for the shared stream consumer.

use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;
use tracking_api::plan::v1::plan_service_client::PlanServiceClient;
use tracking_api::plan::v1::{PlanEvent, WatchEventsRequest};
use tracking_events::{BoxFuture, EventStream, Source, SourceError};

use crate::{ServiceTokens, authorized, lazy_channel};

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
            Ok(stream
                .map_err(|status| Box::new(status) as SourceError)
                .and_then(|response| async move {
                    let event = response
                        .event
                        .ok_or_else(|| SourceError::from("WatchEvents sent an empty event"))?;
                    Ok((event.seq, event))
                })
                .boxed())
        })
    }
}
