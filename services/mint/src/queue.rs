//! The worker that mints for creators queued by the plan stream. Entries are claimed for a
//! while (replicas share the queue, and a worker that dies lets its claims expire), minted
//! without holding any lock, then removed once minting gave an answer waiting will not change:
//! a code, or a recorded failure. Transient errors release them for a later round.

use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::error::Error;
use crate::minter::Minter;
use crate::store::{failures, queue};

const BATCH: i64 = 500;
/// How long a claim lasts: well above the time a batch takes.
const CLAIM_SECS: i64 = 60;
/// When entries that hit a transient error are tried again.
const RETRY_SECS: i64 = 5;

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
    let mut transient = Vec::new();
    let mut trigger_failed = Vec::new();
    for (entry, result) in claimed.iter().zip(results) {
        match result {
            Err(err) if err.is_transient() => {
                tracing::warn!(campaign_id = entry.campaign_id, creator_id = entry.creator_id, error = %err, "queued mint will be retried");
                transient.push(*entry);
            }
            Err(Error::MintFailed(failure)) => {
                tracing::info!(
                    campaign_id = entry.campaign_id,
                    creator_id = entry.creator_id,
                    reason = failure.reason(),
                    "mint failed"
                );
                let key = (entry.brand_id, entry.campaign_id, entry.creator_id);
                if !brands.contains(&key) {
                    trigger_failed.push(key);
                }
                settled.push(*entry);
            }
            _ => settled.push(*entry),
        }
    }
    let mut conn = shared.db.conn().await?;
    failures::mark_by_trigger(&mut conn, &trigger_failed).await?;
    queue::settle(&mut conn, &settled).await?;
    queue::release(&mut conn, &transient, RETRY_SECS).await?;
    Ok(claimed.len())
}
