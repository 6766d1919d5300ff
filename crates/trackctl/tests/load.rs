//! `trackctl load` against the whole suite (in process, real gRPC and HTTP on sockets, a real
//! PostgreSQL): each path sets up its data, drives a short load, verifies the outcome through
//! the public APIs, and prints the JSON summary on its last line.

use std::process::Command;

use suite_tests::Suite;
use tracking_testkit::TEST_SECRET;

/// Runs `trackctl load <args> --json` against `suite` and checks that no call failed; returns
/// the summary object.
async fn load(suite: &Suite, args: &[&str]) -> serde_json::Value {
    let (summary, stdout) = verified_load(suite, args).await;
    assert_eq!(summary["errors"], 0, "{stdout}");
    assert_eq!(summary["unknown_outcome"], 0, "{stdout}");
    summary
}

/// Runs `trackctl load <args> --json` against `suite`: whether it exited successfully, the
/// summary object on its last line, and its output.
async fn run_load(suite: &Suite, args: &[&str]) -> (bool, serde_json::Value, String) {
    let grpc = format!("http://{}", suite.server.grpc_addr);
    let http = format!("http://{}", suite.server.http_addr);
    let mut at_suite = args.to_vec();
    at_suite.extend(["--addr", &grpc]);
    if args[0] != "mint" {
        at_suite.extend(["--http", &http]);
    }
    run_trackctl_load(&at_suite).await
}

/// Runs `trackctl load <args> --json` for a second (attribution's paths settling for up to
/// 30 s): whether it exited successfully, its standard output and its standard error.
async fn run_trackctl_load_raw(args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trackctl"));
    command
        .arg("load")
        .args(args)
        .args(["--json", "--duration", "1s"])
        .env("TRACKING_JWT_SECRET", TEST_SECRET);
    if args[0] != "mint" {
        command.args(["--settle", "30s"]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("trackctl ran")
        .expect("trackctl started");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`run_trackctl_load_raw`]: whether it exited successfully, the summary object on its last
/// line, and its output.
async fn run_trackctl_load(args: &[&str]) -> (bool, serde_json::Value, String) {
    let (succeeded, stdout, stderr) = run_trackctl_load_raw(args).await;
    let last = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("last line is not the JSON summary ({e}): {last:?}\nstderr:\n{stderr}")
    });
    (succeeded, summary, format!("{stdout}\nstderr:\n{stderr}"))
}

/// Runs `trackctl load <args> --json` against `suite` and checks that it verified; returns the
/// summary object and the tool's output.
async fn verified_load(suite: &Suite, args: &[&str]) -> (serde_json::Value, String) {
    let (succeeded, summary, stdout) = run_load(suite, args).await;
    assert!(succeeded, "trackctl load {args:?} failed\n{stdout}");
    assert_eq!(summary["verified"], true, "{stdout}");
    assert!(
        summary["requests_per_second"].as_f64().unwrap_or_default() > 0.0,
        "{stdout}"
    );
    for field in ["p50_ms", "p99_ms", "p999_ms"] {
        assert!(summary[field].is_number(), "{field} missing: {stdout}");
    }
    // What the run cost the machine, read from /proc/stat (Linux only): some CPU, for every
    // request.
    if cfg!(target_os = "linux") {
        let busy = summary["machine_cpu_busy_pct"].as_f64().unwrap_or_default();
        assert!(
            busy > 0.0 && busy <= 100.0,
            "machine_cpu_busy_pct: {stdout}"
        );
        assert!(
            summary["machine_cpu_us_each"].as_f64().unwrap_or_default() > 0.0,
            "machine_cpu_us_each: {stdout}"
        );
        assert!(stdout.contains("machine CPU"), "{stdout}");
    }
    (summary, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mint_unary_verifies_its_codes_and_waits_for_their_push() {
    let suite = Suite::start().await;
    let summary = load(
        &suite,
        &[
            "mint",
            "--mode",
            "unary",
            "--concurrency",
            "4",
            "--creators",
            "40",
        ],
    )
    .await;
    assert_eq!(summary["new_codes"], 40, "{summary}");
    assert!(summary["pushed_s"].as_f64().is_some(), "{summary}");
    let pending = suite
        .count(
            "mint",
            "select count(*) as n from codes where status <> 'active'",
        )
        .await;
    assert_eq!(pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mint_stream_verifies_its_codes() {
    let suite = Suite::start().await;
    let summary = load(
        &suite,
        &[
            "mint",
            "--mode",
            "stream",
            "--concurrency",
            "2",
            "--window",
            "16",
            "--creators",
            "30",
        ],
    )
    .await;
    assert_eq!(summary["new_codes"], 30, "{summary}");
    assert!(summary["pushed_s"].as_f64().is_some(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_webhooks_orders_and_clicks_verify_attribution() {
    let suite = Suite::start().await;
    let webhooks = load(
        &suite,
        &[
            "webhooks",
            "--concurrency",
            "4",
            "--duplicates",
            "0.2",
            "--creators",
            "5",
        ],
    )
    .await;
    assert!(webhooks["requests_per_second"].as_f64().unwrap_or_default() > 0.0);
    load(
        &suite,
        &[
            "orders",
            "--concurrency",
            "2",
            "--chunk",
            "20",
            "--creators",
            "5",
        ],
    )
    .await;
    load(&suite, &["clicks", "--concurrency", "4", "--creators", "5"]).await;
}

/// An `IngestOrders` stream cut by its deadline (`--timeout`) has stored the chunks it got through:
/// with `--allow-errors` those orders count as of unknown outcome, and the verification finds
/// nothing wrong with them (they are neither "never accepted" nor over the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_orders_takes_a_stream_cut_short_as_of_unknown_outcome() {
    let suite = Suite::start().await;
    let (_, summary, stdout) = run_load(
        &suite,
        &[
            "orders",
            "--concurrency",
            "2",
            "--chunk",
            "6000",
            "--creators",
            "3",
            "--timeout",
            "300ms",
            "--allow-errors",
        ],
    )
    .await;
    let unknown = summary["unknown_outcome"].as_i64().unwrap_or_default();
    assert!(unknown > 0, "no stream was cut short: {stdout}");
    let stored = suite
        .count(
            "gateway",
            "select count(distinct store_order_id) as n from orders",
        )
        .await;
    let acknowledged = summary["orders_acknowledged"].as_i64().unwrap_or_default();
    assert!(
        stored > acknowledged,
        "no cut stream stored anything ({stored} stored): {stdout}"
    );
    // Streams of 6,000 orders rarely end within 300 ms here: then none was acknowledged, which
    // is all the verification may find.
    let problems = summary["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems.iter().all(|p| p == "no order was acknowledged"),
        "{stdout}"
    );
    assert_eq!(summary["verified"], problems.is_empty(), "{stdout}");
}

/// A gRPC server in front of `upstream` that serves only `service`, as one of the suite's
/// services run apart does: its calls are passed on, its health is SERVING, any other call is
/// UNIMPLEMENTED and any other health NOT_FOUND. Returns its URL.
async fn only(service: &'static str, upstream: std::net::SocketAddr) -> String {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{upstream}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .connect_lazy();
    let forward = move |request: axum::extract::Request| {
        let channel = channel.clone();
        async move {
            let request = request.map(tonic::body::Body::new);
            match tower::ServiceExt::oneshot(channel, request).await {
                Ok(answer) => answer.map(axum::body::Body::new),
                Err(err) => panic!("passing a call on: {err}"),
            }
        }
    };
    let mut routes = tonic::service::Routes::default();
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.route(
        &format!("/{service}/{{*rest}}"),
        axum::routing::post(forward),
    );
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(service, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        // The reporter lives as long as the server.
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .add_routes(routes)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    format!("http://{addr}")
}

/// A port that accepts connections and counts them; its URL and the count.
fn counted_port() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, count)
}

/// The services run apart (as in compose.yaml), each behind a server that serves it alone, are
/// each reached through their own flag; `--addr` and `--http` are not reached at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reaches_services_running_apart_at_their_own_addresses() {
    let suite = Suite::start().await;
    let upstream = suite.server.grpc_addr;
    let http = format!("http://{}", suite.server.http_addr);
    let (plan, mint, gateway, attribution) = (
        only("tracking.plan.v1.PlanService", upstream).await,
        only("tracking.mint.v1.CodeMintService", upstream).await,
        only("tracking.gateway.v1.ProviderGateway", upstream).await,
        only("tracking.attribution.v1.AttributionService", upstream).await,
    );
    let (unused, reached) = counted_port();
    let apart = [
        "--plan-addr",
        &plan,
        "--mint-addr",
        &mint,
        "--gateway-addr",
        &gateway,
        "--attribution-addr",
        &attribution,
        "--addr",
        &unused,
    ];
    for args in [
        &[
            &["webhooks", "--concurrency", "2", "--creators", "3"][..],
            &apart,
            &["--gateway-http", &http, "--attribution-http", &http],
        ][..],
        &[
            &["clicks", "--concurrency", "2", "--creators", "3"][..],
            &apart,
            &["--attribution-http", &http],
        ],
        &[
            &[
                "orders",
                "--concurrency",
                "2",
                "--chunk",
                "10",
                "--creators",
                "3",
            ][..],
            &apart,
            &["--attribution-http", &http],
        ],
        &[
            &["mint", "--concurrency", "2", "--creators", "10"][..],
            &apart,
        ],
    ] {
        let mut args: Vec<&str> = args.concat();
        if args[0] != "mint" {
            args.extend(["--http", &unused]);
        }
        let (succeeded, summary, stdout) = run_trackctl_load(&args).await;
        assert!(succeeded, "{args:?}: {stdout}");
        assert_eq!(summary["verified"], true, "{stdout}");
        assert_eq!(summary["errors"], 0, "{stdout}");
    }
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "--addr or --http was reached"
    );

    // A service asked for where another one is served: refused before set-up, naming the flag.
    let (succeeded, _, stderr) = run_trackctl_load_raw(&[
        "mint",
        "--plan-addr",
        &plan,
        "--gateway-addr",
        &gateway,
        "--mint-addr",
        &gateway,
    ])
    .await;
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--mint-addr {gateway}: tracking.mint.v1.CodeMintService is not served there"
        )),
        "{stderr}"
    );
}

/// Runs `trackctl <args>` with the test secret; its exit status and standard error.
fn trackctl(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_trackctl"))
        .args(args)
        .env("TRACKING_JWT_SECRET", TEST_SECRET)
        .output()
        .expect("trackctl started");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn flags_that_cannot_work_are_refused_before_anything_runs() {
    for (args, names) in [
        (&["load", "mint", "--creators", "0"][..], "--creators"),
        (&["load", "orders", "--creators", "0"][..], "--creators"),
        (&["load", "mint", "--window", "0"][..], "--window"),
        (
            &["load", "clicks", "--concurrency", "0"][..],
            "--concurrency",
        ),
        (&["load", "webhooks", "--rate", "0"][..], "--rate"),
        (
            &["load", "orders", "--connections", "0"][..],
            "--connections",
        ),
        (&["load", "webhooks", "--timeout", "1s"][..], "--timeout"),
        (
            &["load", "mint", "--mode", "stream", "--timeout", "1s"][..],
            "--timeout",
        ),
        (&["token", "--brand", "1", "--ttl", "0s"][..], "--ttl"),
        (&["token", "--brand", "1", "--ttl", "500ms"][..], "--ttl"),
        (
            &["token", "--brand", "1", "--creator", "7"][..],
            "--creator",
        ),
    ] {
        let (ok, stderr) = trackctl(args);
        assert!(!ok && stderr.contains(names), "{args:?}: {stderr}");
    }
    let (ok, stderr) = trackctl(&["token", "--brand", "1", "--ttl", "1h"]);
    assert!(ok, "{stderr}");
}
