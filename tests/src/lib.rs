//! Helpers for the end-to-end tests: the whole suite (trackd) on a fresh database, clients with
//! tokens, and fixtures built through the public RPCs.

pub mod flow;

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::Code as Status;
use tonic::transport::Channel;
use tracking_api::attribution::v1::attribution_service_client::AttributionServiceClient;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::provider_gateway_client::ProviderGatewayClient;
use tracking_api::gateway::v1::{RegisterIntegrationRequest, SetSandboxOutageRequest};
use tracking_api::mint::v1::code_mint_service_client::CodeMintServiceClient;
use tracking_api::mint::v1::{Code, GetCodeRequest, MintCodeRequest};
use tracking_api::plan::v1::plan_service_client::PlanServiceClient;
use tracking_api::plan::v1::{AddCreatorRequest, CreatorProfile, Plan, UpdatePlanRequest};
use tracking_db::TestDb;
use tracking_server::Role;
use tracking_testkit::{TEST_SECRET, TestServer, authed};

pub use tracking_testkit::{creator_token, token};

/// A fixed credentials key for tests (32 zero-based bytes, base64).
pub const TEST_CREDENTIALS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The whole suite on its own database.
pub struct Suite {
    pub db: TestDb,
    pub server: TestServer,
    /// The configuration the suite was started with (restarts keep it).
    config: trackd::SuiteConfig,
}

pub fn config(database_url: &str) -> trackd::SuiteConfig {
    trackd::SuiteConfig {
        database_url: database_url.to_owned(),
        jwt_secret: TEST_SECRET.to_owned(),
        credentials_key: TEST_CREDENTIALS_KEY.to_owned(),
        pool: tracking_db::PoolOptions {
            max_size: 8,
            wait_timeout: Duration::from_secs(5),
            generic_plans: false,
        },
        request_timeout: Duration::from_secs(10),
        max_concurrent_requests: 256,
        shutdown_grace: Duration::from_secs(2),
        public_base_url: "http://links.test".to_owned(),
        mint_workers: 2,
        mint_linger_us: 1000,
        mint_shed_after_ms: 100,
        mint_max_calls: 64,
        mint_pushers: 3,
        order_poll_interval: Duration::from_millis(500),
        // Tests import Amazon reports explicitly (ImportAmazonReport).
        amazon_report_interval: Duration::from_secs(3600),
        // The tests' stores answer on 127.0.0.1.
        local_stores: true,
        trusted_proxies: tracking_server::net::TrustedProxies::local(),
        tls: tracking_server::tls::TlsArgs::default(),
    }
}

async fn serve(config: trackd::SuiteConfig) -> TestServer {
    TestServer::spawn(move |grpc, http, shutdown| trackd::run(config, grpc, http, shutdown)).await
}

impl Suite {
    /// A creator report (`ExportCreatorReport`) as `token` may read it, its chunks joined.
    pub async fn export_report(
        &self,
        token: &str,
        campaign_id: i64,
        creator_id: i64,
    ) -> Result<String, tonic::Status> {
        let request = tracking_api::attribution::v1::ExportCreatorReportRequest {
            campaign_id,
            creator_id,
        };
        let mut stream = self
            .attribution()
            .export_creator_report(authed(request, token))
            .await?
            .into_inner();
        let mut csv = Vec::new();
        while let Some(chunk) = stream.message().await? {
            csv.extend(chunk.chunk);
        }
        Ok(String::from_utf8_lossy(&csv).into_owned())
    }

    pub async fn start() -> Suite {
        Self::start_with(|_| {}).await
    }

    /// The suite with its test configuration changed by `tune` (a tighter limit, say).
    pub async fn start_with(tune: impl FnOnce(&mut trackd::SuiteConfig)) -> Suite {
        let db = TestDb::new(trackd::SCHEMAS).await;
        let mut config = config(db.url());
        tune(&mut config);
        let server = serve(config.clone()).await;
        Suite { db, server, config }
    }

    /// Stops the server gracefully and starts a new one on the same database, with the same
    /// configuration.
    pub async fn restart(&mut self) {
        let old = std::mem::replace(&mut self.server, serve(self.config.clone()).await);
        if let Err(err) = old.stop().await {
            panic!("server stopped with an error: {err}");
        }
    }

    pub fn plan(&self) -> PlanServiceClient<Channel> {
        PlanServiceClient::new(self.server.channel())
    }

    pub fn mint(&self) -> CodeMintServiceClient<Channel> {
        CodeMintServiceClient::new(self.server.channel())
    }

    pub fn attribution(&self) -> AttributionServiceClient<Channel> {
        AttributionServiceClient::new(self.server.channel())
    }

    pub fn gateway(&self) -> ProviderGatewayClient<Channel> {
        ProviderGatewayClient::new(self.server.channel())
    }

    /// The single number a counting query (`select count(*) as n ...`) answers in `schema`.
    pub async fn count(&self, schema: &'static str, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let db = self.schema(schema);
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel_async::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut conn)
            .await
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs one statement in `schema` (to put the suite's tables in a state a test needs:
    /// what a process that died left behind, say).
    pub async fn execute(&self, schema: &'static str, sql: &str) {
        let db = self.schema(schema);
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Waits until `sql` (a `count(*) as n` in `schema`) counts `n`; panics, naming `what`,
    /// if it does not in time.
    pub async fn count_becomes(&self, what: &str, schema: &'static str, sql: &str, n: i64) {
        eventually(what, || async {
            (self.count(schema, sql).await == n).then_some(())
        })
        .await;
    }

    /// Sends one HTTP request to the suite's HTTP port.
    pub async fn http(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> tracking_testkit::http::HttpResponse {
        tracking_testkit::http::request(self.server.http_addr, method, target, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// A pool on one service schema, to check what is (not) stored.
    pub fn schema(&self, schema: &'static str) -> tracking_db::Database {
        self.db.pool(schema)
    }

    /// Races `call` against another transaction: `held` (statements on `schema`, taking locks
    /// and making changes) runs in a transaction left open; `call` starts, and once it (or
    /// anything) waits for a lock, or it is answered, the transaction commits. Returns the
    /// call's answer.
    pub async fn while_held<T: Send + 'static>(
        &self,
        schema: &'static str,
        held: &[String],
        call: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let db = self.schema(schema);
        let mut holder = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let mut run = async |sql: &str| {
            diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut *holder)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        };
        run("begin").await;
        for sql in held {
            run(sql).await;
        }
        let call = tokio::spawn(call);
        let mut watcher = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        tracking_db::until_lock_wait(&mut watcher, &call).await;
        run("commit").await;
        call.await.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A brand token.
pub fn brand(brand_id: i64) -> String {
    token(brand_id, Role::Brand)
}

/// A registration that satisfies `provider`'s connection requirements.
pub fn valid_registration(provider: Provider, name: &str) -> RegisterIntegrationRequest {
    let credentials: &[(&str, &str)] = match provider {
        Provider::Shopify => &[("access_token", "shpat_test_token")],
        Provider::Woocommerce => &[("consumer_key", "ck_x"), ("consumer_secret", "cs_x")],
        Provider::Bigcommerce => &[("store_hash", "abc123"), ("access_token", "bc_token")],
        Provider::Magento => &[("access_token", "mg_token")],
        Provider::AmazonAds => &[
            ("client_id", "amzn1.application"),
            ("client_secret", "secret"),
            ("refresh_token", "Atzr|x"),
            ("profile_id", "123"),
            ("advertiser_id", "987"),
            ("publisher_id", "pub-1"),
        ],
        Provider::Ast | Provider::Sandbox | Provider::Unspecified => &[],
    };
    RegisterIntegrationRequest {
        provider: provider as i32,
        name: name.to_owned(),
        shop_domain: if provider == Provider::Shopify {
            "test-shop.myshopify.com".to_owned()
        } else {
            String::new()
        },
        base_url: if matches!(provider, Provider::Woocommerce | Provider::Magento) {
            "https://store.example.com".to_owned()
        } else {
            String::new()
        },
        credentials: credentials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        webhook_secret: if matches!(
            provider,
            Provider::Shopify | Provider::Woocommerce | Provider::Bigcommerce | Provider::Ast
        ) {
            "whsec_test_secret".to_owned()
        } else {
            String::new()
        },
        request_id: String::new(),
    }
}

/// Registers an integration of `provider` for the token's brand and returns its id.
pub async fn register(suite: &Suite, token: &str, provider: Provider) -> i64 {
    register_as(
        suite,
        token,
        provider,
        &format!("{} store", provider.as_str_name()),
    )
    .await
}

/// Registers an integration of `provider` named `name` and returns its id.
pub async fn register_as(suite: &Suite, token: &str, provider: Provider, name: &str) -> i64 {
    register_integration(suite, token, valid_registration(provider, name)).await
}

/// Registers `registration` for the token's brand and returns its id.
pub async fn register_integration(
    suite: &Suite,
    token: &str,
    registration: RegisterIntegrationRequest,
) -> i64 {
    let provider = registration.provider;
    suite
        .gateway()
        .register_integration(authed(registration, token))
        .await
        .unwrap_or_else(|s| panic!("register provider {provider}: {s}"))
        .into_inner()
        .integration
        .map(|i| i.id)
        .unwrap_or_default()
}

/// Polls `check` until it returns `Some`, for effects of the event streams (within 30 s).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn profile(first: &str, last: &str, username: &str) -> CreatorProfile {
    CreatorProfile {
        first_name: first.into(),
        last_name: last.into(),
        email: format!("{username}@example.com"),
        username: username.into(),
        social_handles: [("instagram".to_owned(), format!("@{username}"))].into(),
    }
}

pub async fn add(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
    profile: CreatorProfile,
    approved: bool,
) {
    suite
        .plan()
        .add_creator(authed(
            AddCreatorRequest {
                campaign_id: campaign,
                creator_id: creator,
                profile: Some(profile),
                approved,
                request_id: String::new(),
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("add creator: {s}"));
}

/// `UpdatePlan` of `plan`'s fields named by `paths` (its id set), as `token`: the plan after.
pub async fn update_plan(
    suite: &Suite,
    token: &str,
    plan: Plan,
    paths: &[&str],
) -> Result<Plan, tonic::Status> {
    let request = UpdatePlanRequest {
        plan: Some(plan),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    suite
        .plan()
        .update_plan(authed(request, token))
        .await
        .map(|r| r.into_inner().plan.unwrap_or_default())
}

/// Takes a sandbox integration's store down (`down`) or brings it back.
pub async fn sandbox_outage(suite: &Suite, token: &str, integration: i64, down: bool) {
    suite
        .gateway()
        .set_sandbox_outage(authed(
            SetSandboxOutageRequest {
                integration_id: integration,
                down,
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("set sandbox outage: {s}"));
}

/// Code `code_id` as GetCode answers it once `ready` holds for it.
pub async fn code_when(
    suite: &Suite,
    token: &str,
    code_id: i64,
    what: &str,
    ready: impl Fn(&Code) -> bool,
) -> Code {
    eventually(what, || async {
        let code = suite
            .mint()
            .get_code(authed(GetCodeRequest { code_id }, token))
            .await
            .ok()?
            .into_inner()
            .code?;
        ready(&code).then_some(code)
    })
    .await
}

pub async fn mint(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
) -> Result<(Code, bool), tonic::Status> {
    suite
        .mint()
        .mint_code(authed(
            MintCodeRequest {
                campaign_id: campaign,
                creator_id: creator,
            },
            token,
        ))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.code.unwrap_or_default(), r.created)
        })
}

/// Mints, retrying while the creator has not reached the mint service's projection yet.
pub async fn mint_when_known(
    suite: &Suite,
    token: &str,
    campaign: i64,
    creator: i64,
) -> Result<(Code, bool), tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match mint(suite, token, campaign, creator).await {
            Err(s)
                if s.code() == Status::FailedPrecondition
                    && s.message().contains("roster")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(s)
                if s.code() == Status::NotFound
                    && s.message().contains("campaign")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => return other,
        }
    }
}

/// The suite in a child process (`suite-node`) on `database_url`, for tests that kill processes
/// or run replicas.
pub struct Node {
    child: std::process::Child,
    pub grpc_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    pub channel: Channel,
}

impl Node {
    /// Starts a node and waits until it is SERVING. `bin` is the `suite-node` binary:
    /// `env!("CARGO_BIN_EXE_suite-node")` in a test.
    pub async fn spawn(bin: &str, database_url: &str) -> Node {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("suite-node: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("suite-node stdout"));
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await
        .unwrap_or_default();
        let mut parts = line.split_whitespace().skip(1);
        let mut addr = || {
            parts
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("suite-node did not start: {line:?}"))
        };
        let (grpc_addr, http_addr) = (addr(), addr());
        let channel = tracking_testkit::wait_serving(grpc_addr, Duration::from_secs(15)).await;
        Node {
            child,
            grpc_addr,
            http_addr,
            channel,
        }
    }

    /// SIGKILL: no shutdown, no draining, connections dropped by the kernel.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn gateway(&self) -> ProviderGatewayClient<Channel> {
        ProviderGatewayClient::new(self.channel.clone())
    }

    pub fn plan(&self) -> PlanServiceClient<Channel> {
        PlanServiceClient::new(self.channel.clone())
    }

    pub fn mint(&self) -> CodeMintServiceClient<Channel> {
        CodeMintServiceClient::new(self.channel.clone())
    }

    pub fn attribution(&self) -> AttributionServiceClient<Channel> {
        AttributionServiceClient::new(self.channel.clone())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
