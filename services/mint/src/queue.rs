//! The worker that mints for creators queued by the plan stream. Entries are claimed for a
//! while (replicas share the queue, and a worker that dies lets its claims expire), minted
//! without holding any lock, then removed once minting gave an answer waiting will not change:
//! a code, or a recorded failure. Transient errors release them for a later round; unexpected
//! ones (another service's refusal, a fault of ours) for one a minute later.

use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::error::Error;
use crate::minter::{Minted, Minter};
use crate::store::{failures, queue};

const BATCH: i64 = 500;
/// How long a claim lasts: well above the time a batch takes.
const CLAIM_SECS: i64 = 60;
/// When entries that hit a transient error are tried again.
const RETRY_SECS: i64 = 5;
/// When entries that hit an unexpected error (another service's refusal, a fault of ours) are
/// tried again.
const UNEXPECTED_RETRY_SECS: i64 = 60;

pub async fn run(
    shared: Shared,
    minter: Minter,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        loop {
            match round(&shared, &minter).await {
                Ok(taken) if taken as i64 >= BATCH => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "mint queue round failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Claims a batch, mints it, settles or releases each entry. Returns how many were claimed.
async fn round(shared: &Shared, minter: &Minter) -> Result<usize, Error> {
    let claimed = {
        let mut conn = shared.db.conn().await?;
        queue::claim(&mut conn, BATCH, CLAIM_SECS).await?
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    // Creators whose code the brand disabled since they were queued: settled, not minted.
    let disabled = {
        let mut conn = shared.db.conn().await?;
        let disabled = queue::disabled_among(&mut conn, &claimed).await?;
        queue::settle(&mut conn, &disabled).await?;
        disabled
    };
    let count = claimed.len();
    let claimed: Vec<_> = claimed
        .into_iter()
        .filter(|entry| {
            !disabled.iter().any(|d| {
                (d.brand_id, d.campaign_id, d.creator_id)
                    == (entry.brand_id, entry.campaign_id, entry.creator_id)
            })
        })
        .collect();
    // Failures the brand asked for, retried here after a profile fix, stay the brand's.
    let brands = {
        let keys: Vec<_> = claimed
            .iter()
            .map(|e| (e.brand_id, e.campaign_id, e.creator_id))
            .collect();
        let mut conn = shared.db.conn().await?;
        failures::brands_among(&mut conn, &keys).await?
    };
    let results = join_all(
        claimed
            .iter()
            .map(|e| minter.mint((e.brand_id, e.campaign_id, e.creator_id))),
    )
    .await;
    let mut settled = Vec::with_capacity(claimed.len());
    let mut soon = Vec::new();
    let mut later = Vec::new();
    let mut trigger_failed = Vec::new();
    for (entry, result) in claimed.iter().zip(results) {
        let (campaign_id, creator_id) = (entry.campaign_id, entry.creator_id);
        match (next(&result), result) {
            (Next::Failed, Err(Error::MintFailed(failure))) => {
                tracing::info!(
                    campaign_id,
                    creator_id,
                    reason = failure.reason(),
                    "mint failed"
                );
                let key = (entry.brand_id, campaign_id, creator_id);
                if !brands.contains(&key) {
                    trigger_failed.push(key);
                }
                settled.push(*entry);
            }
            (Next::Retry(RETRY_SECS), Err(err)) => {
                tracing::warn!(campaign_id, creator_id, error = %err, "queued mint will be retried");
                soon.push(*entry);
            }
            (Next::Retry(_), Err(err)) => {
                tracing::error!(campaign_id, creator_id, error = %err, "queued mint failed unexpectedly, retried in a minute");
                later.push(*entry);
            }
            _ => settled.push(*entry),
        }
    }
    let mut conn = shared.db.conn().await?;
    failures::mark_by_trigger(&mut conn, &trigger_failed).await?;
    queue::settle(&mut conn, &settled).await?;
    queue::release(&mut conn, &soon, RETRY_SECS).await?;
    queue::release(&mut conn, &later, UNEXPECTED_RETRY_SECS).await?;
    Ok(count)
}

/// What becomes of a queue entry once its mint has answered.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Off the queue: a code, or a refusal waiting will not change (the creator left the roster,
    /// the campaign lost its plan).
    Settle,
    /// Off the queue, with a failure on record for the brand (`ListFailures`, `RetryFailed`).
    Failed,
    /// Back on the queue, tried again after this many seconds.
    Retry(i64),
}

fn next(result: &Result<Minted, Error>) -> Next {
    match result {
        Ok(_) => Next::Settle,
        Err(Error::MintFailed(_)) => Next::Failed,
        Err(err) if err.is_transient() => Next::Retry(RETRY_SECS),
        Err(Error::Overloaded(_)) => Next::Retry(RETRY_SECS),
        // Another service's refusal, or a fault of ours: nothing the creator or the brand can
        // fix, and settling would leave the creator without a code and without a failure on
        // record. Kept, and tried again, less often.
        Err(Error::Upstream(_) | Error::Internal(_)) => Next::Retry(UNEXPECTED_RETRY_SECS),
        Err(_) => Next::Settle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Failure;

    #[test]
    fn only_answers_waiting_cannot_change_leave_the_queue() {
        let failed = Err(Error::MintFailed(Failure::MissingProfileField(vec![
            "email".to_owned(),
        ])));
        assert_eq!(next(&failed), Next::Failed);
        assert_eq!(
            next(&Err(Error::Unavailable("store down".to_owned()))),
            Next::Retry(RETRY_SECS)
        );
        assert_eq!(
            next(&Err(Error::Overloaded("shed".to_owned()))),
            Next::Retry(RETRY_SECS)
        );
        assert_eq!(
            next(&Err(Error::Upstream(tonic::Status::internal(
                "gateway bug"
            )))),
            Next::Retry(UNEXPECTED_RETRY_SECS)
        );
        assert_eq!(
            next(&Err(Error::Internal("unreadable plan".to_owned()))),
            Next::Retry(UNEXPECTED_RETRY_SECS)
        );
        assert_eq!(
            next(&Err(Error::FailedPrecondition(
                "not on the roster".to_owned()
            ))),
            Next::Settle
        );
    }
}
