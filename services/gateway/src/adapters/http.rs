//! What every real store adapter shares, written once: the HTTP client, a timeout on every call,
//! bounded retries with exponential backoff and jitter (429, 5xx, timeouts, refused connections,
//! honouring `Retry-After` and store-specific throttle signals), a concurrency limit per
//! integration, the integration's sealed credentials, and the store's origin.
//!
//! Whole-store failures (still failing after the retries) become [`AdapterError::Unavailable`];
//! credentials the store refuses (401/403) or that are missing become
//! [`AdapterError::Misconfigured`]. Every other answer is handed back to the adapter, which maps
//! per-code refusals to outcomes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use tokio::sync::Semaphore;

use super::AdapterError;
use crate::crypto::Sealer;
use crate::store::IntegrationRow;
use tracking_server::net::is_local_address;

/// Settings of the outbound calls to stores.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Limit of one attempt (connect, send, read the whole answer).
    pub timeout: Duration,
    /// Attempts of one call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled at each further one, with jitter.
    pub backoff: Duration,
    /// Longest wait between attempts: a `Retry-After` (or a throttle wait) beyond it ends the
    /// call as unavailable rather than holding the caller.
    pub max_wait: Duration,
    /// Calls in flight at once to one integration's store.
    pub concurrency_per_integration: usize,
    /// Calls in flight at once to one integration's store for the orders its thin webhooks
    /// announce ([`fetching`]), besides the calls above: the store waits on the webhook's answer,
    /// so its fetch never queues behind a bulk push.
    pub fetch_concurrency_per_integration: usize,
    /// Requests of a store's quota that bulk calls leave to those fetches: once the store says
    /// no more than these are left (BigCommerce's `X-Rate-Limit-Requests-Left`), a bulk call
    /// waits until the quota's window resets (`X-Rate-Limit-Time-Reset-Ms`, at most
    /// [`Self::max_wait`] before each attempt). Bulk calls already under way (at most
    /// [`Self::concurrency_per_integration`]) may take that many more.
    pub fetch_quota_reserve: u64,
    /// Whether stores on this machine or a private network may be called. Without, a call to
    /// such an address, or to a name that resolves only to such addresses (now, or after it was
    /// registered), is refused before it is made.
    pub local_stores: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            backoff: Duration::from_millis(250),
            max_wait: Duration::from_secs(30),
            concurrency_per_integration: 4,
            fetch_concurrency_per_integration: 2,
            // Five thin orders' fetches (three calls each) a window.
            fetch_quota_reserve: 15,
            local_stores: false,
        }
    }
}

/// A store's answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON of type `T`; a body that is not is the store failing as a whole.
    pub fn json<T: serde::de::DeserializeOwned>(&self, store: &str) -> Result<T, AdapterError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            AdapterError::Unavailable(format!(
                "{store} answered {} with an unexpected body: {err}",
                self.status
            ))
        })
    }

    /// The body as text, shortened, for error messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut snippet: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            snippet.push('…');
        }
        snippet
    }

    /// An answer the adapter did not expect, as a whole-call failure: a refusal that asking again
    /// will not change (a shop closed, frozen or locked, an endpoint that is not there: 4xx) is
    /// the integration's to fix, anything else the store's for now.
    pub fn unexpected(&self, store: &str, call: &str) -> AdapterError {
        let what = format!(
            "{store} answered {call} with {}: {}",
            self.status,
            self.snippet()
        );
        let transient = matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        );
        if self.status.is_client_error() && !transient {
            AdapterError::Misconfigured(format!(
                "{what} (check the integration: its shop, URL and credentials)"
            ))
        } else {
            AdapterError::Unavailable(what)
        }
    }
}

/// Redirects a store call follows at most (reqwest's own default).
const MAX_REDIRECTS: usize = 10;

/// Why a store call without local stores may not follow a redirect to `to` after `followed`
/// redirects, if it may not: a redirect to an address is not resolved, so it is checked as the
/// first URL is ([`StoreHttp::attempt`]).
fn refused_redirect(to: &reqwest::Url, followed: usize) -> Option<&'static str> {
    if to
        .host_str()
        .and_then(address)
        .is_some_and(is_local_address)
    {
        Some("a redirect to this machine or a private network")
    } else if followed >= MAX_REDIRECTS {
        Some("too many redirects")
    } else {
        None
    }
}

/// The address a URL's host names, if it is one (`[::1]` included).
fn address(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves store names to the addresses that are neither on this machine nor on a private
/// network: a name that resolves only to such addresses fails to connect, whatever it resolved to
/// when it was registered.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !is_local_address(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to addresses on this machine or a private network"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The shared HTTP machinery of the store adapters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StoreHttp {
    client: reqwest::Client,
    config: HttpConfig,
    sealer: Sealer,
    limits: Arc<Mutex<Limits>>,
    quotas: Arc<Mutex<HashMap<i64, Quota>>>,
}

/// An integration's request quota at its store, as the answers of its current window tell it
/// (the fewest requests left among them; an earlier window's late answer is ignored;
/// BigCommerce's: on every answer, 429s included).
#[derive(Clone, Copy, Debug)]
struct Quota {
    /// Requests left in the quota's window.
    left: u64,
    resets_at: tokio::time::Instant,
}

impl Quota {
    /// What `headers` say of the quota, if they do (`X-Rate-Limit-Requests-Left` and
    /// `X-Rate-Limit-Time-Reset-Ms`).
    fn of(headers: &HeaderMap) -> Option<Quota> {
        let left = header_number(headers, "x-rate-limit-requests-left")?;
        let reset_ms = header_number(headers, "x-rate-limit-time-reset-ms")?;
        Some(Quota {
            left: left as u64,
            resets_at: tokio::time::Instant::now() + seconds(reset_ms / 1000.0),
        })
    }
}

/// Each integration's shares of calls in flight, by lane.
type Limits = HashMap<(i64, Lane), Arc<Semaphore>>;

/// Which of an integration's shares of calls a call waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lane {
    Bulk,
    Fetch,
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `work` with its store calls in the integration's fetch share
/// ([`HttpConfig::fetch_concurrency_per_integration`]) when no bulk place is free: a thin
/// webhook's order fetch, which the store waits on, never queues behind a bulk push of hundreds
/// of codes. Calls made by tasks `work` spawns are not in it.
pub async fn fetching<F: std::future::Future>(work: F) -> F::Output {
    LANE.scope(Lane::Fetch, work).await
}

/// What one attempt came to.
enum Attempt {
    Done(Reply),
    /// Not made: the store is on this machine or a private network ([`HttpConfig::local_stores`]).
    Local(String),
    /// Worth another attempt, after at least `wait` when the store said how long.
    Retry {
        why: String,
        wait: Option<Duration>,
    },
}

impl StoreHttp {
    pub fn new(config: HttpConfig, sealer: Sealer) -> Result<Self, AdapterError> {
        let mut client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("tracking-gateway/", env!("CARGO_PKG_VERSION")));
        if !config.local_stores {
            client = client.dns_resolver(Arc::new(PublicOnly)).redirect(
                reqwest::redirect::Policy::custom(|attempt| {
                    match refused_redirect(attempt.url(), attempt.previous().len()) {
                        Some(why) => attempt.error(why),
                        None => attempt.follow(),
                    }
                }),
            );
        }
        let client = client
            .build()
            .map_err(|err| AdapterError::Unavailable(format!("http client: {err}")))?;
        Ok(Self {
            client,
            config,
            sealer,
            limits: Arc::default(),
            quotas: Arc::default(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The integration's credentials, opened with the brand id as associated data. Only adapters
    /// call this, right before a store call; the values are never logged.
    pub fn credentials(&self, integration: &IntegrationRow) -> Result<Credentials, AdapterError> {
        let plaintext = self
            .sealer
            .open(integration.brand_id, &integration.credentials_sealed)
            .map_err(|err| {
                AdapterError::Misconfigured(format!(
                    "credentials of integration {} cannot be opened: {err}",
                    integration.id
                ))
            })?;
        let values: BTreeMap<String, String> =
            serde_json::from_slice(&plaintext).map_err(|_| {
                AdapterError::Misconfigured(format!(
                    "credentials of integration {} are not a name-value map",
                    integration.id
                ))
            })?;
        Ok(Credentials {
            integration_id: integration.id,
            values,
        })
    }

    fn limit(&self, integration_id: i64, lane: Lane) -> Arc<Semaphore> {
        let calls = match lane {
            Lane::Bulk => self.config.concurrency_per_integration,
            Lane::Fetch => self.config.fetch_concurrency_per_integration,
        };
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limits
            .entry((integration_id, lane))
            .or_insert_with(|| Arc::new(Semaphore::new(calls.max(1))))
            .clone()
    }

    /// How long a bulk call to the integration's store waits before it is sent, if the store's
    /// quota is down to the requests left to fetches ([`HttpConfig::fetch_quota_reserve`]).
    fn quota_wait(&self, integration_id: i64) -> Option<Duration> {
        let quotas = self
            .quotas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let quota = quotas.get(&integration_id)?;
        let now = tokio::time::Instant::now();
        (quota.left <= self.config.fetch_quota_reserve && quota.resets_at > now)
            .then(|| (quota.resets_at - now).min(self.config.max_wait))
    }

    fn note_quota(&self, integration_id: i64, headers: &HeaderMap) {
        let Some(mut quota) = Quota::of(headers) else {
            return;
        };
        // No bulk call waits longer for it than `max_wait`: an odd reset time must not hold
        // the later answers off as of an earlier window.
        quota.resets_at = quota
            .resets_at
            .min(tokio::time::Instant::now() + self.config.max_wait);
        let mut quotas = self
            .quotas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let noted = quotas.entry(integration_id).or_insert(quota);
        // Answers of one window (resetting at about the same time) arrive in any order: the
        // fewest requests left is the latest count. A later window starts afresh; a late answer
        // of an earlier one is old news.
        let margin = Duration::from_secs(1);
        if quota.resets_at > noted.resets_at + margin {
            *noted = quota;
        } else if quota.resets_at + margin >= noted.resets_at {
            noted.left = noted.left.min(quota.left);
        }
    }

    /// A place for one call to the integration's store: in the bulk share; a fetch
    /// ([`fetching`]) takes whichever place frees first, a bulk one or one of its own share
    /// (queued bulk calls are served before it in theirs).
    async fn permit(
        &self,
        integration_id: i64,
        lane: Lane,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, AdapterError> {
        let bulk = self.limit(integration_id, Lane::Bulk);
        let acquired = match lane {
            Lane::Bulk => bulk.acquire_owned().await,
            Lane::Fetch => {
                let fetch = self.limit(integration_id, Lane::Fetch);
                // Both waits give up their place in line when the other wins.
                tokio::select! {
                    biased;
                    place = bulk.acquire_owned() => place,
                    place = fetch.acquire_owned() => place,
                }
            }
        };
        acquired.map_err(|_| AdapterError::Unavailable("adapter shutting down".to_owned()))
    }

    /// Sends the request `build` makes (once per attempt) to the integration's store, retrying
    /// what is worth retrying. `store` names the store in messages and logs.
    pub async fn send(
        &self,
        integration: &IntegrationRow,
        store: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Reply, AdapterError> {
        self.send_checked(integration, store, build, |_| None).await
    }

    /// As [`send`](Self::send), and `throttled` may read a successful answer as a throttle signal
    /// (Shopify's `THROTTLED` arrives with HTTP 200): `Some(wait)` retries after `wait`.
    pub async fn send_checked(
        &self,
        integration: &IntegrationRow,
        store: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        throttled: impl Fn(&Reply) -> Option<Duration>,
    ) -> Result<Reply, AdapterError> {
        let lane = LANE.try_with(|lane| *lane).unwrap_or(Lane::Bulk);
        let mut attempt = 1u32;
        loop {
            let outcome = {
                let _permit = self.permit(integration.id, lane).await?;
                // Asked with the place taken, right before the call: bulk calls queued for a
                // place all read the quota as it is when their turn comes. At most `max_wait`
                // before each attempt.
                let waited_until = tokio::time::Instant::now() + self.config.max_wait;
                while lane == Lane::Bulk
                    && let Some(wait) = self.quota_wait(integration.id)
                {
                    let wait = wait.min(waited_until - tokio::time::Instant::now());
                    if wait.is_zero() {
                        break;
                    }
                    tracing::debug!(
                        integration_id = integration.id,
                        wait_ms = wait.as_millis() as u64,
                        "bulk call waits for the store's quota: the rest is kept for order fetches"
                    );
                    tokio::time::sleep(wait).await;
                }
                self.attempt(integration.id, build(&self.client)).await
            };
            let (why, wait) = match outcome {
                Attempt::Local(host) => {
                    return Err(AdapterError::Misconfigured(format!(
                        "{store} at {host} is on this machine or a private network, which this \
                         gateway does not call (--local-stores)"
                    )));
                }
                Attempt::Done(reply) => match throttled(&reply) {
                    Some(wait) => (format!("{store} throttled the call"), Some(wait)),
                    None => return check_auth(reply, store, integration),
                },
                Attempt::Retry { why, wait } => (format!("{store} {why}"), wait),
            };
            let backoff = self.backoff(attempt);
            let wait = wait.map_or(backoff, |w| w.max(backoff));
            if attempt >= self.config.max_attempts || wait > self.config.max_wait {
                tracing::warn!(
                    brand_id = integration.brand_id,
                    integration_id = integration.id,
                    attempts = attempt,
                    reason = %why,
                    "store unavailable"
                );
                return Err(AdapterError::Unavailable(format!(
                    "{why} (after {attempt} attempts)"
                )));
            }
            tracing::info!(
                brand_id = integration.brand_id,
                integration_id = integration.id,
                attempt,
                wait_ms = wait.as_millis() as u64,
                reason = %why,
                "store call retried"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, integration_id: i64, request: RequestBuilder) -> Attempt {
        let request = match request.build() {
            Ok(request) => request,
            Err(err) => {
                return Attempt::Retry {
                    why: describe(&err),
                    wait: None,
                };
            }
        };
        // An address written in the URL is not resolved: it is checked here. (Names are, by
        // [`PublicOnly`].)
        if !self.config.local_stores
            && let Some(host) = request.url().host_str()
            && address(host).is_some_and(is_local_address)
        {
            return Attempt::Local(host.to_owned());
        }
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(err) => {
                return Attempt::Retry {
                    why: describe(&err),
                    wait: None,
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        self.note_quota(integration_id, &headers);
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(err) => {
                return Attempt::Retry {
                    why: describe(&err),
                    wait: None,
                };
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Attempt::Retry {
                why: format!("answered {status}"),
                wait: retry_after(&headers, status == StatusCode::TOO_MANY_REQUESTS),
            };
        }
        Attempt::Done(Reply {
            status,
            headers,
            body,
        })
    }

    /// Exponential backoff with full jitter in its upper half: base·2^(n-1) · [0.5, 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter = getrandom::u32().unwrap_or(0) % 1000;
        exp.mul_f64(0.5 + f64::from(jitter) / 2000.0)
            .min(self.config.max_wait)
    }
}

fn check_auth(
    reply: Reply,
    store: &str,
    integration: &IntegrationRow,
) -> Result<Reply, AdapterError> {
    if matches!(
        reply.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        tracing::warn!(
            brand_id = integration.brand_id,
            integration_id = integration.id,
            status = reply.status.as_u16(),
            "store refused the integration's credentials"
        );
        return Err(AdapterError::Misconfigured(format!(
            "{store} refused the credentials of integration {} ({}): check them and the app's scopes",
            integration.id, reply.status
        )));
    }
    Ok(reply)
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "did not answer in time".to_owned()
    } else if err.is_connect() {
        "could not be reached".to_owned()
    } else {
        format!("call failed: {err}")
    }
}

/// How long a store asks to wait: `Retry-After` in seconds (the HTTP-date form is rare at stores
/// and read as absent), else, for a `throttled` call (429), BigCommerce's
/// `X-Rate-Limit-Time-Reset-Ms` (its 429s carry no `Retry-After`: the quota's window resets
/// after that many milliseconds; it is on every answer, so a 5xx does not wait for it).
fn retry_after(headers: &HeaderMap, throttled: bool) -> Option<Duration> {
    header_number(headers, RETRY_AFTER.as_str())
        .map(seconds)
        .or_else(|| {
            throttled
                .then(|| header_number(headers, "x-rate-limit-time-reset-ms"))
                .flatten()
                .map(|ms| seconds(ms / 1000.0))
        })
}

/// A wait a store asked for, in seconds, at most a day (a store's number is not trusted to fit).
fn seconds(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.min(86_400.0))
}

/// The header `name` as a number of 0 or more, if it is one.
fn header_number(headers: &HeaderMap, name: &str) -> Option<f64> {
    let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// An integration's store credentials: a name-value map, never printed.
pub struct Credentials {
    integration_id: i64,
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("integration_id", &self.integration_id)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// The value of `name`; missing or blank is a misconfigured integration.
    pub fn get(&self, name: &str) -> Result<&str, AdapterError> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                AdapterError::Misconfigured(format!(
                    "integration {} has no credential {name}",
                    self.integration_id
                ))
            })
    }
}

/// The origin (scheme and host, no trailing slash) the adapter calls: the integration's
/// `base_url` when set, so tests and local runs can point any adapter at
/// `http://127.0.0.1:PORT`, else the store's own `default`.
pub fn origin(integration: &IntegrationRow, default: impl FnOnce() -> String) -> String {
    let base = integration.base_url.trim().trim_end_matches('/');
    if base.is_empty() {
        default().trim_end_matches('/').to_owned()
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// A fetch takes a free bulk place first, then one of its own share: it waits only when
    /// both are taken.
    #[tokio::test]
    async fn a_fetch_takes_a_free_bulk_place_then_its_own() {
        let http = StoreHttp::new(
            crate::adapters::mock::fast_http(),
            crate::adapters::mock::sealer(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut held = Vec::new();
        for n in 0..6 {
            let permit = http
                .permit(1, Lane::Fetch)
                .now_or_never()
                .unwrap_or_else(|| panic!("fetch {n} waited"));
            held.push(permit.unwrap_or_else(|e| panic!("{e}")));
        }
        assert!(http.permit(1, Lane::Fetch).now_or_never().is_none());
        assert!(http.permit(1, Lane::Bulk).now_or_never().is_none());
        // Another integration's places are its own.
        assert!(http.permit(2, Lane::Bulk).now_or_never().is_some());
        // A fetch waiting takes a bulk place as soon as one frees.
        let waiting = tokio::spawn({
            let http = http.clone();
            async move { http.permit(1, Lane::Fetch).await.is_ok() }
        });
        tokio::task::yield_now().await;
        drop(held.remove(0));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .is_ok_and(|taken| taken.is_ok_and(|ok| ok))
        );
    }

    /// Once the store says its quota is down to the fetches' reserve, a bulk call waits for
    /// the quota's window to reset, and a fetch goes at once. Bulk calls queued for a place read
    /// the quota when their turn comes: at most the calls under way then pass the reserve.
    #[tokio::test]
    async fn bulk_calls_leave_the_quotas_reserve_to_fetches() {
        use super::super::mock::{self, MockStore};
        use tracking_api::common::v1::Provider;
        // 20 requests left at first, one fewer at each answer; the window resets 3 s later.
        let store = MockStore::start(|request| {
            let left = if request.path == "/fetch" {
                0
            } else {
                20 - request.seq.min(20)
            };
            mock::Reply::json(200, serde_json::json!({}))
                .header("x-rate-limit-requests-left", &left.to_string())
                .header("x-rate-limit-time-reset-ms", "3000")
        })
        .await;
        let sealer = mock::sealer();
        // Patient calls: none is retried on a slow machine.
        let config = HttpConfig {
            timeout: Duration::from_secs(5),
            ..mock::fast_http()
        };
        let http = StoreHttp::new(config.clone(), sealer.clone()).unwrap_or_else(|e| panic!("{e}"));
        let integration = mock::integration(&sealer, Provider::Bigcommerce, &store.origin, &[]);
        let call = |path: &'static str| {
            let (http, integration) = (http.clone(), integration.clone());
            let url = format!("{}/{path}", store.origin);
            async move {
                http.send(&integration, "BigCommerce", |client| client.get(&url))
                    .await
                    .map(|reply| reply.status)
            }
        };
        let bulk: Vec<_> = (0..12).map(|_| tokio::spawn(call("bulk"))).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.requests_to("GET /bulk").len() < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bulk calls stalled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fetching(call("fetch")).await.ok(), Some(StatusCode::OK));
        // The answer of the 6th request (or the fetch's) closed the gate: the calls under way
        // then went on, the others wait for the reset.
        let before_reset = store.requests_to("GET /bulk").len();
        let reserve = usize::try_from(config.fetch_quota_reserve).unwrap_or(usize::MAX);
        assert!(
            (20 - reserve + 1..=20 - reserve + config.concurrency_per_integration)
                .contains(&before_reset),
            "{before_reset} bulk calls made before the reset"
        );
        for call in bulk {
            assert_eq!(call.await.ok().and_then(Result::ok), Some(StatusCode::OK));
        }
        assert_eq!(store.requests_to("GET /bulk").len(), 12);
    }

    #[test]
    fn a_stores_wait_is_at_most_a_day() {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            "1e30".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            retry_after(&headers, true),
            Some(Duration::from_secs(86_400))
        );
        headers.insert(
            "x-rate-limit-requests-left",
            "3".parse().unwrap_or_else(|_| unreachable!()),
        );
        headers.insert(
            "x-rate-limit-time-reset-ms",
            "1e300".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(Quota::of(&headers).is_some_and(|quota| quota.left == 3));
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(retry_after(&headers, true), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            "0.5".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            retry_after(&headers, false),
            Some(Duration::from_millis(500))
        );
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(retry_after(&headers, true), None);
        // BigCommerce's quota reset, on every answer: waited for by a throttled call only.
        headers.remove(RETRY_AFTER);
        headers.insert(
            "x-rate-limit-time-reset-ms",
            "1500".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            retry_after(&headers, true),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers, false),
            None,
            "a 5xx backs off as usual"
        );
    }

    #[test]
    fn credentials_never_print_values() {
        let credentials = Credentials {
            integration_id: 7,
            values: [("access_token".to_owned(), "shpat_secret".to_owned())].into(),
        };
        let printed = format!("{credentials:?}");
        assert!(printed.contains("access_token"));
        assert!(!printed.contains("shpat_secret"));
        assert_eq!(credentials.get("access_token").ok(), Some("shpat_secret"));
        assert!(matches!(
            credentials.get("store_hash"),
            Err(AdapterError::Misconfigured(_))
        ));
    }

    /// Without local stores, neither an address on this machine written in the URL nor a name
    /// that resolves only to one is called; with them, both are.
    #[tokio::test]
    async fn local_stores_are_called_only_where_they_are_taken() {
        use super::super::mock::{self, MockStore};
        use tracking_api::common::v1::Provider;
        let store = MockStore::start(|_| mock::Reply::json(200, serde_json::json!({}))).await;
        let by_name = store.origin.replace("127.0.0.1", "localhost");
        for local_stores in [false, true] {
            let sealer = mock::sealer();
            let config = HttpConfig {
                local_stores,
                ..mock::fast_http()
            };
            let http = StoreHttp::new(config, sealer.clone()).unwrap_or_else(|e| panic!("{e}"));
            for origin in [store.origin.as_str(), by_name.as_str()] {
                let integration = mock::integration(&sealer, Provider::Magento, origin, &[]);
                let url = format!("{origin}/rest/V1/directory/currency");
                let sent = http
                    .send(&integration, "Magento", |client| client.get(&url))
                    .await;
                match (local_stores, sent) {
                    (true, Ok(reply)) => assert_eq!(reply.status, StatusCode::OK),
                    (false, Err(AdapterError::Misconfigured(why))) => {
                        assert!(why.contains("127.0.0.1"), "{why}");
                    }
                    (false, Err(AdapterError::Unavailable(why))) => {
                        assert!(origin.contains("localhost"), "{why}");
                    }
                    (_, other) => panic!("{origin} (local stores {local_stores}): {other:?}"),
                }
            }
        }
        assert_eq!(store.requests().len(), 2, "called only with local stores");
    }

    #[test]
    fn redirects_to_local_addresses_are_refused() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap_or_else(|e| panic!("{e}"));
        for local in [
            "http://127.0.0.1/admin",
            "http://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "http://2130706433/",
        ] {
            assert!(refused_redirect(&url(local), 0).is_some(), "{local}");
        }
        let public = url("https://shop.example.com/admin/api");
        assert_eq!(refused_redirect(&public, 0), None);
        assert_eq!(
            refused_redirect(&public, MAX_REDIRECTS),
            Some("too many redirects")
        );
    }
}
