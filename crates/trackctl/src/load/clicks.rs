//! `trackctl load clicks`: sets up a sandbox integration, a plan with a click-through URL, a
//! campaign and creators with tracking links, then sends browser-like `GET /r/{slug}` requests
//! over HTTP/1.1 keep-alive connections (redirects not followed; 302 expected). Latency is one
//! redirect's answer. Verification: the campaign's click count equals the number of 302 answers
//! (clicks are written in batches, so it is read again until it settles).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode, Uri, header};
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::RegisterIntegrationRequest;

use super::{
    Common, Flow, Pacer, Recorder, Rng, Service, Summary, count_problem, http_outcome_unknown,
    mint_all, progress, run_id, set_up, settle, wait_attributable, web,
};

/// What a shopper's browser sends (no crawler or preview fetcher, so every click counts).
const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

#[derive(clap::Args, Debug, Clone)]
pub struct ClicksLoad {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub flow: Flow,
}

struct Worker {
    connection: web::Connection,
    links: Arc<Vec<Uri>>,
    visitor: HeaderValue,
    recorder: Recorder,
    pacer: Pacer,
    rng: Rng,
}

impl Worker {
    async fn run(mut self) -> anyhow::Result<()> {
        while let Some(due) = self.pacer.next().await {
            let uri = self.links[self.rng.below(self.links.len())].clone();
            let request = self
                .connection
                .target()
                .request(Method::GET, uri)
                .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
                .header(
                    header::ACCEPT_LANGUAGE,
                    HeaderValue::from_static("de-DE,de;q=0.9,en;q=0.8"),
                )
                .header(
                    header::REFERER,
                    HeaderValue::from_static("https://www.instagram.com/"),
                )
                .header("x-forwarded-for", self.visitor.clone())
                .body(Default::default())?;
            let answer = self.connection.send(request).await;
            let latency = due.elapsed();
            match answer {
                Ok((status, _)) if status == StatusCode::FOUND => {
                    self.recorder.record(latency, None);
                }
                Ok((status, _)) => {
                    self.recorder
                        .record(latency, Some(format!("HTTP {}", status.as_u16())));
                    if http_outcome_unknown(status) {
                        self.recorder.outcome_unknown(1);
                    }
                }
                Err(err) => {
                    self.recorder.record(latency, Some(err.class().to_owned()));
                    if err.outcome_unknown() {
                        self.recorder.outcome_unknown(1);
                    }
                }
            }
        }
        Ok(())
    }
}

pub async fn run(load: ClicksLoad, token: &str) -> anyhow::Result<Summary> {
    let common = &load.common;
    super::no_timeout(common, "clicks")?;
    let services = load.flow.addrs.connect(&Service::ALL).await?;
    let run = run_id()?;
    let sandbox = RegisterIntegrationRequest {
        provider: Provider::Sandbox as i32,
        name: format!("load {run}"),
        ..Default::default()
    };
    let fixture = set_up(&services, token, sandbox, load.flow.creators, &run).await?;
    let codes = mint_all(&services, token, fixture.campaign, load.flow.creators).await?;
    let target = load.flow.links()?;
    let slugs: Vec<String> = codes
        .iter()
        .filter_map(|c| c.links.as_ref().map(|l| l.slug.clone()))
        .filter(|slug| !slug.is_empty())
        .collect();
    if slugs.is_empty() {
        anyhow::bail!("set-up: the minted codes carry no tracking links");
    }
    wait_attributable(
        services.attribution.clone(),
        token,
        fixture.campaign,
        &target,
        &slugs,
    )
    .await?;
    eprintln!(
        "set-up: sandbox integration {}, campaign {}, {} tracking links",
        fixture.integration,
        fixture.campaign,
        slugs.len()
    );

    let links = Arc::new(
        slugs
            .iter()
            .map(|slug| target.uri(&format!("/r/{slug}")))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let recorder = Recorder::new()?;
    let started = Instant::now();
    let deadline = started + common.duration;
    let ticker = progress(recorder.clone(), started, common.duration);
    let mut tasks = Vec::new();
    for worker in 0..common.concurrency {
        let worker = Worker {
            connection: web::Connection::new(target.clone()),
            links: links.clone(),
            visitor: HeaderValue::try_from(format!("198.51.100.{}", worker % 250 + 1))?,
            recorder: recorder.clone(),
            pacer: Pacer::new(common.rate, common.concurrency, 1, worker, deadline),
            rng: Rng::new(worker as u64 + 1),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let mut summary = Summary::from("clicks (GET /r/{slug})", &recorder, elapsed);
    let _ = ticker.await;
    summary.unit = "clicks";

    let redirected = summary.ok as i64;
    let settled = settle(
        services.attribution,
        token,
        fixture.campaign,
        "clicks counted",
        redirected,
        load.flow.settle,
        |f| f.clicks,
    )
    .await?;
    let counted_s = settled.reached.map(|at| (at - started).as_secs_f64());
    summary.notes.push(format!(
        "clicks        {redirected} redirected (302), {} counted in the campaign{}",
        settled.value,
        counted_s
            .map(|s| format!(", all {s:.2}s after the load began"))
            .unwrap_or_default()
    ));
    let mut problems = Vec::new();
    if redirected == 0 {
        problems.push("no click was redirected".to_owned());
    }
    problems.extend(count_problem(
        "clicks",
        settled.value,
        redirected,
        summary.unknown_outcome as i64,
    ));
    summary.verified_by(&problems, common.allow_errors);
    summary
        .extra
        .insert("clicks_redirected".into(), redirected.into());
    summary
        .extra
        .insert("clicks_counted".into(), settled.value.into());
    summary.extra.insert("counted_s".into(), counted_s.into());
    Ok(summary)
}
