//! Stores without webhooks (Magento) are polled: every interval, each such integration's orders
//! changed since the last poll (with an overlap, so an order changed while a poll ran is not
//! missed) go through the same intake as webhooks, where orders already seen collapse. A lease
//! per integration keeps replicas from polling the same store at once.

use std::time::Duration;

use chrono::Utc;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use tracking_api::common::v1::Provider;
use tracking_api::gateway::v1 as pb;
use tracking_db::{Database, DbError};

use crate::intake::Intake;
use crate::store::{self, IntegrationRow};

/// Providers whose orders only polling brings in.
pub const POLLED: &[Provider] = &[Provider::Magento];

/// A poll looks this far back before the previous one's start.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(5);
/// The first poll of an integration reaches this far back.
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

/// Polls every polled integration every `every`, until `shutdown`.
pub async fn run(db: Database, intake: Intake, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(err) = poll_all(&db, &intake, every).await {
            tracing::warn!(error = %err, "order poll round failed, retrying next round");
        }
    }
}

/// One round: every polled integration whose lease is free.
pub async fn poll_all(db: &Database, intake: &Intake, every: Duration) -> Result<usize, DbError> {
    let providers: Vec<&str> = POLLED.iter().map(|p| p.as_str_name()).collect();
    let integrations = store::integrations_of_providers(db, &providers).await?;
    let mut polled = 0;
    for integration in integrations {
        let lease = chrono::Duration::from_std(every * 5).unwrap_or(chrono::Duration::minutes(5));
        let Some(since) = claim(db, &integration, lease).await? else {
            continue;
        };
        let started = Utc::now();
        match intake
            .backfill(&integration, since, pb::OrderSource::Poller)
            .await
        {
            Ok((listed, outcome)) => {
                tracing::debug!(
                    integration_id = integration.id,
                    listed,
                    accepted = outcome.accepted,
                    "store polled"
                );
                release(db, &integration, Some(started - OVERLAP)).await?;
                polled += 1;
            }
            Err(err) => {
                tracing::warn!(integration_id = integration.id, error = %err, "store poll failed");
                release(db, &integration, None).await?;
            }
        }
    }
    Ok(polled)
}

#[derive(QueryableByName)]
struct Since {
    #[diesel(sql_type = Timestamptz)]
    polled_until: chrono::DateTime<Utc>,
}

/// Takes the integration's lease; the time to poll from, or `None` when another replica holds it.
async fn claim(
    db: &Database,
    integration: &IntegrationRow,
    lease: chrono::Duration,
) -> Result<Option<chrono::DateTime<Utc>>, DbError> {
    let mut conn = db.conn().await?;
    let now = Utc::now();
    let rows: Vec<Since> = diesel::sql_query(
        "insert into order_polls as p (brand_id, integration_id, polled_until, leased_until)
         values ($1, $2, $3, $4)
         on conflict (brand_id, integration_id) do update set leased_until = excluded.leased_until
         where p.leased_until is null or p.leased_until < now()
         returning polled_until",
    )
    .bind::<BigInt, _>(integration.brand_id)
    .bind::<BigInt, _>(integration.id)
    .bind::<Timestamptz, _>(now - FIRST_LOOKBACK)
    .bind::<Timestamptz, _>(now + lease)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.polled_until))
}

/// Gives the lease back, moving the mark forward when the poll succeeded.
async fn release(
    db: &Database,
    integration: &IntegrationRow,
    polled_until: Option<chrono::DateTime<Utc>>,
) -> Result<(), DbError> {
    let mut conn = db.conn().await?;
    diesel::sql_query(
        "update order_polls set leased_until = null,
             polled_until = coalesce($3, polled_until)
         where brand_id = $1 and integration_id = $2",
    )
    .bind::<BigInt, _>(integration.brand_id)
    .bind::<BigInt, _>(integration.id)
    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(polled_until)
    .execute(&mut conn)
    .await?;
    Ok(())
}
