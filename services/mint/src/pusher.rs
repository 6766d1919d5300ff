//! Getting codes to the store and keeping them there: pending codes are pushed in batches per
//! integration; a code the store already has for something else is suffixed and pushed again; a
//! store that is down leaves codes pending, retried with backoff; disabled and replaced codes are
//! deactivated at the store. Amazon Ads links (no code) wait pending for the creator's attribution
//! tag from the gateway the same way. A brand's edit whose process stopped before the store
//! answered is finished here too (`edits`). Rows are taken `for update skip locked`, so replicas
//! share the work.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracking_api::gateway::v1::{AttributionTagSpec, DisableOutcome, DiscountUpdate, PushOutcome};
use tracking_api::mint::v1::{CodeEventKind, STORE_COLLISION};

use crate::context::{Shared, Take};
use crate::convert::discount_spec;
use crate::domain::links::{affiliate_url, destination_url, tracking_url, with_amazon_tag};
use crate::domain::render::{MAX_SUFFIX_ROUNDS, suffixed};
use crate::domain::{Code, CodeStatus, Failure, Plan};
use crate::error::Error;
use crate::events;
use crate::random::SecureRandom;
use crate::store::{codes, failures, notify_work, projection};

/// Codes pushed per round.
const BATCH: i64 = crate::context::Fresh::ROUND as i64;

/// How long (seconds) a round holds the codes it pushes from other rounds and replicas: longer
/// than a store call takes (the gateway's adapters time out after 10 s, retrying at most 3
/// times), and how long a code waits if its pusher dies mid-call.
pub const HOLD_SECS: i64 = 120;

/// How often the pusher scans for due codes when nothing else wakes it.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`. Codes this process minted arrive by id ([`crate::context::Fresh`]) as
/// soon as they are committed and are pushed by `pushers` workers, each taking the next batch as
/// soon as its last is recorded; everything else due (retries after a store error, codes made
/// pending by a rename or `RetryCode`, another replica's, or fresh ones past its bound) is found
/// by a scan, as many rounds in parallel, run when the database signals work and at least every
/// second.
pub async fn run(
    shared: Shared,
    pushers: usize,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    // The workers take disjoint batches (each its own ids) and the scans lock their rows
    // (`skip locked`), so no code is pushed twice at once.
    let workers = (0..pushers).map(|_| push_fresh(&shared, &shutdown));
    tokio::join!(
        futures::future::join_all(workers),
        scan(&shared, pushers, wake, &shutdown)
    );
}

/// Pushes the codes this process minted, a round at a time, once a round's worth waits or codes
/// have lingered ([`crate::context::Fresh::take`]). Each worker runs on its own: when they were rounds
/// joined together, those that found no codes waited for the last to finish its batches, and one
/// worker pushed alone for as long as minting kept adding codes (half the rate of a stream run).
/// One that fails stays pending in the database, for the scan's retries.
async fn push_fresh(shared: &Shared, shutdown: &CancellationToken) {
    while !shutdown.is_cancelled() {
        let ids = match shared.fresh.take() {
            Take::Round(ids) => ids,
            waiting => {
                let linger = async {
                    match waiting {
                        Take::At(at) => tokio::time::sleep_until(at.into()).await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = shared.fresh.added() => {}
                    _ = linger => {}
                }
                continue;
            }
        };
        if let Err(err) = push_round(shared, Some(&ids)).await {
            tracing::warn!(error = %err, "pushing new codes to stores failed; the scan retries them");
        }
    }
}

/// Scans for due work until `shutdown`: codes to push, Amazon links waiting for their tag,
/// deactivations at stores, and edits whose process stopped. Each kind of work is scanned on
/// its own, so that none waits behind another: when they took turns, a store that hung every
/// push of a backlog of codes held up every brand's deactivations (a disabled code went on
/// giving its discount) and edits.
async fn scan(
    shared: &Shared,
    pushers: usize,
    wake: watch::Receiver<u64>,
    shutdown: &CancellationToken,
) {
    let fresh = &shared.fresh;
    let pushes = || async {
        // A scan gives way to fresh codes (cheaper to take by id) after its first round. After
        // a burst past Fresh's bound the scan pushes the rest, so it runs as many rounds.
        futures::future::join_all((0..pushers).map(|_| {
            until_done(
                "pushing codes to stores",
                || push_round(shared, None),
                || fresh.is_empty(),
            )
        }))
        .await;
    };
    let links = || {
        until_done(
            "getting amazon attribution tags",
            || link_round(shared),
            || true,
        )
    };
    let disables = || async {
        if let Err(err) = disable_round(shared).await {
            tracing::warn!(error = %err, "disabling codes at stores failed, retrying");
        }
    };
    let edits = || async {
        if let Err(err) = crate::edits::finish_abandoned(shared).await {
            tracing::warn!(error = %err, "finishing abandoned edits of codes failed, retrying");
        }
    };
    tokio::join!(
        every_scan(pushes, wake.clone(), shutdown),
        every_scan(links, wake.clone(), shutdown),
        every_scan(disables, wake.clone(), shutdown),
        every_scan(edits, wake, shutdown),
    );
}

/// Runs `work` when the database signals work and at least every [`SCAN_EVERY`], until
/// `shutdown`.
async fn every_scan<F, Fut>(work: F, mut wake: watch::Receiver<u64>, shutdown: &CancellationToken)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        work().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.changed() => {}
            _ = tokio::time::sleep(SCAN_EVERY) => {}
        }
    }
}

/// Runs `round` while it finds a full batch due and `go_on` agrees, or until it fails (the next
/// wake retries).
async fn until_done<F, Fut>(what: &str, mut round: F, go_on: impl Fn() -> bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, Error>>,
{
    loop {
        match round().await {
            Ok(n) if n as i64 >= BATCH && go_on() => continue,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "{what} failed, retrying");
                return;
            }
        }
    }
}

/// What the store said about a group of codes.
#[derive(Default)]
pub struct Outcome {
    pub created: Vec<i64>,
    pub collided: Vec<Code>,
    /// (ids, error, seconds before the first retry)
    pub failed: Vec<(Vec<i64>, String, i64)>,
    pub refused_for_good: Vec<(Code, String)>,
}

/// Pushes `codes` (one brand and integration) and sorts the answers.
pub(crate) async fn push_codes(
    shared: &Shared,
    plan_of: &HashMap<(i64, i64), Plan>,
    codes: &[Code],
) -> Outcome {
    send_codes(shared, plan_of, codes, None).await
}

/// Changes the store's discount that holds `previous` into `code` (a brand's edit), in place,
/// and sorts the answer like a push's.
pub(crate) async fn rename_code(
    shared: &Shared,
    plan_of: &HashMap<(i64, i64), Plan>,
    code: &Code,
    previous: &str,
) -> Outcome {
    send_codes(shared, plan_of, std::slice::from_ref(code), Some(previous)).await
}

async fn send_codes(
    shared: &Shared,
    plan_of: &HashMap<(i64, i64), Plan>,
    codes: &[Code],
    previous: Option<&str>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let Some(first) = codes.first() else {
        return outcome;
    };
    let mut specs = Vec::with_capacity(codes.len());
    let mut sent = Vec::with_capacity(codes.len());
    for code in codes {
        match plan_of.get(&(code.brand_id, code.plan_id)) {
            Some(plan) => {
                specs.push(discount_spec(code, plan));
                sent.push(code);
            }
            None => outcome
                .failed
                .push((vec![code.id], "plan not known yet".to_owned(), 5)),
        }
    }
    if specs.is_empty() {
        return outcome;
    }
    let (brand_id, integration_id) = (first.brand_id, first.integration_id);
    let answered = match previous {
        None => shared.stores.push(brand_id, integration_id, specs).await,
        Some(previous) => {
            let updates = specs
                .into_iter()
                .map(|spec| DiscountUpdate {
                    previous_code: previous.to_owned(),
                    discount: Some(spec),
                })
                .collect();
            shared
                .stores
                .update(brand_id, integration_id, updates)
                .await
        }
    };
    match answered {
        Ok(results) => {
            // A code the gateway gave no answer for waits for a retry like one it could not
            // make now (the contract is one answer per code; a short answer is not a refusal).
            let answered = results.len();
            if sent.len() > answered {
                let ids: Vec<i64> = sent[answered..].iter().map(|c| c.id).collect();
                tracing::warn!(
                    sent = sent.len(),
                    answered,
                    "the gateway answered fewer codes than were sent"
                );
                outcome.failed.push((
                    ids,
                    "the gateway gave no answer for this code".to_owned(),
                    5,
                ));
            }
            for (code, result) in sent.into_iter().zip(results) {
                match PushOutcome::try_from(result.outcome) {
                    Ok(PushOutcome::Created) => outcome.created.push(code.id),
                    Ok(PushOutcome::AlreadyExists) => outcome.collided.push(code.clone()),
                    _ if result.retryable => {
                        outcome.failed.push((vec![code.id], result.message, 5))
                    }
                    _ => outcome
                        .refused_for_good
                        .push((code.clone(), result.message)),
                }
            }
        }
        Err(err) => {
            let retry_in = if err.is_transient() { 2 } else { 60 };
            let ids = sent.iter().map(|c| c.id).collect();
            outcome.failed.push((ids, store_error_text(&err), retry_in));
        }
    }
    outcome
}

fn store_error_text(err: &Error) -> String {
    match err {
        Error::Upstream(status) => status.message().to_owned(),
        other => other.to_string(),
    }
}

/// Records an outcome in the caller's transaction and returns the codes that collided.
async fn apply_outcome(
    shared: &Shared,
    conn: &mut AsyncPgConnection,
    brand_id: i64,
    outcome: Outcome,
) -> Result<Vec<Code>, Error> {
    let activated = codes::set_status(conn, brand_id, &outcome.created, CodeStatus::Active).await?;
    let events: Vec<_> = activated
        .iter()
        .map(|code| events::code(CodeEventKind::Activated, code, &shared.public_base_url))
        .collect();
    tracking_events::append(conn, &events).await?;
    for (ids, error, retry_in) in &outcome.failed {
        codes::push_failed(conn, brand_id, ids, error, *retry_in).await?;
    }
    for (code, error) in &outcome.refused_for_good {
        codes::push_failed(conn, brand_id, &[code.id], error, 300).await?;
        let failure = Failure::StoreError(error.clone());
        failures::record(
            conn,
            (code.brand_id, code.campaign_id, code.creator_id),
            &failure,
        )
        .await?;
    }
    Ok(outcome.collided)
}

async fn plans_of(
    conn: &mut AsyncPgConnection,
    codes: &[Code],
) -> Result<HashMap<(i64, i64), Plan>, Error> {
    let mut keys: Vec<(i64, i64)> = codes.iter().map(|c| (c.brand_id, c.plan_id)).collect();
    keys.sort_unstable();
    keys.dedup();
    Ok(projection::plans(conn, &keys)
        .await?
        .into_iter()
        .map(|plan| ((plan.brand_id, plan.id), plan))
        .collect())
}

/// One round of pushes, of the codes `ids` (this process's fresh codes, still pending) or of any
/// due; returns how many codes were taken.
///
/// The store is called outside any transaction: a transaction left open through a slow store's
/// call would keep PostgreSQL from cleaning up any table's dead rows meanwhile (every hot
/// upsert of the suite then slows down). So the codes are held instead of locked: fresh codes
/// since their insert ([`HOLD_SECS`]), the scan's by [`codes::hold`] as it takes them; the answers
/// are then recorded for the codes that are still as they were sent ([`still_as_sent`]).
async fn push_round(shared: &Shared, ids: Option<&[(i64, i64)]>) -> Result<usize, Error> {
    let mut conn = shared.db.conn().await?;
    let (due, plans) = match ids {
        Some(ids) => {
            let due = codes::pushable_of(&mut conn, ids).await?;
            let plans = plans_of(&mut conn, &due).await?;
            (due, plans)
        }
        None => {
            let (due, plans, _) = conn
                .transaction::<_, Error, _>(async |conn| {
                    let due = codes::due_for_push(conn, BATCH).await?;
                    held_with_plans(conn, due).await
                })
                .await?;
            (due, plans)
        }
    };
    drop(conn);
    if due.is_empty() {
        return Ok(0);
    }
    let mut groups: HashMap<(i64, i64), Vec<Code>> = HashMap::new();
    for code in &due {
        groups
            .entry((code.brand_id, code.integration_id))
            .or_default()
            .push(code.clone());
    }
    let mut collided = Vec::new();
    for ((brand_id, _), group) in groups {
        let outcome = push_codes(shared, &plans, &group).await;
        collided.extend(record(shared, brand_id, &group, outcome).await?);
    }
    // One code left unresolved (the gateway or the database failing) is pushed again, and
    // collides again, at its next push: it must not leave the others unresolved.
    for code in collided {
        if let Err(err) = resolve_collision(shared, &code).await {
            tracing::warn!(code_id = code.id, error = %err,
                "the store had the code, not suffixed; pushed again at its next try");
        }
    }
    Ok(due.len())
}

/// Records what the store said about `sent` (one brand's codes, as they were sent) in one
/// transaction, for the codes still as they were; returns those that collided.
async fn record(
    shared: &Shared,
    brand_id: i64,
    sent: &[Code],
    outcome: Outcome,
) -> Result<Vec<Code>, Error> {
    // In key order, so that two rounds recording the same codes lock them in the same order.
    let mut keys = keys_of(sent);
    keys.sort_unstable();
    let mut conn = shared.db.conn().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let now: HashMap<i64, Code> = codes::locked_of(conn, &keys)
            .await?
            .into_iter()
            .map(|code| (code.id, code))
            .collect();
        let (outcome, stray) = still_as_sent(outcome, sent, &now);
        for (integration_id, text, code_id) in &stray {
            tracing::info!(brand_id, integration_id, code_id, code = %text, "code changed while the store made it; disabling it there");
            codes::queue_store_disable(conn, brand_id, *integration_id, text, *code_id).await?;
        }
        if !stray.is_empty() {
            notify_work(conn).await?;
        }
        failures::clear(conn, &recovered(&outcome, &now)).await?;
        apply_outcome(shared, conn, brand_id, outcome).await
    })
    .await
}

/// The creators whose codes the store made after failing to (`now`, before the outcome is
/// recorded, the code still carries the store's error): a failure recorded for such a creator
/// (the store refusing the code) is over. Only they can have one, so the common push forgets
/// nothing and costs no statement.
fn recovered(outcome: &Outcome, now: &HashMap<i64, Code>) -> Vec<(i64, i64, i64)> {
    outcome
        .created
        .iter()
        .filter_map(|id| now.get(id))
        .filter(|code| !code.store_error.is_empty())
        .map(|code| (code.brand_id, code.campaign_id, code.creator_id))
        .collect()
}

/// Keeps the answers about codes that are, `now`, still pending with the text they were `sent`
/// with. A code edited, disabled, or pushed by another round meanwhile stays as it is; when the
/// store made its text although the code no longer holds it (edited or disabled during the
/// call), that text is returned, `(integration, text, code id)`, to be disabled at the store.
fn still_as_sent(
    outcome: Outcome,
    sent: &[Code],
    now: &HashMap<i64, Code>,
) -> (Outcome, Vec<(i64, String, i64)>) {
    let was: HashMap<i64, &Code> = sent.iter().map(|code| (code.id, code)).collect();
    let unchanged = |id: i64| {
        was.get(&id)
            .zip(now.get(&id))
            .is_some_and(|(was, now)| now.status == CodeStatus::Pending && now.code == was.code)
    };
    let mut stray = Vec::new();
    let mut created = Vec::new();
    for id in outcome.created {
        if unchanged(id) {
            created.push(id);
            continue;
        }
        let Some(was) = was.get(&id) else { continue };
        let made_by_another_round = now
            .get(&id)
            .is_some_and(|now| now.status == CodeStatus::Active && now.code == was.code);
        if let (false, Some(text)) = (made_by_another_round, &was.code) {
            stray.push((was.integration_id, text.clone(), was.id));
        }
    }
    let kept = Outcome {
        created,
        collided: outcome
            .collided
            .into_iter()
            .filter(|code| unchanged(code.id))
            .collect(),
        failed: outcome
            .failed
            .into_iter()
            .filter_map(|(ids, error, retry_in)| {
                let ids: Vec<i64> = ids.into_iter().filter(|&id| unchanged(id)).collect();
                (!ids.is_empty()).then_some((ids, error, retry_in))
            })
            .collect(),
        refused_for_good: outcome
            .refused_for_good
            .into_iter()
            .filter(|(code, _)| unchanged(code.id))
            .collect(),
    };
    (kept, stray)
}

/// The store has this code for something else: give ours a suffix (recorded in its history)
/// and leave it pending, so the next round pushes the new code.
async fn resolve_collision(shared: &Shared, code: &Code) -> Result<(), Error> {
    let mut conn = shared.db.conn().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        let Some(current) = codes::get(conn, code.brand_id, code.id, true).await? else {
            return Ok(());
        };
        // Changed meanwhile (edited, disabled): nothing to resolve.
        if current.status != CodeStatus::Pending || current.code != code.code {
            return Ok(());
        }
        let Some(plan) = projection::get_plan(conn, code.brand_id, code.plan_id).await? else {
            return Ok(());
        };
        let Some(rules) = shared.stores.rules(code.brand_id, plan.provider).await? else {
            return Ok(());
        };
        let base = current.code.clone().unwrap_or_default();
        let shop = if plan.provider == tracking_api::common::v1::Provider::Shopify {
            shared.stores.shop_domain(code.brand_id, code.integration_id).await?
        } else {
            String::new()
        };
        let mut rng = SecureRandom::default();
        for round in 1..=MAX_SUFFIX_ROUNDS {
            let candidate = suffixed(&base, round, &rules, &mut rng);
            let affiliate = affiliate_url(
                plan.provider,
                &tracking_url(&shared.public_base_url, &current.slug),
                &shop,
                Some(&candidate),
                &plan.terms,
            );
            if let Some(renamed) =
                codes::rename(conn, &current, &candidate, &affiliate, STORE_COLLISION, CodeStatus::Pending).await?
            {
                tracing::info!(code_id = code.id, from = %base, to = %candidate, "store had the code, suffixed");
                let event = events::code(CodeEventKind::Changed, &renamed, &shared.public_base_url);
                tracking_events::append(conn, &[event]).await?;
                return Ok(());
            }
        }
        codes::push_failed(conn, code.brand_id, &[code.id], "no free code after suffixes", 60).await
    })
    .await
}

/// One round of Amazon Ads links: pending links get their creator's attribution tag from the
/// gateway (per integration) and become active, the tag on the plan's page (the affiliate link)
/// and on the tracking link's destination; while the gateway or Amazon cannot make it they stay
/// pending, retried with backoff. Returns how many were due. Like a push round, the links are
/// held while the gateway is called outside any transaction.
async fn link_round(shared: &Shared) -> Result<usize, Error> {
    let mut conn = shared.db.conn().await?;
    let (due, plans, held_until) = conn
        .transaction::<_, Error, _>(async |conn| {
            let due = codes::due_for_link(conn, BATCH).await?;
            held_with_plans(conn, due).await
        })
        .await?;
    drop(conn);
    let mut groups: HashMap<(i64, i64), Vec<&Code>> = HashMap::new();
    for code in &due {
        groups
            .entry((code.brand_id, code.integration_id))
            .or_default()
            .push(code);
    }
    for ((brand_id, integration_id), group) in groups {
        let specs = group
            .iter()
            .map(|code| AttributionTagSpec {
                campaign_id: code.campaign_id,
                creator_id: code.creator_id,
            })
            .collect();
        let answered = shared
            .stores
            .attribution_tags(brand_id, integration_id, specs)
            .await;
        let mut conn = shared.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            let tags = match answered {
                Ok(tags) => tags,
                Err(err) => {
                    let retry_in = if err.is_transient() { 2 } else { 60 };
                    let sent: Vec<(i64, i64)> = group.iter().map(|c| (c.brand_id, c.id)).collect();
                    // Only links still waiting (not disabled meanwhile) wait for a retry.
                    let ids: Vec<i64> = codes::locked_of(conn, &sent)
                        .await?
                        .into_iter()
                        .filter(|code| code.status == CodeStatus::Pending && code.code.is_none())
                        .map(|code| code.id)
                        .collect();
                    let text = store_error_text(&err);
                    return codes::push_failed(conn, brand_id, &ids, &text, retry_in).await;
                }
            };
            let links: Vec<(i64, String, String)> = group
                .iter()
                .zip(tags)
                .map(|(code, tag)| {
                    // From the plan as the round read it: a link whose plan moved since is due
                    // again, and `set_links` leaves it to the next round.
                    let terms = plans.get(&(brand_id, code.plan_id)).map(|plan| &plan.terms);
                    let page = terms.map_or("", |terms| terms.click_url.as_str());
                    let destination = terms.map(destination_url).unwrap_or_default();
                    let destination = if destination.is_empty() {
                        destination
                    } else {
                        with_amazon_tag(&destination, &tag.tag)
                    };
                    (code.id, with_amazon_tag(page, &tag.tag), destination)
                })
                .collect();
            // Activates only links still pending.
            let linked = codes::set_links(conn, brand_id, &links, held_until).await?;
            tracing::info!(
                brand_id,
                integration_id,
                linked = linked.len(),
                "amazon attribution links made"
            );
            let events: Vec<_> = linked
                .iter()
                .map(|code| events::code(CodeEventKind::Activated, code, &shared.public_base_url))
                .collect();
            tracking_events::append(conn, &events).await?;
            Ok(())
        })
        .await?;
    }
    Ok(due.len())
}

/// One round of deactivations at the stores: the texts are held while the stores are called
/// outside any transaction, and each answer is recorded unless the text was queued again
/// meanwhile. Texts another code holds now are left alone ([`codes::take_store_disables`]).
async fn disable_round(shared: &Shared) -> Result<(), Error> {
    let mut conn = shared.db.conn().await?;
    let due = conn
        .transaction::<_, Error, _>(async |conn| {
            codes::take_store_disables(conn, BATCH, HOLD_SECS).await
        })
        .await?;
    drop(conn);
    let mut groups: HashMap<(i64, i64), Vec<codes::StoreDisable>> = HashMap::new();
    for item in due {
        groups
            .entry((item.brand_id, item.integration_id))
            .or_default()
            .push(item);
    }
    for ((brand_id, integration_id), items) in groups {
        let texts = items.iter().map(|i| i.code.clone()).collect();
        let refs = items.iter().map(|i| i.external_ref.clone()).collect();
        let answered = shared
            .stores
            .disable(brand_id, integration_id, texts, refs)
            .await;
        // The codes first, in key order, then the queue's rows: as every writer that queues a
        // deactivation locks them (a release is recorded on its code).
        let mut owners: Vec<(i64, i64)> = items
            .iter()
            .filter_map(|item| {
                Some((
                    item.brand_id,
                    crate::convert::code_id_of_ref(&item.external_ref)?,
                ))
            })
            .collect();
        owners.sort_unstable();
        owners.dedup();
        let mut conn = shared.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            codes::locked_of(conn, &owners).await?;
            match answered {
                Ok(results) => {
                    for (item, result) in items.iter().zip(results) {
                        match DisableOutcome::try_from(result.outcome) {
                            Ok(DisableOutcome::Disabled | DisableOutcome::NotFound) => {
                                if codes::store_disable_done(conn, item).await? {
                                    released(shared, conn, item).await?;
                                }
                            }
                            _ => codes::store_disable_failed(conn, item, &result.message).await?,
                        }
                    }
                }
                Err(err) => {
                    let text = store_error_text(&err);
                    for item in &items {
                        codes::store_disable_failed(conn, item, &text).await?;
                    }
                }
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// A text a brand's edit left, which the store went on taking until now: the code's history
/// records when it stopped, and its event tells AttributionService, which holds the text the
/// code's until then (orders placed with it meanwhile are the creator's).
async fn released(
    shared: &Shared,
    conn: &mut AsyncPgConnection,
    item: &codes::StoreDisable,
) -> Result<(), Error> {
    let Some(id) = crate::convert::code_id_of_ref(&item.external_ref) else {
        return Ok(());
    };
    if let Some(code) = codes::former_text_released(conn, item.brand_id, id, &item.code).await? {
        tracing::info!(brand_id = item.brand_id, code_id = id, code = %item.code, "the store stopped taking a code's former text");
        let event = events::code(CodeEventKind::Changed, &code, &shared.public_base_url);
        tracking_events::append(conn, &[event]).await?;
    }
    Ok(())
}

/// The codes a round took and holds, their plans, and the hold's end.
type Held = (Vec<Code>, HashMap<(i64, i64), Plan>, DateTime<Utc>);

/// Holds `due` (just taken by a scan, locked for the caller's transaction) for [`HOLD_SECS`],
/// and reads their plans.
async fn held_with_plans(conn: &mut AsyncPgConnection, due: Vec<Code>) -> Result<Held, Error> {
    let until = codes::hold(conn, &keys_of(&due), HOLD_SECS).await?;
    let plans = plans_of(conn, &due).await?;
    Ok((due, plans, until))
}

/// The keys `(brand, id)` of `codes`.
fn keys_of(codes: &[Code]) -> Vec<(i64, i64)> {
    codes.iter().map(|c| (c.brand_id, c.id)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::DateTime;
    use tracking_api::common::v1::Provider;

    use super::{Outcome, recovered, still_as_sent};
    use crate::domain::{Code, CodeStatus};

    fn code(id: i64, text: &str, status: CodeStatus) -> Code {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        Code {
            brand_id: 1,
            id,
            campaign_id: 2,
            creator_id: id,
            plan_id: 3,
            integration_id: 4,
            provider: Provider::Sandbox,
            code: Some(text.to_owned()),
            status,
            store_error: String::new(),
            slug: format!("s{id}"),
            destination_url: String::new(),
            affiliate_url: String::new(),
            expires_at: None,
            history: Vec::new(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn answers_are_kept_only_for_codes_still_as_they_were_sent() {
        let sent: Vec<Code> = (1..=6)
            .map(|id| code(id, &format!("C{id}"), CodeStatus::Pending))
            .collect();
        let now: HashMap<i64, Code> = [
            code(1, "C1", CodeStatus::Pending),
            // Edited by the brand during the call.
            code(2, "NEW2", CodeStatus::Pending),
            // Disabled during the call.
            code(3, "C3", CodeStatus::Disabled),
            // Pushed and activated by another round (its hold ran out).
            code(4, "C4", CodeStatus::Active),
            code(5, "C5", CodeStatus::Pending),
            code(6, "NEW6", CodeStatus::Pending),
        ]
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
        let outcome = Outcome {
            created: vec![1, 2, 3, 4],
            collided: vec![],
            failed: vec![(vec![5, 6], "store down".to_owned(), 5)],
            refused_for_good: vec![],
        };
        let (kept, stray) = still_as_sent(outcome, &sent, &now);
        assert_eq!(
            kept.created,
            vec![1],
            "only the unchanged code is activated"
        );
        assert_eq!(
            kept.failed,
            vec![(vec![5], "store down".to_owned(), 5)],
            "an edited code keeps the retry of its new text"
        );
        assert_eq!(
            stray,
            vec![(4, "C2".to_owned(), 2), (4, "C3".to_owned(), 3)],
            "texts the store made for codes that no longer hold them are disabled there"
        );
    }

    #[test]
    fn a_code_made_after_the_store_refused_it_ends_its_creators_failure() {
        let refused = Code {
            store_error: "code not allowed".to_owned(),
            ..code(1, "ANA", CodeStatus::Pending)
        };
        let now: HashMap<i64, Code> = [
            (1, refused),
            (2, code(2, "BO", CodeStatus::Pending)),
            (
                3,
                Code {
                    store_error: "store down".to_owned(),
                    ..code(3, "CY", CodeStatus::Pending)
                },
            ),
        ]
        .into_iter()
        .collect();
        let outcome = Outcome {
            created: vec![1, 2],
            ..Outcome::default()
        };
        // Code 3 failed again: still failing. Code 2 never failed: nothing to forget.
        assert_eq!(recovered(&outcome, &now), vec![(1, 2, 1)]);
    }
}
