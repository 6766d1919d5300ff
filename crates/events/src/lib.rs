//! Durable, resumable event streams between services (DESIGN.md, "Coordination").
//!
//! - [`append`] writes events into the service's outbox (`events` table) inside the caller's
//!   transaction, so an event exists if and only if its state change committed; [`appending`]
//!   does the same inside a producer's own statement.
//! - [`EventLog`] reads the outbox: [`EventLog::watch`] replays from a sequence number and then
//!   follows new events live, woken by LISTEN/NOTIFY (no busy polling).
//! - [`run_consumer`] applies an upstream stream to a downstream service, storing its cursor in
//!   the same transaction as the applied changes, with one active consumer per stream across
//!   replicas (a session advisory lock) and an optimistic cursor check as a second guard; its
//!   progress is in [`stream_metrics`], with the event logs' reads.

mod consumer;
mod log;
mod metrics;

pub use consumer::{
    Apply, BoxFuture, ConsumerOptions, EventStream, Source, SourceError, run_consumer,
};
pub use log::{
    EventLog, MAX_BRAND_WATCHERS, MAX_NOTIFIED_BRANDS, NewEvent, StoredEvent, TooManyWatchers,
    append, appending, listen,
};
pub use metrics::{LogLabels, StreamLabels, StreamMetrics, stream_metrics};

use tracking_db::Migrations;

/// The `events` and `stream_cursors` tables, applied into every service schema.
pub const MIGRATIONS: Migrations = Migrations {
    embedded: diesel_migrations::embed_migrations!("migrations"),
    source_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
};
