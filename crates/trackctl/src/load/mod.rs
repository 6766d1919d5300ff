//! `trackctl load`: drives the suite's hot paths through their public APIs, ghz-style: a live
//! progress line, then requests/s, latency percentiles (HDR histogram, corrected for coordinated
//! omission under `--rate`), errors by gRPC code or HTTP status, and a verification of the
//! outcome through the public RPCs. A run whose verification fails exits non-zero.
//!
//! This module holds what every path shares: flags, connections, the recorder, pacing, the
//! progress line, the summary, and the set-up of a campaign whose creators hold codes.

pub mod clicks;
pub mod cpu;
pub mod echo;
pub mod mint;
pub mod orders;
pub mod web;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cpu::{CpuStart, MachineCpu};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracking_api::attribution::v1::attribution_service_client::AttributionServiceClient;
use tracking_api::attribution::v1::{
    ConversionKind, Figures, GetCampaignPerformanceRequest, ListConversionsRequest,
    StreamConversionsRequest,
};
use tracking_api::common::v1::{PageRequest, PageResponse};
use tracking_api::gateway::v1::RegisterIntegrationRequest;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_api::mint::v1::{Code, MintCodeRequest};
use tracking_api::plan::v1::plan_service_client::PlanServiceClient;
use tracking_api::plan::v1::{
    AddCreatorsRequest, CodeTrigger, CreateCampaignRequest, CreatePlanRequest, CreatorProfile,
    Discount, NewRosterEntry, Plan, discount,
};

/// What every load run shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Concurrent callers (unary) or streams (stream mode).
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub concurrency: usize,
    /// How long to drive load, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = tracking_server::parse_duration)]
    pub duration: Duration,
    /// Hold this many requests/s in total (open loop) instead of as fast as possible.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Print the summary as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// gRPC connections the load's callers share (mint, orders; HTTP/2 multiplexes callers over
    /// each; the webhooks' and clicks' callers keep one HTTP connection each).
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    pub connections: usize,
    /// Pass verification despite failed calls (refusals by load shedding, RESOURCE_EXHAUSTED,
    /// always pass: overload runs expect them).
    #[arg(long)]
    pub allow_errors: bool,
    /// Deadline of each `MintCode` call and each `IngestOrders` stream the load makes, e.g.
    /// 500ms (sent as `grpc-timeout`); without, the server's own (its --request-timeout).
    /// Set-up and verification calls are not bound by it.
    #[arg(long, value_parser = tracking_server::parse_duration)]
    pub timeout: Option<Duration>,
}

/// Where the suite's services answer gRPC: all at `--addr` (trackd), or each at its own
/// address when they run apart.
#[derive(clap::Args, Debug, Clone)]
pub struct Addrs {
    /// The suite's gRPC address (trackd's, where every service answers).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// PlanService's gRPC address, when the services run apart (compose.yaml:
    /// `http://127.0.0.1:50051`); default `--addr`.
    #[arg(long)]
    pub plan_addr: Option<String>,
    /// CodeMintService's gRPC address, when the services run apart (compose.yaml:
    /// `http://127.0.0.1:50053`); default `--addr`.
    #[arg(long)]
    pub mint_addr: Option<String>,
    /// ProviderGateway's gRPC address, when the services run apart (compose.yaml:
    /// `http://127.0.0.1:50052`); default `--addr`.
    #[arg(long)]
    pub gateway_addr: Option<String>,
    /// AttributionService's gRPC address, when the services run apart (compose.yaml:
    /// `http://127.0.0.1:50054`); default `--addr`.
    #[arg(long)]
    pub attribution_addr: Option<String>,
}

/// One of the suite's services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Plan,
    Mint,
    Gateway,
    Attribution,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Plan,
        Service::Mint,
        Service::Gateway,
        Service::Attribution,
    ];

    /// Its gRPC name, which its health is asked by.
    pub fn name(self) -> &'static str {
        match self {
            Service::Plan => tracking_api::plan::v1::plan_service_server::SERVICE_NAME,
            Service::Mint => tracking_api::mint::v1::code_mint_service_server::SERVICE_NAME,
            Service::Gateway => tracking_api::gateway::v1::provider_gateway_server::SERVICE_NAME,
            Service::Attribution => {
                tracking_api::attribution::v1::attribution_service_server::SERVICE_NAME
            }
        }
    }
}

/// One connection to each service, for set-up and verification; the load itself opens
/// `--connections` of its own.
#[derive(Clone)]
pub struct Services {
    pub plan: Channel,
    pub mint: Channel,
    pub gateway: Channel,
    pub attribution: Channel,
}

impl Addrs {
    /// The flag that names `service`'s address, and the address.
    pub fn of(&self, service: Service) -> (&'static str, &str) {
        let (flag, own) = match service {
            Service::Plan => ("--plan-addr", &self.plan_addr),
            Service::Mint => ("--mint-addr", &self.mint_addr),
            Service::Gateway => ("--gateway-addr", &self.gateway_addr),
            Service::Attribution => ("--attribution-addr", &self.attribution_addr),
        };
        match own {
            Some(addr) => (flag, addr),
            None => ("--addr", &self.addr),
        }
    }

    /// Connects to every service: those a path calls (`used`) at once, each asked whether it is
    /// served there (gRPC health), so that an address off by a port fails the run before
    /// anything is set up, naming the flag; the others when first called.
    pub async fn connect(&self, used: &[Service]) -> anyhow::Result<Services> {
        let mut connected = Vec::with_capacity(Service::ALL.len());
        for service in Service::ALL {
            let (flag, addr) = self.of(service);
            connected.push(if used.contains(&service) {
                reach(service, flag, addr).await?
            } else {
                Endpoint::from_shared(addr.to_owned())
                    .with_context(|| format!("{flag} {addr}"))?
                    .connect_lazy()
            });
        }
        let [plan, mint, gateway, attribution] = <[Channel; 4]>::try_from(connected)
            .map_err(|_| anyhow::anyhow!("one connection per service"))?;
        Ok(Services {
            plan,
            mint,
            gateway,
            attribution,
        })
    }

    /// `--connections` connections to `service`, for the load.
    pub async fn load_channels(
        &self,
        service: Service,
        count: usize,
    ) -> anyhow::Result<Vec<Channel>> {
        let (flag, addr) = self.of(service);
        channels(addr, count)
            .await
            .with_context(|| format!("{flag} {addr}"))
    }
}

/// A connection to `service` at `addr` (given as `flag`), once its health says it is served.
async fn reach(service: Service, flag: &str, addr: &str) -> anyhow::Result<Channel> {
    let name = service.name();
    let channel = channels(addr, 1)
        .await
        .with_context(|| format!("{flag} {addr}: {name} cannot be reached"))?
        .remove(0);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: name.to_owned(),
    });
    request.set_timeout(Duration::from_secs(5));
    match HealthClient::new(channel.clone()).check(request).await {
        Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => Ok(channel),
        Ok(answer) => anyhow::bail!(
            "{flag} {addr}: {name} is not serving ({:?})",
            answer.get_ref().status()
        ),
        Err(status) if status.code() == tonic::Code::NotFound => {
            anyhow::bail!("{flag} {addr}: {name} is not served there")
        }
        Err(status) => anyhow::bail!("{flag} {addr}: asking whether {name} is served: {status}"),
    }
}

/// Refuses `--timeout` for a path whose calls it does not bound (`path`, as named to the user).
pub fn no_timeout(common: &Common, path: &str) -> anyhow::Result<()> {
    if common.timeout.is_some() {
        anyhow::bail!(
            "--timeout bounds MintCode calls (mint --mode unary) and IngestOrders streams \
             (orders), not {path}"
        );
    }
    Ok(())
}

/// A count flag that must be 1 or more.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// What the paths that end in attribution (webhooks, orders, clicks) share.
#[derive(clap::Args, Debug, Clone)]
pub struct Flow {
    #[command(flatten)]
    pub addrs: Addrs,
    /// trackd's HTTP address (webhooks, tracking links; trackd's --http-addr): plain
    /// `http://host[:port][/prefix]`, no TLS; also the default of `--gateway-http` and
    /// `--attribution-http`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// ProviderGateway's HTTP address (store webhooks), when the services run apart
    /// (compose.yaml: `http://127.0.0.1:8082`); default `--http`.
    #[arg(long)]
    pub gateway_http: Option<String>,
    /// AttributionService's HTTP address (tracking links), when the services run apart
    /// (compose.yaml: `http://127.0.0.1:8084`); default `--http`.
    #[arg(long)]
    pub attribution_http: Option<String>,
    /// Creators on the campaign, each with a code and a tracking link; the load is spread over
    /// them.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub creators: u64,
    /// Longest wait, after the run, for attribution to show everything that was accepted.
    #[arg(long, default_value = "60s", value_parser = tracking_server::parse_duration)]
    pub settle: Duration,
}

impl Flow {
    /// Where store webhooks go.
    pub fn webhooks(&self) -> anyhow::Result<web::Target> {
        match &self.gateway_http {
            Some(http) => web::Target::parse("--gateway-http", http),
            None => web::Target::parse("--http", &self.http),
        }
    }

    /// Where tracking links are followed.
    pub fn links(&self) -> anyhow::Result<web::Target> {
        match &self.attribution_http {
            Some(http) => web::Target::parse("--attribution-http", http),
            None => web::Target::parse("--http", &self.http),
        }
    }
}

/// A load call: [`authed`], with the run's `--timeout` when it has one.
pub fn load_call<T>(
    message: T,
    token: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<tonic::Request<T>> {
    let mut request = authed(message, token)?;
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    Ok(request)
}

/// A gRPC request with the run's bearer token.
pub fn authed<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// A name for the run's integration, plan and campaign (milliseconds since the epoch).
pub fn run_id() -> anyhow::Result<String> {
    Ok(format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    ))
}

pub async fn channels(addr: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        channels.push(
            Endpoint::from_shared(addr.to_owned())?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(3))
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

/// Latencies and outcomes, shared by the callers.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Recorded>>,
    /// The machine's CPU when the load began.
    cpu: CpuStart,
}

struct Recorded {
    latency: Histogram<u64>,
    /// The same latencies split by outcome ("ok" or the error's code): under overload, refused
    /// calls must be fast and admitted ones within their target, which one histogram hides.
    by_outcome: BTreeMap<String, Histogram<u64>>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Of the errors, the units whose calls may still have taken effect.
    unknown: u64,
}

/// Whether a gRPC call that failed with `code` may still have taken effect: every failure but
/// the refusals made before a request is read (load shedding, authentication). An
/// `IngestOrders` stream stores its orders chunk by chunk, so even INVALID_ARGUMENT may come
/// after some were stored; a deadline may pass after the commit.
pub fn grpc_outcome_unknown(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::ResourceExhausted
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
    )
}

/// Whether an HTTP request answered `status` may still have taken effect: a 408 (the server
/// gave up on a handler under way) or a 5xx; other 4xx are decided before anything is stored.
/// (A request with no answer: [`web::HttpError::outcome_unknown`].)
pub fn http_outcome_unknown(status: http::StatusCode) -> bool {
    status == http::StatusCode::REQUEST_TIMEOUT || status.is_server_error()
}

/// The problem, if any, with a count of what the server stored: it must hold every acknowledged
/// unit, and may hold those whose outcome is unknown, but no more.
pub fn count_problem(what: &str, counted: i64, acknowledged: i64, unknown: i64) -> Option<String> {
    (counted < acknowledged || counted > acknowledged + unknown).then(|| {
        format!(
            "the campaign counts {counted} {what}, {acknowledged} were acknowledged and \
             {unknown} failed with an unknown outcome"
        )
    })
}

/// The longest latency recorded (µs): an hour, beyond any run's backlog.
const LONGEST_US: u64 = 3_600_000_000;

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs .. an hour, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, LONGEST_US, 3)?)
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Mutex::new(Recorded {
                latency: histogram()?,
                by_outcome: BTreeMap::new(),
                ok: 0,
                errors: BTreeMap::new(),
                unknown: 0,
            })),
            cpu: CpuStart::now(),
        })
    }

    /// Records one request's latency (µs) and outcome (`None` for success).
    pub fn record(&self, latency: Duration, error: Option<String>) {
        self.record_many(latency, 1, error);
    }

    /// Records one request that carried `units` items (e.g. orders of one stream): one latency
    /// sample, `units` outcomes.
    pub fn record_many(&self, latency: Duration, units: u64, error: Option<String>) {
        if let Ok(mut r) = self.inner.lock() {
            let micros = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, LONGEST_US);
            let _ = r.latency.record(micros);
            let outcome = error.clone().unwrap_or_else(|| "ok".to_owned());
            if !r.by_outcome.contains_key(&outcome)
                && let Ok(fresh) = histogram()
            {
                r.by_outcome.insert(outcome.clone(), fresh);
            }
            if let Some(h) = r.by_outcome.get_mut(&outcome) {
                let _ = h.record(micros);
            }
            match error {
                None => r.ok += units,
                Some(code) => *r.errors.entry(code).or_default() += units,
            }
        }
    }

    /// Notes that `units` recorded as failed may still have taken effect (their verification
    /// accepts either outcome).
    pub fn outcome_unknown(&self, units: u64) {
        if let Ok(mut r) = self.inner.lock() {
            r.unknown += units;
        }
    }

    /// Latency percentiles of what was recorded so far.
    pub fn percentiles(&self) -> Percentiles {
        self.inner
            .lock()
            .map(|r| Percentiles::of(&r.latency))
            .unwrap_or_default()
    }

    pub fn samples(&self) -> u64 {
        self.inner.lock().map(|r| r.latency.len()).unwrap_or(0)
    }

    fn counts(&self) -> (u64, u64) {
        self.inner
            .lock()
            .map(|r| (r.ok, r.errors.values().sum()))
            .unwrap_or_default()
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(latency: &Histogram<u64>) -> Percentiles {
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: latency.max() as f64 / 1000.0,
        }
    }
}

/// When each request of one caller is due: at once (closed loop), or on a fixed schedule that
/// holds the caller's share of `--rate` (open loop). Latency counts from the due time, so a slow
/// server cannot hide queueing. The callers' schedules are staggered (caller `i` starts `i`
/// requests' worth of time late) so that together they send at an even rate, not all at once
/// in bursts that queue behind each other.
///
/// tokio's timer counts whole milliseconds: a task that sleeps to an instant wakes 0.4–2 ms after
/// it here (p50 1 ms: the deadline rounded up to the timer's tick, the poll's timeout rounded up
/// again), and counting from the due time charged that to the server (an idle bare echo held at
/// 1,000 requests/s measured p50 1.2 ms, 0.14 ms once the tool's own lateness was gone). So a
/// caller aims [`TIMER_LEAD`] early, and a request sent before its due time counts from its
/// sending.
pub struct Pacer {
    interval: Option<Duration>,
    scheduled: Instant,
    /// The run's end: no request is due at or after it.
    deadline: Instant,
}

/// How early a paced caller aims its sleep: the most tokio's timer wakes late on an idle machine.
const TIMER_LEAD: Duration = Duration::from_millis(2);

impl Pacer {
    /// Caller `caller`'s share of `rate` units/s, shared by `callers`, each request carrying
    /// `units`, until `deadline`.
    pub fn new(
        rate: Option<u64>,
        callers: usize,
        units: u64,
        caller: usize,
        deadline: Instant,
    ) -> Pacer {
        let interval = rate.map(|rate| {
            Duration::from_secs_f64(callers as f64 * units as f64 / rate.max(1) as f64)
        });
        let offset = interval.map_or(Duration::ZERO, |interval| {
            interval.mul_f64(caller as f64 / callers.max(1) as f64)
        });
        Pacer {
            interval,
            scheduled: Instant::now() + offset,
            deadline,
        }
    }

    /// Whether requests are held to a rate (`--rate`), rather than sent as soon as possible.
    pub fn paced(&self) -> bool {
        self.interval.is_some()
    }

    /// Waits for the next request's turn and returns when it was due; `None` once the run is
    /// over (a request due at or after its end is not sent: a slow paced caller would otherwise
    /// stretch the run by up to one of its intervals).
    pub async fn next(&mut self) -> Option<Instant> {
        match self.interval {
            Some(interval) => {
                let due = self.scheduled;
                if due >= self.deadline {
                    return None;
                }
                let aim = due.checked_sub(TIMER_LEAD).unwrap_or(due);
                tokio::time::sleep_until(aim.into()).await;
                self.scheduled += interval;
                Some(due.min(Instant::now()))
            }
            None => Some(Instant::now()).filter(|now| *now < self.deadline),
        }
    }
}

/// Prints `\r`-updated progress to stderr every second until `done` is set.
pub fn progress(
    recorder: Recorder,
    started: Instant,
    total: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0;
        loop {
            tick.tick().await;
            let (ok, errors) = recorder.counts();
            let elapsed = started.elapsed();
            eprint!(
                "\r[{:>5.1}s/{:.0}s] {:>9} ok {:>7} errors {:>9} req/s   ",
                elapsed.as_secs_f64(),
                total.as_secs_f64(),
                ok,
                errors,
                ok + errors - last
            );
            let _ = std::io::stderr().flush();
            last = ok + errors;
            if elapsed >= total {
                eprintln!();
                return;
            }
        }
    })
}

/// The run's figures.
pub struct Summary {
    pub path: String,
    /// What one counted request is ("requests", "orders", "deliveries", "clicks").
    pub unit: &'static str,
    pub elapsed: Duration,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Of the errors, the units whose calls may still have taken effect.
    pub unknown_outcome: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Latency percentiles per outcome ("ok", or an error's code).
    pub by_outcome: BTreeMap<String, Percentiles>,
    /// What every process on the machine used while the load ran; `None` off Linux.
    pub machine_cpu: Option<MachineCpu>,
    pub verified: bool,
    /// What the verification found wrong (none when verified).
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    /// Path-specific figures, added to the JSON object.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Summary {
    /// The run's summary; taken as soon as the load ends, which ends its machine CPU reading.
    pub fn from(path: &str, recorder: &Recorder, elapsed: Duration) -> Summary {
        let (latency, by_outcome, ok, errors, unknown_outcome) = recorder
            .inner
            .lock()
            .map(|r| {
                let by_outcome = r
                    .by_outcome
                    .iter()
                    .map(|(outcome, h)| (outcome.clone(), Percentiles::of(h)))
                    .collect();
                (
                    r.latency.clone(),
                    by_outcome,
                    r.ok,
                    r.errors.clone(),
                    r.unknown,
                )
            })
            .unwrap_or_else(|_| {
                (
                    Histogram::new(3).unwrap_or_else(|_| unreachable!()),
                    BTreeMap::new(),
                    0,
                    BTreeMap::new(),
                    0,
                )
            });
        let p = Percentiles::of(&latency);
        Summary {
            path: path.to_owned(),
            unit: "requests",
            elapsed,
            ok,
            errors,
            unknown_outcome,
            p50_ms: p.p50,
            p90_ms: p.p90,
            p99_ms: p.p99,
            p999_ms: p.p999,
            max_ms: p.max,
            by_outcome,
            machine_cpu: recorder.cpu.since(),
            verified: false,
            problems: Vec::new(),
            notes: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Records the verification: passed when it found no problem, each problem a note. Failed
    /// calls are a problem too, unless `allow_errors`, but for refusals by load shedding
    /// (RESOURCE_EXHAUSTED), which overload runs expect.
    pub fn verified_by(&mut self, problems: &[String], allow_errors: bool) {
        let mut problems = problems.to_vec();
        let failed: Vec<String> = self
            .errors
            .iter()
            .filter(|(error, _)| error.as_str() != "ResourceExhausted")
            .map(|(error, n)| format!("{error} {n}"))
            .collect();
        if !failed.is_empty() && !allow_errors {
            problems.push(format!(
                "calls failed: {} (--allow-errors to accept)",
                failed.join(", ")
            ));
        }
        self.notes
            .extend(problems.iter().map(|p| format!("VERIFY FAILED: {p}")));
        self.verified = problems.is_empty();
        self.problems = problems;
    }

    /// Requests answered, successfully or not.
    fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Busy CPU of the whole machine per request (µs of one core).
    fn cpu_micros_each(&self) -> Option<f64> {
        self.machine_cpu?.micros_each(self.requests())
    }

    pub fn print(&self, json: bool) {
        println!("\nSummary: {}", self.path);
        println!("  elapsed       {:.2}s", self.elapsed.as_secs_f64());
        println!(
            "  {:<13} {:.0}",
            format!("{}/s", self.unit),
            self.requests_per_second()
        );
        println!("  ok            {}", self.ok);
        println!(
            "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        if self.by_outcome.len() > 1 {
            for (outcome, p) in &self.by_outcome {
                println!(
                    "    {outcome:<11} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    p.p50, p.p90, p.p99, p.p999, p.max
                );
            }
        }
        if self.errors.is_empty() {
            println!("  errors        none");
        } else {
            for (code, count) in &self.errors {
                println!("  errors        {code}: {count}");
            }
        }
        if self.unknown_outcome > 0 {
            println!(
                "  unknown       {} {} failed but may have taken effect (verified as either)",
                self.unknown_outcome, self.unit
            );
        }
        if let Some(cpu) = &self.machine_cpu {
            println!(
                "  machine CPU   {:.0} % busy of {} cores (steal {:.1} %): {} µs each of the {} (everything on this machine: the suite, PostgreSQL, this tool)",
                cpu.busy_pct,
                cpu.cores,
                cpu.steal_pct,
                self.cpu_micros_each()
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}")),
                self.unit,
            );
        }
        for note in &self.notes {
            println!("  {note}");
        }
        println!(
            "  verified      {}",
            if self.verified { "yes" } else { "NO" }
        );
        if json {
            let mut object = serde_json::json!({
                "path": self.path,
                "unit": self.unit,
                "requests_per_second": (self.requests_per_second() * 10.0).round() / 10.0,
                "ok": self.ok,
                "errors": self.errors.values().sum::<u64>(),
                "errors_by_code": self.errors,
                "unknown_outcome": self.unknown_outcome,
                "p50_ms": self.p50_ms,
                "p90_ms": self.p90_ms,
                "p99_ms": self.p99_ms,
                "p999_ms": self.p999_ms,
                "max_ms": self.max_ms,
                "latency_by_outcome": self.by_outcome.iter().map(|(outcome, p)| {
                    (outcome.clone(), serde_json::json!({
                        "p50_ms": p.p50, "p99_ms": p.p99, "p999_ms": p.p999, "max_ms": p.max,
                    }))
                }).collect::<serde_json::Map<_, _>>(),
                "elapsed_s": self.elapsed.as_secs_f64(),
                "machine_cpu_busy_pct": self.machine_cpu.map(|cpu| (cpu.busy_pct * 10.0).round() / 10.0),
                "machine_cpu_steal_pct": self.machine_cpu.map(|cpu| (cpu.steal_pct * 10.0).round() / 10.0),
                "machine_cpu_us_each": self.cpu_micros_each().map(|us| us.round()),
                "verified": self.verified,
                "problems": self.problems,
            });
            if let Some(object) = object.as_object_mut() {
                object.extend(self.extra.clone());
            }
            println!("{object}");
        }
    }
}

/// What set-up made.
pub struct Fixture {
    pub integration: i64,
    pub campaign: i64,
}

/// Registers `integration`, creates a plan on it (15 % off, `{username}{discount}` codes, a
/// click-through URL, codes minted on approval) and its campaign, adds `creators` creators (ids
/// 1..=creators), and waits until CodeMintService knows the whole roster (it mints the last
/// creator's code to find out).
pub async fn set_up(
    services: &Services,
    token: &str,
    integration: RegisterIntegrationRequest,
    creators: u64,
    run: &str,
) -> anyhow::Result<Fixture> {
    let mut gateway = ProviderGatewayClient::new(services.gateway.clone());
    let mut plans = PlanServiceClient::new(services.plan.clone());
    let integration = gateway
        .register_integration(authed(integration, token)?)
        .await?
        .into_inner()
        .integration
        .map(|i| i.id)
        .unwrap_or_default();
    let plan = plans
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: format!("load {run}"),
                    integration_id: integration,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1500)),
                    }),
                    code_pattern: "{username}{discount}".into(),
                    click_url: "https://brand.example.com/load".into(),
                    code_trigger: CodeTrigger::OnApproval as i32,
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            token,
        )?)
        .await?
        .into_inner()
        .plan
        .map(|p| p.id)
        .unwrap_or_default();
    let campaign = plans
        .create_campaign(authed(
            CreateCampaignRequest {
                name: format!("load {run}"),
                plan_id: plan,
                ..Default::default()
            },
            token,
        )?)
        .await?
        .into_inner()
        .campaign
        .map(|c| c.id)
        .unwrap_or_default();

    // The roster, in batches of 500 (AddCreators), 4 batches in flight, with a progress bar.
    // The batch of the last creator goes alone, after every other one is in: the wait below
    // asks for that creator, so it must be the roster's last event.
    let added = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(1));
    let final_batch = (creators - 1) / 500 * 500 + 1;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut plans = plans.clone();
        let (added, next, token) = (added.clone(), next.clone(), token.to_owned());
        workers.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(500, Ordering::Relaxed);
                if first >= final_batch {
                    return Ok::<_, anyhow::Error>(());
                }
                let last = first + 499;
                add_roster_batch(&mut plans, &token, campaign, first..=last).await?;
                added.fetch_add(last - first + 1, Ordering::Relaxed);
            }
        }));
    }
    let bar = tokio::spawn({
        let added = added.clone();
        async move {
            loop {
                let done = added.load(Ordering::Relaxed);
                let filled = (done * 30 / creators.max(1)) as usize;
                eprint!(
                    "\rset-up: roster [{:<30}] {done}/{creators}",
                    "#".repeat(filled)
                );
                let _ = std::io::stderr().flush();
                if done >= creators {
                    eprintln!();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    for worker in workers {
        worker.await??;
    }
    add_roster_batch(&mut plans.clone(), token, campaign, final_batch..=creators).await?;
    added.fetch_add(creators - final_batch + 1, Ordering::Relaxed);
    bar.await?;

    // Wait until the mint service's projection knows the last creator (it applies in order,
    // and that creator's batch was added last);
    // a large roster takes a while, so the wait grows with it (2 minutes, plus 2 ms a creator).
    let mut mint = CodeMintServiceClient::new(services.mint.clone());
    let waiting = Instant::now();
    let deadline =
        waiting + Duration::from_secs(120) + Duration::from_millis(creators.saturating_mul(2));
    let mut told = waiting;
    loop {
        if told.elapsed() >= Duration::from_secs(5) {
            told = Instant::now();
            eprintln!(
                "set-up: waiting for CodeMintService to apply the roster ({} s)",
                waiting.elapsed().as_secs()
            );
        }
        let result = mint
            .mint_code(authed(
                MintCodeRequest {
                    campaign_id: campaign,
                    creator_id: creators as i64,
                },
                token,
            )?)
            .await;
        match result {
            Ok(_) => break,
            // Not yet: the campaign (NOT_FOUND) or the creator (FAILED_PRECONDITION) is still
            // on its way to the mint service.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::NotFound
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                anyhow::bail!("set-up: the mint service does not know the roster: {status}")
            }
        }
    }
    Ok(Fixture {
        integration,
        campaign,
    })
}

/// Adds `creators` to the campaign's roster in one AddCreators call.
async fn add_roster_batch(
    plans: &mut PlanServiceClient<Channel>,
    token: &str,
    campaign: i64,
    creators: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<()> {
    let batch: Vec<NewRosterEntry> = creators
        .map(|creator| {
            let username = format!("u{creator}");
            NewRosterEntry {
                creator_id: creator as i64,
                profile: Some(CreatorProfile {
                    first_name: "Load".into(),
                    last_name: "Test".into(),
                    email: format!("{username}@load.test"),
                    username,
                    ..Default::default()
                }),
                approved: false,
            }
        })
        .collect();
    plans
        .add_creators(authed(
            AddCreatorsRequest {
                campaign_id: campaign,
                request_id: String::new(),
                creators: batch,
            },
            token,
        )?)
        .await?;
    Ok(())
}

/// Mints a code for each creator 1..=creators (32 calls in flight) and returns them, telling
/// progress every 5 s. A call shed by the server (RESOURCE_EXHAUSTED) or that found it
/// unavailable is tried again after a pause, up to 10 times.
pub async fn mint_all(
    services: &Services,
    token: &str,
    campaign: i64,
    creators: u64,
) -> anyhow::Result<Vec<Code>> {
    let client = CodeMintServiceClient::new(services.mint.clone());
    let done = Arc::new(AtomicU64::new(0));
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let done = done.load(Ordering::Relaxed);
                eprintln!("set-up: {done} of {creators} codes minted");
            }
        })
    };
    let minted: Vec<anyhow::Result<Code>> = futures::stream::iter(1..=creators)
        .map(|creator| {
            let mut client = client.clone();
            let done = done.clone();
            async move {
                let mut pause = Duration::from_millis(100);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let request = authed(
                        MintCodeRequest {
                            campaign_id: campaign,
                            creator_id: creator as i64,
                        },
                        token,
                    )?;
                    match client.mint_code(request).await {
                        Ok(answer) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            return answer.into_inner().code.ok_or_else(|| {
                                anyhow::anyhow!("MintCode answered without a code")
                            });
                        }
                        Err(status)
                            if matches!(
                                status.code(),
                                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                            ) && attempt < 10 =>
                        {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                        }
                        Err(status) => {
                            anyhow::bail!("set-up: minting creator {creator}'s code: {status}")
                        }
                    }
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    progress.abort();
    minted.into_iter().collect()
}

/// Waits until AttributionService knows the campaign and every one of `slugs` (a `HEAD` on the
/// tracking link redirects, and is not counted as a click, once the link is in its cache): an
/// order with a code attribution has not seen yet would not be attributed.
pub async fn wait_attributable(
    channel: Channel,
    token: &str,
    campaign: i64,
    target: &web::Target,
    slugs: &[String],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attribution = AttributionServiceClient::new(channel);
    loop {
        let request = authed(
            GetCampaignPerformanceRequest {
                campaign_id: campaign,
                range: None,
            },
            token,
        )?;
        match attribution.get_campaign_performance(request).await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                anyhow::bail!("set-up: attribution does not know the campaign: {status}")
            }
        }
    }
    let mut connection = web::Connection::new(target.clone());
    for (known, slug) in slugs.iter().enumerate() {
        let uri = target.uri(&format!("/r/{slug}"))?;
        loop {
            let request = target
                .request(http::Method::HEAD, uri.clone())
                .body(Default::default())?;
            // A failed request (say, on a connection the server had just closed) is tried again
            // on a new connection until the deadline.
            let answer = connection.send(request).await;
            if matches!(answer, Ok((status, _)) if status == http::StatusCode::FOUND) {
                break;
            }
            if Instant::now() >= deadline {
                let answer = match answer {
                    Ok((status, _)) => format!("HTTP {status}"),
                    Err(err) => err.to_string(),
                };
                anyhow::bail!(
                    "set-up: attribution knows {known} of {} links ({slug}: {answer})",
                    slugs.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// The campaign's totals (all of the last 30 days).
pub async fn totals(channel: Channel, token: &str, campaign: i64) -> anyhow::Result<Figures> {
    Ok(AttributionServiceClient::new(channel)
        .get_campaign_performance(authed(
            GetCampaignPerformanceRequest {
                campaign_id: campaign,
                range: None,
            },
            token,
        )?)
        .await?
        .into_inner()
        .performance
        .and_then(|p| p.totals)
        .unwrap_or_default())
}

/// Where a figure ended after the run.
pub struct Settled {
    pub value: i64,
    /// When the figure first reached the expected value.
    pub reached: Option<Instant>,
    /// How fast the figure grew while settling (per second), from the first reading to the
    /// last: the pace of attribution once the load has stopped.
    pub pace: f64,
}

/// Polls the campaign's totals until `figure` reaches `expected` and then holds for a second
/// (so an overshoot shows), or until `timeout`.
pub async fn settle(
    channel: Channel,
    token: &str,
    campaign: i64,
    what: &str,
    expected: i64,
    timeout: Duration,
    figure: fn(&Figures) -> i64,
) -> anyhow::Result<Settled> {
    let started = Instant::now();
    let mut reached = None;
    let mut first: Option<(i64, Instant)> = None;
    loop {
        let value = figure(&totals(channel.clone(), token, campaign).await?);
        let (first_value, first_at) = *first.get_or_insert((value, Instant::now()));
        if value >= expected && reached.is_none() {
            reached = Some(Instant::now());
        }
        eprint!("\rsettling: {what} {value}/{expected}   ");
        let _ = std::io::stderr().flush();
        let held = reached.is_some_and(|at| at.elapsed() >= Duration::from_secs(1));
        if held || started.elapsed() >= timeout {
            eprintln!();
            let span = reached.unwrap_or_else(Instant::now) - first_at;
            return Ok(Settled {
                value,
                reached,
                pace: (value - first_value) as f64 / span.as_secs_f64().max(1e-3),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows a campaign's `StreamConversions` and notes when each order's conversion was first
/// seen, for the "accepted → conversion visible" latency.
pub struct ConversionWatch {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConversionWatch {
    pub async fn start(channel: Channel, token: &str, campaign: i64) -> anyhow::Result<Self> {
        let mut stream = AttributionServiceClient::new(channel)
            .stream_conversions(authed(
                StreamConversionsRequest {
                    campaign_id: campaign,
                    after_seq: 0,
                },
                token,
            )?)
            .await?
            .into_inner();
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Some(Ok(message)) = stream.next().await {
                    let at = Instant::now();
                    if let Some(conversion) = message.event.and_then(|e| e.conversion)
                        && let Ok(mut seen) = seen.lock()
                    {
                        seen.entry(conversion.store_order_id).or_insert(at);
                    }
                }
            }
        });
        Ok(Self { seen, task })
    }

    /// Stops following, and returns the lag from each order's acceptance to its conversion (a
    /// conversion seen before the acceptance answer arrived counts as 0) and how many accepted
    /// orders had no conversion.
    pub fn finish(self, accepted: &[(String, Instant)]) -> anyhow::Result<(Recorder, u64)> {
        self.task.abort();
        let lag = Recorder::new()?;
        let mut missing = 0;
        let seen = self
            .seen
            .lock()
            .map_err(|_| anyhow::anyhow!("conversion watch poisoned"))?;
        for (order, at) in accepted {
            match seen.get(order) {
                Some(seen_at) => lag.record(seen_at.saturating_duration_since(*at), None),
                None => missing += 1,
            }
        }
        Ok((lag, missing))
    }
}

/// Every item of a paged listing: `fetch` answers one page (its items and where the next one
/// starts), asked for 500 at a time.
pub async fn every_page<T>(
    mut fetch: impl AsyncFnMut(PageRequest) -> anyhow::Result<(Vec<T>, PageResponse)>,
) -> anyhow::Result<Vec<T>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let (items, page) = fetch(PageRequest {
            page_size: 500,
            page_token,
        })
        .await?;
        all.extend(items);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            return Ok(all);
        }
    }
}

/// What the campaign holds against the orders sent: each of the `acknowledged` accepted orders
/// attributed once, the `unknown` ones at most once ([`attributed_once`]), and its order count
/// right ([`orders_counted`]; `counted` is the count as settled). Returns the problems found.
pub async fn orders_verified(
    channel: Channel,
    token: &str,
    campaign: i64,
    (acknowledged, accepted): (i64, &HashSet<String>),
    unknown: &HashSet<String>,
    counted: i64,
    wait: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut problems =
        attributed_once(channel.clone(), token, campaign, accepted, unknown, wait).await?;
    problems.extend(
        orders_counted(
            channel,
            token,
            campaign,
            acknowledged,
            unknown,
            counted,
            wait,
        )
        .await?,
    );
    Ok(problems)
}

/// Every accepted order attributed exactly once: the campaign's order conversions, listed,
/// hold each accepted order's whole (their shares add up to 100 %) and no other order but
/// those whose outcome is `unknown` (each at most once). Returns the problems found (none when
/// it holds). With orders of unknown outcome, the campaign's count may have settled on them
/// before every accepted order was attributed: the conversions are read again, for up to
/// `wait`, while accepted orders are missing.
async fn attributed_once(
    channel: Channel,
    token: &str,
    campaign: i64,
    accepted: &HashSet<String>,
    unknown: &HashSet<String>,
    wait: Duration,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    loop {
        let shares = order_shares(channel.clone(), token, campaign).await?;
        let found = Attributed::of(&shares, accepted, unknown);
        if found.missing == 0 || unknown.is_empty() || started.elapsed() >= wait {
            return Ok(found.problems());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The problem, if any, with the campaign's order count (`counted`, as settled): it must be every
/// acknowledged order and, of those whose outcome is `unknown`, exactly the ones attributed.
/// With unknown orders, the count and the conversions are read again (for up to `wait`) while
/// they differ: unknown orders may still be reaching attribution.
async fn orders_counted(
    channel: Channel,
    token: &str,
    campaign: i64,
    acknowledged: i64,
    unknown: &HashSet<String>,
    counted: i64,
    wait: Duration,
) -> anyhow::Result<Option<String>> {
    if unknown.is_empty() {
        return Ok(count_problem("orders", counted, acknowledged, 0));
    }
    let started = Instant::now();
    // Two readings alike in a row: an order attributed between the count and the listing could
    // make up for a miscount once.
    let mut last = None;
    loop {
        // The count first: the conversions listed after hold every order it counts.
        let counted = totals(channel.clone(), token, campaign).await?.orders;
        let shares = order_shares(channel.clone(), token, campaign).await?;
        let stored = unknown.iter().filter(|id| shares.contains_key(*id)).count() as i64;
        let steady = last.replace((counted, stored)) == Some((counted, stored));
        if (counted == acknowledged + stored && steady) || started.elapsed() >= wait {
            return Ok((counted != acknowledged + stored).then(|| {
                format!(
                    "the campaign counts {counted} orders: {acknowledged} were acknowledged and \
                     {stored} of those of unknown outcome are attributed"
                )
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each order's shares (basis points) over the campaign's order conversions.
async fn order_shares(
    channel: Channel,
    token: &str,
    campaign: i64,
) -> anyhow::Result<HashMap<String, i64>> {
    let client = AttributionServiceClient::new(channel);
    let conversions = every_page(async |page| {
        let request = ListConversionsRequest {
            campaign_id: campaign,
            kind: ConversionKind::Order as i32,
            page: Some(page),
            ..Default::default()
        };
        let listed = client
            .clone()
            .list_conversions(authed(request, token)?)
            .await?
            .into_inner();
        Ok((listed.conversions, listed.page.unwrap_or_default()))
    })
    .await?;
    let mut shares: HashMap<String, i64> = HashMap::new();
    for conversion in conversions {
        *shares.entry(conversion.store_order_id).or_default() += i64::from(conversion.share_bps);
    }
    Ok(shares)
}

/// What a campaign's order conversions hold against the orders sent.
#[derive(Debug, PartialEq, Eq)]
struct Attributed {
    /// Accepted orders with no conversion.
    missing: usize,
    /// Orders whose shares do not add up to 100 %.
    not_whole: usize,
    /// Orders neither accepted nor of unknown outcome.
    stray: usize,
}

impl Attributed {
    fn of(
        shares: &HashMap<String, i64>,
        accepted: &HashSet<String>,
        unknown: &HashSet<String>,
    ) -> Self {
        Attributed {
            missing: accepted
                .iter()
                .filter(|id| !shares.contains_key(*id))
                .count(),
            not_whole: shares.values().filter(|bps| **bps != 10_000).count(),
            stray: shares
                .keys()
                .filter(|id| !accepted.contains(*id) && !unknown.contains(*id))
                .count(),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.missing > 0 {
            problems.push(format!(
                "{} accepted orders have no conversion",
                self.missing
            ));
        }
        if self.not_whole > 0 {
            problems.push(format!(
                "{} orders are attributed more or less than once (shares not 100 %)",
                self.not_whole
            ));
        }
        if self.stray > 0 {
            problems.push(format!(
                "{} conversions are of orders never accepted",
                self.stray
            ));
        }
        problems
    }
}

/// Counts outcomes shared by callers (e.g. how the server answered).
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A cheap deterministic random source (xorshift64*), for which deliveries to duplicate and
/// which creator an order goes to.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Attributed, Common, Flow, Pacer, Service, TIMER_LEAD, count_problem, grpc_outcome_unknown,
        http_outcome_unknown,
    };
    use clap::Parser;
    use std::collections::{HashMap, HashSet};
    use std::time::{Duration, Instant};

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        flow: Flow,
    }

    #[test]
    fn each_service_is_reached_at_its_own_address_else_at_the_suites() {
        let apart = Flags::parse_from([
            "load",
            "--plan-addr",
            "http://plan:1",
            "--mint-addr",
            "http://mint:2",
            "--gateway-addr",
            "http://gateway:3",
            "--attribution-addr",
            "http://attribution:4",
            "--gateway-http",
            "http://gateway:5",
            "--attribution-http",
            "http://attribution:6",
        ]);
        assert_eq!(
            Service::ALL.map(|service| apart.flow.addrs.of(service)),
            [
                ("--plan-addr", "http://plan:1"),
                ("--mint-addr", "http://mint:2"),
                ("--gateway-addr", "http://gateway:3"),
                ("--attribution-addr", "http://attribution:4")
            ]
        );
        let webhooks = apart.flow.webhooks().expect("an address");
        assert!(format!("{webhooks:?}").contains(r#"authority: "gateway:5""#));
        let links = apart.flow.links().expect("an address");
        assert!(format!("{links:?}").contains(r#"authority: "attribution:6""#));
        let bad = Flags::parse_from(["load", "--attribution-http", "https://a:6"]);
        let err = bad.flow.links().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("--attribution-http https://a:6: expected")),
            "{err:?}"
        );

        let together = Flags::parse_from(["load", "--addr", "http://suite:7"]);
        assert_eq!(
            Service::ALL.map(|service| together.flow.addrs.of(service)),
            [("--addr", "http://suite:7"); 4]
        );
        let links = together.flow.links().expect("an address");
        assert!(format!("{links:?}").contains(r#"authority: "127.0.0.1:8080""#));
    }

    fn ids(of: &[&str]) -> HashSet<String> {
        of.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn orders_of_unknown_outcome_may_be_attributed_once_or_not_at_all() {
        let accepted = ids(&["a", "b"]);
        let unknown = ids(&["u", "v"]);
        let shares = |of: &[(&str, i64)]| -> HashMap<String, i64> {
            of.iter()
                .map(|(id, bps)| ((*id).to_owned(), *bps))
                .collect()
        };
        let found = |of: &[(&str, i64)]| Attributed::of(&shares(of), &accepted, &unknown);
        let none = Attributed {
            missing: 0,
            not_whole: 0,
            stray: 0,
        };
        assert_eq!(found(&[("a", 10_000), ("b", 10_000)]), none);
        assert_eq!(found(&[("a", 10_000), ("b", 10_000), ("u", 10_000)]), none);
        assert_eq!(
            found(&[("a", 10_000), ("u", 20_000)]),
            Attributed {
                missing: 1,
                not_whole: 1,
                stray: 0
            },
            "an unknown order counted twice, an accepted one missing"
        );
        assert_eq!(
            found(&[("a", 10_000), ("b", 10_000), ("x", 10_000)]),
            Attributed {
                missing: 0,
                not_whole: 0,
                stray: 1
            },
            "an order never sent"
        );
        assert!(none.problems().is_empty());
    }

    #[test]
    fn a_count_holds_every_acknowledged_unit_and_at_most_the_unknown_ones() {
        assert_eq!(count_problem("orders", 10, 10, 0), None);
        assert_eq!(count_problem("orders", 13, 10, 3), None);
        assert!(count_problem("orders", 14, 10, 3).is_some());
        assert!(count_problem("orders", 9, 10, 3).is_some());
        assert!(count_problem("orders", 11, 10, 0).is_some());
    }

    #[test]
    fn only_refusals_before_a_request_is_read_are_known_to_have_done_nothing() {
        use http::StatusCode;
        use tonic::Code;
        for code in [
            Code::ResourceExhausted,
            Code::Unauthenticated,
            Code::PermissionDenied,
        ] {
            assert!(!grpc_outcome_unknown(code), "{code:?}");
        }
        for code in [
            Code::DeadlineExceeded,
            Code::Unavailable,
            Code::Cancelled,
            Code::Internal,
            Code::InvalidArgument,
        ] {
            assert!(grpc_outcome_unknown(code), "{code:?}");
        }
        for status in [StatusCode::REQUEST_TIMEOUT, StatusCode::SERVICE_UNAVAILABLE] {
            assert!(http_outcome_unknown(status), "{status}");
        }
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
        ] {
            assert!(!http_outcome_unknown(status), "{status}");
        }
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn no_request_is_due_at_or_after_the_runs_end() {
        // 10 requests/s over 64 callers: each sends every 6.4 s, so a 1 s run sends once.
        let end = Instant::now() + Duration::from_secs(1);
        let mut caller = Pacer::new(Some(10), 64, 1, 0, end);
        assert!(caller.next().await.is_some());
        let asked = Instant::now();
        assert_eq!(caller.next().await, None);
        assert!(
            asked.elapsed() < Duration::from_millis(100),
            "waited for a turn past the end"
        );
        let mut closed = Pacer::new(None, 64, 1, 0, Instant::now());
        assert_eq!(closed.next().await, None);
    }

    #[tokio::test]
    async fn open_loop_callers_send_at_an_even_rate_together() {
        // 1,000 requests/s over 4 callers: each sends every 4 ms, the four 1 ms apart.
        let mut callers: Vec<Pacer> = (0..4)
            .map(|i| Pacer::new(Some(1000), 4, 1, i, far()))
            .collect();
        let mut due = Vec::new();
        for caller in &mut callers {
            for _ in 0..3 {
                due.push(caller.scheduled);
                caller.next().await;
            }
        }
        due.sort();
        for pair in due.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > Duration::from_micros(950) && gap < Duration::from_micros(1050),
                "{gap:?} between consecutive requests"
            );
        }
        assert_eq!(due.len(), 12);
    }

    #[tokio::test]
    async fn a_request_counts_from_its_due_time_or_from_its_sending_if_earlier() {
        // Every 10 ms. On time, a caller wakes at most the timer's lead early, and then its
        // request counts from its sending, so the tool's timer is not charged to the server
        // (woken after the due time, it counts from the due time). Back after 25 ms away, the
        // request due meanwhile counts from its due time, and so does the next one, also due
        // before the caller came back.
        let mut caller = Pacer::new(Some(100), 1, 1, 0, far());
        let mut sent_early = 0;
        for _ in 0..10 {
            let due = caller.scheduled;
            let counted = caller
                .next()
                .await
                .unwrap_or_else(|| panic!("the run is on"));
            assert!(counted <= due, "counted {:?} after due", counted - due);
            assert!(counted >= due - TIMER_LEAD, "{:?} early", due - counted);
            assert!(counted <= Instant::now());
            if counted < due {
                sent_early += 1;
            }
        }
        assert!(sent_early > 0, "every request waited for its due time");
        let due = caller.scheduled;
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(caller.next().await, Some(due));
        assert_eq!(caller.next().await, Some(due + Duration::from_millis(10)));
    }

    #[tokio::test]
    async fn closed_loop_callers_send_at_once() {
        let mut caller = Pacer::new(None, 64, 1, 63, far());
        let due = caller
            .next()
            .await
            .unwrap_or_else(|| panic!("the run is on"));
        assert!(
            due.elapsed() < Duration::from_millis(50),
            "{:?}",
            due.elapsed()
        );
    }
}
