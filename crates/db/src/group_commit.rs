//! Group commit: many concurrent callers, few transactions. Each caller submits one job and
//! waits for its answer; a few workers each take whatever is waiting (up to a batch) and hand
//! the whole batch to one function, which answers every job, typically from one transaction.
//! PostgreSQL commits about 7,800 single-row transactions a second on the project's machine but
//! ten times as many rows in batches: hot write paths (minting, webhook intake) go through here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};

struct Job<J, R> {
    job: J,
    reply: oneshot::Sender<R>,
    queued_at: tokio::time::Instant,
}

/// A handle to submit jobs through; clones share the workers. The workers stop when every
/// handle is dropped.
pub struct GroupCommit<J, R> {
    tx: mpsc::Sender<Job<J, R>>,
    load: Arc<Load>,
}

impl<J, R> Clone for GroupCommit<J, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            load: self.load.clone(),
        }
    }
}

/// What admission needs to know: how many jobs are submitted and not yet answered, and how long
/// the oldest job of the batch a worker took last had waited for it (the queueing delay, as
/// CoDel measures it: what the queue actually did, whatever made it slow).
struct Load {
    outstanding: AtomicUsize,
    waited_ns: AtomicU64,
}

impl Load {
    /// Whether a job submitted now should be refused: jobs are waiting and the queue has lately
    /// kept them longer than `max_wait` (zero: never refuse). With nothing outstanding the next
    /// job runs at once, so a backlog that has cleared admits again.
    fn refuse(&self, max_wait: Duration) -> Option<Overloaded> {
        let waited = Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed));
        (!max_wait.is_zero() && self.outstanding.load(Ordering::Relaxed) > 0 && waited > max_wait)
            .then_some(Overloaded { waited })
    }
}

/// A job refused at submission: the queue has lately kept jobs waiting `waited` for their
/// batch, longer than its caller allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overloaded {
    pub waited: Duration,
}

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "overloaded: requests are waiting {} ms for their turn",
            self.waited.as_millis()
        )
    }
}

impl<J, R> std::fmt::Debug for GroupCommit<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

/// How a [`GroupCommit`] batches.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Workers running batches at once (one can fill while another commits).
    pub workers: usize,
    /// Most jobs one batch takes.
    pub max_batch: usize,
    /// Jobs waiting beyond this make submitters wait (backpressure).
    pub queue: usize,
    /// How long a worker holding fewer than `max_batch` jobs waits for more before running the
    /// batch. Zero runs whatever is waiting at once; a little lets a busy path fill its batches,
    /// so that fewer, larger transactions carry the same jobs (less work per job) at the cost of
    /// at most this much latency.
    pub linger: Duration,
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Starts the workers. `run` gets each batch (in submission order) and must answer with one
    /// result per job, in the same order.
    pub fn start<F, Fut>(batching: Batching, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(batching.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        let load = Arc::new(Load {
            outstanding: AtomicUsize::new(0),
            waited_ns: AtomicU64::new(0),
        });
        for _ in 0..batching.workers.max(1) {
            tokio::spawn(worker(
                rx.clone(),
                run.clone(),
                load.clone(),
                batching.max_batch.max(1),
                batching.linger,
            ));
        }
        Self { tx, load }
    }

    /// Submits `job` and waits for its answer; `None` once the workers are gone (shutdown).
    pub async fn submit(&self, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let queued_at = tokio::time::Instant::now();
        // A slot first (the only wait, cancel-safe), then counted and queued with no await in
        // between: a caller that gives up while waiting for a slot leaves no count behind.
        let slot = self.tx.reserve().await.ok()?;
        self.load.outstanding.fetch_add(1, Ordering::Relaxed);
        slot.send(Job {
            job,
            reply,
            queued_at,
        });
        answer.await.ok()
    }

    /// As [`GroupCommit::submit`], but refuses the job at once, without queueing it, while the
    /// queue keeps jobs waiting longer than `max_wait` for their batch (load shedding: under
    /// overload the excess is refused fast, and what is admitted is still answered in time). A
    /// zero `max_wait` never refuses.
    pub async fn submit_within(&self, job: J, max_wait: Duration) -> Result<Option<R>, Overloaded> {
        if let Some(overloaded) = self.load.refuse(max_wait) {
            return Err(overloaded);
        }
        Ok(self.submit(job).await)
    }
}

async fn worker<J, R, F, Fut>(
    rx: Arc<Mutex<mpsc::Receiver<Job<J, R>>>>,
    run: Arc<F>,
    load: Arc<Load>,
    max: usize,
    linger: Duration,
) where
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.len() < max && !linger.is_zero() {
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        if let Some(oldest) = batch.first() {
            let waited = u64::try_from(oldest.queued_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
            load.waited_ns.store(waited, Ordering::Relaxed);
        }
        let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) =
            batch.into_iter().map(|j| (j.job, j.reply)).unzip();
        let expected = jobs.len();
        // A panic in `run` (a bug) ends its batch only: its callers get no answer (they see
        // shutdown), the worker goes on, and the batch stops counting as outstanding, which
        // would otherwise keep `submit_within` refusing for good.
        let results = std::panic::AssertUnwindSafe(run(jobs)).catch_unwind().await;
        load.outstanding.fetch_sub(expected, Ordering::Relaxed);
        let Ok(results) = results else {
            tracing::error!(expected, "group commit batch panicked");
            continue;
        };
        if results.len() != expected {
            // A bug in `run`: its callers get no answer (they see shutdown) rather than another
            // job's answer.
            tracing::error!(
                expected,
                answered = results.len(),
                "group commit batch answered the wrong number of jobs"
            );
            continue;
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_jobs_share_batches_and_get_their_own_answers() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let doubler = GroupCommit::start(
            Batching {
                workers: 1,
                max_batch: 64,
                queue: 1024,
                linger: Duration::ZERO,
            },
            move |jobs: Vec<u64>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    // A slow "commit", so that jobs pile up behind it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    jobs.into_iter().map(|j| j * 2).collect::<Vec<_>>()
                }
            },
        );
        let calls: Vec<_> = (0..500u64)
            .map(|n| {
                let doubler = doubler.clone();
                tokio::spawn(async move { (n, doubler.submit(n).await) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer, Some(n * 2));
        }
        let used = batches.load(Ordering::SeqCst);
        assert!(used < 100, "500 jobs took {used} batches");
    }

    #[tokio::test]
    async fn a_batch_answering_wrongly_leaves_its_callers_without_an_answer() {
        let broken = GroupCommit::start(
            Batching {
                workers: 1,
                max_batch: 8,
                queue: 8,
                linger: Duration::ZERO,
            },
            |_jobs: Vec<u8>| async { Vec::<u8>::new() },
        );
        assert_eq!(broken.submit(1).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_panics_ends_only_itself() {
        // Its one worker's batches take 20 ms; one with a 0 panics.
        let fragile = GroupCommit::start(
            Batching {
                workers: 1,
                max_batch: 1,
                queue: 8,
                linger: Duration::ZERO,
            },
            |jobs: Vec<u8>| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(!jobs.contains(&0), "a bug");
                jobs
            },
        );
        assert_eq!(fragile.submit(0).await, None);
        // The worker goes on, and nothing stays counted as waiting: no refusal.
        let answered = fragile.submit_within(7, Duration::from_millis(1)).await;
        assert_eq!(answered.ok().flatten(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_worker_waits_for_jobs_arriving_within_its_linger() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batches = GroupCommit::start(
            Batching {
                workers: 1,
                max_batch: 3,
                queue: 64,
                linger: Duration::from_millis(3),
            },
            move |jobs: Vec<u8>| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(jobs.len());
                    jobs
                }
            },
        );
        // Jobs 1 ms apart: the first three share a batch (the third fills it at once), the
        // fourth runs alone once its linger is over; nobody waits longer than the linger.
        let mut calls = Vec::new();
        for n in 0..4u8 {
            let batches = batches.clone();
            calls.push(tokio::spawn(async move { batches.submit(n).await }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.ok().flatten(), Some(n as u8));
        }
        assert_eq!(*sizes.lock().unwrap_or_else(|e| e.into_inner()), vec![3, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_jobs_wait_too_long_new_ones_are_refused_at_once_until_the_backlog_clears() {
        // A job costs 1 ms of its batch's run time.
        let slow = GroupCommit::start(
            Batching {
                workers: 1,
                max_batch: 64,
                queue: 1024,
                linger: Duration::ZERO,
            },
            |jobs: Vec<u32>| async move {
                tokio::time::sleep(Duration::from_millis(jobs.len() as u64)).await;
                jobs
            },
        );
        let limit = Duration::from_millis(10);
        let wave = |from: u32| {
            (from..from + 30)
                .map(|n| {
                    let slow = slow.clone();
                    tokio::spawn(async move { slow.submit(n).await })
                })
                .collect::<Vec<_>>()
        };
        let start = tokio::time::Instant::now();
        assert_eq!(slow.submit_within(7, limit).await, Ok(Some(7)));
        // Thirty jobs are taken at once and run for 30 ms; thirty more queue behind them and
        // are taken at 31 ms, the oldest having waited 30 ms.
        let first = wave(0);
        tokio::task::yield_now().await;
        let second = wave(100);
        tokio::time::sleep_until(start + Duration::from_millis(40)).await;
        let asked = tokio::time::Instant::now();
        let refused = slow.submit_within(99, limit).await;
        assert_eq!(asked.elapsed(), Duration::ZERO, "refused without waiting");
        let Err(Overloaded { waited }) = refused else {
            panic!("admitted behind a backlog: {refused:?}");
        };
        assert!(waited > limit, "{waited:?}");
        // No limit: admitted whatever the backlog.
        let patient = slow.clone();
        let waited = tokio::spawn(async move { patient.submit_within(98, Duration::ZERO).await });
        for call in first.into_iter().chain(second) {
            assert!(call.await.ok().flatten().is_some());
        }
        assert_eq!(waited.await.ok(), Some(Ok(Some(98))));
        // The backlog answered, a newcomer is admitted again at once.
        assert_eq!(slow.submit_within(100, limit).await, Ok(Some(100)));
    }
}
