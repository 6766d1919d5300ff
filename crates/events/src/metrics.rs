//! The streams' metrics: one set per process, which the server kit serves on `/metrics` with its
//! own. Consumers' figures are labelled by the consuming schema and the stream; the event logs'
//! reads by the producing schema.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The consuming service's schema (`mint`, `attribution`).
    pub schema: String,
    /// The cursor's name (`order-events`).
    pub stream: String,
}

impl StreamLabels {
    pub fn new(schema: &str, stream: &str) -> Self {
        Self {
            schema: schema.to_owned(),
            stream: stream.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    /// The producing service's schema, whose event log is read (`plan`, `mint`, `gateway`).
    pub schema: String,
}

fn batch_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct StreamMetrics {
    /// Events applied (committed with the cursor).
    pub applied: Family<StreamLabels, Counter>,
    /// Time from taking a batch to its commit.
    pub batch_seconds: Family<StreamLabels, Histogram, fn() -> Histogram>,
    /// The last applied sequence number; with the producer's head, the consumer's lag.
    pub cursor: Family<StreamLabels, Gauge>,
    /// 1 while this process holds the stream's consumer lock, 0 on a standby.
    pub active: Family<StreamLabels, Gauge>,
    /// Times the consumer stopped and resumed from its cursor: the producer unreachable, or a
    /// batch that failed. Rising while the cursor stands still: a consumer stuck on an event.
    pub interruptions: Family<StreamLabels, Counter>,
    /// Reads of an event log by the Watch streams following it: one per page replayed, then one
    /// per wake-up by a commit (a watcher that has caught up waits for the next one), and one per
    /// idle watcher every 5 s (the safety poll) or after the listener reconnects.
    pub log_reads: Family<LogLabels, Counter>,
}

/// The process's stream metrics.
pub fn stream_metrics() -> &'static StreamMetrics {
    static METRICS: OnceLock<StreamMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StreamMetrics {
        applied: Family::default(),
        batch_seconds: Family::new_with_constructor(batch_histogram),
        cursor: Family::default(),
        active: Family::default(),
        interruptions: Family::default(),
        log_reads: Family::default(),
    })
}

impl StreamMetrics {
    /// Adds these metrics to a registry (the families are shared, so every registry shows the
    /// same figures).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stream_events_applied",
            "Events applied by stream consumers, by consuming schema and stream",
            self.applied.clone(),
        );
        registry.register(
            "stream_batch_duration_seconds",
            "Time stream consumers take to apply and commit one batch",
            self.batch_seconds.clone(),
        );
        registry.register(
            "stream_cursor",
            "Last sequence number a stream consumer applied",
            self.cursor.clone(),
        );
        registry.register(
            "stream_consumer_active",
            "1 while this process is the stream's active consumer, 0 while it stands by",
            self.active.clone(),
        );
        registry.register(
            "stream_interruptions",
            "Times a stream consumer stopped (producer unreachable, a batch failed) and resumed from its cursor",
            self.interruptions.clone(),
        );
        registry.register(
            "stream_log_reads",
            "Reads of a service's event log by the Watch streams following it, by producing schema",
            self.log_reads.clone(),
        );
    }
}
