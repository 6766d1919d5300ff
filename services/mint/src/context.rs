//! What the minting service's parts share: the database, the gateway, the public base URL of
//! tracking links, and the codes this process just minted (for its pusher).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Since when codes have waited (the queue was last empty).
    waiting_since: Option<Instant>,
}

impl Held {
    fn room(&self) -> usize {
        Fresh::BOUND.saturating_sub(self.codes.len() + self.promised)
    }
}

/// What a push worker should do ([`Fresh::take`]).
#[derive(Debug, PartialEq)]
pub enum Take {
    /// Push these codes (at most [`Fresh::ROUND`]).
    Round(Vec<(i64, i64)>),
    /// Codes wait, fewer than a round: take them at this time unless a round fills first.
    At(Instant),
    /// No code waits.
    Nothing,
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
    /// How long codes wait for a round to fill. A round costs its reads, a store call and a
    /// commit whatever its size: taken as they came, unary minting's codes went out a few dozen
    /// at a time, and the pushes' statements cost MintCode ~10 % of its rate.
    pub const LINGER: Duration = Duration::from_millis(50);

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

    /// A round of up to [`Fresh::ROUND`] codes, oldest first, once a round's worth waits or
    /// codes have waited [`Fresh::LINGER`]; else when to ask again.
    pub fn take(&self) -> Take {
        let Ok(mut held) = self.inner.lock() else {
            return Take::Nothing;
        };
        let Some(since) = held.waiting_since else {
            return Take::Nothing;
        };
        if held.codes.len() < Self::ROUND && since.elapsed() < Self::LINGER {
            return Take::At(since + Self::LINGER);
        }
        let n = Self::ROUND.min(held.codes.len());
        let round: Vec<(i64, i64)> = held.codes.drain(..n).collect();
        // Those left came after the ones taken (their wait is counted from now: at most one
        // linger more). A full round's worth left wakes another worker.
        held.waiting_since = (!held.codes.is_empty()).then(Instant::now);
        if held.codes.len() >= Self::ROUND {
            self.added.notify_one();
        }
        Take::Round(round)
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .map(|held| held.codes.is_empty())
            .unwrap_or(true)
    }

    /// Resolves once codes start to wait or a round's worth waits (at once if that happened
    /// since a waiter last woke).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

impl Promise {
    /// Hands the batch's committed pending codes (at most the room promised) to the pusher,
    /// waking a worker when codes start to wait or a round's worth does.
    pub fn keep(mut self, codes: impl IntoIterator<Item = (i64, i64)>) {
        if let Ok(mut held) = self.fresh.inner.lock() {
            held.promised -= self.room;
            let was = held.codes.len();
            held.codes.extend(codes.into_iter().take(self.room));
            // A worker starts the linger of codes newly waiting; another takes a full round.
            if was == 0 && !held.codes.is_empty() {
                held.waiting_since = Some(Instant::now());
                self.fresh.added.notify_one();
            } else if was < Fresh::ROUND && held.codes.len() >= Fresh::ROUND {
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
    use super::{Fresh, Take};

    #[test]
    fn codes_come_out_oldest_first_and_the_bound_leaves_the_rest_to_the_scan() {
        let fresh = Fresh::default();
        let promise = fresh.promise(3).unwrap_or_else(|| panic!("room"));
        promise.keep([(1, 1), (1, 2), (2, 3)]);
        assert!(matches!(fresh.take(), Take::At(_)), "a few codes linger");
        let full = fresh
            .promise(Fresh::BOUND - 13)
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
        let Take::Round(first) = fresh.take() else {
            panic!("a full round")
        };
        assert_eq!(first[..3], [(1, 1), (1, 2), (2, 3)]);
        let mut taken = first.len();
        loop {
            match fresh.take() {
                Take::Round(round) => {
                    assert!(round.len() <= Fresh::ROUND);
                    taken += round.len();
                }
                Take::At(at) => std::thread::sleep(at - std::time::Instant::now()),
                Take::Nothing => break,
            }
        }
        assert_eq!(taken, Fresh::BOUND - 10);
    }

    #[tokio::test]
    async fn codes_linger_for_a_round_to_fill_and_a_full_round_goes_at_once() {
        let woken = async |fresh: &Fresh| {
            let within = std::time::Duration::from_millis(20);
            tokio::time::timeout(within, fresh.added()).await.is_ok()
        };
        let keep = |fresh: &Fresh, ids: std::ops::Range<i64>| {
            let promise = fresh.promise(ids.clone().count());
            promise
                .unwrap_or_else(|| panic!("room"))
                .keep(ids.map(|id| (1, id)));
        };
        let fresh = Fresh::default();
        assert_eq!(fresh.take(), Take::Nothing);
        keep(&fresh, 0..10);
        assert!(woken(&fresh).await, "a worker starts the linger");
        let Take::At(at) = fresh.take() else {
            panic!("ten codes linger")
        };
        keep(&fresh, 10..20);
        assert!(!woken(&fresh).await, "more codes join the linger");
        tokio::time::sleep_until(at.into()).await;
        let Take::Round(round) = fresh.take() else {
            panic!("the linger is over")
        };
        assert_eq!(round.len(), 20);
        keep(&fresh, 20..(Fresh::ROUND as i64 + 30));
        assert!(woken(&fresh).await, "a full round's worth");
        let Take::Round(round) = fresh.take() else {
            panic!("a full round goes at once")
        };
        assert_eq!(round.len(), Fresh::ROUND);
        assert!(matches!(fresh.take(), Take::At(_)), "the rest lingers");
    }
}
