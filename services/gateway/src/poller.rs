//! Stores without webhooks (Magento), and WooCommerce, whose webhooks are not delivered again,
//! are polled: every interval, each such integration's orders changed since the last poll (with
//! an overlap, so an order changed while a poll ran is not missed) go through the same intake as
//! webhooks, where orders already seen collapse. A lease per integration keeps replicas from
//! polling the same store at once.
//!
//! WooCommerce sends each webhook once: a delivery answered with an error (the database down for
//! a moment) is never sent again, and after a few failures in a row the store disables the
//! webhook. Its poll is what catches those orders up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Database, DbError};

use crate::intake::Intake;
use crate::rounds::{self, Job, Rounds};

/// Polling stores without webhooks (Magento) or whose webhooks are not delivered again
/// (WooCommerce): its progress is the time up to which orders were taken in.
pub const JOB: Job = Job {
    name: "order_poll",
    providers: &[Provider::Magento, Provider::Woocommerce],
};

/// A poll looks this far back before the previous one's start.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(5);
/// The first poll of an integration reaches this far back.
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(1);
/// Listings one round of one integration takes at most (each up to `BACKFILL_LIMIT` orders).
const MAX_LISTINGS: usize = 10;

/// Polls every polled integration every `every`, until `shutdown`.
pub async fn run(db: Database, intake: Intake, every: Duration, shutdown: CancellationToken) {
    rounds::run(&db, JOB, every, shutdown, |rounds| {
        let (db, intake) = (&db, &intake);
        async move { poll_all(db, intake, every, &rounds).await }
    })
    .await;
}

/// One round: every polled integration whose lease is free and that no other round of `rounds`
/// has taken; how many were polled.
pub async fn poll_all(
    db: &Database,
    intake: &Intake,
    every: Duration,
    rounds: &std::sync::Arc<Rounds>,
) -> Result<usize, DbError> {
    rounds::round(
        db,
        JOB,
        every,
        rounds,
        |integration, since: Option<DateTime<Utc>>| async move {
            let started = Utc::now();
            let mut since = since.unwrap_or(started - FIRST_LOOKBACK);
            // More orders changed than one listing takes (a first poll, after an outage): list
            // on from where each stopped, up to a few listings a round; the next round goes on
            // from there.
            for listing in 0..MAX_LISTINGS {
                let done = match intake
                    .backfill(&integration, since, pb::OrderSource::Poller)
                    .await
                {
                    Ok(done) => done,
                    // The listings before it are kept: the next round goes on from them.
                    Err(err) if listing > 0 => {
                        tracing::warn!(integration_id = integration.id, error = %err, "store poll stopped; the next round goes on");
                        return Ok(since);
                    }
                    Err(err) => return Err(err),
                };
                tracing::debug!(
                    integration_id = integration.id,
                    listed = done.listed,
                    accepted = done.outcome.accepted,
                    "store polled"
                );
                match done.resume_from {
                    // More orders changed in that one second than a listing holds: on from
                    // the next second (the rest of that second's are not listed).
                    Some(next) if next <= since => since += chrono::Duration::seconds(1),
                    Some(next) => since = next,
                    None => return Ok::<_, crate::error::Error>(started - OVERLAP),
                }
            }
            Ok(since)
        },
    )
    .await
}
