//! Parses arbitrary text as a pattern; every pattern that parses must print back to itself and
//! render, for arbitrary profile text and store rules, either an error or a code the rules
//! accept. Suffixing and the keyspace check must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracking_pattern::{
    AllowedChars, Context, Discount, Pattern, Rules, SocialHandles, SocialNetwork, append_suffix,
};

fuzz_target!(|data: &[u8]| {
    // Layout: [max_len, punctuation selector, rng seed, split] then text split in two halves:
    // the pattern, and the profile values.
    if data.len() < 4 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let split = usize::from(head[3]).min(rest.len());
    let pattern_text = String::from_utf8_lossy(&rest[..split]);
    let profile_text = String::from_utf8_lossy(&rest[split..]);

    let Ok(pattern) = Pattern::parse(&pattern_text) else {
        return;
    };
    let printed = pattern.to_string();
    assert_eq!(Pattern::parse(&printed).ok().as_ref(), Some(&pattern), "round trip of {printed:?}");

    let mut values = profile_text.split('\u{1f}');
    let mut next = || values.next().filter(|v| !v.is_empty());
    let (username, first, last, campaign, handle) = (next(), next(), next(), next(), next());
    let mut social = SocialHandles::new();
    if let Some(handle) = handle {
        social.set(SocialNetwork::ALL[usize::from(head[2]) % SocialNetwork::ALL.len()], handle);
    }
    let context = Context {
        username,
        first_name: first,
        last_name: last,
        campaign,
        discount: Some(if head[2] % 2 == 0 {
            Discount::Percent { basis_points: u32::from(head[0]) * 40 }
        } else {
            Discount::Fixed { minor_units: u64::from(head[1]) * 1234, exponent: head[2] % 4 }
        }),
        social,
    };
    let punctuation = ["", "-", "-_", "-_.!"][usize::from(head[1]) % 4];
    let rules = Rules {
        max_len: usize::from(head[0]).max(1),
        allowed: AllowedChars::alphanumeric()
            .with_punctuation(punctuation)
            .unwrap_or_else(|_| AllowedChars::alphanumeric()),
        uppercase: head[1] % 2 == 0,
    };
    let mut state = u64::from(head[2]) | 1;
    let mut rng = move |upper: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % upper as u64) as usize
    };
    if let Ok(code) = pattern.render(&context, &rules, &mut rng) {
        assert!(!code.is_empty());
        assert!(code.chars().count() <= rules.max_len, "{code:?} longer than {}", rules.max_len);
        assert!(rules.accepts(&code), "{code:?} breaks the rules");
        let suffixed = append_suffix(&code, 1 + usize::from(head[3] % 8), &rules, &mut rng);
        assert!(suffixed.chars().count() <= rules.max_len);
        assert!(rules.accepts(&suffixed), "{suffixed:?} breaks the rules");
    }
    let _ = pattern.check_keyspace(u64::from(head[0]) * 1_000);
});
