//! Minting, designed for throughput: every request (MintCode, MintCodes, the trigger queue) goes
//! through one group commit ([`tracking_db::GroupCommit`]); a few workers each take whatever is
//! waiting (up to a batch), look the whole batch up in one round trip (its reads pipelined),
//! render the codes, and reserve them with one multi-row `INSERT ... ON CONFLICT DO NOTHING` that
//! appends their events in the same statement, its own transaction. Concurrent callers thus share
//! commits (group commit) instead of paying one each. The unique indexes decide: a row that was
//! not inserted either belongs to a creator who got a code meanwhile (returned as is) or collided
//! with another code (suffixed and tried again, in a statement of its own).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use tracking_api::common::v1::Provider;
use tracking_api::mint::v1::CodeEventKind;
use tracking_db::{Batching, Conflicts, GroupCommit, Taken};
use tracking_pattern::{Pattern, Rules};

use crate::context::Shared;
use crate::domain::links::{affiliate_url, destination_url, tag_from_gateway, tracking_url};
use crate::domain::render::{MAX_SUFFIX_ROUNDS, check_profile, render_code, suffixed};
use crate::domain::{Code, CodeStatus, Failure, Plan, Profile, RosterStatus};
use crate::error::Error;
use crate::events;
use crate::pusher;
use crate::random::SecureRandom;
use crate::store::codes;
use crate::store::projection::MintContext;
use crate::store::{failures, notify_work, projection};

/// `(brand, campaign, creator)`.
pub type Key = (i64, i64, i64);

/// A creator's code, and whether this request created it.
#[derive(Clone, Debug)]
pub struct Minted {
    pub code: Code,
    pub created: bool,
}

type Reply = Result<Minted, Error>;

/// Most requests one batch takes.
const MAX_BATCH: usize = 512;
/// Requests waiting beyond this make callers wait to submit (backpressure).
const QUEUE: usize = 16_384;

/// The handle callers mint through.
#[derive(Clone, Debug)]
pub struct Minter {
    batches: GroupCommit<Key, Reply>,
    /// Calls minting through [`Minter::mint_or_shed`] are refused while requests wait longer
    /// than this for their batch (zero: never).
    shed_after: std::time::Duration,
}

impl Minter {
    /// Starts `workers` batch workers; they stop when every handle is dropped.
    pub fn start(
        shared: Shared,
        workers: usize,
        linger: std::time::Duration,
        shed_after: std::time::Duration,
    ) -> Minter {
        let batching = Batching {
            workers,
            max_batch: MAX_BATCH,
            queue: QUEUE,
            linger,
        };
        let workers = Workers {
            shared,
            conflicts: Conflicts::default(),
        };
        let batches = GroupCommit::start(batching, move |keys: Vec<Key>| {
            let workers = workers.clone();
            async move {
                let mut unique = keys.clone();
                unique.sort_unstable();
                unique.dedup();
                let results = mint_batch(&workers, &unique).await;
                let mut answered = HashSet::new();
                keys.iter()
                    .map(|key| {
                        let mut reply = results.get(key).cloned().unwrap_or_else(|| {
                            Err(Error::Internal("batch lost a request".to_owned()))
                        });
                        // The same creator asked twice in one batch: one code, created once,
                        // as two batches would have answered.
                        if !answered.insert(*key)
                            && let Ok(minted) = &mut reply
                        {
                            minted.created = false;
                        }
                        reply
                    })
                    .collect()
            }
        });
        Minter {
            batches,
            shed_after,
        }
    }

    /// The creator's code: minted now, or the one they already have. Waits its turn however
    /// long the queue (streams and the trigger queue, which pace themselves).
    pub async fn mint(&self, key: Key) -> Reply {
        self.batches.submit(key).await.unwrap_or_else(shutting_down)
    }

    /// As [`Minter::mint`] for a single call: refused at once with [`Error::Overloaded`] while
    /// requests wait longer than the shedding limit for their batch, so that under overload the
    /// excess is turned away fast and admitted calls stay quick.
    pub async fn mint_or_shed(&self, key: Key) -> Reply {
        match self.batches.submit_within(key, self.shed_after).await {
            Ok(answer) => answer.unwrap_or_else(shutting_down),
            Err(overloaded) => Err(Error::Overloaded(overloaded.to_string())),
        }
    }
}

fn shutting_down() -> Reply {
    Err(Error::Unavailable(
        "the minting service is shutting down".to_owned(),
    ))
}

/// Mints a batch, retrying it whole when PostgreSQL resolved a deadlock between two batches by
/// aborting this one. Each round of codes commits as it is written, so a batch that fails later
/// (a suffix round, recording failures) has codes already minted: those are answered as created
/// by this batch, in a retry as after a last failure.
async fn mint_batch(workers: &Workers, keys: &[Key]) -> HashMap<Key, Reply> {
    let mut committed: HashMap<Key, Code> = HashMap::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_batch(workers, keys, &mut committed).await {
            Ok(results) => return results,
            Err(err) if attempt < 4 && err.is_conflict() => {
                tracing::debug!(error = %err, attempt, "mint batch retried");
            }
            Err(err) => {
                tracing::warn!(error = %err, size = keys.len(), "mint batch failed");
                return keys
                    .iter()
                    .map(|k| {
                        let reply = match committed.remove(k) {
                            Some(code) => Ok(Minted {
                                code,
                                created: true,
                            }),
                            None => Err(err.clone()),
                        };
                        (*k, reply)
                    })
                    .collect();
            }
        }
    }
}

/// One creator ready to reserve.
struct Candidate {
    key: Key,
    plan: Arc<Plan>,
    /// The rendered code before suffixes; `None` for link-only providers.
    base: Option<String>,
    rules: Option<Rules>,
    shop_domain: String,
    /// A failure is on record for this creator (cleared once the code exists).
    had_failure: bool,
    /// The id its code gets.
    id: i64,
}

async fn try_batch(
    workers: &Workers,
    keys: &[Key],
    committed: &mut HashMap<Key, Code>,
) -> Result<HashMap<Key, Reply>, Error> {
    let shared = &workers.shared;
    let started = std::time::Instant::now();
    let mut results: HashMap<Key, Reply> = HashMap::with_capacity(keys.len());
    let mut conn = shared.db.conn().await?;
    let connected = started.elapsed();

    // The batch's reads go out together (pipelined): one round trip instead of four.
    let (live, contexts, plans, drawn) = tokio::try_join!(
        codes::live_for(&conn, keys),
        projection::contexts(&conn, keys),
        projection::plans_of_campaigns(&conn, keys),
        codes::draw_ids(&conn, keys, true),
    )?;
    for code in live {
        let key = (code.brand_id, code.campaign_id, code.creator_id);
        let created = committed.get(&key).is_some_and(|mine| mine.id == code.id);
        results.insert(key, Ok(Minted { code, created }));
    }
    let (todo, contexts): (Vec<Key>, Vec<(MintContext, Option<i64>)>) = keys
        .iter()
        .copied()
        .zip(contexts.into_iter().zip(drawn.ids))
        .filter(|(k, _)| !results.contains_key(k))
        .unzip();
    if todo.is_empty() {
        return Ok(results);
    }
    // A creator whose code was disabled between the id draw and the live-code read drew no id:
    // draw it now.
    let undrawn: Vec<Key> = todo
        .iter()
        .zip(&contexts)
        .filter(|(_, (_, id))| id.is_none())
        .map(|(key, _)| *key)
        .collect();
    let mut late_ids = if undrawn.is_empty() {
        Vec::new()
    } else {
        codes::draw_ids(&conn, &undrawn, false).await?.ids
    }
    .into_iter()
    .flatten();
    let contexts: Vec<(MintContext, i64)> = contexts
        .into_iter()
        .map(|(ctx, id)| {
            let id = id
                .or_else(|| late_ids.next())
                .ok_or_else(|| Error::Internal("a code id was not drawn".to_owned()))?;
            Ok((ctx, id))
        })
        .collect::<Result<_, Error>>()?;
    // The plans the creators still to mint need (the reads also brought those of creators who
    // have a code).
    let needed: HashSet<(i64, i64)> = todo
        .iter()
        .zip(&contexts)
        .filter_map(|(key, (ctx, _))| ctx.plan_id.map(|plan| (key.0, plan)))
        .collect();
    let mut plans: HashMap<(i64, i64), Arc<Plan>> = plans
        .into_iter()
        .map(|plan| ((plan.brand_id, plan.id), Arc::new(plan)))
        .filter(|(key, _)| needed.contains(key))
        .collect();
    let relinked: Vec<(i64, i64)> = needed
        .iter()
        .filter(|key| !plans.contains_key(key))
        .copied()
        .collect();
    if !relinked.is_empty() {
        for plan in projection::plans(&mut conn, &relinked).await? {
            plans.insert((plan.brand_id, plan.id), Arc::new(plan));
        }
    }

    // What the gateway knows, asked once per batch for each distinct provider and integration.
    // A question the gateway could not answer fails only the requests that need its answer: a
    // batch holds many brands' requests, and creators who already have a code need none.
    let mut rules: HashMap<(i64, Provider), Result<Option<Rules>, Error>> = HashMap::new();
    let mut shops: HashMap<(i64, i64), Result<String, Error>> = HashMap::new();
    for plan in plans.values() {
        if let std::collections::hash_map::Entry::Vacant(slot) =
            rules.entry((plan.brand_id, plan.provider))
        {
            slot.insert(shared.stores.rules(plan.brand_id, plan.provider).await);
        }
        if plan.provider == Provider::Shopify
            && !shops.contains_key(&(plan.brand_id, plan.integration_id))
        {
            let domain = shared
                .stores
                .shop_domain(plan.brand_id, plan.integration_id)
                .await;
            shops.insert((plan.brand_id, plan.integration_id), domain);
        }
    }

    let read = started.elapsed();
    let mut rng = SecureRandom::default();
    let mut patterns: HashMap<(i64, i64), Result<Pattern, String>> = HashMap::new();
    let mut candidates = Vec::new();
    let mut failed: Vec<(Key, Failure)> = Vec::new();
    for (key, (ctx, id)) in todo.iter().zip(contexts) {
        let (_, campaign_id, _) = *key;
        let Some(campaign_name) = ctx.campaign_name else {
            results.insert(
                *key,
                Err(Error::NotFound(format!("campaign {campaign_id} not found"))),
            );
            continue;
        };
        let on_roster = ctx.roster_status.as_deref().and_then(RosterStatus::parse);
        if matches!(on_roster, None | Some(RosterStatus::Removed)) {
            results.insert(*key, Err(off_roster(*key)));
            continue;
        }
        if ctx.campaign_archived == Some(true) {
            results.insert(
                *key,
                Err(Error::FailedPrecondition(format!(
                    "campaign {campaign_id} is archived: it keeps tracking, but mints no new codes"
                ))),
            );
            continue;
        }
        let Some(plan) = ctx.plan_id.and_then(|id| plans.get(&(key.0, id))).cloned() else {
            results.insert(
                *key,
                Err(Error::FailedPrecondition(format!(
                    "campaign {campaign_id} has no plan"
                ))),
            );
            continue;
        };
        if plan.archived {
            results.insert(
                *key,
                Err(Error::FailedPrecondition(format!(
                    "plan {} is archived",
                    plan.id
                ))),
            );
            continue;
        }
        let profile: Profile = ctx
            .profile
            .and_then(|json| serde_json::from_value(json).ok())
            .unwrap_or_default();
        let store_rules = match rules.get(&(plan.brand_id, plan.provider)).cloned() {
            Some(Err(err)) => {
                results.insert(*key, Err(err));
                continue;
            }
            Some(Ok(store_rules)) => store_rules,
            None => None,
        };
        let shop_domain = match shops.get(&(plan.brand_id, plan.integration_id)).cloned() {
            Some(Err(err)) => {
                results.insert(*key, Err(err));
                continue;
            }
            Some(Ok(domain)) => domain,
            None => String::new(),
        };
        let base = match &store_rules {
            Some(store_rules) if !plan.terms.code_pattern.is_empty() => {
                let pattern = patterns.entry((plan.brand_id, plan.id)).or_insert_with(|| {
                    Pattern::parse(&plan.terms.code_pattern).map_err(|e| e.to_string())
                });
                let rendered = match pattern {
                    Ok(pattern) => render_code(
                        pattern,
                        &plan,
                        &campaign_name,
                        &profile,
                        store_rules,
                        &mut rng,
                    ),
                    Err(why) => Err(Failure::pattern(why.clone())),
                };
                match rendered {
                    Ok(code) => Some(code),
                    Err(failure) => {
                        failed.push((*key, failure));
                        continue;
                    }
                }
            }
            _ => {
                // Links only: the creator still needs a complete profile.
                if let Err(failure) = check_profile(&profile) {
                    failed.push((*key, failure));
                    continue;
                }
                None
            }
        };
        candidates.push(Candidate {
            key: *key,
            plan,
            base,
            rules: store_rules,
            shop_domain,
            had_failure: ctx.had_failure,
            id,
        });
    }

    let rendered = started.elapsed();
    let (reserved, off) = reserve(
        workers,
        &mut conn,
        &candidates,
        drawn.at,
        committed,
        &mut failed,
        &mut rng,
    )
    .await?;
    tracing::debug!(
        size = keys.len(),
        new = candidates.len(),
        connect_us = connected.as_micros() as u64,
        read_us = (read - connected).as_micros() as u64,
        render_us = (rendered - read).as_micros() as u64,
        reserve_us = (started.elapsed() - rendered).as_micros() as u64,
        "mint batch"
    );
    for (key, minted) in reserved {
        results.insert(key, Ok(minted));
    }
    for (key, why) in off {
        results.insert(key, Err(why.error(key)));
    }
    for (key, failure) in failed {
        results.insert(key, Err(Error::MintFailed(failure)));
    }
    Ok(results)
}

/// Why a code was refused when it was written ([`codes::Reserved`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    OffRoster,
    Relinked,
    PlanChanged,
}

impl Refused {
    fn error(self, key: Key) -> Error {
        match self {
            Refused::OffRoster => off_roster(key),
            // Transient: the queue tries again, and a caller's retry mints under the new plan.
            Refused::Relinked => Error::Unavailable(format!(
                "campaign {} was linked to another plan meanwhile; retry",
                key.1
            )),
            Refused::PlanChanged => Error::Unavailable(format!(
                "the links of campaign {}'s plan changed meanwhile; retry",
                key.1
            )),
        }
    }
}

/// The answer for a creator who is not on the campaign's roster (never added, or removed).
fn off_roster((_, campaign_id, creator_id): Key) -> Error {
    Error::FailedPrecondition(format!(
        "creator {creator_id} is not on campaign {campaign_id}'s roster"
    ))
}

fn new_code(
    shared: &Shared,
    candidate: &Candidate,
    code: Option<String>,
    at: DateTime<Utc>,
    rng: &mut SecureRandom,
) -> Code {
    let plan = &candidate.plan;
    let slug = rng.slug();
    let tracking = tracking_url(&shared.public_base_url, &slug);
    let affiliate = affiliate_url(
        plan.provider,
        &tracking,
        &candidate.shop_domain,
        code.as_deref(),
        &plan.terms,
    );
    Code {
        brand_id: candidate.key.0,
        id: candidate.id,
        campaign_id: candidate.key.1,
        creator_id: candidate.key.2,
        plan_id: plan.id,
        integration_id: plan.integration_id,
        provider: plan.provider,
        // A code waits for the store, an Amazon link for the gateway's tag.
        status: if code.is_some() || tag_from_gateway(plan.provider) {
            CodeStatus::Pending
        } else {
            CodeStatus::Active
        },
        code,
        store_error: String::new(),
        slug,
        // An Amazon link leads nowhere until its tag is made: untagged, no sale it brings could
        // be credited to the creator.
        destination_url: if tag_from_gateway(plan.provider) {
            String::new()
        } else {
            destination_url(&plan.terms)
        },
        affiliate_url: affiliate,
        // As stored (microseconds), so the event and the reply carry what a read returns.
        expires_at: plan.terms.ends_at.map(to_micros),
        history: Vec::new(),
        created_at: at,
        updated_at: at,
    }
}

/// Reserves the candidates' codes (suffixing collisions), with their events: each round one
/// statement, its own transaction, whose codes are kept in `committed` and handed to the pusher
/// at once. Then records failures. `at` is the database's time, the codes' creation time.
/// Returns the codes, and the creators whose code was refused when it was written (removed from
/// the roster, or their campaign linked to another plan, since the batch read them).
async fn reserve(
    workers: &Workers,
    conn: &mut AsyncPgConnection,
    candidates: &[Candidate],
    at: DateTime<Utc>,
    committed: &mut HashMap<Key, Code>,
    failed: &mut Vec<(Key, Failure)>,
    rng: &mut SecureRandom,
) -> Result<(Vec<(Key, Minted)>, Vec<(Key, Refused)>), Error> {
    let Workers { shared, conflicts } = workers;
    let mut done: Vec<(Key, Minted)> = Vec::with_capacity(candidates.len());
    let mut off: Vec<(Key, Refused)> = Vec::new();
    let mut pending: Vec<(&Candidate, Option<String>)> =
        candidates.iter().map(|c| (c, c.base.clone())).collect();
    for round in 0..=MAX_SUFFIX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        // Sorted by code, so two batches inserting overlapping codes lock in the same order.
        pending.sort_by(|a, b| a.1.cmp(&b.1));
        let rows: Vec<Code> = pending
            .iter()
            .map(|(candidate, code)| new_code(shared, candidate, code.clone(), at, rng))
            .collect();
        let events: Vec<_> = rows
            .iter()
            .map(|code| events::code(CodeEventKind::Minted, code, &shared.public_base_url))
            .collect();
        let clear: Vec<bool> = pending.iter().map(|(c, _)| c.had_failure).collect();
        let links_keys: Vec<&str> = pending
            .iter()
            .map(|(c, _)| c.plan.links_key.as_str())
            .collect();
        // The first round inserts plainly unless recent batches met taken codes; suffix rounds
        // retry taken codes, so they skip those still taken.
        let mut taken = if round == 0 {
            conflicts.first()
        } else {
            Taken::Skip
        };
        // Codes this process's pusher will take by id are held from the scans (of every
        // replica) while it pushes them; past Fresh's bound, they are due at once for a scan.
        let promise = shared.fresh.promise(rows.len());
        let held = if promise.is_some() {
            pusher::HOLD_SECS
        } else {
            0
        };
        let codes::Reserved {
            inserted,
            off_roster: removed,
            relinked,
            stale_links,
        } = loop {
            let result =
                codes::reserve(conn, &rows, &events, &clear, &links_keys, taken, held).await;
            if !conflicts.write_again(taken, &result) {
                break result?;
            }
            taken = Taken::Skip;
        };
        if round == 0
            && inserted.len() + removed.len() + relinked.len() + stale_links.len() < rows.len()
        {
            conflicts.met();
        }
        // Committed: the new codes waiting for their store go to this process's pusher by id.
        if let Some(promise) = promise {
            promise.keep(
                rows.iter()
                    .filter(|code| inserted.contains(&code.id))
                    .filter(|code| code.status == CodeStatus::Pending && code.code.is_some())
                    .map(|code| (code.brand_id, code.id)),
            );
        }
        committed.extend(
            rows.iter()
                .filter(|code| inserted.contains(&code.id))
                .map(|code| {
                    (
                        (code.brand_id, code.campaign_id, code.creator_id),
                        code.clone(),
                    )
                }),
        );
        let missed: Vec<Key> = rows
            .iter()
            .filter(|code| {
                !inserted.contains(&code.id)
                    && !removed.contains(&code.id)
                    && !relinked.contains(&code.id)
                    && !stale_links.contains(&code.id)
            })
            .map(|code| (code.brand_id, code.campaign_id, code.creator_id))
            .collect();
        let mut meanwhile: HashMap<Key, Code> = codes::live_for(conn, &missed)
            .await?
            .into_iter()
            .map(|code| ((code.brand_id, code.campaign_id, code.creator_id), code))
            .collect();
        let mut next = Vec::new();
        for ((candidate, _), row) in pending.into_iter().zip(rows) {
            if inserted.contains(&row.id) {
                done.push((
                    candidate.key,
                    Minted {
                        code: row,
                        created: true,
                    },
                ));
            } else if removed.contains(&row.id) {
                // Removed from the roster since the batch read it.
                off.push((candidate.key, Refused::OffRoster));
            } else if relinked.contains(&row.id) {
                // Its campaign was linked to another plan since the batch read it.
                off.push((candidate.key, Refused::Relinked));
            } else if stale_links.contains(&row.id) {
                // Its plan's link terms changed since the batch read them.
                off.push((candidate.key, Refused::PlanChanged));
            } else if let Some(existing) = meanwhile.remove(&candidate.key) {
                done.push((
                    candidate.key,
                    Minted {
                        code: existing,
                        created: false,
                    },
                ));
            } else if let (Some(base), Some(rules)) = (&candidate.base, &candidate.rules) {
                next.push((candidate, Some(suffixed(base, round + 1, rules, rng))));
            } else {
                return Err(Error::Internal(format!(
                    "link for {:?} was neither inserted nor found",
                    candidate.key
                )));
            }
        }
        pending = next;
    }
    for (candidate, _) in pending {
        failed.push((
            candidate.key,
            Failure::pattern(format!(
                "no free code after {MAX_SUFFIX_ROUNDS} suffixes; the pattern gives too few distinct codes"
            )),
        ));
    }

    // A creator whose code another call minted meanwhile: its failure is cleared here (those
    // whose code this batch inserted were cleared with it).
    let fixed: Vec<Key> = candidates
        .iter()
        .filter(|c| c.had_failure)
        .map(|c| c.key)
        .filter(|key| done.iter().any(|(k, m)| k == key && !m.created))
        .collect();
    failures::clear(conn, &fixed).await?;
    for (key, failure) in failed.iter() {
        failures::record(conn, *key, failure).await?;
    }
    // Codes reach the pusher in process once committed (`Fresh`); links waiting for a store-made
    // tag (Amazon) wake it through the database.
    if done
        .iter()
        .any(|(_, m)| m.created && m.code.status == CodeStatus::Pending && m.code.code.is_none())
    {
        notify_work(conn).await?;
    }
    Ok((done, off))
}

/// What the batch workers share: the service's parts, and what recent batches met.
#[derive(Clone, Debug)]
struct Workers {
    shared: Shared,
    conflicts: Conflicts,
}

/// `t` as PostgreSQL stores it: to the microsecond.
fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
