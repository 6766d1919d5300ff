//! `trackctl load webhooks`: sets up a Shopify integration with a webhook secret, a plan on it,
//! a campaign and creators with codes, then sends signed `orders/create` deliveries to
//! `POST /webhooks/shopify/{integration}` over HTTP/1.1 keep-alive connections, re-sending a
//! share of them with the same `X-Shopify-Webhook-Id`. Latency is one delivery's answer (200
//! once stored). Meanwhile `StreamConversions` is followed, for the time from a delivery's 200 to
//! its conversion. Verification: the campaign counts every accepted order exactly once, and the
//! re-sent deliveries add nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::Full;
use sha2::Sha256;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1::RegisterIntegrationRequest;

use super::{
    Common, ConversionWatch, Counter, Flow, Pacer, Recorder, Rng, Service, Summary,
    http_outcome_unknown, mint_all, orders_verified, progress, run_id, set_up, settle,
    wait_attributable, web,
};

const SECRET: &str = "whsec_load_secret";

#[derive(clap::Args, Debug, Clone)]
pub struct WebhooksLoad {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub flow: Flow,
    /// Share of deliveries that re-send an already accepted delivery (same body, same
    /// X-Shopify-Webhook-Id), 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    pub duplicates: f64,
    /// The Shopify Admin API the gateway pushes the run's codes to (the integration's base URL).
    /// Nothing listens at the default, so pushes fail fast and the codes stay PENDING, which
    /// attribution does not mind; with no internet, the real shop could not be reached anyway.
    #[arg(long, default_value = "http://127.0.0.1:9")]
    pub shopify_api: String,
}

/// HMAC-SHA256 of the exact body with the secret, base64: the `X-Shopify-Hmac-Sha256` header.
fn sign(secret: &[u8], body: &[u8]) -> anyhow::Result<String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)?;
    mac.update(body);
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// One Shopify `orders/create` body: a paid order of 100.00 EUR, 15 % off with `code`.
fn order_body(id: u64, code: &str, product: u64) -> anyhow::Result<Vec<u8>> {
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(serde_json::to_vec(&serde_json::json!({
        "id": id,
        "name": format!("#{id}"),
        "currency": "EUR",
        "financial_status": "paid",
        "created_at": created_at,
        "subtotal_price": "85.00",
        "total_line_items_price": "100.00",
        "total_discounts": "15.00",
        "total_price": "85.00",
        "test": false,
        "email": format!("shopper{id}@load.test"),
        "discount_codes": [{ "code": code, "amount": "15.00", "type": "percentage" }],
        "discount_applications": [{
            "target_type": "line_item",
            "type": "discount_code",
            "value": "15.0",
            "value_type": "percentage",
            "allocation_method": "across",
            "target_selection": "all",
            "code": code,
        }],
        "line_items": [{
            "id": id * 10 + 1,
            "product_id": product,
            "quantity": 1,
            "price": "100.00",
            "title": "Load test product",
            "discount_allocations": [{ "amount": "15.00", "discount_application_index": 0 }],
        }],
        "shipping_address": { "country_code": "DE" },
    }))?)
}

/// One delivery as sent (kept to re-send it).
#[derive(Clone)]
struct Delivery {
    order_id: u64,
    webhook_id: HeaderValue,
    body: Bytes,
    signature: HeaderValue,
}

/// How the gateway answered 200 deliveries (the body's `status`).
#[derive(Clone, Default)]
struct Answers {
    accepted: Counter,
    redelivery: Counter,
    duplicate: Counter,
    other: Counter,
    /// Re-sent deliveries answered `accepted`: stored twice.
    resent_accepted: Counter,
}

struct Worker {
    connection: web::Connection,
    intake: Uri,
    /// The shop the integration was registered for (`X-Shopify-Shop-Domain`).
    shop: HeaderValue,
    codes: Arc<Vec<String>>,
    next_order: Arc<AtomicU64>,
    recorder: Recorder,
    answers: Answers,
    duplicates: f64,
    pacer: Pacer,
    rng: Rng,
}

/// What a worker hands back: each accepted original order with when its 200 arrived, the
/// orders whose delivery failed but may have been stored, and how many re-sent deliveries were
/// answered 200.
struct Delivered {
    accepted: Vec<(String, Instant)>,
    unknown: Vec<String>,
    resent: u64,
}

impl Worker {
    /// Notes a failed delivery that may have been stored. A re-sent one changes nothing either
    /// way: its original was accepted.
    fn unknown(&self, delivered: &mut Delivered, delivery: &Delivery, resend: bool) {
        if !resend {
            delivered.unknown.push(delivery.order_id.to_string());
            self.recorder.outcome_unknown(1);
        }
    }

    fn next_delivery(&mut self) -> anyhow::Result<Delivery> {
        let n = self.next_order.fetch_add(1, Ordering::Relaxed);
        let order_id = 1_000_000_000_000 + n;
        let code = &self.codes[self.rng.below(self.codes.len())];
        let body = order_body(order_id, code, 9_000_000 + n % 50)?;
        Ok(Delivery {
            order_id,
            webhook_id: HeaderValue::try_from(format!("load-{order_id}"))?,
            signature: HeaderValue::try_from(sign(SECRET.as_bytes(), &body)?)?,
            body: Bytes::from(body),
        })
    }

    async fn run(mut self) -> anyhow::Result<Delivered> {
        let mut delivered = Delivered {
            accepted: Vec::new(),
            unknown: Vec::new(),
            resent: 0,
        };
        let mut last: Option<Delivery> = None;
        while let Some(due) = self.pacer.next().await {
            let resend = self.rng.unit() < self.duplicates && last.is_some();
            let delivery = match (&last, resend) {
                (Some(previous), true) => previous.clone(),
                _ => self.next_delivery()?,
            };
            let request = self
                .connection
                .target()
                .request(Method::POST, self.intake.clone())
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .header("x-shopify-topic", HeaderValue::from_static("orders/create"))
                .header("x-shopify-hmac-sha256", delivery.signature.clone())
                .header("x-shopify-webhook-id", delivery.webhook_id.clone())
                .header("x-shopify-shop-domain", self.shop.clone())
                .body(Full::new(delivery.body.clone()))?;
            let answer = self
                .connection
                .send(request)
                .await
                .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()));
            let latency = due.elapsed();
            match answer {
                Ok((status, text)) if status == StatusCode::OK => {
                    self.recorder.record(latency, None);
                    let counter = if text.contains("\"accepted\"") {
                        &self.answers.accepted
                    } else if text.contains("\"redelivery\"") {
                        &self.answers.redelivery
                    } else if text.contains("\"duplicate\"") {
                        &self.answers.duplicate
                    } else {
                        &self.answers.other
                    };
                    counter.add(1);
                    if resend {
                        delivered.resent += 1;
                        if text.contains("\"accepted\"") {
                            self.answers.resent_accepted.add(1);
                        }
                    } else {
                        delivered
                            .accepted
                            .push((delivery.order_id.to_string(), Instant::now()));
                        last = Some(delivery);
                    }
                }
                Ok((status, _)) => {
                    self.recorder
                        .record(latency, Some(format!("HTTP {}", status.as_u16())));
                    if http_outcome_unknown(status) {
                        self.unknown(&mut delivered, &delivery, resend);
                    }
                }
                Err(err) => {
                    self.recorder.record(latency, Some(err.class().to_owned()));
                    if err.outcome_unknown() {
                        self.unknown(&mut delivered, &delivery, resend);
                    }
                }
            }
        }
        Ok(delivered)
    }
}

pub async fn run(load: WebhooksLoad, token: &str) -> anyhow::Result<Summary> {
    let common = &load.common;
    super::no_timeout(common, "webhooks")?;
    if !(0.0..=1.0).contains(&load.duplicates) {
        anyhow::bail!("--duplicates must be between 0 and 1");
    }
    let services = load.flow.addrs.connect(&Service::ALL).await?;
    let channel = services.attribution.clone();
    let run = run_id()?;
    let shop_domain = format!("load-{run}.myshopify.com");
    let shop = HeaderValue::try_from(shop_domain.as_str())?;
    let shopify = RegisterIntegrationRequest {
        provider: Provider::Shopify as i32,
        name: format!("load {run}"),
        shop_domain: shop_domain.clone(),
        base_url: load.shopify_api.clone(),
        credentials: [("access_token".to_owned(), format!("shpat_load_{run}"))].into(),
        webhook_secret: SECRET.to_owned(),
        request_id: String::new(),
    };
    let fixture = set_up(&services, token, shopify, load.flow.creators, &run).await?;
    let codes = mint_all(&services, token, fixture.campaign, load.flow.creators).await?;
    let target = load.flow.webhooks()?;
    let slugs: Vec<String> = codes
        .iter()
        .filter_map(|c| c.links.as_ref().map(|l| l.slug.clone()))
        .collect();
    let links = load.flow.links()?;
    wait_attributable(channel.clone(), token, fixture.campaign, &links, &slugs).await?;
    eprintln!(
        "set-up: shopify integration {}, campaign {}, {} creators with codes (pending at the store)",
        fixture.integration,
        fixture.campaign,
        codes.len()
    );
    let watch = ConversionWatch::start(channel.clone(), token, fixture.campaign).await?;

    let codes = Arc::new(codes.into_iter().map(|c| c.code).collect::<Vec<_>>());
    let intake = target.uri(&format!("/webhooks/shopify/{}", fixture.integration))?;
    let recorder = Recorder::new()?;
    let answers = Answers::default();
    let next_order = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let deadline = started + common.duration;
    let ticker = progress(recorder.clone(), started, common.duration);
    let mut tasks = Vec::new();
    for worker in 0..common.concurrency {
        let worker = Worker {
            connection: web::Connection::new(target.clone()),
            intake: intake.clone(),
            shop: shop.clone(),
            codes: codes.clone(),
            next_order: next_order.clone(),
            recorder: recorder.clone(),
            answers: answers.clone(),
            duplicates: load.duplicates,
            pacer: Pacer::new(common.rate, common.concurrency, 1, worker, deadline),
            rng: Rng::new(worker as u64 + 1),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut accepted = Vec::new();
    let mut unknown_ids = HashSet::new();
    let mut resent = 0;
    for task in tasks {
        let delivered = task.await??;
        accepted.extend(delivered.accepted);
        unknown_ids.extend(delivered.unknown);
        resent += delivered.resent;
    }
    let elapsed = started.elapsed();
    let mut summary = Summary::from("webhooks (Shopify orders/create)", &recorder, elapsed);
    let _ = ticker.await;
    summary.unit = "deliveries";

    let expected = accepted.len() as i64;
    let settled = settle(
        channel.clone(),
        token,
        fixture.campaign,
        "orders attributed",
        expected,
        load.flow.settle,
        |f| f.orders,
    )
    .await?;
    let (lag, unseen) = watch.finish(&accepted)?;
    let lag_p = lag.percentiles();

    let mut problems = Vec::new();
    if expected == 0 {
        problems.push("no delivery was accepted".to_owned());
    }
    let accepted_ids: HashSet<String> = accepted.iter().map(|(id, _)| id.clone()).collect();
    problems.extend(
        orders_verified(
            channel,
            token,
            fixture.campaign,
            (expected, &accepted_ids),
            &unknown_ids,
            settled.value,
            load.flow.settle,
        )
        .await?,
    );
    if answers.resent_accepted.get() > 0 {
        problems.push(format!(
            "{} re-sent deliveries were stored as new",
            answers.resent_accepted.get()
        ));
    }
    summary.notes.push(format!(
        "orders        {expected} accepted once, {resent} re-sent deliveries answered 200 \
         (answers: accepted {}, redelivery {}, duplicate {}, other {})",
        answers.accepted.get(),
        answers.redelivery.get(),
        answers.duplicate.get(),
        answers.other.get()
    ));
    summary.notes.push(format!(
        "attributed    {} orders in the campaign{}",
        settled.value,
        settled
            .reached
            .map(|at| format!(
                ", all {:.2}s after the load began ({:.0} orders/s)",
                (at - started).as_secs_f64(),
                expected as f64 / (at - started).as_secs_f64().max(1e-9)
            ))
            .unwrap_or_else(|| format!(
                ", not all within --settle; attribution went on at {:.0} orders/s after the load",
                settled.pace
            ))
    ));
    summary.notes.push(format!(
        "accepted → conversion visible (StreamConversions) ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} orders, {unseen} not seen on the stream)",
        lag_p.p50,
        lag_p.p90,
        lag_p.p99,
        lag_p.max,
        lag.samples()
    ));
    summary.verified_by(&problems, common.allow_errors);
    let extra = &mut summary.extra;
    extra.insert("orders_accepted".into(), expected.into());
    extra.insert("orders_attributed".into(), settled.value.into());
    extra.insert(
        "attribution_pace_after_load".into(),
        settled.pace.round().into(),
    );
    extra.insert("resent".into(), resent.into());
    extra.insert("conversion_p50_ms".into(), lag_p.p50.into());
    extra.insert("conversion_p99_ms".into(), lag_p.p99.into());
    extra.insert("conversion_max_ms".into(), lag_p.max.into());
    extra.insert(
        "attributed_s".into(),
        settled
            .reached
            .map(|at| (at - started).as_secs_f64())
            .into(),
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base64 HMAC-SHA256 of the body (the value computed independently with Python's `hmac`).
    #[test]
    fn signs_like_shopify() -> anyhow::Result<()> {
        let signature = sign(b"secret", b"body")?;
        assert_eq!(signature, "3EaYNVf+oSe0OvchRn65s/3iM4/j4U9RlSqoR4wT01U=");
        Ok(())
    }

    #[test]
    fn bodies_carry_the_code_on_the_order_and_the_line() -> anyhow::Result<()> {
        let body: serde_json::Value = serde_json::from_slice(&order_body(7, "ANN15", 1)?)?;
        assert_eq!(body["discount_codes"][0]["code"], "ANN15");
        assert_eq!(body["discount_applications"][0]["code"], "ANN15");
        assert_eq!(
            body["line_items"][0]["discount_allocations"][0]["discount_application_index"],
            0
        );
        Ok(())
    }
}
