//! The gRPC server every service runs on: health (`grpc.health.v1`), reflection (v1), admission
//! control with load shedding, default deadlines, per-RPC metrics and request ids, and graceful
//! shutdown. It serves an already-bound listener, so tests bind `127.0.0.1:0`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::{MethodLabels, Metrics, RpcLabels};
use crate::status;

/// The largest gRPC message a service takes or sends (4 MiB). A larger request is refused from
/// its length prefix, before its body is read (`OUT_OF_RANGE`); list calls page well below it.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Builds and runs one gRPC server.
pub struct GrpcServer {
    routes: RoutesBuilder,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    metrics: Metrics,
    request_timeout: Duration,
    max_concurrent: usize,
    call_limits: HashMap<String, CallLimit>,
    shutdown_grace: Duration,
    tls: Option<tonic::transport::ServerTlsConfig>,
    internal: Option<TcpListener>,
}

/// A cap on the calls in flight to a group of methods together.
#[derive(Clone)]
struct CallLimit {
    max: usize,
    permits: Arc<Semaphore>,
}

/// What reflection lists besides the services added: health and reflection itself.
const REFLECTION_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl GrpcServer {
    pub fn new(
        metrics: Metrics,
        request_timeout: Duration,
        max_concurrent: usize,
        shutdown_grace: Duration,
    ) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Self {
            routes,
            health,
            service_names: Vec::new(),
            metrics,
            request_timeout,
            max_concurrent,
            call_limits: HashMap::new(),
            shutdown_grace,
            tls: None,
            internal: None,
        }
    }

    /// Serves at most `max` calls to `methods` (full paths, `/package.Service/Method`) at once,
    /// together; more are refused at once with RESOURCE_EXHAUSTED, before they are read or
    /// authenticated, so that a refusal costs little when the machine is saturated. For the
    /// methods whose work is the machine's bottleneck: admitting more of them only makes every
    /// admitted call wait. `0` sets no limit.
    pub fn limit_calls(mut self, methods: &[String], max: usize) -> Self {
        if max > 0 {
            let limit = CallLimit {
                max,
                permits: Arc::new(Semaphore::new(max)),
            };
            for method in methods {
                self.call_limits.insert(method.clone(), limit.clone());
            }
        }
        self
    }

    /// Also serves on `listener`, for the calls the process's own services make to each other
    /// (trackd): it keeps serving until the main listener has drained at shutdown, so that a call
    /// in flight then can still reach a sibling service (the main listener refuses new calls).
    pub fn with_internal_listener(mut self, listener: TcpListener) -> Self {
        self.internal = Some(listener);
        self
    }

    /// Serves over TLS when `tls` is set (see [`crate::tls::TlsArgs`]).
    pub fn with_tls(mut self, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// The kit's settings from the shared flags.
    pub fn from_args(args: &crate::ServerArgs, metrics: Metrics) -> Self {
        Self::new(
            metrics,
            args.request_timeout,
            args.max_concurrent_requests,
            args.shutdown_grace,
        )
    }

    /// Adds a service; its health status follows the server's (SERVING while up).
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// How long in-flight calls get to finish at shutdown (the HTTP side gets as long).
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Serves until `shutdown` is cancelled: health turns NOT_SERVING at once, new calls are
    /// refused, in-flight calls get `shutdown_grace` to finish (and the internal listener, if
    /// any, serves them until they have).
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        // v1 for current clients, v1alpha for the many tools (grpcurl among them) that still ask it.
        // Every type of the suite can be looked up, but only the services this server serves are
        // listed: a single service's binary must not advertise the other three.
        let reflection = || {
            let builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tracking_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                );
            REFLECTION_SERVICES
                .iter()
                .chain(&self.service_names)
                .fold(builder, |builder, name| builder.with_service_name(*name))
        };
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(v1), Ok(v1alpha)) => {
                self.routes.add_service(v1);
                self.routes.add_service(v1alpha);
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(error = %err, "reflection descriptor set is invalid, reflection disabled");
            }
        }

        for name in &self.service_names {
            self.health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        self.health
            .set_service_status("", ServingStatus::Serving)
            .await;

        let health = self.health.clone();
        let names = self.service_names.clone();
        let signal_shutdown = shutdown.clone();
        let signal = async move {
            signal_shutdown.cancelled().await;
            for name in names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
        };

        let layer = RpcLayer {
            default_deadline: self.request_timeout,
            metrics: self.metrics.clone(),
            methods: Arc::new(MethodNames::new(&self.service_names)),
            permits: Arc::new(Semaphore::new(self.max_concurrent)),
            max_concurrent: self.max_concurrent,
            call_limits: Arc::new(std::mem::take(&mut self.call_limits)),
        };
        let mut builder = Server::builder();
        if let Some(tls) = self.tls.take() {
            builder = builder.tls_config(tls)?;
        }
        // Deadlines are the layer's (`RpcLayer::deadline`), not tonic's `timeout`, which cuts a
        // client's own longer deadline to the default and answers CANCELLED.
        let server = builder
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(layer);
        let routes = self.routes.routes();
        let grace = self.shutdown_grace;
        // Both listeners' calls end by the same time: `grace` after the shutdown.
        let grace_over = || async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let drained = CancellationToken::new();
        let serve_public = server.clone().serve_with_incoming_shutdown(
            routes.clone(),
            TcpListenerStream::new(listener),
            signal,
        );
        let public = async {
            let result = tokio::select! {
                result = serve_public => result,
                _ = grace_over() => {
                    tracing::warn!(?grace, "grace period over, closing remaining gRPC calls");
                    Ok(())
                }
            };
            drained.cancel();
            result
        };
        let internal = async {
            let Some(internal) = self.internal.take() else {
                return Ok(());
            };
            tokio::select! {
                result = server.serve_with_incoming_shutdown(
                    routes,
                    TcpListenerStream::new(internal),
                    drained.clone().cancelled_owned(),
                ) => result,
                _ = grace_over() => Ok(()),
            }
        };
        let (public, internal) = tokio::join!(public, internal);
        public.and(internal)
    }
}

/// Per-call deadlines, admission control, metrics and request ids.
#[derive(Clone)]
struct RpcLayer {
    /// The deadline of a call whose client sets none (`grpc-timeout`).
    default_deadline: Duration,
    metrics: Metrics,
    methods: Arc<MethodNames>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    call_limits: Arc<HashMap<String, CallLimit>>,
}

/// Which request paths the metrics name: the methods of the services served, as the descriptor
/// sets reflection serves list them, and any path of a service added without one (as tests'
/// are). Every other path, which anyone may send before auth, is counted as `unknown`: made-up
/// paths must not grow the metrics without bound.
struct MethodNames {
    described: HashSet<String>,
    undescribed_services: HashSet<&'static str>,
}

impl MethodNames {
    fn new(services: &[&'static str]) -> MethodNames {
        use prost::Message;
        let mut described = HashSet::new();
        let mut described_services = HashSet::new();
        // The suite's services that this server serves; health and reflection, always.
        for (set, every_service) in [
            (tracking_api::FILE_DESCRIPTOR_SET, false),
            (tonic_health::pb::FILE_DESCRIPTOR_SET, true),
            (tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET, true),
            (tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET, true),
        ] {
            let Ok(files) = prost_types::FileDescriptorSet::decode(set) else {
                tracing::error!("a descriptor set is invalid: its methods are counted as unknown");
                continue;
            };
            for file in files.file {
                for service in &file.service {
                    let name = format!("{}.{}", file.package(), service.name());
                    if !every_service && !services.contains(&name.as_str()) {
                        continue;
                    }
                    for method in &service.method {
                        described.insert(format!("/{name}/{}", method.name()));
                    }
                    described_services.insert(name);
                }
            }
        }
        MethodNames {
            described,
            undescribed_services: services
                .iter()
                .copied()
                .filter(|name| !described_services.contains(*name))
                .collect(),
        }
    }

    /// `path` as the metrics name it.
    fn label<'p>(&self, path: &'p str) -> &'p str {
        let service = path
            .strip_prefix('/')
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(service, _)| service);
        if self.described.contains(path)
            || service.is_some_and(|s| self.undescribed_services.contains(s))
        {
            path
        } else {
            "unknown"
        }
    }
}

impl RpcLayer {
    /// The permits a call to `method` holds while it runs, or why it is refused: the server's
    /// limit on all calls, then the method's own, if any. Probes and tooling are always served.
    fn admit(&self, method: &str) -> Result<[Option<OwnedSemaphorePermit>; 2], String> {
        if is_exempt(method) {
            return Ok([None, None]);
        }
        let all =
            self.permits.clone().try_acquire_owned().map_err(|_| {
                format!("server overloaded: {} calls in flight", self.max_concurrent)
            })?;
        let own = match self.call_limits.get(method) {
            Some(limit) => Some(limit.permits.clone().try_acquire_owned().map_err(|_| {
                format!(
                    "server overloaded: {} calls to {method} in flight",
                    limit.max
                )
            })?),
            None => None,
        };
        Ok([Some(all), own])
    }
}

impl RpcLayer {
    /// The deadline this layer holds a call to: the server's default, for a call whose client
    /// set none (or none tonic can read). A client's own (`grpc-timeout`, longer or shorter) is
    /// tonic's to enforce, which it does, outside this layer, answering CANCELLED.
    fn deadline(&self, headers: &http::HeaderMap) -> Option<Duration> {
        client_timeout(headers)
            .is_none()
            .then_some(self.default_deadline)
    }

    /// How long a stream of bounded work may send nothing: the server's default deadline, or
    /// the client's own if it set a longer one (a caller that allows minutes for its work).
    fn quiet_limit(&self, headers: &http::HeaderMap) -> Duration {
        client_timeout(headers).map_or(self.default_deadline, |own| own.max(self.default_deadline))
    }
}

/// The client's `grpc-timeout`, when it is one as tonic reads it: 1 to 8 digits and a unit.
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct RpcService<S> {
    inner: S,
    layer: RpcLayer,
}

/// A call counted in `tracking_grpc_in_flight` until this is dropped.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

/// What an admitted call holds until its response body ends or is dropped: its permits and its
/// place in `tracking_grpc_in_flight`. A stream of bounded work (`MintCodes`, an export) counts
/// against the limits for as long as it runs, not only until its headers. A stream that follows
/// a log for as long as its client stays ([`follows_a_log`]) gives its permits back once its
/// headers are out: held, a few idle followers would take every place.
struct Admitted {
    permits: [Option<OwnedSemaphorePermit>; 2],
    _in_flight: InFlight,
}

/// Whether `path` names a stream that follows a log for as long as its client stays: the
/// services' `Watch*` streams and `StreamConversions`, by the suite's naming.
fn follows_a_log(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    method.starts_with("Watch") || method.starts_with("Stream")
}

/// A response body holding its call's [`Admitted`] until its last frame. A stream body that
/// panics ends with INTERNAL in its trailers: unwinding would reset the stream, which a client
/// may not tell from a network fault, and an export's reader must not take a cut-off end for the
/// whole. A stream of bounded work that sends nothing for its [`Quiet`] limit ends with
/// DEADLINE_EXCEEDED: held by a client that sends nothing, it would keep its place forever.
struct HeldBody<B> {
    body: B,
    admitted: Option<Admitted>,
    /// Its own trailers are out (a panic, or quiet too long): nothing follows.
    ended: bool,
    quiet: Option<Quiet>,
    /// Where the call's status is counted once its trailers are out, if its headers did not
    /// carry it.
    unsettled: Option<Unsettled>,
}

/// A call not yet counted in `tracking_grpc_requests_total`: it is counted by the status it ends
/// with (in its headers, for a trailers-only answer, else in its trailers), or as CANCELLED if
/// it is dropped first: its handler's future before it answered (its client went away, or the
/// client's own deadline passed), or its body before its trailers were out.
struct Unsettled {
    metrics: Metrics,
    method: String,
}

impl Unsettled {
    fn settle(self, code: &str) {
        count(&self.metrics, &self.method, code);
    }
}

/// An [`Unsettled`] call whose handler has not answered yet: counted CANCELLED if dropped so.
struct Unanswered(Option<Unsettled>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(unsettled) = self.0.take() {
            unsettled.settle("Cancelled");
        }
    }
}

impl<B> Drop for HeldBody<B> {
    fn drop(&mut self) {
        if let Some(unsettled) = self.unsettled.take() {
            unsettled.settle("Cancelled");
        }
    }
}

/// How long a stream of bounded work may send nothing ([`RpcLayer::quiet_limit`]), and the
/// timer counting it, armed when the body has nothing to send and set back at each frame.
struct Quiet {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl Quiet {
    fn new(limit: Duration) -> Self {
        Quiet {
            limit,
            timer: None,
            armed: false,
        }
    }

    /// Whether the body, waiting now, has sent nothing for the whole limit.
    fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

impl<B> http_body::Body for HeldBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            this.admitted = None;
            return Poll::Ready(None);
        }
        let body = &mut this.body;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Pin::new(body).poll_frame(cx)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("the call's response stream panicked");
            this.ended = true;
            let trailers = status_fields(tonic::Status::internal("internal error"));
            Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
        });
        let quiet_too_long = match (&polled, &mut this.quiet) {
            (Poll::Ready(None), _) => {
                this.admitted = None;
                None
            }
            (Poll::Ready(Some(_)), Some(quiet)) => {
                quiet.armed = false;
                None
            }
            (Poll::Pending, Some(quiet)) => quiet.passed(cx).then_some(quiet.limit),
            _ => None,
        };
        let out = match quiet_too_long {
            Some(limit) => {
                tracing::info!(?limit, "a stream that sent nothing for its limit was ended");
                this.ended = true;
                let trailers = status_fields(tonic::Status::deadline_exceeded(format!(
                    "the stream sent nothing for {limit:?}: ended (open a new one when there is \
                     more to send)"
                )));
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            None => polled,
        };
        let settled = match &out {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(status_code),
            // tonic writes a failure into the trailers; a body that fails or ends without any
            // is not a status a client was told.
            Poll::Ready(Some(Err(_)) | None) => Some("Unknown".to_owned()),
            _ => None,
        };
        if let Some(code) = settled
            && let Some(unsettled) = this.unsettled.take()
        {
            unsettled.settle(&code);
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl InFlight {
    fn enter(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        InFlight(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Calls that must answer even under overload (probes, operators' tooling).
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or_default()
    });
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl<S, B, RB> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: http_body::Body<Data = tonic::codegen::Bytes> + Default + Unpin + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let permits = match self.layer.admit(&method) {
            Ok(permits) => permits,
            Err(why) => {
                self.layer.metrics.shed.inc();
                count(
                    &self.layer.metrics,
                    self.layer.methods.label(&method),
                    "ResourceExhausted",
                );
                let status =
                    tonic::Status::resource_exhausted(format!("{why}; retry with backoff"));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(next_request_id, str::to_owned);
        let deadline = self.layer.deadline(request.headers());
        let quiet_limit = self.layer.quiet_limit(request.headers());
        let span = tracing::info_span!("rpc", method = %method, request_id = %request_id);
        // The clone that was polled ready serves this call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.layer.metrics.clone();
        let mut unanswered = Unanswered(Some(Unsettled {
            metrics: metrics.clone(),
            method: self.layer.methods.label(&method).to_owned(),
        }));
        Box::pin(
            async move {
                // Counted down however the call ends: answered, or dropped (its deadline passed,
                // its client went away).
                let mut admitted = Admitted {
                    permits,
                    _in_flight: InFlight::enter(&metrics),
                };
                let started = Instant::now();
                // Past its deadline the call is dropped (its database work cancelled with it). A
                // handler that panics answers INTERNAL: unwinding into the connection's task
                // would end every call multiplexed on the connection.
                let call = std::panic::AssertUnwindSafe(inner.call(request))
                    .catch_unwind()
                    .map(|answered| {
                        answered.unwrap_or_else(|_| {
                            tracing::error!("the call's handler panicked");
                            Ok(tonic::Status::internal("internal error").into_http())
                        })
                    });
                let result = match deadline {
                    None => call.await,
                    Some(deadline) => match tokio::time::timeout(deadline, call).await {
                        Ok(result) => result,
                        Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                            "deadline of {deadline:?} exceeded"
                        ))
                        .into_http()),
                    },
                };
                let follows = follows_a_log(&method);
                if follows {
                    admitted.permits = [None, None];
                }
                let quiet = (!follows && !is_exempt(&method)).then(|| Quiet::new(quiet_limit));
                let mut response = match result {
                    Ok(response) => response,
                    Err(err) => {
                        if let Some(unsettled) = unanswered.0.take() {
                            unsettled.settle("Unknown");
                        }
                        return Err(err);
                    }
                };
                unparseable_is_invalid_argument(response.headers_mut());
                let unsettled = unanswered.0.take();
                if let Some(unsettled) = &unsettled {
                    time(&metrics, &unsettled.method, started.elapsed());
                }
                // A status in the headers (a trailers-only answer) is the call's whole outcome;
                // otherwise it comes in the trailers.
                let unsettled = match unsettled {
                    Some(unsettled) if response.headers().contains_key("grpc-status") => {
                        unsettled.settle(&status_code(response.headers()));
                        None
                    }
                    unsettled => unsettled,
                };
                let mut response = response.map(|body| {
                    tonic::body::Body::new(HeldBody {
                        body,
                        admitted: Some(admitted),
                        ended: false,
                        quiet,
                        unsettled,
                    })
                });
                if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("x-request-id", value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// An unparseable request (see [`status::is_unparseable`]) answered INVALID_ARGUMENT naming the
/// request, for calls whose status travels in the response headers.
fn unparseable_is_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    // tonic percent-encodes the message; the prefix is checked in both spellings.
    let undecodable = headers.get("grpc-message").is_some_and(|v| {
        let text = v.as_bytes();
        text.starts_with(b"failed to decode Protobuf message")
            || text.starts_with(b"failed%20to%20decode%20Protobuf%20message")
    });
    if internal && undecodable {
        headers.extend(status_fields(tonic::Status::invalid_argument(
            status::UNPARSEABLE,
        )));
    }
}

/// `grpc-status` and `grpc-message` of `status`, as tonic writes them.
fn status_fields(status: tonic::Status) -> http::HeaderMap {
    let answer = status.into_http::<()>();
    let mut fields = http::HeaderMap::new();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = answer.headers().get(name) {
            fields.insert(name, value.clone());
        }
    }
    fields
}

/// The gRPC code named by the `grpc-status` of `fields` (headers or trailers), as the metrics
/// label it: `Ok` when there is none.
fn status_code(fields: &http::HeaderMap) -> String {
    fields
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or("Ok".to_owned(), |c| format!("{:?}", tonic::Code::from(c)))
}

/// A call counted in `tracking_grpc_requests_total` by its method and gRPC code.
fn count(metrics: &Metrics, method: &str, code: &str) {
    metrics
        .requests
        .get_or_create(&RpcLabels {
            method: method.to_owned(),
            code: code.to_owned(),
        })
        .inc();
}

/// A call's time to its response headers, in `tracking_grpc_request_duration_seconds`.
fn time(metrics: &Metrics, method: &str, elapsed: Duration) {
    metrics
        .latency
        .get_or_create(&MethodLabels {
            method: method.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_only_the_methods_served() {
        let names = MethodNames::new(&["tracking.plan.v1.PlanService", "test.Slow"]);
        for served in [
            "/tracking.plan.v1.PlanService/ListPlans",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/test.Slow/Call",
        ] {
            assert_eq!(names.label(served), served);
        }
        for made_up in [
            "/tracking.plan.v1.PlanService/NoSuchMethod",
            "/tracking.mint.v1.CodeMintService/MintCode",
            "/a.B/0b6f9f1e-7d4c",
            "/",
            "",
            "/test.Slow",
        ] {
            assert_eq!(names.label(made_up), "unknown", "{made_up}");
        }
    }

    #[test]
    fn only_a_readable_grpc_timeout_is_the_clients_own_deadline() {
        let timeout = |text: &str| {
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(text) {
                headers.insert("grpc-timeout", value);
            }
            client_timeout(&headers)
        };
        for (own, is) in [
            ("1S", Duration::from_secs(1)),
            ("250m", Duration::from_millis(250)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("2H", Duration::from_secs(7200)),
        ] {
            assert_eq!(timeout(own), Some(is), "{own}");
        }
        // Tonic ignores these, so the server's default holds the call.
        for unreadable in ["", "S", "5", "1s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(timeout(unreadable), None, "{unreadable}");
        }
    }
}
