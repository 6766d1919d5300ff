//! Whether a pattern can give every creator on a roster a distinct code.

use crate::parse::PatternError;
use crate::pattern::Pattern;
use crate::render::RANDOM_ALPHABET;

/// How many times larger than the roster the space of random codes must be.
///
/// With k codes drawn from a space of 100·k, about k/200 collide (birthday
/// bound k²/2K), which suffix retries absorb cheaply; and guessing a valid
/// code succeeds at most once in 100 tries.
pub const KEYSPACE_FACTOR: u64 = 100;

impl Pattern {
    /// Checks that the pattern can tell `roster_size` creators apart.
    ///
    /// A pattern with a per-creator variable (username, a name, a social
    /// handle) passes: its codes differ by creator, and the rare clashes
    /// (two creators named Anna) are settled with [`crate::append_suffix`].
    /// Otherwise only `random:N` tells codes apart, and its keyspace,
    /// 31^N for N random characters in all, must be at least
    /// [`KEYSPACE_FACTOR`] times `roster_size`.
    ///
    /// The check assumes the shop's `max_len` leaves the random characters
    /// whole, as rendering does whenever it can.
    pub fn check_keyspace(&self, roster_size: u64) -> Result<(), PatternError> {
        if self.has_per_creator_variable() {
            return Ok(());
        }
        let random_chars = self.random_chars();
        let alphabet_len = RANDOM_ALPHABET.len() as u128;
        // Saturating: 31^N passes u128 beyond N = 25, far above any roster anyway.
        let keyspace =
            (0..random_chars).fold(1_u128, |keyspace, _| keyspace.saturating_mul(alphabet_len));
        let required = u128::from(roster_size) * u128::from(KEYSPACE_FACTOR);
        if keyspace >= required {
            Ok(())
        } else if random_chars == 0 {
            Err(PatternError::NoPerCreatorPart { roster_size })
        } else {
            Err(PatternError::KeyspaceTooSmall {
                random_chars,
                keyspace,
                roster_size,
                required,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(pattern: &str, roster_size: u64) -> Result<(), PatternError> {
        Pattern::parse(pattern).unwrap().check_keyspace(roster_size)
    }

    #[test]
    fn small_random_keyspace_is_rejected() {
        let error = check("{random:2}", 500).unwrap_err();
        assert_eq!(
            error,
            PatternError::KeyspaceTooSmall {
                random_chars: 2,
                keyspace: 961,
                roster_size: 500,
                required: 50_000,
            }
        );
        assert_eq!(
            error.to_string(),
            "random:2 gives 961 codes, too few for 500 creators (at least 50000 are needed)"
        );
    }

    #[test]
    fn boundary_is_inclusive() {
        // 31^2 = 961 serves 9 creators (900 needed) but not 10 (1000 needed).
        assert_eq!(check("{random:2}", 9), Ok(()));
        assert!(check("{random:2}", 10).is_err());
    }

    #[test]
    fn random_characters_add_up_across_placeholders() {
        // 31^4 = 923,521 covers 9,235 creators.
        assert_eq!(check("{campaign}-{random:2}{random:2}", 9_235), Ok(()));
        assert!(check("{campaign}-{random:2}{random:2}", 9_236).is_err());
    }

    #[test]
    fn shared_values_do_not_count_as_variation() {
        assert!(matches!(
            check("{campaign}{discount}{random:1}", 1),
            Err(PatternError::KeyspaceTooSmall { keyspace: 31, .. })
        ));
    }

    #[test]
    fn per_creator_variables_pass() {
        for pattern in [
            "{username}",
            "{first_name}",
            "{last_name|trunc:2}",
            "{full_name}",
            "{snapchat}",
            "{first_name}{random:1}",
        ] {
            assert_eq!(check(pattern, u64::MAX), Ok(()), "{pattern}");
        }
    }

    #[test]
    fn constant_patterns_are_rejected() {
        let error = check("SUMMER{discount}", 2).unwrap_err();
        assert_eq!(error, PatternError::NoPerCreatorPart { roster_size: 2 });
        assert_eq!(
            error.to_string(),
            "the pattern has neither a creator variable nor random:N, \
             so all 2 creators would get the same code"
        );
    }

    #[test]
    fn empty_rosters_pass() {
        assert_eq!(check("SUMMER", 0), Ok(()));
    }

    #[test]
    fn huge_keyspaces_saturate_instead_of_overflowing() {
        let pattern = "{random:32}".repeat(6);
        assert_eq!(check(&pattern, u64::MAX), Ok(()));
    }
}
