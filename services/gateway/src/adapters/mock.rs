//! A local HTTP server standing in for a store's API in adapter tests: bound to 127.0.0.1:0,
//! answering each request through the test's handler (with the stores' documented payloads),
//! recording every request for assertions. One helper for every store's tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tracking_api::common::v1::Provider;

use super::AdapterError;
use super::http::HttpConfig;
use crate::crypto::Sealer;
use crate::store::IntegrationRow;

/// One request the store received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// Requests received before this one (0 for the first).
    pub seq: usize,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `METHOD /path`, for matching in handlers.
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The store's answer to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay` (a store slower than the adapter's timeout).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running mock store; stops when dropped.
pub struct MockStore {
    pub origin: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockStore {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> MockStore {
        let handler: Arc<Handler> = Arc::new(handler);
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let counter = Arc::new(AtomicUsize::new(0));
        let app = {
            let requests = requests.clone();
            axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let handler = handler.clone();
                    let requests = requests.clone();
                    let seq = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let recorded = Recorded {
                            method: method.to_string(),
                            path: uri.path().to_owned(),
                            query: decode_query(uri.query().unwrap_or_default()),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                                })
                                .collect(),
                            body: body.to_vec(),
                            seq,
                        };
                        let reply = handler(&recorded);
                        requests
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(recorded);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        into_response(reply)
                    }
                },
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind a mock store: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("mock store address: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockStore {
            origin: format!("http://{addr}"),
            requests,
            task,
        }
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        requests.sort_by_key(|r| r.seq);
        requests
    }

    /// The requests to `route` (`METHOD /path`).
    pub fn requests_to(&self, route: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.route() == route)
            .collect()
    }
}

fn into_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Fast settings for tests: short timeout, quick backoff.
pub fn fast_http() -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_millis(400),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(3),
        concurrency_per_integration: 4,
        fetch_concurrency_per_integration: 2,
        fetch_quota_reserve: 15,
        // The mock stores answer on 127.0.0.1.
        local_stores: true,
    }
}

/// Longer than [`fast_http`]'s whole budget: a store answering this late is as good as down.
pub const SLOWER_THAN_TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts that `call`, made to a store answering after [`SLOWER_THAN_TIMEOUT`], ends unavailable
/// promptly: 3 attempts of 0.4 s and short backoffs, far below the store's delay.
pub async fn assert_unavailable_promptly<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, AdapterError>>,
) {
    let started = std::time::Instant::now();
    let result = call.await;
    assert!(
        matches!(result, Err(AdapterError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Checks a whole listing (not cut at its limit) of `orders` distinct orders, of which `moving`,
/// changed during the listing, is listed twice (before and after its change) when `twice`.
pub fn assert_listed(
    listed: &super::Listed,
    orders: usize,
    moving: u64,
    twice: bool,
    scenario: &str,
) {
    let ids: std::collections::BTreeSet<&str> = listed
        .orders
        .iter()
        .map(|o| o.store_order_id.as_str())
        .collect();
    assert_eq!(ids.len(), orders, "{scenario}: every order listed");
    assert_eq!(
        listed.orders.len(),
        orders + usize::from(twice),
        "{scenario}: order {moving} listed twice, before and after its change: {twice}"
    );
    assert_eq!(listed.resume_from, None, "{scenario}");
}

pub fn sealer() -> Sealer {
    let key = Sealer::generate_key().unwrap_or_else(|e| panic!("{e}"));
    Sealer::from_base64(&key).unwrap_or_else(|e| panic!("{e}"))
}

/// The customer key the tests hash emails with.
pub const CUSTOMER_KEY: &[u8] = b"test-customer-key";

/// An integration of brand 1 whose store is the mock at `origin`, with `credentials` sealed as
/// the gateway seals them.
pub fn integration(
    sealer: &Sealer,
    provider: Provider,
    origin: &str,
    credentials: &[(&str, &str)],
) -> IntegrationRow {
    let map: BTreeMap<&str, &str> = credentials.iter().copied().collect();
    let plaintext = serde_json::to_vec(&map).unwrap_or_default();
    IntegrationRow {
        brand_id: 1,
        id: 11,
        provider: provider.as_str_name().to_owned(),
        name: "test store".to_owned(),
        shop_domain: if provider == Provider::Shopify {
            "test-shop.myshopify.com".to_owned()
        } else {
            String::new()
        },
        base_url: origin.to_owned(),
        credential_fields: map.keys().map(|k| (*k).to_owned()).collect(),
        credentials_sealed: sealer.seal(1, &plaintext).unwrap_or_else(|e| panic!("{e}")),
        webhook_secret_sealed: None,
        created_at: chrono::Utc::now(),
        sandbox_down: false,
    }
}

#[test]
fn queries_decode() {
    assert_eq!(
        decode_query("code=MIA%2B20&a+b=c&empty&sign=%+4"),
        vec![
            ("code".to_owned(), "MIA+20".to_owned()),
            ("a b".to_owned(), "c".to_owned()),
            ("empty".to_owned(), String::new()),
            ("sign".to_owned(), "% 4".to_owned()),
        ]
    );
}
