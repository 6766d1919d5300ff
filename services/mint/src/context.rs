//! What the minting service's parts share: the database, the gateway, the public base URL of
//! tracking links, and the codes this process just minted (for its pusher).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracking_db::Database;

use crate::stores::Stores;

#[derive(Clone, Debug)]
pub struct Shared {
    pub db: Database,
    pub stores: Stores,
    /// Where the suite's redirect (`/r/{slug}`) is reachable by shoppers.
    pub public_base_url: String,
    pub fresh: Fresh,
}

/// Codes this process minted (committed, pending their push), as `(brand, id)`: the pusher takes
/// them by id rather than finding them by scanning for due codes, a scan that grows slow under
/// load (the index it walks keeps the pushed codes' entries until vacuum). The scan stays the
/// durable fallback: a code left out (past the bound, or minted by a process that died) is still
/// pending in the database and found by the pusher's periodic scan.
#[derive(Clone, Debug, Default)]
pub struct Fresh {
    inner: Arc<Mutex<Held>>,
    added: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Held {
    codes: VecDeque<(i64, i64)>,
    /// Room promised to batches being inserted ([`Promise`]).
    promised: usize,
    /// Rounds pushing codes taken from here ([`Round`]).
    rounds: usize,
}

impl Held {
    fn room(&self) -> usize {
        Fresh::BOUND.saturating_sub(self.codes.len() + self.promised)
    }

    /// Whether another round should start on the codes waiting: when no round is running (or
    /// none would take them), or when a full round's worth waits. Under a steady trickle (unary
    /// minting) one round at a time takes what gathered during the last, so rounds stay full
    /// enough to be cheap per code; a burst (a stream) gets every worker.
    fn wants_a_round(&self) -> bool {
        !self.codes.is_empty() && (self.rounds == 0 || self.codes.len() >= Fresh::ROUND)
    }
}

/// Codes taken from [`Fresh`] by a push round; dropped when the round has recorded the store's
/// answer.
#[derive(Debug)]
pub struct Round {
    fresh: Fresh,
    pub ids: Vec<(i64, i64)>,
}

impl Drop for Round {
    fn drop(&mut self) {
        if let Ok(mut held) = self.fresh.inner.lock() {
            held.rounds -= 1;
        }
    }
}

/// Room in [`Fresh`] for a batch's codes, taken before the batch is inserted: its codes are held
/// from the scans for this process's pusher, so each must then get a place ([`Promise::keep`]).
/// Checked and filled in two steps, two batches could both see the last room free, and the
/// codes of the second, held but not taken by id, waited for their hold to run out. Dropped
/// unkept (the insert failed), the room is free again.
#[derive(Debug)]
pub struct Promise {
    fresh: Fresh,
    room: usize,
}

impl Fresh {
    /// Codes held at most; beyond it new ones are left to the scan.
    const BOUND: usize = 100_000;
    /// Codes a push round takes at most (the gateway takes up to 500 per call).
    pub const ROUND: usize = 500;

    /// Room for `n` codes, if there is that much.
    pub fn promise(&self, n: usize) -> Option<Promise> {
        let mut held = self.inner.lock().ok()?;
        if held.room() < n {
            return None;
        }
        held.promised += n;
        Some(Promise {
            fresh: self.clone(),
            room: n,
        })
    }

    /// A round of up to [`Fresh::ROUND`] codes, oldest first, or `None` when none waits. If a
    /// full round's worth is left, another waiting worker is woken.
    pub fn take(&self) -> Option<Round> {
        let mut held = self.inner.lock().ok()?;
        let n = Self::ROUND.min(held.codes.len());
        if n == 0 {
            return None;
        }
        let ids: Vec<(i64, i64)> = held.codes.drain(..n).collect();
        held.rounds += 1;
        if held.wants_a_round() {
            self.added.notify_one();
        }
        Some(Round {
            fresh: self.clone(),
            ids,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .map(|held| held.codes.is_empty())
            .unwrap_or(true)
    }

    /// Resolves once codes want another round (at once if they did since a waiter last woke).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

impl Promise {
    /// Hands the batch's committed pending codes (at most the room promised) to the pusher,
    /// waking a worker if they want another round.
    pub fn keep(mut self, codes: impl IntoIterator<Item = (i64, i64)>) {
        if let Ok(mut held) = self.fresh.inner.lock() {
            held.promised -= self.room;
            held.codes.extend(codes.into_iter().take(self.room));
            if held.wants_a_round() {
                self.fresh.added.notify_one();
            }
        }
        self.room = 0;
    }
}

impl Drop for Promise {
    fn drop(&mut self) {
        if let Ok(mut held) = self.fresh.inner.lock() {
            held.promised -= self.room;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fresh;

    #[test]
    fn codes_come_out_oldest_first_and_the_bound_leaves_the_rest_to_the_scan() {
        let fresh = Fresh::default();
        let promise = fresh.promise(3).unwrap_or_else(|| panic!("room"));
        promise.keep([(1, 1), (1, 2), (2, 3)]);
        let round = fresh.take().unwrap_or_else(|| panic!("codes"));
        assert_eq!(round.ids, vec![(1, 1), (1, 2), (2, 3)]);
        assert!(fresh.take().is_none());
        assert!(fresh.is_empty());
        let full = fresh
            .promise(Fresh::BOUND - 10)
            .unwrap_or_else(|| panic!("room"));
        assert!(fresh.promise(11).is_none(), "promised room is taken");
        let last = fresh.promise(10).unwrap_or_else(|| panic!("room"));
        drop(last);
        assert!(fresh.promise(10).is_some(), "room not kept is free again");
        full.keep((0..Fresh::BOUND as i64).map(|id| (1, id)));
        assert!(
            fresh.promise(10).is_some(),
            "a batch keeps no more than promised"
        );
        let mut taken = 0;
        while let Some(round) = fresh.take() {
            assert!(round.ids.len() <= Fresh::ROUND);
            taken += round.ids.len();
        }
        assert_eq!(taken, Fresh::BOUND - 10);
    }

    #[tokio::test]
    async fn another_round_starts_for_a_burst_not_for_a_trickle() {
        let woken = async |fresh: &Fresh| {
            let within = std::time::Duration::from_millis(50);
            tokio::time::timeout(within, fresh.added()).await.is_ok()
        };
        let keep = |fresh: &Fresh, ids: std::ops::Range<i64>| {
            let promise = fresh.promise(ids.clone().count());
            promise
                .unwrap_or_else(|| panic!("room"))
                .keep(ids.map(|id| (1, id)));
        };
        let fresh = Fresh::default();
        keep(&fresh, 0..10);
        assert!(woken(&fresh).await, "no round runs: one starts");
        let first = fresh.take().unwrap_or_else(|| panic!("codes"));
        keep(&fresh, 10..20);
        assert!(
            !woken(&fresh).await,
            "a trickle waits for the running round"
        );
        keep(&fresh, 20..(Fresh::ROUND as i64 + 30));
        assert!(woken(&fresh).await, "a full round's worth starts another");
        let second = fresh.take().unwrap_or_else(|| panic!("codes"));
        assert_eq!(second.ids.len(), Fresh::ROUND);
        assert!(!woken(&fresh).await, "20 left for the running rounds");
        drop((first, second));
        let third = fresh.take().unwrap_or_else(|| panic!("codes"));
        assert_eq!(third.ids.len(), 20);
    }
}
