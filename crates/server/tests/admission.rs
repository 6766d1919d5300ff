//! The server kit on a real socket: admission control, default deadline, drain and reflection.
//! Calls beyond the concurrency limit are refused at once with RESOURCE_EXHAUSTED (and counted), a stream holds
//! its place until it ends, health keeps answering, and a call running past the server's
//! deadline is ended. At shutdown, the internal listener serves the calls made during the drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::server::NamedService;
use tracking_server::{GrpcServer, Metrics};

/// A service whose every call takes `delay` and then fails with ABORTED (so its answer is told
/// apart from the kit's). The methods `Export` (a stream of bounded work) and `WatchLog` (a
/// stream following a log) answer one (empty) message at once and end, ABORTED, `delay` later;
/// one named `Panic` panics, and the stream `ExportPanic` panics after its first message.
#[derive(Clone)]
struct Slow {
    delay: Duration,
}

impl NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

impl tower::Service<http::Request<tonic::body::Body>> for Slow {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let delay = self.delay;
        if request.uri().path().ends_with("/Export") || request.uri().path().ends_with("/WatchLog")
        {
            return Box::pin(std::future::ready(Ok(slow_stream(delay))));
        }
        if request.uri().path().ends_with("/Panic") {
            return Box::pin(async { panic!("a handler's bug") });
        }
        if request.uri().path().ends_with("/ExportPanic") {
            return Box::pin(std::future::ready(Ok(panicking_stream())));
        }
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(tonic::Status::aborted("slow call done").into_http())
        })
    }
}

/// A server stream: one empty message now, then, `delay` later, its end with ABORTED.
fn slow_stream(delay: Duration) -> http::Response<tonic::body::Body> {
    use futures::StreamExt;
    use http_body::Frame;
    let message = Frame::data(tonic::codegen::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let end = futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("10"));
        Ok::<_, Infallible>(Frame::trailers(trailers))
    });
    let frames = futures::stream::iter([Ok(message)]).chain(end);
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A server stream: one empty message, then a panic.
fn panicking_stream() -> http::Response<tonic::body::Body> {
    use futures::StreamExt;
    use http_body::Frame;
    let message = Frame::data(tonic::codegen::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let frames =
        futures::stream::iter([Ok::<_, Infallible>(message)]).chain(futures::stream::poll_fn(
            |_| -> Poll<Option<Result<Frame<_>, Infallible>>> { panic!("a stream's bug") },
        ));
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A service whose call waits `delay`, then calls `/test.Slow/Call` at `target` on a new
/// connection, and answers what that call answered (UNAVAILABLE if it could not connect).
#[derive(Clone)]
struct Relay {
    delay: Duration,
    target: std::net::SocketAddr,
}

impl NamedService for Relay {
    const NAME: &'static str = "test.Relay";
}

impl tower::Service<http::Request<tonic::body::Body>> for Relay {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        let (delay, target) = (self.delay, self.target);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let status = match connect(target).await {
                Err(err) => tonic::Status::unavailable(format!("relay: {err}")),
                Ok(channel) => unary(channel, "/test.Slow/Call", None)
                    .await
                    .err()
                    .unwrap_or_else(|| tonic::Status::ok("")),
            };
            Ok(status.into_http())
        })
    }
}

async fn start(
    max_concurrent: usize,
    timeout: Duration,
    delay: Duration,
) -> (std::net::SocketAddr, CancellationToken, Metrics) {
    start_limited(max_concurrent, timeout, delay, &[], 0).await
}

async fn start_limited(
    max_concurrent: usize,
    timeout: Duration,
    delay: Duration,
    limited: &[&str],
    max_calls: usize,
) -> (std::net::SocketAddr, CancellationToken, Metrics) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let server = GrpcServer::new(
        metrics.clone(),
        timeout,
        max_concurrent,
        Duration::from_secs(1),
    )
    .limit_calls(
        &limited.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>(),
        max_calls,
    )
    .add_service(Slow { delay });
    tokio::spawn(server.serve(listener, shutdown.clone()));
    (addr, shutdown, metrics)
}

async fn call(addr: std::net::SocketAddr, path: &'static str) -> (Code, Duration) {
    call_within(addr, path, None).await
}

/// A call with the client's own deadline, if any.
async fn call_within(
    addr: std::net::SocketAddr,
    path: &'static str,
    deadline: Option<Duration>,
) -> (Code, Duration) {
    let channel = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let answer = unary(channel, path, deadline).await;
    (
        answer.err().map_or(Code::Ok, |s| s.code()),
        started.elapsed(),
    )
}

/// A channel to the server at `addr`.
async fn connect(
    addr: std::net::SocketAddr,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
}

/// The unary call `path` on `channel` (every test method takes and answers nothing), with the
/// client's own deadline, if any.
async fn unary(
    channel: tonic::transport::Channel,
    path: &'static str,
    deadline: Option<Duration>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec: tonic_prost::ProstCodec<(), ()> = tonic_prost::ProstCodec::default();
    let mut request = tonic::Request::new(());
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    grpc.unary(request, PathAndQuery::from_static(path), codec)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn calls_beyond_the_limit_are_refused_at_once() {
    let (addr, shutdown, metrics) =
        start(2, Duration::from_secs(10), Duration::from_millis(600)).await;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(call(addr, "/test.Slow/Call")))
        .collect();
    // Give the two admitted calls time to be in flight.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (code, elapsed) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        elapsed < Duration::from_millis(400),
        "refused fast, took {elapsed:?}"
    );
    for task in slow {
        assert_eq!(task.await.map(|(code, _)| code).ok(), Some(Code::Aborted));
    }
    // Capacity is back once the admitted calls are done.
    let (code, _) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::Aborted);
    let text = metrics.encode();
    assert!(text.contains("tracking_grpc_shed_total 1"), "{text}");
    assert!(
        text.contains(r#"method="/test.Slow/Call",code="ResourceExhausted""#),
        "{text}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn calls_beyond_a_methods_own_limit_are_refused_and_other_methods_still_served() {
    let (addr, shutdown, metrics) = start_limited(
        64,
        Duration::from_secs(10),
        Duration::from_millis(600),
        &["/test.Slow/Call", "/test.Slow/Again"],
        1,
    )
    .await;
    let slow = tokio::spawn(call(addr, "/test.Slow/Call"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The limit is shared by the two methods named with it; a third method is not limited.
    let (again, other) = tokio::join!(
        call(addr, "/test.Slow/Again"),
        call(addr, "/test.Slow/Other")
    );
    assert_eq!(again.0, Code::ResourceExhausted);
    assert!(
        again.1 < Duration::from_millis(400),
        "refused fast, took {:?}",
        again.1
    );
    assert_eq!(other.0, Code::Aborted, "served by the slow service");
    assert_eq!(slow.await.map(|(code, _)| code).ok(), Some(Code::Aborted));
    let (code, _) = call(addr, "/test.Slow/Again").await;
    assert_eq!(
        code,
        Code::Aborted,
        "admitted again once the first call is done"
    );
    let text = metrics.encode();
    assert!(text.contains("tracking_grpc_shed_total 1"), "{text}");
    assert!(
        text.contains(r#"method="/test.Slow/Again",code="ResourceExhausted""#),
        "{text}"
    );
    shutdown.cancel();
}

/// Opens the server stream `path` on `addr` and reads its first message.
async fn open_stream(addr: std::net::SocketAddr, path: &'static str) -> tonic::Streaming<()> {
    open_stream_within(addr, path, None).await
}

/// [`open_stream`], with the client's own deadline, if any.
async fn open_stream_within(
    addr: std::net::SocketAddr,
    path: &'static str,
    deadline: Option<Duration>,
) -> tonic::Streaming<()> {
    let channel = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let codec: tonic_prost::ProstCodec<(), ()> = tonic_prost::ProstCodec::default();
    let mut request = tonic::Request::new(());
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    let mut stream = grpc
        .server_streaming(request, PathAndQuery::from_static(path), codec)
        .await
        .unwrap_or_else(|s| panic!("stream: {s}"))
        .into_inner();
    assert_eq!(stream.message().await.ok(), Some(Some(())));
    stream
}

#[tokio::test]
async fn a_stream_following_a_log_gives_its_place_back_once_open() {
    let (addr, shutdown, _) = start(1, Duration::from_secs(10), Duration::from_millis(600)).await;
    let _following = open_stream(addr, "/test.Slow/WatchLog").await;
    let (code, _) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::Aborted, "served beside the open follower");
    shutdown.cancel();
}

#[tokio::test]
async fn a_stream_holds_its_place_until_it_ends() {
    let (addr, shutdown, metrics) =
        start(1, Duration::from_secs(10), Duration::from_millis(600)).await;
    let mut stream = open_stream(addr, "/test.Slow/Export").await;
    // Its headers and first message are out; the stream still runs, and holds the one place.
    let (code, elapsed) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        elapsed < Duration::from_millis(400),
        "refused fast, took {elapsed:?}"
    );
    assert!(metrics.encode().contains("tracking_grpc_in_flight 1"));
    let end = stream.message().await.err().map(|s| s.code());
    assert_eq!(end, Some(Code::Aborted));
    let (code, _) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::Aborted, "admitted once the stream has ended");
    assert!(metrics.encode().contains("tracking_grpc_in_flight 0"));
    shutdown.cancel();
}

#[tokio::test]
async fn calls_past_the_default_deadline_are_ended() {
    let (addr, shutdown, metrics) =
        start(16, Duration::from_millis(200), Duration::from_secs(5)).await;
    let (code, elapsed) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::DeadlineExceeded);
    assert!(
        elapsed < Duration::from_secs(2),
        "ended near its deadline, took {elapsed:?}"
    );
    let encoded = metrics.encode();
    assert!(
        encoded.contains("tracking_grpc_in_flight 0"),
        "an ended call is no longer in flight: {encoded}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_clients_own_deadline_replaces_the_default() {
    // The call takes 600 ms; the server's default deadline is 200 ms.
    let (addr, shutdown, metrics) =
        start(16, Duration::from_millis(200), Duration::from_millis(600)).await;
    let (code, _) = call_within(addr, "/test.Slow/Call", Some(Duration::from_secs(5))).await;
    assert_eq!(
        code,
        Code::Aborted,
        "a longer deadline lets the call finish"
    );
    // A shorter one ends the call at it (tonic answers a client's own deadline CANCELLED).
    let (code, elapsed) =
        call_within(addr, "/test.Slow/Call", Some(Duration::from_millis(100))).await;
    assert_eq!(code, Code::Cancelled);
    assert!(elapsed < Duration::from_millis(550), "took {elapsed:?}");
    // Dropped before it answered, the call is still counted.
    let cancelled = r#"tracking_grpc_requests_total{method="/test.Slow/Call",code="Cancelled"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics.encode().contains(cancelled) {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}

#[tokio::test]
async fn an_http_request_that_stalls_does_not_keep_the_server_from_stopping() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    // The handler says when it is reading the body.
    let (reading, mut started) = tokio::sync::mpsc::channel::<()>(1);
    let router = axum::Router::new().route(
        "/upload",
        axum::routing::post(move |request: axum::extract::Request| async move {
            let _ = reading.send(()).await;
            let body = axum::body::to_bytes(request.into_body(), 1024).await;
            body.map(|b| b.len()).unwrap_or_default().to_string()
        }),
    );
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(tracking_server::http::serve(
        listener,
        router,
        shutdown.clone(),
        Duration::from_millis(200),
    ));
    // A client promises a body and sends a tenth of it.
    let mut client = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    started.recv().await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "stopped after its grace: {stopped:?}"
    );
}

#[tokio::test]
async fn the_internal_listener_serves_calls_made_during_the_drain() {
    let bind = || async {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (public, internal) = (bind().await, bind().await);
    let public_addr = public.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let internal_addr = internal.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(
        Metrics::new(),
        Duration::from_secs(10),
        64,
        Duration::from_secs(5),
    )
    .with_internal_listener(internal)
    .add_service(Slow {
        delay: Duration::ZERO,
    })
    .add_service(Relay {
        delay: Duration::from_millis(500),
        target: internal_addr,
    });
    let serving = tokio::spawn(server.serve(public, shutdown.clone()));
    let relayed = tokio::spawn(call(public_addr, "/test.Relay/Call"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The main listener takes no new call; the relay, in flight, calls its sibling after this.
    let refused = connect(public_addr).await;
    assert!(refused.is_err(), "the main listener is closed");
    let answer = relayed.await.map(|(code, _)| code).ok();
    assert_eq!(
        answer,
        Some(Code::Aborted),
        "the sibling call made during the drain was served"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(3), serving).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "both listeners stopped once the drain was over: {stopped:?}"
    );
}

#[tokio::test]
async fn a_handler_that_panics_answers_internal() {
    let (addr, shutdown, _) = start(16, Duration::from_secs(10), Duration::from_millis(600)).await;
    let channel = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let answer = |channel, path| async move {
        unary(channel, path, None)
            .await
            .err()
            .map(|s| (s.code(), s.message().to_owned()))
    };
    // A slow call in flight on the connection the panicking call shares.
    let slow = tokio::spawn(answer(channel.clone(), "/test.Slow/Call"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let panicked = answer(channel.clone(), "/test.Slow/Panic").await;
    assert_eq!(
        panicked,
        Some((Code::Internal, "internal error".to_owned())),
        "not a protocol error; the panic's message stays in the log"
    );
    let slow = slow.await.ok().flatten().map(|(code, _)| code);
    assert_eq!(slow, Some(Code::Aborted), "the other call answered");
    shutdown.cancel();
}

#[tokio::test]
async fn a_stream_that_panics_ends_with_internal() {
    let (addr, shutdown, metrics) =
        start(16, Duration::from_secs(10), Duration::from_millis(600)).await;
    let mut stream = open_stream(addr, "/test.Slow/ExportPanic").await;
    let end = stream
        .message()
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert_eq!(
        end,
        Some((Code::Internal, "internal error".to_owned())),
        "ended in its trailers, not reset; the panic's message stays in the log"
    );
    assert!(metrics.encode().contains("tracking_grpc_in_flight 0"));
    let (code, _) = call(addr, "/test.Slow/Call").await;
    assert_eq!(code, Code::Aborted, "the server serves on");
    shutdown.cancel();
}

#[tokio::test]
async fn a_stream_of_bounded_work_that_sends_nothing_for_the_deadline_is_ended() {
    // The streams send one message, then nothing for 1.5 s; the server's default deadline
    // (also how long a stream of bounded work may send nothing) is 300 ms.
    let (addr, shutdown, metrics) =
        start(1, Duration::from_millis(300), Duration::from_millis(1500)).await;
    let mut stream = open_stream(addr, "/test.Slow/Export").await;
    let started = Instant::now();
    let end = stream.message().await.err().map(|s| s.code());
    assert_eq!(end, Some(Code::DeadlineExceeded));
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "ended once quiet for its limit, took {:?}",
        started.elapsed()
    );
    assert!(metrics.encode().contains("tracking_grpc_in_flight 0"));
    assert!(
        metrics.encode().contains(
            r#"tracking_grpc_requests_total{method="/test.Slow/Export",code="DeadlineExceeded"} 1"#
        ),
        "counted by the status it was ended with: {}",
        metrics.encode()
    );
    // A stream following a log may wait for as long as its log is quiet.
    let mut following = open_stream(addr, "/test.Slow/WatchLog").await;
    let end = following.message().await.err().map(|s| s.code());
    assert_eq!(end, Some(Code::Aborted), "ended by its service, not cut");
    // A client that allows its call longer than the server's default is given that long.
    let mut patient =
        open_stream_within(addr, "/test.Slow/Export", Some(Duration::from_secs(10))).await;
    let end = patient.message().await.err().map(|s| s.code());
    assert_eq!(end, Some(Code::Aborted), "ended by its service, not cut");
    shutdown.cancel();
}

#[tokio::test]
async fn a_stream_is_counted_by_the_status_it_ends_with() {
    // The streams end 2 s after their first message: long enough for the test to look before
    // the end, and for a client's reset to arrive before it.
    let (addr, shutdown, metrics) =
        start(16, Duration::from_secs(10), Duration::from_secs(2)).await;
    let counted = |code: &str, n: u32| {
        format!(r#"tracking_grpc_requests_total{{method="/test.Slow/Export",code="{code}"}} {n}"#)
    };
    // Its headers went out with no status: the status it ends with is in its trailers.
    let mut stream = open_stream(addr, "/test.Slow/Export").await;
    assert!(!metrics.encode().contains("/test.Slow/Export\",code="));
    let end = stream.message().await.err().map(|s| s.code());
    assert_eq!(end, Some(Code::Aborted));
    let text = metrics.encode();
    assert!(text.contains(&counted("Aborted", 1)), "{text}");
    assert!(!text.contains(&counted("Ok", 1)), "{text}");

    let mut panicking = open_stream(addr, "/test.Slow/ExportPanic").await;
    assert!(panicking.message().await.is_err());
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"tracking_grpc_requests_total{method="/test.Slow/ExportPanic",code="Internal"} 1"#
        ),
        "{text}"
    );

    // A stream its client drops before the end is counted as cancelled, once the server has
    // seen the reset.
    drop(open_stream(addr, "/test.Slow/Export").await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics.encode().contains(&counted("Cancelled", 1)) {
        assert!(
            Instant::now() < deadline,
            "not counted as cancelled: {}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.encode().contains(&counted("Aborted", 1)));
    shutdown.cancel();
}

/// Reflection lists what this server serves (and health and reflection), not every service of
/// the suite: a single service's binary must not advertise the other three. Every type stays
/// resolvable.
#[tokio::test]
async fn reflection_lists_only_the_services_served() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    /// A stand-in for PlanService: reflection goes by the name only.
    #[derive(Clone)]
    struct Plan;
    impl NamedService for Plan {
        const NAME: &'static str = "tracking.plan.v1.PlanService";
    }
    impl tower::Service<http::Request<tonic::body::Body>> for Plan {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            std::future::ready(Ok(tonic::Status::unimplemented("stand-in").into_http()))
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(
        Metrics::new(),
        Duration::from_secs(10),
        64,
        Duration::from_secs(1),
    )
    .add_service(Plan);
    tokio::spawn(server.serve(listener, shutdown.clone()));
    let channel = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let ask = |message_request: MessageRequest| {
        let channel = channel.clone();
        async move {
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(message_request),
            };
            let mut responses = ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter(vec![request]))
                .await
                .unwrap_or_else(|s| panic!("{s}"))
                .into_inner();
            responses
                .message()
                .await
                .ok()
                .flatten()
                .and_then(|r| r.message_response)
        }
    };
    let listed = match ask(MessageRequest::ListServices(String::new())).await {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        listed,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "tracking.plan.v1.PlanService",
        ]
    );
    for symbol in [
        "tracking.plan.v1.PlanService",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        let found = ask(MessageRequest::FileContainingSymbol(symbol.to_owned())).await;
        assert!(
            matches!(found, Some(MessageResponse::FileDescriptorResponse(_))),
            "{symbol}: {found:?}"
        );
    }
    shutdown.cancel();
}

/// A client that opens a connection to the HTTP port and sends nothing, or half a request line,
/// is cut off once the headers are late: it cannot hold the connection (and its task) for good.
#[tokio::test]
async fn an_http_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let router = axum::Router::new().route("/r/x", axum::routing::get(|| async { "ok" }));
    tokio::spawn(tracking_server::http::serve(
        listener,
        router,
        shutdown.clone(),
        Duration::from_millis(200),
    ));
    // One sends nothing at all, one half a request line.
    let mut silent = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut client = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .write_all(b"GET /r/x HT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        tracking_server::http::HEADER_READ_TIMEOUT + Duration::from_secs(5),
        client.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() >= tracking_server::http::HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut nothing)).await;
    assert!(read.is_ok(), "the silent connection was not closed");
    // The port still serves others.
    let mut other = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    other
        .write_all(b"GET /r/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut served = String::new();
    let _ = other.read_to_string(&mut served).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    shutdown.cancel();
}
