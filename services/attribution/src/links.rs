//! Tracking links: `GET /r/{slug}` answers from memory (a slug cache that follows the codes
//! projection) and hands the click to a batching writer, so a redirect never waits on the
//! database. The writer stores clicks in batches with their daily counts, retrying while the
//! database is down; on shutdown it drains what is queued before the process exits (within the
//! drain limit). A click that finds the queue full for a moment goes unrecorded (counted): the
//! shopper is redirected all the same. `RecordClick` queues the same way and waits for its
//! click's batch to commit: its caller may retry, so its answer must mean the click is stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracking_db::{Conflicts, Database, DbError, Taken};
use tracking_server::Metrics;
use tracking_server::net::TrustedProxies;

use crate::domain::clicks;
use crate::store::clicks::ClickRow;
use crate::store::projection::{self, CodeRow};

/// What the redirect needs of a link.
#[derive(Debug, Clone)]
pub struct Link {
    pub brand_id: i64,
    pub code_id: i64,
    pub campaign_id: i64,
    pub creator_id: i64,
    pub plan_id: i64,
    pub integration_id: i64,
    pub destination: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub active: bool,
}

impl From<&CodeRow> for Link {
    fn from(code: &CodeRow) -> Self {
        Link {
            brand_id: code.brand_id,
            code_id: code.code_id,
            campaign_id: code.campaign_id,
            creator_id: code.creator_id,
            plan_id: code.plan_id,
            integration_id: code.integration_id,
            destination: code.destination_url.clone(),
            expires_at: code.expires_at,
            active: code.active,
        }
    }
}

/// What a click request carries, beyond the link.
#[derive(Debug, Clone, Default)]
pub struct ClickInfo {
    pub click_id: Option<String>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub referrer: String,
    pub country: String,
    pub user_agent: String,
    pub visitor: String,
}

/// How often the slug cache looks for changed codes.
const REFRESH: Duration = Duration::from_millis(200);
/// Clicks written per statement.
const CLICK_BATCH: usize = 2000;
/// The queue of clicks between the redirects and the writer.
#[derive(Clone, Copy, Debug)]
pub struct ClickQueue {
    /// Clicks it holds.
    pub capacity: usize,
    /// How long a click waits for room when it is full (the writer behind: back-pressure),
    /// before it goes unrecorded: a redirect never hangs on the database.
    pub wait: Duration,
}

impl Default for ClickQueue {
    fn default() -> Self {
        ClickQueue {
            capacity: 100_000,
            wait: Duration::from_millis(100),
        }
    }
}

/// A click that could not be recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrecorded {
    /// The queue stayed full: the writer is far behind (the database down or slow).
    Full,
    /// The writer has stopped (shutdown) before the click was written.
    Stopped,
    /// Queued, but not written within [`WRITE_WAIT`] (the database down or slow): it may still
    /// be, under this id.
    NotYet { click_id: String },
    /// No click id could be made (the system's random source failed).
    NoId,
}

/// How long `RecordClick` waits for its click to be written before it answers UNAVAILABLE.
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// A click on its way to the writer, with whoever waits for it to be written.
struct Queued {
    row: ClickRow,
    written: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
pub struct Links {
    cache: Arc<RwLock<HashMap<String, Arc<Link>>>>,
    clicks: mpsc::Sender<Queued>,
    queue_wait: Duration,
    /// Clicks that went unrecorded (`tracking_clicks_unrecorded_total`).
    unrecorded: Counter,
    visitor_key: Arc<[u8]>,
    db: Database,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").finish_non_exhaustive()
    }
}

impl Links {
    /// Loads the slug cache, starts following code changes, and starts the click writer on
    /// `click_db` (a pool that plans once, [`tracking_db::PoolOptions::generic_plans`]). The
    /// writer's handle ends once every `Links` clone is dropped and the queue is written.
    pub async fn start(
        db: Database,
        click_db: Database,
        visitor_key: &[u8],
        queue: ClickQueue,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> Result<(Links, JoinHandle<()>), DbError> {
        let cache = Arc::new(RwLock::new(HashMap::new()));
        let version = refresh(&db, &cache, 0).await?;
        tokio::spawn(follow_codes(
            db.clone(),
            cache.clone(),
            version,
            shutdown.clone(),
        ));
        let (tx, rx) = mpsc::channel(queue.capacity.max(1));
        let writer = tokio::spawn(write_clicks(click_db, rx, shutdown.clone()));
        let unrecorded = Counter::default();
        metrics.register(
            "clicks_unrecorded",
            "Clicks redirected but not recorded: the click queue stayed full (the database down or far behind)",
            unrecorded.clone(),
        );
        Ok((
            Links {
                cache,
                clicks: tx,
                queue_wait: queue.wait,
                unrecorded,
                visitor_key: Arc::from(visitor_key),
                db,
            },
            writer,
        ))
    }

    /// The link of `slug`, from memory.
    pub fn resolve(&self, slug: &str) -> Option<Arc<Link>> {
        self.cache
            .read()
            .ok()
            .and_then(|cache| cache.get(slug).cloned())
    }

    /// The link of `slug`, from memory or, for a code the cache has not seen yet, the database.
    pub async fn resolve_fresh(&self, slug: &str) -> Result<Option<Arc<Link>>, DbError> {
        if let Some(link) = self.resolve(slug) {
            return Ok(Some(link));
        }
        Ok(projection::code_by_slug(&self.db, slug)
            .await?
            .map(|code| Arc::new(Link::from(&code))))
    }

    /// The click id a `RecordClick` without one takes from its `request_id`.
    pub fn request_click_id(&self, brand_id: i64, request_id: &str) -> String {
        clicks::request_click_id(&self.visitor_key, brand_id, request_id)
    }

    /// Queues a click on `link` and returns its id; `None` for a bot (not counted).
    pub async fn record(&self, link: &Link, info: ClickInfo) -> Result<Option<String>, Unrecorded> {
        self.queue(link, info, None).await
    }

    /// As [`Links::record`], and returns once the click is written (its batch committed).
    pub async fn record_written(
        &self,
        link: &Link,
        info: ClickInfo,
    ) -> Result<Option<String>, Unrecorded> {
        let (tx, written) = oneshot::channel();
        let Some(click_id) = self.queue(link, info, Some(tx)).await? else {
            return Ok(None);
        };
        match tokio::time::timeout(WRITE_WAIT, written).await {
            Ok(Ok(())) => Ok(Some(click_id)),
            Ok(Err(_)) => Err(Unrecorded::Stopped),
            Err(_) => Err(Unrecorded::NotYet { click_id }),
        }
    }

    async fn queue(
        &self,
        link: &Link,
        info: ClickInfo,
        written: Option<oneshot::Sender<()>>,
    ) -> Result<Option<String>, Unrecorded> {
        let agent_class = clicks::agent_class(&info.user_agent);
        if agent_class == clicks::BOT {
            return Ok(None);
        }
        let now = Utc::now();
        let click_id = match info.click_id {
            Some(id) => id,
            None => clicks::new_click_id(now).map_err(|_| Unrecorded::NoId)?,
        };
        let row = ClickRow {
            brand_id: link.brand_id,
            click_id: click_id.clone(),
            code_id: link.code_id,
            integration_id: link.integration_id,
            campaign_id: link.campaign_id,
            creator_id: link.creator_id,
            plan_id: link.plan_id,
            clicked_at: info.clicked_at.unwrap_or(now),
            referrer_host: clicks::referrer_host(&info.referrer),
            country: info.country,
            agent_class: agent_class.to_owned(),
            visitor_hash: if info.visitor.is_empty() {
                String::new()
            } else {
                clicks::visitor_hash(&self.visitor_key, &info.visitor)
            },
        };
        // Waits only when the writer is far behind (the queue is large), and not for long.
        let why = match self
            .clicks
            .send_timeout(Queued { row, written }, self.queue_wait)
            .await
        {
            Ok(()) => return Ok(Some(click_id)),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Unrecorded::Full,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Unrecorded::Stopped,
        };
        let before = self.unrecorded.inc();
        if before.is_multiple_of(10_000) {
            tracing::warn!(
                unrecorded = before + 1,
                "the click queue is full or closed: clicks go unrecorded"
            );
        }
        Err(why)
    }
}

async fn refresh(
    db: &Database,
    cache: &RwLock<HashMap<String, Arc<Link>>>,
    mut version: i64,
) -> Result<i64, DbError> {
    loop {
        let changed = projection::codes_after(db, version, 5000).await?;
        let Some(last) = changed.last() else {
            return Ok(version);
        };
        version = last.version;
        let full = changed.len() == 5000;
        if let Ok(mut cache) = cache.write() {
            for code in &changed {
                cache.insert(code.slug.clone(), Arc::new(Link::from(code)));
            }
        }
        if !full {
            return Ok(version);
        }
    }
}

async fn follow_codes(
    db: Database,
    cache: Arc<RwLock<HashMap<String, Arc<Link>>>>,
    mut version: i64,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
        match refresh(&db, &cache, version).await {
            Ok(v) => version = v,
            Err(err) => tracing::warn!(error = %err, "slug cache refresh failed, retrying"),
        }
    }
}

/// How long the click writer, once the process is shutting down, waits for more clicks before
/// it ends: the queue is drained by then (a connection task the server left behind may keep a
/// `Links`, so the queue's closing cannot be waited for).
const QUIET_AFTER_SHUTDOWN: Duration = Duration::from_millis(500);

/// The next clicks queued, up to a batch, into `batch`; none once the queue is closed, or, after
/// `shutdown`, once no click came for [`QUIET_AFTER_SHUTDOWN`].
async fn next_clicks(
    rx: &mut mpsc::Receiver<Queued>,
    batch: &mut Vec<Queued>,
    shutdown: &CancellationToken,
) -> usize {
    if !shutdown.is_cancelled() {
        tokio::select! {
            received = rx.recv_many(batch, CLICK_BATCH) => return received,
            _ = shutdown.cancelled() => {}
        }
    }
    tokio::time::timeout(QUIET_AFTER_SHUTDOWN, rx.recv_many(batch, CLICK_BATCH))
        .await
        .unwrap_or(0)
}

async fn write_clicks(db: Database, mut rx: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
    let mut received = Vec::with_capacity(CLICK_BATCH);
    // Click ids are new unless a `RecordClick` is retried, or a batch is written again after its
    // commit went unanswered: batches insert plainly, and skip the ids taken only when one is.
    let conflicts = Conflicts::default();
    while next_clicks(&mut rx, &mut received, &shutdown).await > 0 {
        let (batch, waiting): (Vec<ClickRow>, Vec<Option<oneshot::Sender<()>>>) =
            received.drain(..).map(|q| (q.row, q.written)).unzip();
        let mut backoff = Duration::from_millis(50);
        let mut taken = conflicts.first();
        loop {
            let result = async {
                let mut conn = db.conn().await?;
                conn.transaction::<_, DbError, _>(async |conn| {
                    crate::store::pending::lock_matching(conn).await?;
                    let stored = crate::store::clicks::insert(conn, &batch, taken).await?;
                    if stored < batch.len() {
                        conflicts.met();
                    }
                    // Orders that carried one of these click ids before it was written.
                    let mut brands: Vec<i64> = batch.iter().map(|c| c.brand_id).collect();
                    brands.sort_unstable();
                    brands.dedup();
                    for brand_id in brands {
                        let ids: Vec<&str> = batch
                            .iter()
                            .filter(|c| c.brand_id == brand_id)
                            .map(|c| c.click_id.as_str())
                            .collect();
                        let waiting =
                            crate::store::pending::take_for_clicks(conn, brand_id, &ids).await?;
                        if !waiting.is_empty() {
                            // Attribution's statements are planned for their values.
                            tracking_db::plan_each_execution(conn).await?;
                            crate::attribute::retry_pending(conn, waiting).await?;
                        }
                    }
                    Ok(stored)
                })
                .await
            }
            .await;
            if conflicts.write_again(taken, &result) {
                taken = Taken::Skip;
                continue;
            }
            match result {
                Ok(stored) => {
                    tracing::debug!(clicks = batch.len(), stored, "clicks written");
                    for written in waiting.into_iter().flatten() {
                        let _ = written.send(());
                    }
                    break;
                }
                Err(err) => {
                    // Kept and retried: a database outage delays clicks, it does not lose them.
                    tracing::warn!(error = %err, clicks = batch.len(), ?backoff, "writing clicks failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    tracing::info!("click writer drained");
}

/// `GET /r/{slug}` (and HEAD, which redirects without counting); `proxies` may say who the
/// shopper is and where.
pub fn routes(links: Links, proxies: TrustedProxies) -> Router {
    Router::new()
        .route("/r/{slug}", get(redirect))
        .with_state(Redirects { links, proxies })
}

/// What the redirect needs.
#[derive(Clone, Debug)]
struct Redirects {
    links: Links,
    proxies: TrustedProxies,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn redirect(
    State(Redirects { links, proxies }): State<Redirects>,
    Path(slug): Path<String>,
    request: Request,
) -> Response {
    // The request itself rather than a `HeaderMap` extractor, which copies every header.
    let (method, headers) = (request.method(), request.headers());
    // Served on a socket, the request knows its peer; a proxy may say who sent it on.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let Some(link) = links.resolve(&slug) else {
        return (StatusCode::NOT_FOUND, "no such link\n").into_response();
    };
    if !link.active || link.expires_at.is_some_and(|at| at <= Utc::now()) {
        return (StatusCode::GONE, "this link has ended\n").into_response();
    }
    if link.destination.is_empty() {
        return (StatusCode::NOT_FOUND, "this link has no destination\n").into_response();
    }
    let user_agent = header(headers, "user-agent");
    let click_id = if method == Method::HEAD {
        None
    } else {
        let via_proxy = peer.is_some_and(|peer| proxies.trusts(peer));
        // Read from a trusted proxy only, every line of the header, in order: a proxy may add a
        // line of its own rather than extend the client's (a value that is not text stops the
        // walk there).
        let forwarded = if via_proxy {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|line| line.to_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        };
        let client = peer.map(|peer| proxies.client(peer, &forwarded));
        let info = ClickInfo {
            referrer: header(headers, "referer").to_owned(),
            country: if via_proxy {
                country(headers)
            } else {
                String::new()
            },
            user_agent: user_agent.to_owned(),
            visitor: format!(
                "{}|{user_agent}|{}",
                client.map(|ip| ip.to_string()).unwrap_or_default(),
                header(headers, "accept-language")
            ),
            ..ClickInfo::default()
        };
        // An unrecorded click still gets the shopper there, without a click id.
        links.record(&link, info).await.unwrap_or(None)
    };
    // Bots and HEAD requests still get where they asked to go, with a click id only when counted.
    let location = match &click_id {
        Some(id) => clicks::destination_with_click(&link.destination, id),
        None => link.destination.clone(),
    };
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// The shopper's country, as a trusted proxy in front of the suite says it.
fn country(headers: &HeaderMap) -> String {
    let code = ["cf-ipcountry", "x-country-code"]
        .iter()
        .map(|name| header(headers, name))
        .find(|value| !value.is_empty())
        .unwrap_or_default();
    if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) {
        code.to_ascii_uppercase()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use diesel_async::RunQueryDsl;
    use tracking_db::TestDb;

    use super::*;

    static SCHEMAS: &[tracking_db::SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];

    fn a_link() -> Link {
        Link {
            brand_id: 1,
            code_id: 2,
            campaign_id: 3,
            creator_id: 4,
            plan_id: 5,
            integration_id: 6,
            destination: "https://shop.example/p".to_owned(),
            expires_at: None,
            active: true,
        }
    }

    fn a_click() -> ClickInfo {
        ClickInfo {
            user_agent: "Mozilla/5.0 (iPhone) Mobile".to_owned(),
            ..ClickInfo::default()
        }
    }

    async fn clicks_stored(db: &Database) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let stored: Count = diesel::sql_query("select count(*) as n from clicks")
            .get_result(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stored.n
    }

    #[tokio::test]
    async fn at_shutdown_the_writer_drains_the_queue_and_ends_though_a_links_handle_lives_on() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let shutdown = CancellationToken::new();
        let (links, writer) = Links::start(
            db.clone(),
            db.clone(),
            b"key",
            ClickQueue::default(),
            &Metrics::new(),
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            links.record(&a_link(), a_click()).await,
            Ok(Some(_))
        ));
        // A connection task the server left behind still holds a `Links`.
        let _left_behind = links.clone();
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
        assert_eq!(clicks_stored(&db).await, 1);
    }

    #[tokio::test]
    async fn a_full_click_queue_leaves_clicks_unrecorded_rather_than_waiting() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let metrics = Metrics::new();
        let queue = ClickQueue {
            capacity: 1,
            wait: Duration::from_millis(50),
        };
        let (links, writer) = Links::start(
            db.clone(),
            db.clone(),
            b"key",
            queue,
            &metrics,
            CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // The writer is held up: another transaction holds the lock its batches take.
        let mut holder = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        diesel::sql_query("begin")
            .execute(&mut holder)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        crate::store::pending::lock_matching(&mut holder)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let link = a_link();
        let click = a_click;
        // The first click is taken by the writer, which then waits; the second fills the queue.
        assert!(matches!(links.record(&link, click()).await, Ok(Some(_))));
        let mut watcher = db.dedicated().await.unwrap_or_else(|e| panic!("{e}"));
        tracking_db::until_lock_wait(&mut watcher, &writer).await;
        assert!(matches!(links.record(&link, click()).await, Ok(Some(_))));
        // The third finds no room within its wait, and goes unrecorded (counted) at once.
        assert!(links.record(&link, click()).await.is_err());
        assert!(
            metrics
                .encode()
                .contains("tracking_clicks_unrecorded_total 1"),
            "{}",
            metrics.encode()
        );
        // The writer resumes and writes what was queued.
        diesel::sql_query("commit")
            .execute(&mut holder)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(links);
        writer.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clicks_stored(&db).await, 2);
    }
}
