//! Work the gateway does per integration in rounds, written once for every such job: polling
//! Magento's and WooCommerce's orders ([`crate::poller`]) and importing Amazon Attribution's
//! reports ([`crate::amazon_ads`]). Every interval, each integration of the job's providers is
//! worked on under a lease (so that one replica works on an integration at a time), starting from
//! the progress the last successful round recorded (`integration_jobs`), [`AT_ONCE`] integrations
//! at a time across the job's rounds. A lease names its holder and lasts five intervals; its
//! holder renews it every interval while it works and gives it back when done, or at shutdown. A
//! replica that dies mid-round leaves its leases to expire; one whose lease was taken over (it
//! stalled past its lease) stops that work and leaves it to the new holder. Rounds start on time whether or not the one before has ended: an
//! integration an earlier round of this replica has taken and not finished is left to it, so a
//! store that does not answer delays only its own next round, never the other stores'. A failed
//! round for one integration is logged and leaves its progress as it was, so the next round
//! retries the same span.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracking_api::common::v1::Provider;
use tracking_db::{Database, DbError};

use crate::store::{self, IntegrationRow};

/// A job done per integration in rounds.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// Its name in `integration_jobs` and in logs.
    pub name: &'static str,
    /// The providers whose integrations it works on.
    pub providers: &'static [Provider],
}

/// What a job's rounds in this replica share: the name their leases are held under, the
/// integrations a round has taken and not finished (another round leaves them to it), the
/// places for work at once ([`AT_ONCE`]), and the claims in flight (each holds a read of
/// `claims`; shutdown takes the write, so it gives the leases back after the last claim ends).
pub struct Rounds {
    holder: String,
    taken: Mutex<HashSet<i64>>,
    places: tokio::sync::Semaphore,
    claims: Arc<tokio::sync::RwLock<()>>,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds {
            holder: holder_name(),
            taken: Mutex::default(),
            places: tokio::sync::Semaphore::new(AT_ONCE),
            claims: Arc::default(),
        }
    }
}

/// A name for one replica's rounds of a job, unique among the replicas: random, else (no
/// randomness to be had) the process and the time.
fn holder_name() -> String {
    let mut bytes = [0u8; 16];
    match getrandom::fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!(
            "{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ),
    }
}

impl Rounds {
    /// Takes `integration_id` for a round, unless another round has it: given back when the
    /// guard is dropped (the work done, failed or cancelled).
    fn take(self: &Arc<Self>, integration_id: i64) -> Option<Taken> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.insert(integration_id).then(|| Taken {
            rounds: self.clone(),
            integration_id,
        })
    }

    /// [`claim`]s `lease` on a task of its own, which runs to its end even if the round is
    /// dropped (at shutdown): a claim dropped while its statement is at the database could
    /// commit after [`run`] gave the leases back, and hold the lease for five intervals.
    async fn claim(
        &self,
        db: &Database,
        lease: &Lease<'_>,
        until: DateTime<Utc>,
    ) -> Result<Option<Option<serde_json::Value>>, DbError> {
        let in_flight = self.claims.clone().read_owned().await;
        let (db, job, brand_id, integration_id) =
            (db.clone(), lease.job, lease.brand_id, lease.integration_id);
        let holder = lease.holder.to_owned();
        let claimed = tokio::spawn(async move {
            let _in_flight = in_flight;
            let lease = Lease {
                job,
                brand_id,
                integration_id,
                holder: &holder,
            };
            claim(&db, &lease, until).await
        });
        claimed
            .await
            .map_err(|err| DbError::Other(format!("{} lease claim: {err}", job.name)))?
    }
}

/// An integration a round has taken ([`Rounds::take`]).
struct Taken {
    rounds: Arc<Rounds>,
    integration_id: i64,
}

impl Drop for Taken {
    fn drop(&mut self) {
        let mut taken = self.rounds.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.remove(&self.integration_id);
    }
}

/// Starts `round` every `every` until `shutdown`, beside the rounds before it that have not ended
/// (they share one [`Rounds`], so a new round leaves their integrations to them); a round that
/// fails as a whole (the database) is logged and tried again at the next interval. At shutdown
/// the rounds still working are dropped and their leases given back, their progress as it was.
pub async fn run<F, Fut>(
    db: &Database,
    job: Job,
    every: Duration,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut(Arc<Rounds>) -> Fut,
    Fut: Future<Output = Result<usize, DbError>>,
{
    use futures::StreamExt;
    let shared = Arc::new(Rounds::default());
    let mut rounds = futures::stream::FuturesUnordered::new();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => rounds.push(round(shared.clone())),
            Some(result) = rounds.next(), if !rounds.is_empty() => {
                if let Err(err) = result {
                    tracing::warn!(job = job.name, error = %err, "round failed, retrying next interval");
                }
            }
        }
    }
    drop(rounds);
    // The leases are given back at once; then, once the claims already at the database have
    // ended (they may commit after the first give-back), once more. A claim stuck there holds
    // shutdown up for [`CLAIMS_WAIT`] at most, well within the drain.
    give_back(db, job, &shared.holder).await;
    match tokio::time::timeout(CLAIMS_WAIT, shared.claims.write()).await {
        Ok(_ended) => give_back(db, job, &shared.holder).await,
        Err(_) => tracing::warn!(
            job = job.name,
            "a lease claim has not ended at shutdown: its lease expires after five intervals"
        ),
    }
}

/// How long shutdown waits for the lease claims at the database to end.
const CLAIMS_WAIT: Duration = Duration::from_secs(3);

/// [`give_back_all`], logged, waited for [`CLAIMS_WAIT`] at most (twice that and the claims'
/// wait stay within the drain).
async fn give_back(db: &Database, job: Job, holder: &str) {
    match tokio::time::timeout(CLAIMS_WAIT, give_back_all(db, job, holder)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(given)) => tracing::info!(job = job.name, given, "leases given back at shutdown"),
        Ok(Err(err)) => tracing::warn!(job = job.name, error = %err,
            "leases not given back at shutdown: they expire after five intervals"),
        Err(_) => tracing::warn!(
            job = job.name,
            "leases not given back in time at shutdown: they expire after five intervals"
        ),
    }
}

/// One round of `job`: `work(integration, progress)` for every integration of its providers
/// that no other round of `rounds` has taken and whose lease is free, with the progress the
/// last successful round recorded (`None` the first time); the progress it answers is recorded.
/// How many integrations succeeded.
pub async fn round<P, E, F, Fut>(
    db: &Database,
    job: Job,
    every: Duration,
    rounds: &Arc<Rounds>,
    work: F,
) -> Result<usize, DbError>
where
    P: Serialize + DeserializeOwned,
    E: Display,
    F: Fn(IntegrationRow, Option<P>) -> Fut,
    Fut: Future<Output = Result<P, E>>,
{
    use futures::StreamExt;
    let providers: Vec<&str> = job.providers.iter().map(|p| p.as_str_name()).collect();
    let term = chrono::Duration::from_std(every * 5).unwrap_or(chrono::Duration::minutes(5));
    let integrations: Vec<(IntegrationRow, Taken)> =
        store::integrations_of_providers(db, &providers)
            .await?
            .into_iter()
            .filter_map(|integration| {
                let taken = rounds.take(integration.id)?;
                Some((integration, taken))
            })
            .collect();
    // One integration's part of the round: whether it succeeded (not when another replica
    // holds its lease, or its work failed). It waits for a place among the job's rounds.
    let work_on = |(integration, taken): (IntegrationRow, Taken)| {
        let work = &work;
        async move {
            // `taken` (moved in whole: it is dropped, giving the integration back, when this
            // part of the round ends, however it ends) also holds the job's places.
            let _place = taken.rounds.places.acquire().await;
            let (brand_id, id) = (integration.brand_id, integration.id);
            let holder = taken.rounds.holder.as_str();
            let lease = Lease {
                job,
                brand_id,
                integration_id: id,
                holder,
            };
            let claimed = taken.rounds.claim(db, &lease, Utc::now() + term).await?;
            let Some(progress) = claimed else {
                return Ok(false);
            };
            let progress = progress.and_then(|value| match serde_json::from_value(value) {
                Ok(progress) => Some(progress),
                Err(err) => {
                    tracing::error!(job = job.name, integration_id = id, error = %err,
                        "unreadable progress, starting over");
                    None
                }
            });
            // The lease is renewed every interval while the work runs; if another replica has
            // taken it meanwhile (this one stalled past it), the work is left to that one.
            let work = work(integration, progress);
            tokio::pin!(work);
            let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = renewals.tick() => match renew(db, &lease, Utc::now() + term).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = job.name, integration_id = id,
                                "lease taken over by another replica, its work left to that one");
                            return Ok(false);
                        }
                        Err(err) => tracing::warn!(job = job.name, integration_id = id,
                            error = %err, "lease not renewed, trying again next interval"),
                    },
                }
            };
            match outcome {
                Ok(progress) => {
                    release(db, &lease, Some(&progress)).await?;
                    Ok(true)
                }
                Err(err) => {
                    tracing::warn!(job = job.name, integration_id = id, error = %err, "round failed");
                    release::<P>(db, &lease, None).await?;
                    Ok::<bool, DbError>(false)
                }
            }
        }
    };
    let worked: Vec<Result<bool, DbError>> = futures::stream::iter(integrations)
        .map(work_on)
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut done = 0;
    for succeeded in worked {
        done += usize::from(succeeded?);
    }
    Ok(done)
}

/// Integrations a job's rounds work on at once.
pub const AT_ONCE: usize = 8;

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Nullable<Jsonb>)]
    progress: Option<serde_json::Value>,
}

/// A job's lease on one integration, as one replica's rounds hold it.
pub struct Lease<'a> {
    pub job: Job,
    pub brand_id: i64,
    pub integration_id: i64,
    /// The holding rounds' name ([`Rounds`]).
    pub holder: &'a str,
}

/// Takes `lease` until `until`: the recorded progress (`Some(None)` when there is none yet), or
/// `None` when another holder's lease has not expired. Its own holder takes it again (a lease it
/// failed to give back): its rounds never work on one integration at once ([`Rounds`]).
pub async fn claim(
    db: &Database,
    lease: &Lease<'_>,
    until: DateTime<Utc>,
) -> Result<Option<Option<serde_json::Value>>, DbError> {
    let mut conn = db.conn().await?;
    let rows: Vec<Claimed> = tracking_db::prepared(
        "insert into integration_jobs as j (brand_id, integration_id, job, leased_until, holder)
         values ($1, $2, $3, $4, $5)
         on conflict (brand_id, integration_id, job) do update
            set leased_until = excluded.leased_until, holder = excluded.holder
         where j.leased_until is null or j.leased_until < now() or j.holder = excluded.holder
         returning progress",
    )
    .bind::<BigInt, _>(lease.brand_id)
    .bind::<BigInt, _>(lease.integration_id)
    .bind::<Text, _>(lease.job.name)
    .bind::<Timestamptz, _>(until)
    .bind::<Text, _>(lease.holder)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().next().map(|row| row.progress))
}

/// Extends `lease` to `until`, if its holder still holds it: whether it did.
async fn renew(db: &Database, lease: &Lease<'_>, until: DateTime<Utc>) -> Result<bool, DbError> {
    let mut conn = db.conn().await?;
    let renewed = tracking_db::prepared(
        "update integration_jobs set leased_until = $5
         where brand_id = $1 and integration_id = $2 and job = $3 and holder = $4
           and leased_until is not null",
    )
    .bind::<BigInt, _>(lease.brand_id)
    .bind::<BigInt, _>(lease.integration_id)
    .bind::<Text, _>(lease.job.name)
    .bind::<Text, _>(lease.holder)
    .bind::<Timestamptz, _>(until)
    .execute(&mut conn)
    .await?;
    Ok(renewed == 1)
}

/// Gives `lease` back, recording `progress` when the round succeeded; nothing if its holder no
/// longer holds it (another replica took it over, and records its own progress).
async fn release<P: Serialize>(
    db: &Database,
    lease: &Lease<'_>,
    progress: Option<&P>,
) -> Result<(), DbError> {
    let job = lease.job;
    let progress = progress
        .map(serde_json::to_value)
        .transpose()
        .map_err(|err| DbError::Other(format!("{} progress: {err}", job.name)))?;
    let mut conn = db.conn().await?;
    let released = tracking_db::prepared(
        "update integration_jobs set leased_until = null, holder = null,
             progress = coalesce($5, progress)
         where brand_id = $1 and integration_id = $2 and job = $3 and holder = $4
           and leased_until is not null",
    )
    .bind::<BigInt, _>(lease.brand_id)
    .bind::<BigInt, _>(lease.integration_id)
    .bind::<Text, _>(job.name)
    .bind::<Text, _>(lease.holder)
    .bind::<Nullable<Jsonb>, _>(progress)
    .execute(&mut conn)
    .await?;
    if released == 0 {
        tracing::warn!(
            job = job.name,
            integration_id = lease.integration_id,
            "lease taken over by another replica before the work ended, its outcome not recorded"
        );
    }
    Ok(())
}

/// Gives back every lease of `job` that `holder` holds, their progress as it was: how many.
async fn give_back_all(db: &Database, job: Job, holder: &str) -> Result<usize, DbError> {
    let mut conn = db.conn().await?;
    let given = tracking_db::prepared(
        "update integration_jobs set leased_until = null, holder = null
         where job = $1 and holder = $2 and leased_until is not null",
    )
    .bind::<Text, _>(job.name)
    .bind::<Text, _>(holder)
    .execute(&mut conn)
    .await?;
    Ok(given)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracking_db::{SchemaSpec, TestDb};

    use super::*;
    use crate::store::{NewIntegrationRow, Registered};

    const SCHEMAS: &[SchemaSpec] = &[(crate::SCHEMA, crate::MIGRATIONS)];
    const JOB: Job = Job {
        name: "test_job",
        providers: &[Provider::Magento],
    };
    const EVERY: Duration = Duration::from_secs(60);

    /// An integration worked on, with the progress it was given.
    type Call = (i64, Option<u32>);

    async fn integration(db: &Database, brand_id: i64, provider: Provider) -> IntegrationRow {
        let row = NewIntegrationRow {
            brand_id,
            provider: provider.as_str_name(),
            name: provider.as_str_name(),
            shop_domain: "",
            base_url: "http://127.0.0.1:9",
            credential_fields: Vec::new(),
            credentials_sealed: Vec::new(),
            webhook_secret_sealed: None,
        };
        match store::insert_integration(db, row, None).await {
            Ok(Registered::Created(integration)) => integration,
            _ => panic!("integration not stored"),
        }
    }

    #[tokio::test]
    async fn a_store_that_never_answers_does_not_hold_up_the_others_rounds() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let silent = integration(&db, 1, Provider::Magento).await;
        let answering = integration(&db, 2, Provider::Magento).await;
        let calls: Arc<Mutex<Vec<i64>>> = Arc::default();
        let work = |integration: IntegrationRow, progress: Option<u32>| {
            let calls = calls.clone();
            async move {
                calls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(integration.id);
                if integration.id == silent.id {
                    std::future::pending::<()>().await;
                }
                Ok::<u32, &str>(progress.unwrap_or(0) + 1)
            }
        };
        let every = Duration::from_millis(50);
        let shutdown = CancellationToken::new();
        let answered = || {
            calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|&&id| id == answering.id)
                .count()
        };
        // Eight rounds of the answering store, every 50 ms: well past the silent one's lease.
        let rounds_past_the_lease = async {
            while answered() < 8 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = run(&db, JOB, every, shutdown.clone(), |rounds| { let (db, work) = (&db, &work); async move { round(db, JOB, every, &rounds, work).await } }) => {
                panic!("run ended before its shutdown")
            }
            waited = tokio::time::timeout(Duration::from_secs(30), rounds_past_the_lease) => {
                assert!(waited.is_ok(), "the answering store was polled {} times while the silent one hung", answered());
            }
        }
        shutdown.cancel();
        let polled = calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The round that took it still works on it (renewing its lease): no other round of
        // this replica polls it meanwhile.
        let silent_polls = polled.iter().filter(|&&id| id == silent.id).count();
        assert_eq!(silent_polls, 1, "{polled:?}");
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let recorded: Claimed = diesel::sql_query(
            "select progress from integration_jobs where integration_id = $1 and job = $2",
        )
        .bind::<BigInt, _>(answering.id)
        .bind::<Text, _>(JOB.name)
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let progress = recorded.progress.and_then(|p| p.as_u64());
        assert!(
            progress >= Some(7),
            "the answering store's rounds recorded their progress: {progress:?}"
        );
    }

    #[tokio::test]
    async fn progress_is_kept_per_integration_and_a_failure_retries_the_same_span() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let first = integration(&db, 1, Provider::Magento).await;
        let second = integration(&db, 2, Provider::Magento).await;
        integration(&db, 1, Provider::Shopify).await;
        let seen: Arc<Mutex<Vec<Call>>> = Arc::default();

        // Round 1: nothing recorded yet; the second integration fails.
        let work = |fail: i64| {
            let seen = seen.clone();
            move |integration: IntegrationRow, progress: Option<u32>| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((integration.id, progress));
                    if integration.id == fail {
                        Err("store down")
                    } else {
                        Ok(progress.unwrap_or(0) + 1)
                    }
                }
            }
        };
        let done = round(&db, JOB, EVERY, &Arc::default(), work(second.id))
            .await
            .ok();
        assert_eq!(done, Some(1), "only the job's providers, one failed");
        // Round 2: the first goes on from 1, the second starts again from nothing.
        let done = round(&db, JOB, EVERY, &Arc::default(), work(0)).await.ok();
        assert_eq!(done, Some(2));
        let mut calls = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        calls.sort();
        assert_eq!(
            calls,
            vec![
                (first.id, None),
                (first.id, Some(1)),
                (second.id, None),
                (second.id, None)
            ]
        );

        // A lease held elsewhere (another replica mid-round) is skipped; the progress stays.
        let until = Utc::now() + chrono::Duration::minutes(5);
        let elsewhere = lease_of(JOB, 1, first.id, "another replica");
        let held = claim(&db, &elsewhere, until).await.ok();
        assert_eq!(held, Some(Some(Some(serde_json::json!(2)))));
        assert_eq!(
            claim(&db, &lease_of(JOB, 1, first.id, "a third"), until)
                .await
                .ok(),
            Some(None),
            "one holder at a time"
        );
        let done = round(&db, JOB, EVERY, &Arc::default(), work(0)).await.ok();
        assert_eq!(done, Some(1), "only the second integration was free");
        // Another job's lease on the same integration is its own.
        let other = Job {
            name: "other_job",
            ..JOB
        };
        assert_eq!(
            claim(&db, &lease_of(other, 1, first.id, "another replica"), until)
                .await
                .ok(),
            Some(Some(None))
        );
    }

    fn lease_of(job: Job, brand_id: i64, integration_id: i64, holder: &str) -> Lease<'_> {
        Lease {
            job,
            brand_id,
            integration_id,
            holder,
        }
    }

    /// When `job`'s lease on `integration_id` runs out (`None` when it is free).
    async fn leased_until(db: &Database, job: Job, integration_id: i64) -> Option<DateTime<Utc>> {
        #[derive(QueryableByName)]
        struct Until {
            #[diesel(sql_type = Nullable<Timestamptz>)]
            leased_until: Option<DateTime<Utc>>,
        }
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let row: Until = diesel::sql_query(
            "select leased_until from integration_jobs where integration_id = $1 and job = $2",
        )
        .bind::<BigInt, _>(integration_id)
        .bind::<Text, _>(job.name)
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        row.leased_until
    }

    #[tokio::test]
    async fn a_lease_is_renewed_while_its_work_runs_and_given_back_at_shutdown() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let slow = integration(&db, 1, Provider::Magento).await;
        let started = Arc::new(tokio::sync::Notify::new());
        let work = {
            let started = started.clone();
            move |_: IntegrationRow, _: Option<u32>| {
                let started = started.clone();
                async move {
                    started.notify_one();
                    std::future::pending::<Result<u32, &str>>().await
                }
            }
        };
        // Leases of five intervals: 250 ms.
        let every = Duration::from_millis(50);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let (db, shutdown) = (db.clone(), shutdown.clone());
            async move {
                run(&db, JOB, every, shutdown, |rounds| {
                    let (db, work) = (&db, &work);
                    async move { round(db, JOB, every, &rounds, work).await }
                })
                .await;
            }
        });
        started.notified().await;
        let first = leased_until(&db, JOB, slow.id)
            .await
            .unwrap_or_else(|| panic!("leased while worked on"));
        // Past the first term, the lease has been renewed: no other replica may take it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Utc::now() < first + chrono::Duration::milliseconds(100) {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let renewed = leased_until(&db, JOB, slow.id).await;
        assert!(renewed > Some(Utc::now()), "{renewed:?} renewed past now");
        let until = Utc::now() + chrono::Duration::minutes(5);
        let other = lease_of(JOB, 1, slow.id, "another replica");
        assert_eq!(claim(&db, &other, until).await.ok(), Some(None));

        // At shutdown the work is dropped and its lease given back at once.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leased_until(&db, JOB, slow.id).await, None);
        assert_eq!(claim(&db, &other, until).await.ok(), Some(Some(None)));
    }

    /// How many statements on `integration_jobs` wait for a lock.
    async fn claims_waiting(db: &Database) -> i64 {
        #[derive(QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        let row: Waiting = diesel::sql_query(
            "select count(*) as n from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query like 'insert into integration_jobs%'",
        )
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        row.n
    }

    #[tokio::test]
    async fn a_claim_at_the_database_at_shutdown_ends_before_the_leases_are_given_back() {
        use diesel_async::SimpleAsyncConnection;
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let integration = integration(&db, 1, Provider::Magento).await;
        // Another session is inserting the same lease row: the round's claim waits for it at
        // the database.
        let mut blocker = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        blocker
            .batch_execute(&format!(
                "begin; insert into integration_jobs (brand_id, integration_id, job, holder)
                 values (1, {}, '{}', 'blocker')",
                integration.id, JOB.name
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let work = |_: IntegrationRow, _: Option<u32>| async { Ok::<u32, &str>(1) };
        // Leases of five seconds: one left held would still be held when checked.
        let every = Duration::from_secs(1);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let (db, shutdown) = (db.clone(), shutdown.clone());
            async move {
                run(&db, JOB, every, shutdown, |rounds| {
                    let (db, work) = (&db, &work);
                    async move { round(db, JOB, every, &rounds, work).await }
                })
                .await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while claims_waiting(&db).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no claim waited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Shutdown drops the round mid-claim, and waits for the claim; then the other session
        // gives up its row, and the claim goes through at the database.
        shutdown.cancel();
        let mut running = running;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut running)
                .await
                .is_err(),
            "shutdown waits for the claim at the database"
        );
        blocker
            .batch_execute("rollback")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        while claims_waiting(&db).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the claim still waits"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its lease was given back after it: another replica may take it at once.
        let other = lease_of(JOB, 1, integration.id, "another replica");
        let until = Utc::now() + chrono::Duration::minutes(5);
        assert_eq!(claim(&db, &other, until).await.ok(), Some(Some(None)));
    }

    #[tokio::test]
    async fn a_lease_taken_over_is_not_given_back_or_renewed_by_its_former_holder() {
        let test_db = TestDb::new(SCHEMAS).await;
        let db = test_db.pool(crate::SCHEMA);
        let integration = integration(&db, 1, Provider::Magento).await;
        let stalled = lease_of(JOB, 1, integration.id, "stalled replica");
        let expired = Utc::now() - chrono::Duration::seconds(1);
        assert_eq!(claim(&db, &stalled, expired).await.ok(), Some(Some(None)));
        let taker = lease_of(JOB, 1, integration.id, "taker");
        let until = Utc::now() + chrono::Duration::minutes(5);
        assert_eq!(claim(&db, &taker, until).await.ok(), Some(Some(None)));
        // Its holder takes it again (as after failing to give it back).
        assert_eq!(claim(&db, &taker, until).await.ok(), Some(Some(None)));

        // The stalled replica's work ends: it neither renews nor gives back the taker's lease,
        // and its progress is not recorded over the taker's.
        assert_eq!(renew(&db, &stalled, until).await.ok(), Some(false));
        assert!(release(&db, &stalled, Some(&7u32)).await.is_ok());
        assert_eq!(
            give_back_all(&db, JOB, "stalled replica").await.ok(),
            Some(0)
        );
        let third = lease_of(JOB, 1, integration.id, "third");
        assert_eq!(
            claim(&db, &third, until).await.ok(),
            Some(None),
            "still held"
        );
        assert!(release(&db, &taker, Some(&3u32)).await.is_ok());
        assert_eq!(
            claim(&db, &third, until).await.ok(),
            Some(Some(Some(serde_json::json!(3))))
        );

        // In a rolling upgrade, a replica of the version before holders claims a lease given back
        // as that version did, naming nobody: the lease's last holder does not hold it.
        assert!(release(&db, &third, None::<&u32>).await.is_ok());
        let mut conn = db.conn().await.unwrap_or_else(|e| panic!("{e}"));
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(
                "update integration_jobs set leased_until = now() + interval '5 minutes' \
                 where leased_until is null",
            ),
            &mut conn,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            claim(&db, &third, until).await.ok(),
            Some(None),
            "held by the older replica"
        );
    }
}
