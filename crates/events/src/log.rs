//! The outbox: appending events in the producer's transaction, and reading them back as a
//! replay-then-follow stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracking_db::{Database, DbError};

use crate::metrics::{LogLabels, stream_metrics};

/// An event to append: the payload is the producing service's encoded protobuf event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub brand_id: i64,
    /// Short machine name of what happened (e.g. `plan_created`), for operators and filters.
    pub kind: &'static str,
    pub payload: Vec<u8>,
}

/// An event read back from the outbox.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredEvent {
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = BigInt)]
    pub brand_id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Binary)]
    pub payload: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(QueryableByName)]
struct SeqRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// Appends `events` to the outbox of the connection's schema, in the caller's transaction, and
/// returns their sequence numbers in order.
///
/// Call it last in the transaction: it takes the schema's outbox lock, which is held until
/// commit so that sequence order is commit order (a reader never skips a slower transaction's
/// lower number). Watchers are woken by a NOTIFY delivered at commit.
pub async fn append(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent],
) -> Result<Vec<i64>, DbError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let brands: Vec<i64> = events.iter().map(|e| e.brand_id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let rows: Vec<SeqRow> = tracking_db::prepared(format!(
        "with new_events as ( \
           select * from unnest($1::bigint[], $2::text[], $3::bytea[]) with ordinality \
             as e(brand_id, kind, payload, n)), \
         {} \
         select seq from appended",
        appending("new_events")
    ))
    .bind::<Array<BigInt>, _>(brands)
    .bind::<Array<Text>, _>(kinds)
    .bind::<Array<Binary>, _>(payloads)
    .load(conn)
    .await?;
    let mut seqs: Vec<i64> = rows.into_iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// The outbox append as the last two common table expressions (`gate`, `appended`) of a
/// producer's own statement, for a producer that changes its state and appends the events in
/// one statement (one round trip, no explicit transaction) instead of calling [`append`].
/// `rows` names an earlier expression with the columns `brand_id`, `kind`, `payload` and `n`
/// (the order to number them in); `appended` returns each `seq`.
///
/// The `gate` counts `rows` first: the rows a statement's changes decide (those returning from
/// its insert, say) are all known before the lock is taken. Its other changes should be read by
/// its main query, which runs before `appended` (an expression the main query does not read runs
/// after it): then the statement never holds the outbox lock while it waits on a row another
/// transaction holds. No rows: no lock, no NOTIFY. Every event row joins the gate, so the lock is
/// held before the first `nextval`, until commit. The NOTIFY names the events' brands (up to
/// [`MAX_NOTIFIED_BRANDS`]; past that, or empty, it concerns every brand), so that a brand's
/// watchers read only for their brand's commits.
pub fn appending(rows: &str) -> String {
    format!(
        "gate as materialized ( \
           select pg_advisory_xact_lock(hashtext(current_schema() || '.events')) as locked, \
                  pg_notify(current_schema() || '_events', r.brands) as notified \
           from (select count(*) as events, \
                   case when count(distinct brand_id) <= {MAX_NOTIFIED_BRANDS} \
                     then string_agg(distinct brand_id::text, ',') else '' end as brands \
                 from {rows}) r where r.events > 0), \
         appended as ( \
           insert into events (seq, brand_id, kind, payload) \
           select nextval('events_seq'), e.brand_id, e.kind, e.payload \
           from gate cross join {rows} e \
           order by e.n \
           returning seq)"
    )
}

/// The most brands a commit's NOTIFY names (its payload stays far below PostgreSQL's 8,000
/// bytes); a commit of more brands wakes every watcher.
pub const MAX_NOTIFIED_BRANDS: usize = 100;

/// Which brands the log's notifications announced, by generation (see [`listen`]): a brand's
/// watcher that has read up to generation `g` reads again only once its brand, or every brand,
/// was announced after `g`.
#[derive(Default)]
struct Announced {
    /// The last generation that concerned every brand (a NOTIFY naming none, the listener's
    /// reconnect, a forgetting of the brands below).
    everyone: u64,
    /// Each brand's last announcing generation.
    brands: HashMap<i64, u64>,
}

/// Brands [`Announced`] remembers before it forgets them all (waking every watcher once).
const MAX_ANNOUNCED_BRANDS: usize = 100_000;

impl Announced {
    /// Notes a notification's `payload` (brand ids, comma-separated; anything else concerns
    /// every brand) as `generation`.
    fn note(&mut self, generation: u64, payload: &str) {
        let brands: Option<Vec<i64>> = (!payload.is_empty())
            .then(|| payload.split(',').map(|id| id.parse().ok()).collect())
            .flatten();
        match brands {
            Some(brands) if self.brands.len() + brands.len() <= MAX_ANNOUNCED_BRANDS => {
                for brand in brands {
                    self.brands.insert(brand, generation);
                }
            }
            _ => self.everyone_at(generation),
        }
    }

    fn everyone_at(&mut self, generation: u64) {
        self.everyone = generation;
        self.brands.clear();
    }

    /// Whether `brand` (every brand: `None`) was announced after `seen`.
    fn since(&self, brand: Option<i64>, seen: u64) -> bool {
        self.everyone > seen
            || brand.is_none_or(|brand| self.brands.get(&brand).is_some_and(|at| *at > seen))
    }
}

/// Reads one service's outbox and wakes watchers when it grows.
#[derive(Clone)]
pub struct EventLog {
    db: Database,
    grown: watch::Receiver<u64>,
    announced: Arc<Mutex<Announced>>,
    shutdown: CancellationToken,
    /// Counts the watchers' reads ([`crate::StreamMetrics::log_reads`]).
    reads: Counter,
    /// Each brand's watchers following the log now ([`MAX_BRAND_WATCHERS`]).
    watchers: Arc<Mutex<HashMap<i64, usize>>>,
}

/// Watchers one brand may have following one log at once. Each wakes at every commit of the log
/// and reads it on the service's pool: without a cap, one brand's idle streams could starve
/// every call of connections. Watchers of every brand (the suite's own consumers, operators)
/// are not counted.
pub const MAX_BRAND_WATCHERS: usize = 32;

/// A brand has [`MAX_BRAND_WATCHERS`] watchers following the log already.
#[derive(Debug, thiserror::Error)]
#[error("brand {brand} has {MAX_BRAND_WATCHERS} streams following this log open already")]
pub struct TooManyWatchers {
    pub brand: i64,
}

/// A brand's place among the log's watchers, given back when its stream is dropped.
struct WatcherPlace {
    watchers: Arc<Mutex<HashMap<i64, usize>>>,
    brand: i64,
}

impl WatcherPlace {
    fn take(
        watchers: &Arc<Mutex<HashMap<i64, usize>>>,
        brand: i64,
    ) -> Result<WatcherPlace, TooManyWatchers> {
        let mut counts = watchers.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(brand).or_default();
        if *count >= MAX_BRAND_WATCHERS {
            return Err(TooManyWatchers { brand });
        }
        *count += 1;
        Ok(WatcherPlace {
            watchers: watchers.clone(),
            brand,
        })
    }
}

impl Drop for WatcherPlace {
    fn drop(&mut self) {
        let mut counts = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.brand) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.brand);
            }
        }
    }
}

/// How many events one read fetches.
const PAGE: i64 = 500;
/// A watcher re-reads at least this often even without a notification, in case one was lost
/// while the listening connection was being re-established.
const SAFETY_POLL: Duration = Duration::from_secs(5);

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("schema", &self.db.schema())
            .finish()
    }
}

impl EventLog {
    /// Starts the LISTEN task for the database's schema; it ends with `shutdown`.
    pub fn start(db: Database, shutdown: CancellationToken) -> EventLog {
        let channel = format!("{}_events", db.schema());
        let announced = Arc::<Mutex<Announced>>::default();
        let (tx, grown) = watch::channel(0u64);
        tokio::spawn(listen_loop(
            db.clone(),
            channel,
            tx,
            Some(announced.clone()),
            shutdown.clone(),
        ));
        let reads = stream_metrics()
            .log_reads
            .get_or_create(&LogLabels {
                schema: db.schema().to_owned(),
            })
            .clone();
        EventLog {
            db,
            grown,
            announced,
            shutdown,
            reads,
            watchers: Arc::default(),
        }
    }

    /// Up to `limit` events with `seq > after`, oldest first; only `brand`'s when given.
    pub async fn read(
        &self,
        after: i64,
        brand: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let mut conn = self.db.conn().await?;
        let rows = tracking_db::prepared(
            "select seq, brand_id, kind, payload, created_at from events \
             where seq > $1 and ($2::bigint is null or brand_id = $2) \
             order by seq limit $3",
        )
        .bind::<BigInt, _>(after)
        .bind::<Nullable<BigInt>, _>(brand)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await?;
        Ok(rows)
    }

    /// The highest sequence number written so far (0 for an empty log).
    pub async fn head(&self) -> Result<i64, DbError> {
        let mut conn = self.db.conn().await?;
        let row: SeqRow = tracking_db::prepared("select coalesce(max(seq), 0) as seq from events")
            .get_result(&mut conn)
            .await?;
        Ok(row.seq)
    }

    /// Every event with `seq > after` (only `brand`'s when given): first what is stored, then new
    /// events as they commit. Ends when the server shuts down; an error ends it too (the client
    /// resumes from the last seq it saw). A brand's watcher takes one of its
    /// [`MAX_BRAND_WATCHERS`] places until its stream is dropped.
    pub fn watch(
        &self,
        after: i64,
        brand: Option<i64>,
    ) -> Result<impl Stream<Item = Result<StoredEvent, DbError>> + Send + 'static, TooManyWatchers>
    {
        let place = brand
            .map(|brand| WatcherPlace::take(&self.watchers, brand))
            .transpose()?;
        let state = WatchState {
            _place: place,
            log: self.clone(),
            grown: self.grown.clone(),
            cursor: after,
            brand,
            seen: 0,
            buffer: VecDeque::new(),
            caught_up: false,
            failed: false,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        }))
    }
}

struct WatchState {
    _place: Option<WatcherPlace>,
    log: EventLog,
    grown: watch::Receiver<u64>,
    cursor: i64,
    brand: Option<i64>,
    /// The listener's generation when the last read began.
    seen: u64,
    buffer: VecDeque<StoredEvent>,
    /// The last read returned less than a page: everything committed before it started has
    /// been read, so the next read waits for a notification.
    caught_up: bool,
    failed: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<StoredEvent, DbError>> {
        if self.failed {
            return None;
        }
        loop {
            // A watcher still replaying stops with the server too (its client resumes from its
            // cursor elsewhere), instead of keeping the shutdown waiting.
            if self.log.shutdown.is_cancelled() {
                return None;
            }
            if let Some(event) = self.buffer.pop_front() {
                self.cursor = event.seq;
                return Some(Ok(event));
            }
            if self.caught_up {
                // Woken by every commit; a brand's watcher reads again only for its brand's.
                let poll = tokio::time::sleep(SAFETY_POLL);
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        _ = self.log.shutdown.cancelled() => return None,
                        changed = self.grown.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let announced =
                                self.log.announced.lock().unwrap_or_else(PoisonError::into_inner);
                            if announced.since(self.brand, self.seen) {
                                break;
                            }
                        }
                        _ = &mut poll => break,
                    }
                }
            }
            // Mark the current generation seen before reading, so a commit that lands during
            // the read wakes the wait above instead of being missed.
            self.seen = *self.grown.borrow_and_update();
            self.log.reads.inc();
            match self.log.read(self.cursor, self.brand, PAGE).await {
                Ok(rows) => {
                    self.caught_up = rows.len() < PAGE as usize;
                    self.buffer.extend(rows);
                }
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// Wakes on `NOTIFY <channel>`: the returned receiver changes on every notification and after
/// every reconnect of the listening connection (notifications sent while it was down are lost,
/// so whoever waits must re-read). The listener ends with `shutdown`.
pub fn listen(db: Database, channel: String, shutdown: CancellationToken) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(listen_loop(db, channel, tx, None, shutdown));
    rx
}

/// [`listen`]'s task; with `announced`, each notification's brands are noted there under its
/// generation before the generation is sent, so a watcher woken by it finds them.
async fn listen_loop(
    db: Database,
    channel: String,
    grown: watch::Sender<u64>,
    announced: Option<Arc<Mutex<Announced>>>,
    shutdown: CancellationToken,
) {
    let note = |generation: u64, payload: Option<&str>| {
        if let Some(announced) = &announced {
            let mut announced = announced.lock().unwrap_or_else(PoisonError::into_inner);
            match payload {
                Some(payload) => announced.note(generation, payload),
                None => announced.everyone_at(generation),
            }
        }
    };
    use futures::StreamExt;

    let mut backoff = Duration::from_millis(100);
    let mut generation = 0u64;
    loop {
        let session = async {
            let mut conn = db.dedicated().await?;
            diesel::sql_query(format!("listen {channel}"))
                .execute(&mut conn)
                .await?;
            // Notifications sent while the listener was away are lost: every brand re-reads.
            generation += 1;
            note(generation, None);
            grown.send_replace(generation);
            backoff = Duration::from_millis(100);
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            while let Some(notification) = notifications.next().await {
                let notification = notification?;
                generation += 1;
                note(generation, Some(&notification.payload));
                grown.send_replace(generation);
            }
            Err::<(), DbError>(DbError::Unavailable("listen connection closed".to_owned()))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = session => {
                if let Err(err) = result {
                    tracing::warn!(%channel, error = %err, "event listener lost its connection, reconnecting");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_its_brands_and_one_naming_none_wakes_every_brand() {
        let mut announced = Announced::default();
        announced.note(1, "7,8");
        assert!(announced.since(Some(7), 0) && announced.since(Some(8), 0));
        assert!(!announced.since(Some(9), 0), "another brand's commit");
        assert!(announced.since(None, 0), "a watcher of every brand");
        assert!(!announced.since(Some(7), 1), "already read since");
        for payload in ["", "7,x", "garbage"] {
            let mut announced = Announced::default();
            announced.note(2, payload);
            assert!(announced.since(Some(9), 1), "{payload:?}");
        }
        // Past the brands it keeps, it forgets them all and wakes everyone once.
        let mut full = Announced::default();
        let many: Vec<String> = (0..=MAX_ANNOUNCED_BRANDS as i64)
            .map(|b| b.to_string())
            .collect();
        full.note(3, &many.join(","));
        assert!(full.since(Some(-1), 2) && full.brands.is_empty());
    }
}
