//! Fuzz target for the code-pattern engine (`tracking-pattern`).
//!
//! Input layout: the bytes before the first `0xFF` are the pattern source
//! (lossy UTF-8); the bytes after it (or the whole input when there is no
//! `0xFF`) drive everything else: the rules, the creator's profile, the
//! roster size for `check_keyspace`, the suffix length and the random source.
//! Any panic, including a failed assertion below, is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracking_pattern::{
    AllowedChars, Context, Discount, MAX_PATTERN_CHARS, Pattern, PatternError, RANDOM_ALPHABET,
    RandomSource, RenderError, Rules, SocialHandles, SocialNetwork, append_suffix,
};

/// All 32 ASCII punctuation characters; a bit mask from the input picks the allowed ones.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Reads configuration bytes, yielding zeros once the input is exhausted.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| (value << 8) | u64::from(self.byte()))
    }
}

/// A deterministic random source that cycles through input bytes. It returns
/// out-of-range indices too, which the renderer must reduce rather than trust.
#[derive(Clone)]
struct ByteRng<'a> {
    bytes: &'a [u8],
    position: usize,
    draws: usize,
}

impl RandomSource for ByteRng<'_> {
    fn fill_index(&mut self, upper: usize) -> usize {
        assert!(upper >= 1, "fill_index called with upper = 0");
        let byte = if self.bytes.is_empty() {
            0
        } else {
            self.bytes[self.position % self.bytes.len()]
        };
        self.position = self.position.wrapping_add(1);
        self.draws += 1;
        match byte >> 6 {
            0 | 1 => usize::from(byte) % upper,
            2 => upper.saturating_add(usize::from(byte)),
            _ => usize::MAX - usize::from(byte),
        }
    }
}

fn error_position(error: &PatternError) -> Option<usize> {
    match *error {
        PatternError::UnknownVariable { position, .. }
        | PatternError::UnknownFilter { position, .. }
        | PatternError::Unclosed { position }
        | PatternError::StrayClose { position }
        | PatternError::EmptyPlaceholder { position }
        | PatternError::EmptyFilter { position }
        | PatternError::MissingNumber { position, .. }
        | PatternError::UnexpectedArgument { position, .. }
        | PatternError::InvalidNumber { position, .. }
        | PatternError::OutOfRange { position, .. }
        | PatternError::TruncOnRandom { position } => Some(position),
        _ => None,
    }
}

/// Checks `append_suffix` on any string: at most `max_len` characters, a
/// prefix of `code` followed by `min(n, max_len)` characters of the alphabet.
fn check_suffix(code: &str, n: usize, rules: &Rules, rng: &mut ByteRng<'_>) -> String {
    let suffixed = append_suffix(code, n, rules, rng);
    let kept = n.min(rules.max_len);
    let chars: Vec<char> = suffixed.chars().collect();
    assert!(
        chars.len() <= rules.max_len,
        "{suffixed:?} exceeds {}",
        rules.max_len
    );
    assert!(chars.len() >= kept, "{suffixed:?} lost suffix characters");
    let (base, suffix) = chars.split_at(chars.len() - kept);
    assert!(
        suffix.iter().all(|&c| RANDOM_ALPHABET.contains(c)),
        "{suffixed:?}: suffix outside the alphabet"
    );
    let base: String = base.iter().collect();
    assert!(
        code.starts_with(&base),
        "{suffixed:?} does not start with a prefix of {code:?}"
    );
    suffixed
}

/// The keyspace rule, computed independently of the crate.
fn expected_keyspace_ok(pattern: &Pattern, roster_size: u64) -> bool {
    if pattern.has_per_creator_variable() {
        return true;
    }
    let keyspace = u32::try_from(pattern.random_chars())
        .ok()
        .and_then(|n| 31_u128.checked_pow(n))
        .unwrap_or(u128::MAX);
    keyspace >= u128::from(roster_size) * 100
}

fuzz_target!(|data: &[u8]| {
    let (source_bytes, tail) = match data.iter().position(|&byte| byte == 0xFF) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, data),
    };
    let source = String::from_utf8_lossy(source_bytes);

    // (a) Parsing: errors point inside the source; successes print canonically.
    let pattern = match Pattern::parse(&source) {
        Ok(pattern) => pattern,
        Err(error) => {
            let _ = error.to_string();
            if let Some(position) = error_position(&error) {
                assert!(
                    position <= source.len() && source.is_char_boundary(position),
                    "{error:?}: position outside {source:?}"
                );
            }
            return;
        }
    };
    let printed = pattern.to_string();
    let reparsed = Pattern::parse(&printed)
        .unwrap_or_else(|error| panic!("{source:?} prints as {printed:?}, which fails: {error}"));
    assert_eq!(
        reparsed, pattern,
        "{source:?} prints as {printed:?}, which differs"
    );
    assert_eq!(reparsed.to_string(), printed, "printing is not canonical");
    assert!(printed.chars().count() <= MAX_PATTERN_CHARS);

    // Rules and profile, from the tail.
    let mut cursor = Cursor(tail);
    let max_len = 1 + usize::from(cursor.byte() % 255);
    let flags = cursor.byte();
    let punctuation_mask =
        u32::from_le_bytes([cursor.byte(), cursor.byte(), cursor.byte(), cursor.byte()]);
    let present = u16::from_le_bytes([cursor.byte(), cursor.byte()]);
    let amount = cursor.u64();
    let exponent = cursor.byte();
    let roster_size = cursor.u64() >> (cursor.byte() % 64);
    let suffix_len = usize::from(cursor.byte() % 40);
    let punctuation: String = PUNCTUATION
        .chars()
        .enumerate()
        .filter(|(index, _)| punctuation_mask & (1 << index) != 0)
        .map(|(_, c)| c)
        .collect();
    let rules = Rules {
        max_len,
        allowed: AllowedChars::alphanumeric()
            .with_punctuation(&punctuation)
            .expect("ASCII punctuation is accepted"),
        uppercase: flags & 1 != 0,
    };

    let fields: Vec<String> = cursor
        .0
        .split(|&byte| byte == 0xFE)
        .take(12)
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    let field = |index: usize| -> Option<&str> {
        let value = fields.get(index).map_or("", String::as_str);
        (present & (1 << index) != 0).then_some(value)
    };
    let social: SocialHandles<'_> = SocialNetwork::ALL
        .into_iter()
        .enumerate()
        .filter_map(|(index, network)| field(4 + index).map(|handle| (network, handle)))
        .collect();
    let discount = match (flags >> 1) & 3 {
        0 => None,
        1 => Some(Discount::Percent {
            basis_points: amount as u32,
        }),
        _ => Some(Discount::Fixed {
            minor_units: amount,
            exponent,
        }),
    };
    let context = Context {
        username: field(0),
        first_name: field(1),
        last_name: field(2),
        campaign: field(3),
        discount,
        social,
    };

    // (a) Rendering: an error, or a code the rules accept.
    let mut rng = ByteRng {
        bytes: tail,
        position: 0,
        draws: 0,
    };
    let mut again = rng.clone();
    let result = pattern.render(&context, &rules, &mut rng);
    let mut buffer = "stale contents".to_owned();
    let result_into = pattern.render_into(&context, &rules, &mut again, &mut buffer);
    match (&result, &result_into) {
        (Ok(code), Ok(())) => assert_eq!(code, &buffer, "render and render_into differ"),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(
                buffer.is_empty(),
                "render_into left {buffer:?} after an error"
            );
        }
        _ => panic!("render gave {result:?}, render_into gave {result_into:?}"),
    }
    let random_drawn = pattern.random_chars().min(rules.max_len);
    match result {
        Ok(code) => {
            assert!(!code.is_empty());
            assert!(code.is_ascii(), "{code:?} is not ASCII");
            assert!(
                code.len() <= rules.max_len,
                "{code:?} longer than {}",
                rules.max_len
            );
            assert!(rules.accepts(&code), "{code:?} breaks {rules:?}");
            assert_eq!(
                rng.draws, random_drawn,
                "{code:?}: wrong number of random draws"
            );
            assert!(
                code.len() >= random_drawn,
                "{code:?} lost random characters"
            );
            if rules.uppercase && !printed.contains("lower") {
                assert!(
                    !code.bytes().any(|byte| byte.is_ascii_lowercase()),
                    "{code:?} has lower case under upper-case rules"
                );
            }
            // (b) Suffixing a rendered code keeps it acceptable.
            let suffixed = check_suffix(&code, suffix_len, &rules, &mut rng);
            assert!(rules.accepts(&suffixed), "{suffixed:?} breaks {rules:?}");
        }
        Err(error) => {
            let _ = error.to_string();
            assert_eq!(rng.draws, 0, "{error:?} after drawing randomness");
            if error == RenderError::Empty {
                assert_eq!(
                    pattern.random_chars(),
                    0,
                    "random characters rendered empty"
                );
            }
        }
    }

    // (b) Suffixing arbitrary text, and the keyspace check against a model.
    for index in 0..4 {
        if let Some(text) = field(index) {
            check_suffix(text, suffix_len, &rules, &mut rng);
        }
    }
    for roster in [roster_size, 0, 1, u64::MAX] {
        let result = pattern.check_keyspace(roster);
        assert_eq!(
            result.is_ok(),
            expected_keyspace_ok(&pattern, roster),
            "check_keyspace({roster}) gave {result:?}"
        );
        if let Err(error) = result {
            let _ = error.to_string();
            let expected_variant = if pattern.random_chars() == 0 {
                matches!(error, PatternError::NoPerCreatorPart { .. })
            } else {
                matches!(error, PatternError::KeyspaceTooSmall { .. })
            };
            assert!(expected_variant, "check_keyspace({roster}) gave {error:?}");
        }
    }
});
