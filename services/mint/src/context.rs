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
}

impl Held {
    fn room(&self) -> usize {
        Fresh::BOUND.saturating_sub(self.codes.len() + self.promised)
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

    /// Up to `n` codes, oldest first. Codes left wake another waiting taker ([`Fresh::added`]),
    /// so that the pusher's workers share a burst.
    pub fn take(&self, n: usize) -> Vec<(i64, i64)> {
        let (taken, left) = self
            .inner
            .lock()
            .map(|mut held| {
                let n = n.min(held.codes.len());
                let taken: Vec<(i64, i64)> = held.codes.drain(..n).collect();
                (taken, !held.codes.is_empty())
            })
            .unwrap_or_default();
        if left {
            self.added.notify_one();
        }
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .map(|held| held.codes.is_empty())
            .unwrap_or(true)
    }

    /// Resolves once codes were added, or left by a taker (at once if that happened since a
    /// waiter last woke).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

impl Promise {
    /// Hands the batch's committed pending codes (at most the room promised) to the pusher and
    /// wakes it.
    pub fn keep(mut self, codes: impl IntoIterator<Item = (i64, i64)>) {
        if let Ok(mut held) = self.fresh.inner.lock() {
            held.promised -= self.room;
            held.codes.extend(codes.into_iter().take(self.room));
        }
        self.room = 0;
        self.fresh.added.notify_one();
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
        assert_eq!(fresh.take(2), vec![(1, 1), (1, 2)]);
        assert_eq!(fresh.take(5), vec![(2, 3)]);
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
        assert_eq!(fresh.take(usize::MAX).len(), Fresh::BOUND - 10);
    }

    #[tokio::test]
    async fn a_taker_that_leaves_codes_wakes_another() {
        let within = |ms| std::time::Duration::from_millis(ms);
        let fresh = Fresh::default();
        let promise = fresh.promise(2).unwrap_or_else(|| panic!("room"));
        promise.keep([(1, 1), (1, 2)]);
        fresh.added().await;
        assert_eq!(fresh.take(1), vec![(1, 1)]);
        let woken = tokio::time::timeout(within(1000), fresh.added()).await;
        assert!(woken.is_ok(), "a taker is woken for the code left");
        assert_eq!(fresh.take(1), vec![(1, 2)]);
        let woken = tokio::time::timeout(within(50), fresh.added()).await;
        assert!(woken.is_err(), "none once no code is left");
    }
}
