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
/// durable fallback: a code missing here (dropped past the bound, or minted by a process that
/// died) is still pending in the database and found by the pusher's periodic scan.
#[derive(Clone, Debug, Default)]
pub struct Fresh {
    codes: Arc<Mutex<VecDeque<(i64, i64)>>>,
    added: Arc<Notify>,
}

impl Fresh {
    /// Codes held at most; beyond it new ones are left to the scan.
    const BOUND: usize = 100_000;

    /// Hands committed pending codes to the pusher and wakes it.
    pub fn add(&self, codes: impl IntoIterator<Item = (i64, i64)>) {
        if let Ok(mut held) = self.codes.lock() {
            let room = Self::BOUND.saturating_sub(held.len());
            held.extend(codes.into_iter().take(room));
        }
        self.added.notify_one();
    }

    /// Up to `n` codes, oldest first.
    pub fn take(&self, n: usize) -> Vec<(i64, i64)> {
        self.codes
            .lock()
            .map(|mut held| {
                let n = n.min(held.len());
                held.drain(..n).collect()
            })
            .unwrap_or_default()
    }

    /// How many more codes it would take now.
    pub fn room(&self) -> usize {
        self.codes
            .lock()
            .map(|held| Self::BOUND.saturating_sub(held.len()))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.codes
            .lock()
            .map(|held| held.is_empty())
            .unwrap_or(true)
    }

    /// Resolves once codes were added (at once if some were added since the last call).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::Fresh;

    #[test]
    fn codes_come_out_oldest_first_and_the_bound_leaves_the_rest_to_the_scan() {
        let fresh = Fresh::default();
        fresh.add([(1, 1), (1, 2), (2, 3)]);
        assert_eq!(fresh.take(2), vec![(1, 1), (1, 2)]);
        assert_eq!(fresh.take(5), vec![(2, 3)]);
        assert!(fresh.is_empty());
        assert_eq!(fresh.room(), Fresh::BOUND);
        fresh.add((0..Fresh::BOUND as i64 + 10).map(|id| (1, id)));
        assert_eq!(fresh.room(), 0);
        assert_eq!(fresh.take(usize::MAX).len(), Fresh::BOUND);
    }
}
