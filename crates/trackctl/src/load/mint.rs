//! `trackctl load mint`: sets up a sandbox integration, a plan, a campaign and a roster through
//! the public RPCs, then drives `MintCode` (unary callers) or `MintCodes` (bidirectional
//! streams), and verifies through `ListCodes` that every acknowledged code exists exactly once
//! and that codes are unique per integration.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tracking_api::common::v1::{PageRequest, Provider};
use tracking_api::gateway::v1::RegisterIntegrationRequest;
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_api::mint::v1::{
    CodeStatus, ListCodesRequest, MintCodeRequest, MintCodesRequest, mint_codes_response,
};

use super::{
    Addrs, Common, Fixture, Pacer, Recorder, Service, Summary, authed, every_page, load_call,
    progress, run_id, set_up,
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `MintCode`, one call per code, `--concurrency` callers.
    Unary,
    /// `MintCodes`, `--concurrency` bidirectional streams.
    Stream,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MintLoad {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub addrs: Addrs,
    #[arg(long, value_enum, default_value = "unary")]
    pub mode: Mode,
    /// Creators on the roster; requests beyond it return existing codes (idempotent path).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub creators: u64,
    /// Requests each stream keeps in flight (stream mode).
    #[arg(long, default_value_t = 512, value_parser = super::at_least_one)]
    pub window: usize,
    /// Longest wait, after the run, for every minted code to be pushed to the (sandbox) store
    /// and active: the rate the suite sustains end to end, not only the rate it acknowledges.
    #[arg(long, default_value = "60s", value_parser = tracking_server::parse_duration)]
    pub settle: Duration,
}

/// What the calls answered: each code's id with the creator it was asked for and its text (as
/// first answered: a later answer may carry the text a store collision suffixed since).
#[derive(Clone, Default)]
struct Acks {
    codes: HashMap<i64, (i64, String)>,
    /// Answers of a code already given to another creator.
    conflicts: u64,
}

impl Acks {
    fn add(&mut self, id: i64, creator: i64, text: String) {
        match self.codes.entry(id) {
            std::collections::hash_map::Entry::Occupied(held) => {
                if held.get().0 != creator {
                    self.conflicts += 1;
                }
            }
            std::collections::hash_map::Entry::Vacant(free) => {
                free.insert((creator, text));
            }
        }
    }
}

type Acked = Arc<Mutex<Acks>>;

pub async fn run(load: MintLoad, token: &str) -> anyhow::Result<Summary> {
    let common = &load.common;
    if load.mode == Mode::Stream {
        super::no_timeout(common, "MintCodes streams")?;
    }
    let services = load
        .addrs
        .connect(&[Service::Plan, Service::Mint, Service::Gateway])
        .await?;
    let channels = load
        .addrs
        .load_channels(Service::Mint, common.connections)
        .await?;
    let run = run_id()?;
    let sandbox = RegisterIntegrationRequest {
        provider: Provider::Sandbox as i32,
        name: format!("load {run}"),
        ..Default::default()
    };
    let fixture = set_up(&services, token, sandbox, load.creators, &run).await?;
    eprintln!(
        "set-up: integration {}, campaign {}, {} creators",
        fixture.integration, fixture.campaign, load.creators
    );

    let recorder = Recorder::new()?;
    let acked: Acked = Arc::default();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + common.duration;
    let ticker = progress(recorder.clone(), started, common.duration);
    let mut tasks = Vec::new();
    for worker in 0..common.concurrency {
        let channel = channels[worker % channels.len()].clone();
        let ctx = Worker {
            client: CodeMintServiceClient::new(channel),
            token: token.to_owned(),
            recorder: recorder.clone(),
            acked: acked.clone(),
            counter: counter.clone(),
            campaign: fixture.campaign,
            creators: load.creators,
            pacer: Pacer::new(common.rate, common.concurrency, 1, worker, deadline),
            timeout: common.timeout,
        };
        tasks.push(match load.mode {
            Mode::Unary => tokio::spawn(ctx.unary()),
            Mode::Stream => tokio::spawn(ctx.stream(load.window)),
        });
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let mut summary = Summary::from(
        match load.mode {
            Mode::Unary => "mint unary (MintCode)",
            Mode::Stream => "mint stream (MintCodes)",
        },
        &recorder,
        elapsed,
    );
    let _ = ticker.await;
    let acks = acked.lock().await.clone();
    let acked = &acks.codes;
    let pushed = wait_pushed(services.mint.clone(), token, &fixture, load.settle).await?;
    let (problems, codes) = verify(services.mint, token, &fixture, &acks).await?;
    let mut notes = vec![codes];
    // Requests past the roster size return existing codes; this is the rate of new ones.
    notes.push(format!(
        "new codes/s   {:.0} (distinct codes acknowledged / elapsed; raise --creators to keep every request new)",
        acked.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    ));
    let pushed_s = pushed.map(|at| (at - started).as_secs_f64());
    notes.push(match pushed_s {
        Some(s) => format!(
            "pushed        every code active at the store {s:.2}s after the load began ({:.0} codes/s end to end)",
            acked.len() as f64 / s.max(1e-9)
        ),
        None => format!(
            "pushed        codes still pending at the store after --settle {:?}",
            load.settle
        ),
    });
    summary.notes = notes;
    summary.verified_by(&problems, load.common.allow_errors);
    summary.extra.insert("new_codes".into(), acked.len().into());
    summary.extra.insert("pushed_s".into(), pushed_s.into());
    Ok(summary)
}

/// Waits until no code of the campaign is pending (every one pushed to the store and active),
/// up to `timeout`; returns when that was first seen.
async fn wait_pushed(
    channel: Channel,
    token: &str,
    fixture: &Fixture,
    timeout: Duration,
) -> anyhow::Result<Option<Instant>> {
    let mut mint = CodeMintServiceClient::new(channel);
    let started = Instant::now();
    loop {
        let asked = Instant::now();
        let pending = mint
            .list_codes(authed(
                ListCodesRequest {
                    campaign_id: fixture.campaign,
                    status: CodeStatus::Pending as i32,
                    page: Some(PageRequest {
                        page_size: 500,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                },
                token,
            )?)
            .await?
            .into_inner()
            .codes
            .len();
        let took = asked.elapsed();
        if pending == 0 {
            eprintln!();
            return Ok(Some(Instant::now()));
        }
        if started.elapsed() >= timeout {
            eprintln!();
            return Ok(None);
        }
        let shown = if pending < 500 {
            pending.to_string()
        } else {
            "500 or more".to_owned()
        };
        eprint!("\rsettling: codes waiting for their push: {shown}   ");
        let _ = std::io::Write::flush(&mut std::io::stderr());
        // Asking reads a page of the campaign's pending codes from the database the pushes are
        // waiting for; a measuring tool should not load what it measures: ask at most a fifth of
        // the time.
        tokio::time::sleep(Duration::from_millis(200).max(took * 4)).await;
    }
}

struct Worker {
    client: CodeMintServiceClient<Channel>,
    token: String,
    recorder: Recorder,
    acked: Acked,
    counter: Arc<AtomicU64>,
    campaign: i64,
    creators: u64,
    pacer: Pacer,
    /// Each `MintCode` call's deadline (`--timeout`).
    timeout: Option<Duration>,
}

impl Worker {
    fn next_creator(&self) -> i64 {
        (self.counter.fetch_add(1, Ordering::Relaxed) % self.creators + 1) as i64
    }

    async fn unary(mut self) -> anyhow::Result<()> {
        while let Some(due) = self.pacer.next().await {
            let creator = self.next_creator();
            let request = load_call(
                MintCodeRequest {
                    campaign_id: self.campaign,
                    creator_id: creator,
                },
                &self.token,
                self.timeout,
            )?;
            let result = self.client.mint_code(request).await;
            let latency = due.elapsed();
            match result {
                Ok(response) => match response.into_inner().code {
                    // Kept as given to the creator asked for: verified against the stored code's.
                    Some(code) => {
                        self.acked.lock().await.add(code.id, creator, code.code);
                        self.recorder.record(latency, None);
                    }
                    None => self.recorder.record(latency, Some("Empty".to_owned())),
                },
                Err(status) => self
                    .recorder
                    .record(latency, Some(format!("{:?}", status.code()))),
            }
        }
        Ok(())
    }

    async fn stream(mut self, window: usize) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<MintCodesRequest>(window);
        // A stream refused or ended with an error is counted as that error; the run goes on
        // with the other streams.
        let response = match self
            .client
            .mint_codes(authed(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                &self.token,
            )?)
            .await
        {
            Ok(response) => response,
            Err(status) => {
                self.recorder
                    .record(Duration::ZERO, Some(format!("{:?}", status.code())));
                return Ok(());
            }
        };
        let mut inbound = response.into_inner();
        // Each request in flight: when it was due or sent, and the creator it asked for.
        let sent_at: Arc<Mutex<HashMap<String, (Instant, i64)>>> = Arc::default();
        let permits = Arc::new(tokio::sync::Semaphore::new(window));
        let sender = {
            let sent_at = sent_at.clone();
            let permits = permits.clone();
            let counter = self.counter.clone();
            let (creators, campaign, mut pacer) = (self.creators, self.campaign, self.pacer);
            tokio::spawn(async move {
                let mut tag = 0u64;
                // Under `--rate`, timed from the request's turn: the wait for a free place in
                // the window is the server's slowness, not the tool's (without a rate, the
                // window is what paces the stream: timed from the sending).
                while let Some(due) = pacer.next().await {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    permit.forget();
                    tag += 1;
                    let creator = (counter.fetch_add(1, Ordering::Relaxed) % creators + 1) as i64;
                    let key = tag.to_string();
                    let from = if pacer.paced() { due } else { Instant::now() };
                    sent_at.lock().await.insert(key.clone(), (from, creator));
                    if tx
                        .send(MintCodesRequest {
                            tag: key,
                            campaign_id: campaign,
                            creator_id: creator,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        };
        while let Some(message) = inbound.next().await {
            let message = match message {
                Ok(message) => message,
                Err(status) => {
                    // Its requests in flight have that error for an answer.
                    sender.abort();
                    let error = format!("{:?}", status.code());
                    let unanswered: Vec<Instant> = sent_at
                        .lock()
                        .await
                        .drain()
                        .map(|(_, (at, _))| at)
                        .collect();
                    if unanswered.is_empty() {
                        self.recorder.record(Duration::ZERO, Some(error.clone()));
                    }
                    for at in unanswered {
                        self.recorder.record(at.elapsed(), Some(error.clone()));
                    }
                    return Ok(());
                }
            };
            permits.add_permits(1);
            let sent = sent_at.lock().await.remove(&message.tag);
            let latency = sent.map_or(Duration::ZERO, |(at, _)| at.elapsed());
            match (message.result, sent) {
                // Kept as given to the creator asked for: verified against the stored code's.
                (Some(mint_codes_response::Result::Code(code)), Some((_, creator))) => {
                    self.acked.lock().await.add(code.id, creator, code.code);
                    self.recorder.record(latency, None);
                }
                (Some(mint_codes_response::Result::Code(_)), None) => {
                    self.recorder.record(latency, Some("UnknownTag".to_owned()));
                }
                (Some(mint_codes_response::Result::Error(error)), _) => {
                    let code = tonic::Code::from(error.grpc_code);
                    self.recorder.record(latency, Some(format!("{code:?}")));
                }
                (None, _) => self.recorder.record(latency, Some("Empty".to_owned())),
            }
            if sender.is_finished() && sent_at.lock().await.is_empty() {
                break;
            }
        }
        sender.await?;
        Ok(())
    }
}

/// Every acknowledged code exists exactly once, belongs to the creator it was asked for, and no
/// two codes of the integration are equal ignoring case.
async fn verify(
    channel: Channel,
    token: &str,
    fixture: &Fixture,
    acks: &Acks,
) -> anyhow::Result<(Vec<String>, String)> {
    let mint = CodeMintServiceClient::new(channel);
    let codes = every_page(async |page| {
        let request = ListCodesRequest {
            campaign_id: fixture.campaign,
            page: Some(page),
            ..Default::default()
        };
        let listed = mint
            .clone()
            .list_codes(authed(request, token)?)
            .await?
            .into_inner();
        Ok((listed.codes, listed.page.unwrap_or_default()))
    })
    .await?;
    let mut stored: HashMap<i64, (i64, String)> = HashMap::new();
    let mut duplicate_rows = 0;
    for code in codes {
        if stored
            .insert(code.id, (code.creator_id, code.code))
            .is_some()
        {
            duplicate_rows += 1;
        }
    }
    let acked = &acks.codes;
    let mut problems = Vec::new();
    if acks.conflicts > 0 {
        problems.push(format!(
            "{} answers gave a creator a code already given to another",
            acks.conflicts
        ));
    }
    if acked.is_empty() {
        problems.push("no code was acknowledged".to_owned());
    }
    let missing = acked.keys().filter(|id| !stored.contains_key(id)).count();
    let mismatched = acked
        .iter()
        .filter(|(id, value)| stored.get(id).is_some_and(|s| s != *value))
        .count();
    let mut seen = HashSet::new();
    let duplicates = stored
        .values()
        .filter(|(_, code)| !seen.insert(code.to_lowercase()))
        .count();
    let mut creators = HashSet::new();
    let creators_twice = stored
        .values()
        .filter(|(creator, _)| !creators.insert(*creator))
        .count();
    if missing > 0 {
        problems.push(format!("{missing} acknowledged codes are missing"));
    }
    if mismatched > 0 {
        problems.push(format!(
            "{mismatched} codes differ from what was acknowledged (their text, or the creator they were given to)"
        ));
    }
    if duplicates + duplicate_rows > 0 {
        problems.push(format!("{} duplicate codes", duplicates + duplicate_rows));
    }
    if creators_twice > 0 {
        problems.push(format!("{creators_twice} creators hold more than one code"));
    }
    let note = format!(
        "codes         {} acknowledged distinct, {} stored in the campaign",
        acked.len(),
        stored.len()
    );
    Ok((problems, note))
}
