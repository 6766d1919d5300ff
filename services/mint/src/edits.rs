//! A brand's edit of a code (`UpdateCode`), made at the store with no transaction open: a
//! transaction left open through a slow store's call would keep PostgreSQL from cleaning up any
//! table's dead rows meanwhile.
//!
//! The edit is made in three steps. A short transaction gives the code its new text (the unique
//! index keeps it from anyone else) and starts the edit (`code_renames`, which keeps what the code
//! had, and holds the edit for [`HOLD_SECS`]); the code waits for the edit, out of the pusher's
//! scans, and no event is written yet. The store's discount is then renamed in place, outside any
//! transaction. A second short transaction records the answer ([`record`]): the code is active
//! with its new text; or, when the store could not be asked, it waits for the pusher to create
//! the new text while the old one is disabled there (as for any code waiting for its store); or,
//! when the store has the new text for something else or refuses it, the code gets back what it
//! had. An edit whose process stopped before the store answered is finished by the pusher once
//! its hold has run out ([`finish_abandoned`]).

use std::collections::HashMap;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::StreamExt;
use tracking_api::mint::v1::CodeEventKind;

use crate::context::Shared;
use crate::domain::{Code, CodeStatus, Plan};
use crate::error::Error;
use crate::events;
use crate::pusher::{HOLD_SECS, Outcome, rename_code};
use crate::store::renames::{self, Rename};
use crate::store::{codes, failures, notify_work, projection};

/// Abandoned edits finished per round.
const BATCH: i64 = 100;

/// Renames the store's discount from the edit's previous text to `code`'s (as the edit's first
/// transaction left it) and records the answer: the code as it is then, or why the store would
/// not take the new text (the code has what it had before; `ALREADY_EXISTS`,
/// `FAILED_PRECONDITION`).
pub(crate) async fn make(
    shared: &Shared,
    plan: Option<Plan>,
    code: Code,
    rename: Rename,
) -> Result<Code, Error> {
    let plans: HashMap<(i64, i64), Plan> = plan
        .into_iter()
        .map(|plan| ((plan.brand_id, plan.id), plan))
        .collect();
    let outcome = rename_code(shared, &plans, &code, &rename.previous_code).await;
    record(shared, &code, &rename, outcome).await
}

/// How the store refused an edit's text, as the brand is told: `ALREADY_EXISTS` or
/// `FAILED_PRECONDITION`, given its message.
type ErrorKind = fn(String) -> Error;

/// Records the store's answer to an edit (`sent`, as it was sent) in one transaction, if the edit
/// is still this round's.
async fn record(
    shared: &Shared,
    sent: &Code,
    rename: &Rename,
    outcome: Outcome,
) -> Result<Code, Error> {
    let mut conn = shared.db.conn().await?;
    // A refusal is committed (the code put back) before it is returned.
    conn.transaction::<_, Error, _>(async |conn| {
        record_in(conn, &shared.public_base_url, sent, rename, outcome).await
    })
    .await?
}

/// [`record`]'s transaction: the outer error fails it, the inner result is the edit's answer.
/// Public for the store tests (`tests/renames.rs`), which record each kind of answer.
pub async fn record_in(
    conn: &mut AsyncPgConnection,
    public_base_url: &str,
    sent: &Code,
    rename: &Rename,
    outcome: Outcome,
) -> Result<Result<Code, Error>, Error> {
    let new_text = sent.code.clone().unwrap_or_default();
    let previous = rename.previous_code.as_str();
    let (brand_id, integration_id) = (sent.brand_id, sent.integration_id);
    let current = codes::get(conn, brand_id, sent.id, true)
        .await?
        .ok_or_else(|| Error::NotFound(format!("code {} not found", sent.id)))?;
    if !renames::end(conn, rename).await? {
        // Its hold ran out and another round finishes it.
        return Ok(Ok(current));
    }
    let created = !outcome.created.is_empty();
    if current.status == CodeStatus::Disabled || current.code != sent.code {
        // Disabled during the call (or suffixed by a push round that had read the code before
        // the edit): the text the store holds now must stop working there too.
        let held = if created { new_text.as_str() } else { previous };
        tracing::info!(code_id = sent.id, code = %held, "code changed during its edit; disabling it at the store");
        codes::queue_store_disable(conn, brand_id, integration_id, held, sent.id).await?;
        notify_work(conn).await?;
        return Ok(Ok(current));
    }
    if current.status == CodeStatus::Active {
        // Made at the store meanwhile with this text (pushes leave a code being edited alone, so
        // this is only a guard): nothing to record.
        return Ok(Ok(current));
    }
    if created {
        // Should the store have refused the code before, the creator's failure is over.
        failures::clear(conn, &[(brand_id, current.campaign_id, current.creator_id)]).await?;
        let active = codes::set_status(conn, brand_id, &[sent.id], CodeStatus::Active)
            .await?
            .into_iter()
            .next()
            .unwrap_or(current);
        let event = events::code(CodeEventKind::Changed, &active, public_base_url);
        tracking_events::append(conn, &[event]).await?;
        return Ok(Ok(active));
    }
    let refusal: Option<(ErrorKind, String)> = if outcome.collided.is_empty() {
        outcome.refused_for_good.first().map(|(_, why)| {
            let kind: ErrorKind = Error::FailedPrecondition;
            (kind, format!("the store refused code {new_text}: {why}"))
        })
    } else {
        Some((
            Error::AlreadyExists,
            format!("the store already has code {new_text}"),
        ))
    };
    if let Some((kind, why)) = &refusal {
        if let Some(back) = codes::put_back(conn, &current, rename).await? {
            // Announced as it is back: while the store was asked, the code may have been
            // announced with the refused text (its links following a move of the plan's page).
            // Otherwise the event changes nothing downstream.
            let event = events::code(CodeEventKind::Changed, &back, public_base_url);
            tracking_events::append(conn, &[event]).await?;
            return Ok(Err(kind(why.clone())));
        }
        // Another code took the old text meanwhile: this one keeps the new text, which the pusher
        // suffixes (or records as refused) when the store answers as it did here.
        tracing::warn!(code_id = sent.id, code = %previous, "the store refused an edit and the old code was taken meanwhile");
        codes::push_failed(conn, brand_id, &[sent.id], why, 2).await?;
    }
    for (ids, error, retry_in) in &outcome.failed {
        codes::push_failed(conn, brand_id, ids, error, *retry_in).await?;
    }
    // The code waits for the pusher, which creates the new code at the store; the old one must
    // stop working there.
    codes::queue_store_disable(conn, brand_id, integration_id, previous, sent.id).await?;
    notify_work(conn).await?;
    let waiting = codes::get(conn, brand_id, sent.id, false)
        .await?
        .unwrap_or(current);
    let event = events::code(CodeEventKind::Changed, &waiting, public_base_url);
    tracking_events::append(conn, &[event]).await?;
    Ok(match refusal {
        Some((kind, why)) => Err(kind(format!(
            "{why}; code {previous} was taken meanwhile, so the code keeps {new_text} for now"
        ))),
        None => Ok(waiting),
    })
}

/// Finishes edits whose process stopped before the store answered (their hold ran out), as that
/// process would have; returns how many it took.
pub(crate) async fn finish_abandoned(shared: &Shared) -> Result<usize, Error> {
    let mut conn = shared.db.conn().await?;
    // One statement: it takes and holds the edits at once.
    let due = renames::take_abandoned(&mut conn, BATCH, HOLD_SECS).await?;
    let mut work = Vec::with_capacity(due.len());
    for rename in due {
        let code = codes::get(&mut conn, rename.brand_id, rename.code_id, false).await?;
        let plan = match &code {
            Some(code) => projection::get_plan(&mut conn, code.brand_id, code.plan_id).await?,
            None => None,
        };
        work.push((rename, code, plan));
    }
    drop(conn);
    let taken = work.len();
    // Each edit waits on its store: several at once, so a slow store does not hold the batch
    // past its hold.
    futures::stream::iter(work)
        .for_each_concurrent(PARALLEL, |(rename, code, plan)| async move {
            if let Err(err) = finish(shared, rename, code, plan).await {
                tracing::warn!(error = %err, "finishing an abandoned edit of a code failed; retried when its hold runs out");
            }
        })
        .await;
    Ok(taken)
}

/// Abandoned edits finished at once.
const PARALLEL: usize = 8;

/// Finishes one abandoned edit (of `code`, when it still exists).
async fn finish(
    shared: &Shared,
    rename: Rename,
    code: Option<Code>,
    plan: Option<Plan>,
) -> Result<(), Error> {
    let Some(code) = code else {
        // Codes are never deleted; should one be, its edit has nothing left to do.
        let mut conn = shared.db.conn().await?;
        renames::end(&mut conn, &rename).await?;
        return Ok(());
    };
    let id = code.id;
    match make(shared, plan, code, rename).await {
        Ok(code) => {
            tracing::info!(code_id = id, code = ?code.code, status = code.status.as_str(), "an abandoned edit of a code finished");
            Ok(())
        }
        Err(Error::AlreadyExists(why) | Error::FailedPrecondition(why)) => {
            tracing::info!(code_id = id, why = %why, "an abandoned edit of a code was refused by the store; the code has its previous text again");
            Ok(())
        }
        Err(err) => Err(err),
    }
}
