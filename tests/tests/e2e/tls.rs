//! Optional TLS for gRPC: the suite serves over TLS with a server certificate, requires client
//! certificates when a client CA is configured, and its services call each other over mutual
//! TLS. Certificates are made with the openssl command line for the test.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use suite_tests::{brand, config, valid_registration};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::plan::v1::plan_service_client::PlanServiceClient;
use tracking_api::plan::v1::{CreatePlanRequest, Discount, Plan, discount};
use tracking_db::TestDb;
use tracking_server::tls::TlsArgs;
use tracking_testkit::authed;

/// The services' client TLS settings are the process's (`tracking_server::tls::set_client`):
/// the tests that start a suite over TLS run one at a time, each with its own.
static ONE_TLS_SUITE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A CA and a certificate it signed for localhost / 127.0.0.1; false when openssl is missing.
fn make_certs(dir: &Path) -> bool {
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .is_ok()
        && openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=tracking-test-ca",
            ],
        )
        && openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "node.key",
                "-out",
                "node.csr",
                "-subj",
                "/CN=localhost",
            ],
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "node.pem",
                "-days",
                "1",
                "-extfile",
                "ext",
            ],
        )
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn channel(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) -> Option<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://localhost:{}", addr.port()))
        .ok()?
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).ok()?;
    }
    endpoint.connect().await.ok()
}

async fn serving(channel: Option<Channel>) -> bool {
    let Some(channel) = channel else { return false };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

#[tokio::test]
async fn grpc_over_mutual_tls() {
    let _alone = ONE_TLS_SUITE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("tracking-tls-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if !make_certs(&dir) {
        eprintln!("openssl is not available; skipped");
        return;
    }
    let db = TestDb::new(trackd::SCHEMAS).await;
    let mut suite_config = config(db.url());
    suite_config.tls = TlsArgs {
        tls_cert: Some(dir.join("node.pem")),
        tls_key: Some(dir.join("node.key")),
        tls_client_ca: Some(dir.join("ca.pem")),
        tls_ca: Some(dir.join("ca.pem")),
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = grpc.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(trackd::run(suite_config, grpc, http, shutdown.clone()));

    let ca = Certificate::from_pem(read(&dir, "ca.pem"));
    let with_cert = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(Identity::from_pem(
            read(&dir, "node.pem"),
            read(&dir, "node.key"),
        ));
    let started = Instant::now();
    while !serving(channel(addr, Some(with_cert.clone())).await).await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "TLS server not serving"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plaintext, and TLS without a client certificate, are refused.
    assert!(
        !serving(channel(addr, None).await).await,
        "plaintext accepted"
    );
    let without_cert = ClientTlsConfig::new().ca_certificate(ca);
    assert!(
        !serving(channel(addr, Some(without_cert)).await).await,
        "no client certificate accepted"
    );

    // A plan is validated by PlanService calling ProviderGateway: service to service over mTLS.
    let channel = channel(addr, Some(with_cert))
        .await
        .unwrap_or_else(|| panic!("TLS channel"));
    plan_is_created_over(channel).await;
    shutdown.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates a plan over `channel`: PlanService validates it by calling ProviderGateway, so the
/// services reach each other over TLS too.
async fn plan_is_created_over(channel: Channel) {
    let integration = ProviderGatewayClient::new(channel.clone())
        .register_integration(authed(
            valid_registration(Provider::Sandbox, "TLS store"),
            &brand(1),
        ))
        .await
        .map(|r| r.into_inner().integration.map(|i| i.id).unwrap_or_default())
        .unwrap_or_else(|s| panic!("{s}"));
    let plan = PlanServiceClient::new(channel)
        .create_plan(authed(
            CreatePlanRequest {
                plan: Some(Plan {
                    name: "Over TLS".into(),
                    integration_id: integration,
                    discount: Some(Discount {
                        kind: Some(discount::Kind::PercentBps(1000)),
                    }),
                    code_pattern: "{username}".into(),
                    ..Plan::default()
                }),
                request_id: String::new(),
            },
            &brand(1),
        ))
        .await;
    assert!(plan.is_ok(), "{plan:?}");
}

/// A self-signed certificate for localhost in `dir` (`self.pem`, `self.key`): marked CA:FALSE
/// as a server's own certificate should be, or left as `openssl req -x509` makes it (CA:TRUE);
/// false when openssl is missing.
fn self_signed(dir: &Path, ca_false: bool) -> bool {
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "self.key",
        "-out",
        "self.pem",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ];
    if ca_false {
        args.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
    }
    openssl(dir, &args)
}

/// trackd on `dir`'s self-signed certificate with no `tls_ca`, serving on its own listeners.
async fn trackd_self_signed(
    dir: &Path,
) -> (
    TestDb,
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let db = TestDb::new(trackd::SCHEMAS).await;
    let mut suite_config = config(db.url());
    suite_config.tls = TlsArgs {
        tls_cert: Some(dir.join("self.pem")),
        tls_key: Some(dir.join("self.key")),
        ..TlsArgs::default()
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = grpc.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(trackd::run(suite_config, grpc, http, shutdown.clone()));
    (db, addr, shutdown, server)
}

/// TLS with a self-signed certificate and no `tls_ca`: trackd's services, which call each other
/// at its own https://localhost URL, trust its own certificate (they refused to start before).
#[tokio::test]
async fn a_self_signed_certificate_alone_serves_tls() {
    let _alone = ONE_TLS_SUITE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("tracking-tls-self-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if !self_signed(&dir, true) {
        eprintln!("openssl is not available; skipped");
        return;
    }
    let (_db, addr, shutdown, server) = trackd_self_signed(&dir).await;
    let trusting =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&dir, "self.pem")));
    let started = Instant::now();
    while !serving(channel(addr, Some(trusting.clone())).await).await {
        assert!(!server.is_finished(), "trackd stopped: {:?}", server.await);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "TLS server not serving"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // PlanService validates the plan by calling ProviderGateway over TLS.
    let channel = channel(addr, Some(trusting))
        .await
        .unwrap_or_else(|| panic!("TLS channel"));
    plan_is_created_over(channel).await;
    shutdown.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A self-signed certificate as `openssl req -x509` makes it is marked CA:TRUE, which TLS
/// refuses as a server's own: trackd stops with the reason and the remedy, rather than serving
/// while every call between its services fails.
#[tokio::test]
async fn a_certificate_its_services_cannot_trust_stops_trackd_with_the_reason() {
    let _alone = ONE_TLS_SUITE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("tracking-tls-ca-true-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if !self_signed(&dir, false) {
        eprintln!("openssl is not available; skipped");
        return;
    }
    let (_db, _addr, _shutdown, server) = trackd_self_signed(&dir).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap_or_else(|_| panic!("trackd kept serving"))
        .unwrap_or_else(|e| panic!("{e}"));
    let why = stopped.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(why.contains("--tls-ca"), "{why}");
    let _ = std::fs::remove_dir_all(&dir);
}
