//! Applying an upstream service's event stream, exactly once, with one active consumer per stream.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tracking_db::{Database, DbError};

use crate::metrics::{StreamLabels, stream_metrics};

/// Why an upstream stream could not be opened or broke off (it is reopened after a backoff).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, as trait methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The events of an opened source, each with its sequence number.
pub type EventStream<E> = BoxStream<'static, Result<(i64, E), SourceError>>;

/// Where events come from: usually a gRPC `Watch*` stream of another service.
pub trait Source: Send {
    type Event: Send + Sync + 'static;
    /// Opens the stream of events with `seq > after_seq`, each paired with its seq.
    fn open(
        &mut self,
        after_seq: i64,
    ) -> BoxFuture<'_, Result<EventStream<Self::Event>, SourceError>>;
}

/// What a consumer does with each event, inside the transaction that also advances its cursor.
pub trait Apply<E: Sync>: Send + Sync {
    fn apply<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        seq: i64,
        event: &'a E,
    ) -> BoxFuture<'a, Result<(), DbError>>;

    /// Applies a batch of events (with their sequence numbers, in order) in one transaction.
    /// The default applies them one by one; a consumer overrides it to apply a batch with
    /// set-based statements, with the same outcome as applying the events one at a time.
    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        events: &'a [(i64, E)],
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            for (seq, event) in events {
                self.apply(conn, *seq, event).await?;
            }
            Ok(())
        })
    }
}

#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// The cursor's name, unique per (upstream stream, downstream service), e.g. `plan-events`.
    pub stream: &'static str,
    /// Most events applied in one transaction (they are taken only as fast as they arrive).
    pub batch: usize,
    /// How often a standby replica retries for the consumer lock.
    pub standby_retry: Duration,
}

impl ConsumerOptions {
    pub fn new(stream: &'static str) -> Self {
        Self {
            stream,
            batch: 256,
            standby_retry: Duration::from_secs(2),
        }
    }
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// Runs until `shutdown`: waits to become the single active consumer of `options.stream`, then
/// applies events from its stored cursor on, reconnecting to the source after errors.
pub async fn run_consumer<S, A>(
    db: Database,
    options: ConsumerOptions,
    mut source: S,
    apply: A,
    shutdown: CancellationToken,
) where
    S: Source,
    A: Apply<S::Event>,
{
    let stream = options.stream;
    let labels = StreamLabels::new(db.schema(), stream);
    let active = stream_metrics().active.get_or_create(&labels).clone();
    let interruptions = stream_metrics()
        .interruptions
        .get_or_create(&labels)
        .clone();
    // Back to 0 however this returns (shutdown, or the task dropped).
    let _standing_down = DropGuard(|| {
        active.set(0);
    });
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        // The session lock lives as long as this connection: if this process dies, PostgreSQL
        // releases it and a standby takes over.
        let mut lock_conn = match acquire_lock(&db, &options, &shutdown).await {
            Some(conn) => conn,
            None => return,
        };
        tracing::info!(stream, "stream consumer active");
        active.set(1);
        loop {
            let mut progressed = false;
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = consume(&db, &options, &mut source, &apply, &mut progressed) => result,
                // A lost lock connection means another replica may take over: stop applying.
                lost = lock_lost(&mut lock_conn) => Err(lost),
            };
            let Err(stopped) = result;
            let wait = backoff.after(progressed);
            match stopped {
                ConsumeError::LockLost(reason) => {
                    tracing::warn!(stream, %reason, "stream consumer lost its lock");
                    active.set(0);
                    break;
                }
                ConsumeError::Failed(reason) => {
                    interruptions.inc();
                    tracing::warn!(stream, %reason, ?wait, "stream consumer interrupted, resuming");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

enum ConsumeError {
    LockLost(String),
    Failed(String),
}

/// How long a consumer waits before it resumes after an interruption: from 100 ms, doubling up
/// to 5 s while it gets nowhere, and from 100 ms again once it has applied anything (an upstream
/// restart now and then must not leave every later one waiting 5 s).
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(5);

    /// The wait after an interruption; `progressed` when a batch was applied since the last.
    fn after(&mut self, progressed: bool) -> Duration {
        if progressed {
            self.0 = Self::FIRST;
        }
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MOST);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Self::FIRST)
    }
}

async fn acquire_lock(
    db: &Database,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) -> Option<AsyncPgConnection> {
    let mut standby_logged = false;
    loop {
        let attempt = async {
            let mut conn = db.dedicated().await?;
            let row: Locked = tracking_db::prepared(
                "select pg_try_advisory_lock(hashtext(current_schema() || '.consumer.' || $1)) as locked",
            )
            .bind::<Text, _>(options.stream)
            .get_result(&mut conn)
            .await?;
            Ok::<_, DbError>(row.locked.then_some(conn))
        };
        match attempt.await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) if !standby_logged => {
                tracing::info!(
                    stream = options.stream,
                    "another replica consumes this stream, standing by"
                );
                standby_logged = true;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(stream = options.stream, error = %err, "cannot take the consumer lock")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(options.standby_retry) => {}
        }
    }
}

/// Resolves when the lock connection stops answering (checked every few seconds, each check
/// given 10 s: a server that vanished without closing the connection never answers).
async fn lock_lost(conn: &mut AsyncPgConnection) -> ConsumeError {
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let probe = tracking_db::prepared("select 1").execute(conn);
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return ConsumeError::LockLost(err.to_string()),
            Err(_) => return ConsumeError::LockLost("no answer in 10 s".to_owned()),
        }
    }
}

/// Applies the stream from the stored cursor until it is interrupted (it never ends otherwise),
/// setting `progressed` once a batch is applied.
async fn consume<S, A>(
    db: &Database,
    options: &ConsumerOptions,
    source: &mut S,
    apply: &A,
    progressed: &mut bool,
) -> Result<std::convert::Infallible, ConsumeError>
where
    S: Source,
    A: Apply<S::Event>,
{
    let failed = |e: &dyn std::fmt::Display| ConsumeError::Failed(e.to_string());
    let mut cursor = load_cursor(db, options.stream)
        .await
        .map_err(|e| failed(&e))?;
    let labels = StreamLabels::new(db.schema(), options.stream);
    let metrics = stream_metrics();
    let (applied, batch_seconds, cursor_gauge) = (
        metrics.applied.get_or_create(&labels).clone(),
        metrics.batch_seconds.get_or_create(&labels).clone(),
        metrics.cursor.get_or_create(&labels).clone(),
    );
    cursor_gauge.set(cursor);
    let events = source.open(cursor).await.map_err(|e| failed(&e))?;
    // The next batch is received and decoded while this one's transaction runs: a reader task
    // keeps up to a batch of events ready.
    let batch_size = options.batch.max(1);
    let (ready, mut received) = tokio::sync::mpsc::channel(batch_size);
    let reader = tokio::spawn(read_ahead(events, ready));
    let _stop_reading = DropGuard(move || reader.abort());
    let mut batch = Vec::with_capacity(batch_size);
    // Waits for one event, then takes every event ready, up to a batch.
    while received.recv_many(&mut batch, batch_size).await > 0 {
        let mut items = Vec::with_capacity(batch.len());
        for item in batch.drain(..) {
            let (seq, event) = item.map_err(|e| failed(&e))?;
            // Defensive: a source may replay from before our cursor.
            if seq > cursor {
                items.push((seq, event));
            }
        }
        let Some(&(last, _)) = items.last() else {
            continue;
        };
        let started = std::time::Instant::now();
        let mut conn = db.conn().await.map_err(|e| failed(&e))?;
        let expected = cursor;
        conn.transaction::<_, DbError, _>(async |conn| {
            apply.apply_batch(conn, &items).await?;
            advance_cursor(conn, options.stream, expected, last).await
        })
        .await
        .map_err(|e| failed(&e))?;
        let elapsed = started.elapsed();
        tracing::debug!(
            stream = options.stream,
            events = items.len(),
            seq = last,
            elapsed_us = elapsed.as_micros() as u64,
            "batch applied"
        );
        applied.inc_by(items.len() as u64);
        batch_seconds.observe(elapsed.as_secs_f64());
        cursor_gauge.set(last);
        cursor = last;
        *progressed = true;
    }
    Err(ConsumeError::Failed("source stream ended".to_owned()))
}

/// Forwards `events` until the stream ends, fails (the error is forwarded too) or the consumer
/// stops listening.
async fn read_ahead<E>(
    mut events: EventStream<E>,
    ready: tokio::sync::mpsc::Sender<Result<(i64, E), SourceError>>,
) {
    while let Some(item) = events.next().await {
        let failed = item.is_err();
        if ready.send(item).await.is_err() || failed {
            return;
        }
    }
}

async fn load_cursor(db: &Database, stream: &str) -> Result<i64, DbError> {
    let mut conn = db.conn().await?;
    let row = tracking_db::prepared("select seq from stream_cursors where stream = $1")
        .bind::<Text, _>(stream)
        .get_result::<CursorRow>(&mut conn)
        .await
        .optional()?;
    Ok(row.map_or(0, |r| r.seq))
}

/// Moves the cursor from `expected` to `to`; fails (rolling the batch back) if another consumer
/// moved it in the meantime, so a batch can never be applied twice.
async fn advance_cursor(
    conn: &mut AsyncPgConnection,
    stream: &str,
    expected: i64,
    to: i64,
) -> Result<(), DbError> {
    let updated = tracking_db::prepared(
        "insert into stream_cursors (stream, seq) values ($1, $3) \
         on conflict (stream) do update set seq = excluded.seq, updated_at = now() \
         where stream_cursors.seq = $2 \
         returning seq",
    )
    .bind::<Text, _>(stream)
    .bind::<BigInt, _>(expected)
    .bind::<BigInt, _>(to)
    .get_result::<CursorRow>(conn)
    .await
    .optional()?;
    match updated {
        Some(_) => Ok(()),
        None => Err(DbError::Other(format!(
            "cursor of {stream} moved past {expected} by another consumer"
        ))),
    }
}

/// Runs its closure when dropped.
struct DropGuard<F: FnMut()>(F);

impl<F: FnMut()> Drop for DropGuard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_while_nothing_is_applied_and_starts_over_after_progress() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| backoff.after(false).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(backoff.after(true), Duration::from_millis(100));
        assert_eq!(backoff.after(false), Duration::from_millis(200));
    }
}
