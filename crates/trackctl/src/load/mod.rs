//! `trackctl load`: drives the suite's hot paths through their public APIs, ghz-style: a live
//! progress line, then requests/s, latency percentiles (HDR histogram, corrected for coordinated
//! omission under `--rate`), errors by gRPC code, and a verification of the outcome through the
//! public RPCs. A run whose verification fails exits non-zero.

pub mod mint;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// What every load run shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The suite's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Concurrent callers (unary) or streams (stream mode).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to drive load, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = tracking_server::parse_duration)]
    pub duration: Duration,
    /// Hold this many requests/s in total (open loop) instead of as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Print the summary as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// gRPC connections the callers share (HTTP/2 multiplexes callers over each).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
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
}

struct Recorded {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Mutex::new(Recorded {
                // 1 µs .. 60 s, 3 significant digits.
                latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
                ok: 0,
                errors: BTreeMap::new(),
            })),
        })
    }

    /// Records one request's latency (µs) and outcome (`None` for success).
    pub fn record(&self, latency: Duration, error: Option<String>) {
        if let Ok(mut r) = self.inner.lock() {
            let micros = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, 60_000_000);
            let _ = r.latency.record(micros);
            match error {
                None => r.ok += 1,
                Some(code) => *r.errors.entry(code).or_default() += 1,
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        self.inner
            .lock()
            .map(|r| (r.ok, r.errors.values().sum()))
            .unwrap_or_default()
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
    pub elapsed: Duration,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub verified: bool,
    pub notes: Vec<String>,
}

impl Summary {
    pub fn from(path: &str, recorder: &Recorder, elapsed: Duration) -> Summary {
        let (latency, ok, errors) = recorder
            .inner
            .lock()
            .map(|r| (r.latency.clone(), r.ok, r.errors.clone()))
            .unwrap_or_else(|_| {
                (
                    Histogram::new(3).unwrap_or_else(|_| unreachable!()),
                    0,
                    BTreeMap::new(),
                )
            });
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            path: path.to_owned(),
            elapsed,
            ok,
            errors,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: latency.max() as f64 / 1000.0,
            verified: false,
            notes: Vec::new(),
        }
    }

    pub fn requests_per_second(&self) -> f64 {
        let total = self.ok + self.errors.values().sum::<u64>();
        total as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, json: bool) {
        println!("\nSummary: {}", self.path);
        println!("  elapsed       {:.2}s", self.elapsed.as_secs_f64());
        println!("  requests/s    {:.0}", self.requests_per_second());
        println!("  ok            {}", self.ok);
        println!(
            "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        if self.errors.is_empty() {
            println!("  errors        none");
        } else {
            for (code, count) in &self.errors {
                println!("  errors        {code}: {count}");
            }
        }
        for note in &self.notes {
            println!("  {note}");
        }
        println!(
            "  verified      {}",
            if self.verified { "yes" } else { "NO" }
        );
        if json {
            let object = serde_json::json!({
                "path": self.path,
                "requests_per_second": (self.requests_per_second() * 10.0).round() / 10.0,
                "ok": self.ok,
                "errors": self.errors.values().sum::<u64>(),
                "errors_by_code": self.errors,
                "p50_ms": self.p50_ms,
                "p90_ms": self.p90_ms,
                "p99_ms": self.p99_ms,
                "p999_ms": self.p999_ms,
                "max_ms": self.max_ms,
                "elapsed_s": self.elapsed.as_secs_f64(),
                "verified": self.verified,
            });
            println!("{object}");
        }
    }
}
