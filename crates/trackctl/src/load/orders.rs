//! `trackctl load orders`: sets up a sandbox integration, a plan, a campaign and creators with
//! codes, then drives `ProviderGateway.IngestOrders` from `--concurrency` callers. Each call is
//! one client stream of `--chunk` new paid orders carrying a creator's code; the gateway answers
//! once the stream ends and the orders are stored, so one latency sample is one whole chunk
//! (stream opened → answer), while the throughput counts orders. Verification: the campaign
//! counts every acknowledged order exactly once (the orders are distinct, so none may be a
//! duplicate).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tonic::transport::Channel;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{
    IngestOrdersRequest, Order, OrderLine, OrderStatus, RegisterIntegrationRequest,
};

use super::{
    Common, Counter, Flow, Pacer, Recorder, Rng, Service, Summary, grpc_outcome_unknown, load_call,
    mint_all, orders_verified, progress, run_id, set_up, settle, wait_attributable,
};

#[derive(clap::Args, Debug, Clone)]
pub struct OrdersLoad {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub flow: Flow,
    /// Orders per IngestOrders stream (one latency sample); `--rate` counts orders.
    #[arg(long, default_value_t = 500)]
    pub chunk: u64,
}

/// A paid order of 100.00 EUR, 15 % off with `code`.
/// Order number `id`'s store id.
fn order_id(id: u64) -> String {
    format!("load-{id}")
}

fn order(integration: i64, id: u64, code: &str, at: SystemTime) -> Order {
    Order {
        integration_id: integration,
        store_order_id: order_id(id),
        status: OrderStatus::Paid as i32,
        codes: vec![code.to_owned()],
        currency: "EUR".into(),
        subtotal_minor: 10_000,
        discount_minor: 1_500,
        total_minor: 8_500,
        country: "DE".into(),
        customer_hash: format!("shopper-{id}"),
        lines: vec![OrderLine {
            product_id: format!("p{}", id % 50),
            quantity: 1,
            amount_minor: 10_000,
            discount_minor: 1_500,
            codes: vec![code.to_owned()],
            ..Default::default()
        }],
        occurred_at: Some(prost_types::Timestamp::from(at)),
        ..Default::default()
    }
}

/// The gateway's counts over the run.
#[derive(Clone, Default)]
struct Counts {
    received: Counter,
    accepted: Counter,
    duplicates: Counter,
}

struct Worker {
    client: ProviderGatewayClient<Channel>,
    token: String,
    integration: i64,
    codes: Arc<Vec<String>>,
    next_order: Arc<AtomicU64>,
    chunk: u64,
    recorder: Recorder,
    counts: Counts,
    pacer: Pacer,
    rng: Rng,
    /// Each stream's deadline (`--timeout`).
    timeout: Option<std::time::Duration>,
    /// The orders the gateway acknowledged, by number (first, count of a stream).
    acknowledged: Vec<(u64, u64)>,
    /// The orders of failed streams that may have been stored (in part: a stream stores its
    /// orders chunk by chunk), by number.
    unknown: Vec<(u64, u64)>,
}

impl Worker {
    /// Runs until the deadline; returns the orders acknowledged and those of unknown outcome.
    async fn run(mut self) -> anyhow::Result<(Vec<(u64, u64)>, Vec<(u64, u64)>)> {
        while let Some(due) = self.pacer.next().await {
            let first = self.next_order.fetch_add(self.chunk, Ordering::Relaxed);
            let now = SystemTime::now();
            let requests: Vec<IngestOrdersRequest> = (first..first + self.chunk)
                .map(|id| {
                    let code = &self.codes[self.rng.below(self.codes.len())];
                    IngestOrdersRequest {
                        order: Some(order(self.integration, id, code, now)),
                    }
                })
                .collect();
            let result = self
                .client
                .ingest_orders(load_call(
                    tokio_stream::iter(requests),
                    &self.token,
                    self.timeout,
                )?)
                .await;
            let latency = due.elapsed();
            match result {
                Ok(response) => {
                    let response = response.into_inner();
                    self.acknowledged.push((first, self.chunk));
                    self.recorder.record_many(latency, self.chunk, None);
                    self.counts.received.add(response.received.max(0) as u64);
                    self.counts.accepted.add(response.accepted.max(0) as u64);
                    self.counts
                        .duplicates
                        .add(response.duplicates.max(0) as u64);
                }
                Err(status) => {
                    self.recorder.record_many(
                        latency,
                        self.chunk,
                        Some(format!("{:?}", status.code())),
                    );
                    if grpc_outcome_unknown(status.code()) {
                        self.unknown.push((first, self.chunk));
                        self.recorder.outcome_unknown(self.chunk);
                    }
                }
            }
        }
        Ok((self.acknowledged, self.unknown))
    }
}

pub async fn run(load: OrdersLoad, token: &str) -> anyhow::Result<Summary> {
    let common = &load.common;
    if load.chunk == 0 {
        anyhow::bail!("--chunk must be 1 or more");
    }
    let services = load.flow.addrs.connect(&Service::ALL).await?;
    let channels = load
        .flow
        .addrs
        .load_channels(Service::Gateway, common.connections)
        .await?;
    let channel = services.attribution.clone();
    let run = run_id()?;
    let sandbox = RegisterIntegrationRequest {
        provider: Provider::Sandbox as i32,
        name: format!("load {run}"),
        ..Default::default()
    };
    let fixture = set_up(&services, token, sandbox, load.flow.creators, &run).await?;
    let codes = mint_all(&services, token, fixture.campaign, load.flow.creators).await?;
    let slugs: Vec<String> = codes
        .iter()
        .filter_map(|c| c.links.as_ref().map(|l| l.slug.clone()))
        .collect();
    wait_attributable(
        channel.clone(),
        token,
        fixture.campaign,
        &load.flow.links()?,
        &slugs,
    )
    .await?;
    eprintln!(
        "set-up: sandbox integration {}, campaign {}, {} creators with codes",
        fixture.integration,
        fixture.campaign,
        codes.len()
    );

    let codes = Arc::new(codes.into_iter().map(|c| c.code).collect::<Vec<_>>());
    let recorder = Recorder::new()?;
    let counts = Counts::default();
    let next_order = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let deadline = started + common.duration;
    let ticker = progress(recorder.clone(), started, common.duration);
    let mut tasks = Vec::new();
    for worker in 0..common.concurrency {
        let worker = Worker {
            client: ProviderGatewayClient::new(channels[worker % channels.len()].clone()),
            token: token.to_owned(),
            integration: fixture.integration,
            codes: codes.clone(),
            next_order: next_order.clone(),
            chunk: load.chunk,
            recorder: recorder.clone(),
            counts: counts.clone(),
            pacer: Pacer::new(
                common.rate,
                common.concurrency,
                load.chunk,
                worker,
                deadline,
            ),
            rng: Rng::new(worker as u64 + 1),
            timeout: common.timeout,
            acknowledged: Vec::new(),
            unknown: Vec::new(),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut acknowledged_ids = HashSet::new();
    let mut unknown_ids = HashSet::new();
    for task in tasks {
        let (acknowledged, unknown) = task.await??;
        for (first, count) in acknowledged {
            acknowledged_ids.extend((first..first + count).map(order_id));
        }
        for (first, count) in unknown {
            unknown_ids.extend((first..first + count).map(order_id));
        }
    }
    let elapsed = started.elapsed();
    let mut summary = Summary::from(
        &format!("orders (IngestOrders, {} per stream)", load.chunk),
        &recorder,
        elapsed,
    );
    let _ = ticker.await;
    summary.unit = "orders";

    let acknowledged = summary.ok as i64;
    let settled = settle(
        channel.clone(),
        token,
        fixture.campaign,
        "orders attributed",
        acknowledged,
        load.flow.settle,
        |f| f.orders,
    )
    .await?;
    let mut problems = Vec::new();
    if acknowledged == 0 {
        problems.push("no order was acknowledged".to_owned());
    }
    problems.extend(
        orders_verified(
            channel,
            token,
            fixture.campaign,
            (acknowledged, &acknowledged_ids),
            &unknown_ids,
            settled.value,
            load.flow.settle,
        )
        .await?,
    );
    if counts.accepted.get() != acknowledged as u64 || counts.duplicates.get() > 0 {
        problems.push(format!(
            "the gateway accepted {} and counted {} duplicates of {acknowledged} distinct orders",
            counts.accepted.get(),
            counts.duplicates.get()
        ));
    }
    let attributed_s = settled.reached.map(|at| (at - started).as_secs_f64());
    summary.notes.push(format!(
        "gateway       received {}, accepted {}, duplicates {}",
        counts.received.get(),
        counts.accepted.get(),
        counts.duplicates.get()
    ));
    summary.notes.push(format!(
        "attributed    {} orders in the campaign{}",
        settled.value,
        attributed_s
            .map(|s| format!(
                ", all {s:.2}s after the load began ({:.0} orders/s attributed)",
                acknowledged as f64 / s.max(1e-9)
            ))
            .unwrap_or_else(|| format!(
                ", not all within --settle; attribution went on at {:.0} orders/s after the load",
                settled.pace
            ))
    ));
    summary.notes.push(
        "latency       one IngestOrders call: stream opened → answer (all its orders stored)"
            .to_owned(),
    );
    summary.verified_by(&problems, common.allow_errors);
    let extra = &mut summary.extra;
    extra.insert("orders_acknowledged".into(), acknowledged.into());
    extra.insert("orders_attributed".into(), settled.value.into());
    extra.insert(
        "attribution_pace_after_load".into(),
        settled.pace.round().into(),
    );
    extra.insert("attributed_s".into(), attributed_s.into());
    extra.insert(
        "attributed_per_second".into(),
        attributed_s
            .map(|s| (acknowledged as f64 / s.max(1e-9)).round())
            .into(),
    );
    Ok(summary)
}
