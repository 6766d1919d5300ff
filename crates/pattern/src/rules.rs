//! What a shop accepts in a discount code.

/// The characters a shop accepts in codes: ASCII letters and digits, plus a
/// chosen set of ASCII punctuation.
///
/// Letters are allowed in both cases, so case filters never change what is
/// allowed. Stored as a bit mask over ASCII for a one-instruction lookup on
/// the rendering hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedChars {
    ascii_mask: u128,
}

/// A character given to [`AllowedChars::with_punctuation`] is not ASCII punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not ASCII punctuation; only punctuation can be added to the letters and digits")]
pub struct InvalidPunctuation(pub char);

impl AllowedChars {
    /// ASCII letters and digits only.
    pub const fn alphanumeric() -> Self {
        let mut ascii_mask = 0;
        let mut byte = 0_u8;
        while byte < 128 {
            if byte.is_ascii_alphanumeric() {
                ascii_mask |= 1 << byte;
            }
            byte += 1;
        }
        Self { ascii_mask }
    }

    /// These characters plus every character of `punctuation` (e.g. `"-_"`).
    pub fn with_punctuation(self, punctuation: &str) -> Result<Self, InvalidPunctuation> {
        let mut ascii_mask = self.ascii_mask;
        for c in punctuation.chars() {
            if !c.is_ascii_punctuation() {
                return Err(InvalidPunctuation(c));
            }
            ascii_mask |= 1 << u32::from(c);
        }
        Ok(Self { ascii_mask })
    }

    /// Whether `c` may appear in a code.
    pub const fn contains(self, c: char) -> bool {
        c.is_ascii() && self.contains_byte(c as u8)
    }

    /// Whether the ASCII byte `byte` may appear in a code; false for non-ASCII bytes.
    pub(crate) const fn contains_byte(self, byte: u8) -> bool {
        byte < 128 && self.ascii_mask & (1 << byte) != 0
    }
}

impl Default for AllowedChars {
    fn default() -> Self {
        Self::alphanumeric()
    }
}

/// A shop's constraints on discount codes, applied when rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rules {
    /// The longest code, in characters (all of which are ASCII).
    pub max_len: usize,
    /// Characters outside this set are dropped.
    pub allowed: AllowedChars,
    /// Upper-case every part of the code that has no explicit `upper` or
    /// `lower` filter. Most shops match codes case-insensitively but display
    /// them as stored, so upper case is the conventional default.
    pub uppercase: bool,
}

impl Rules {
    /// Codes of at most `max_len` ASCII letters and digits, upper-cased by default.
    pub const fn new(max_len: usize) -> Self {
        Self {
            max_len,
            allowed: AllowedChars::alphanumeric(),
            uppercase: true,
        }
    }

    /// Whether `code` is a code these rules accept: no longer than `max_len`,
    /// only allowed characters, and at least one letter or digit.
    ///
    /// Case is not checked: an explicit `lower` filter may produce lower case
    /// under `uppercase` rules.
    pub fn accepts(&self, code: &str) -> bool {
        code.len() <= self.max_len
            && code.chars().all(|c| self.allowed.contains(c))
            && code.bytes().any(|byte| byte.is_ascii_alphanumeric())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_allows_exactly_ascii_letters_and_digits() {
        let allowed = AllowedChars::alphanumeric();
        for byte in 0..=u8::MAX {
            assert_eq!(
                allowed.contains_byte(byte),
                byte.is_ascii_alphanumeric(),
                "{byte}"
            );
        }
        assert!(!allowed.contains('é'));
        assert!(!allowed.contains('٣'), "non-ASCII digits are not allowed");
        assert_eq!(AllowedChars::default(), allowed);
    }

    #[test]
    fn punctuation_can_be_added() {
        let allowed = AllowedChars::alphanumeric().with_punctuation("-_").unwrap();
        assert!(allowed.contains('-'));
        assert!(allowed.contains('_'));
        assert!(allowed.contains('a'));
        assert!(!allowed.contains('.'));
        assert!(!allowed.contains(' '));
    }

    #[test]
    fn only_ascii_punctuation_can_be_added() {
        for c in [' ', 'é', '–', '\n'] {
            let error = AllowedChars::alphanumeric()
                .with_punctuation(&format!("-{c}"))
                .unwrap_err();
            assert_eq!(error, InvalidPunctuation(c));
        }
    }

    #[test]
    fn new_rules_are_alphanumeric_and_uppercase() {
        let rules = Rules::new(12);
        assert_eq!(rules.max_len, 12);
        assert_eq!(rules.allowed, AllowedChars::alphanumeric());
        assert!(rules.uppercase);
    }

    #[test]
    fn accepts_checks_length_characters_and_content() {
        let mut rules = Rules::new(6);
        rules.allowed = AllowedChars::alphanumeric().with_punctuation("-").unwrap();
        assert!(rules.accepts("ANNA-2"));
        assert!(rules.accepts("anna"));
        assert!(!rules.accepts("ANNA-20"), "too long");
        assert!(!rules.accepts("ANNA_2"), "forbidden character");
        assert!(!rules.accepts("JOSÉ"), "non-ASCII");
        assert!(!rules.accepts("--"), "no letter or digit");
        assert!(!rules.accepts(""));
    }
}
