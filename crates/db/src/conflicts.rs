//! Plain inserts first, for writers whose rows are rarely taken already (new codes, new clicks).
//!
//! `insert ... on conflict do nothing` probes every unique index before each row it inserts; a
//! plain insert skips that probe, a quarter of the cost of inserting a mint code (29.6 against
//! 39.5 µs a row, 256 rows into 46,000 codes; docs/BENCHMARKS.md, sixteenth session). But a plain
//! insert that meets a taken key fails whole. So a writer tries the plain insert, and when it fails
//! on a taken key writes again skipping the taken rows:
//!
//! ```text
//! let mut taken = conflicts.first();
//! let inserted = loop {
//!     let result = insert(conn, rows, taken).await;
//!     if !conflicts.write_again(taken, &result) {
//!         break result?;
//!     }
//!     taken = Taken::Skip;
//! };
//! ```
//!
//! A writer that met one expects more (a pattern many creators render alike, a client retrying
//! its calls): its next [`Conflicts::AFTER`] writes skip from the start, so it does not pay for
//! every write twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::DbError;

/// What an insert does with a row whose key is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Skips it, not an error: `on conflict do nothing`.
    Skip,
    /// Inserts nothing: the statement fails on the first one ([`DbError::UniqueViolation`]).
    Fail,
}

impl Taken {
    /// The clause to end the insert with.
    pub fn on_conflict(self) -> &'static str {
        match self {
            Taken::Skip => "on conflict do nothing",
            Taken::Fail => "",
        }
    }
}

/// A statement written for both [`Taken`] modes, each text built once (kept in a `static`).
#[derive(Debug)]
pub struct ByTaken {
    skip: String,
    fail: String,
}

impl ByTaken {
    /// `statement`'s text for each mode.
    pub fn new(statement: impl Fn(Taken) -> String) -> Self {
        Self {
            skip: statement(Taken::Skip),
            fail: statement(Taken::Fail),
        }
    }

    /// The text for `taken`.
    pub fn get(&self, taken: Taken) -> &str {
        match taken {
            Taken::Skip => &self.skip,
            Taken::Fail => &self.fail,
        }
    }
}

/// What a writer's recent writes met; clones share it (a service's batch workers, say).
#[derive(Clone, Debug, Default)]
pub struct Conflicts(Arc<AtomicU32>);

impl Conflicts {
    /// Writes that skip taken rows from the start after one met a taken row.
    pub const AFTER: u32 = 32;

    /// How a write (all or nothing: its own transaction or statement) inserts at first: plainly,
    /// unless a recent write met a taken row.
    pub fn first(&self) -> Taken {
        let calm = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_err();
        if calm { Taken::Fail } else { Taken::Skip }
    }

    /// Whether a write made as `taken` that ended in `result` is to be made again, skipping taken
    /// rows: it inserted plainly and met one (recorded, as by [`Conflicts::met`]).
    pub fn write_again<T>(&self, taken: Taken, result: &Result<T, DbError>) -> bool {
        let again = taken == Taken::Fail && matches!(result, Err(DbError::UniqueViolation { .. }));
        if again {
            self.met();
        }
        again
    }

    /// Records that a write met a taken row (a write that skips them should tell when it did).
    pub fn met(&self) {
        self.0.store(Self::AFTER, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation() -> DbError {
        DbError::UniqueViolation {
            constraint: "clicks_pkey".to_owned(),
        }
    }

    /// Makes one write as its writers do, and returns how it was asked to insert, attempt by
    /// attempt; a plain attempt fails when `clash`.
    fn modes(conflicts: &Conflicts, clash: bool) -> Vec<Taken> {
        let mut asked = Vec::new();
        let mut taken = conflicts.first();
        loop {
            asked.push(taken);
            let result = if clash && taken == Taken::Fail {
                Err(violation())
            } else {
                Ok(())
            };
            if !conflicts.write_again(taken, &result) {
                assert!(result.is_ok(), "{result:?}");
                return asked;
            }
            taken = Taken::Skip;
        }
    }

    #[test]
    fn a_taken_row_makes_the_next_writes_skip_taken_rows_from_the_start() {
        let conflicts = Conflicts::default();
        assert_eq!(modes(&conflicts, false), [Taken::Fail]);
        assert_eq!(
            modes(&conflicts, true),
            [Taken::Fail, Taken::Skip],
            "written again, skipping"
        );
        for _ in 0..Conflicts::AFTER {
            assert_eq!(modes(&conflicts, true), [Taken::Skip]);
        }
        assert_eq!(
            modes(&conflicts, false),
            [Taken::Fail],
            "plain inserts again once writes are calm"
        );
        // Shared by clones; a skipping write that skipped a row counts too.
        conflicts.clone().met();
        assert_eq!(modes(&conflicts, false), [Taken::Skip]);
    }

    #[test]
    fn only_a_plain_insert_meeting_a_taken_row_is_written_again() {
        let conflicts = Conflicts::default();
        let down: Result<(), DbError> = Err(DbError::Unavailable("down".to_owned()));
        assert!(!conflicts.write_again(Taken::Fail, &down));
        assert!(!conflicts.write_again(Taken::Skip, &Err::<(), _>(violation())));
        assert_eq!(conflicts.first(), Taken::Fail, "nothing was met");
    }
}
