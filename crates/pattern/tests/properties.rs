//! Property tests over the public API.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tracking_pattern::{
    AllowedChars, Context, Discount, MAX_PATTERN_CHARS, Pattern, RANDOM_ALPHABET, RenderError,
    Rules, SocialHandles, SocialNetwork, append_suffix,
};

/// Deterministic stand-in for a secure generator: a 64-bit LCG.
fn lcg(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |upper| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap() % upper
    }
}

fn variable() -> impl Strategy<Value = String> {
    let named = prop_oneof![
        Just("username".to_owned()),
        Just("first_name".to_owned()),
        Just("last_name".to_owned()),
        Just("full_name".to_owned()),
        Just("campaign".to_owned()),
        Just("discount".to_owned()),
        proptest::sample::select(SocialNetwork::ALL.to_vec()).prop_map(|n| n.as_str().to_owned()),
    ];
    prop_oneof![
        4 => named,
        1 => (1..=32_u8).prop_map(|n| format!("random:{n}")),
    ]
}

fn filter(on_random: bool) -> impl Strategy<Value = String> {
    let case = prop_oneof![Just("upper".to_owned()), Just("lower".to_owned())];
    if on_random {
        case.boxed()
    } else {
        prop_oneof![case, (1..=255_u8).prop_map(|n| format!("trunc:{n}"))].boxed()
    }
}

fn placeholder() -> impl Strategy<Value = String> {
    variable().prop_flat_map(|variable| {
        let on_random = variable.starts_with("random");
        proptest::collection::vec(filter(on_random), 0..3).prop_map(move |filters| {
            let mut text = format!("{{{variable}");
            for filter in filters {
                text.push('|');
                text.push_str(&filter);
            }
            text.push('}');
            text
        })
    })
}

/// Literal text, escaped: any characters, braces doubled.
fn literal() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.{}éßŁ-]{1,8}".prop_map(|text| text.replace('{', "{{").replace('}', "}}"))
}

/// Valid pattern source text.
fn pattern_source() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![placeholder(), literal()], 1..8)
        .prop_map(|parts| parts.concat())
        .prop_filter("within the length limit", |source| {
            source.chars().count() <= MAX_PATTERN_CHARS
        })
}

fn rules() -> impl Strategy<Value = Rules> {
    (0..40_usize, "[-_.{}@]{0,3}", any::<bool>()).prop_map(|(max_len, punctuation, uppercase)| {
        Rules {
            max_len,
            allowed: AllowedChars::alphanumeric()
                .with_punctuation(&punctuation)
                .unwrap(),
            uppercase,
        }
    })
}

/// Profile text, sometimes missing: arbitrary Unicode, or name-like Latin
/// text that mostly survives normalization.
fn field() -> impl Strategy<Value = Option<String>> {
    let text = prop_oneof![any::<String>(), "[a-zA-Zà-ÿĀ-ſ .'@_-]{0,20}"];
    proptest::option::weighted(0.9, text)
}

fn discount() -> impl Strategy<Value = Option<Discount>> {
    proptest::option::of(prop_oneof![
        any::<u32>().prop_map(|basis_points| Discount::Percent { basis_points }),
        (any::<u64>(), any::<u8>()).prop_map(|(minor_units, exponent)| Discount::Fixed {
            minor_units,
            exponent,
        }),
    ])
}

#[derive(Debug)]
struct Profile {
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    campaign: Option<String>,
    discount: Option<Discount>,
    handles: Vec<Option<String>>,
}

impl Profile {
    fn context(&self) -> Context<'_> {
        Context {
            username: self.username.as_deref(),
            first_name: self.first_name.as_deref(),
            last_name: self.last_name.as_deref(),
            campaign: self.campaign.as_deref(),
            discount: self.discount,
            social: SocialNetwork::ALL
                .into_iter()
                .zip(&self.handles)
                .filter_map(|(network, handle)| Some((network, handle.as_deref()?)))
                .collect::<SocialHandles<'_>>(),
        }
    }
}

fn profile() -> impl Strategy<Value = Profile> {
    (
        (field(), field(), field(), field()),
        discount(),
        proptest::collection::vec(field(), SocialNetwork::ALL.len()),
    )
        .prop_map(
            |((username, first_name, last_name, campaign), discount, handles)| Profile {
                username,
                first_name,
                last_name,
                campaign,
                discount,
                handles,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics(source in any::<String>()) {
        let _ = Pattern::parse(&source);
    }

    #[test]
    fn parse_never_panics_on_pattern_like_text(source in "[{}|:a-z_0-9é]{0,40}") {
        if let Ok(pattern) = Pattern::parse(&source) {
            prop_assert_eq!(Pattern::parse(&pattern.to_string()).unwrap(), pattern);
        }
    }

    #[test]
    fn valid_patterns_parse_and_round_trip(source in pattern_source()) {
        let pattern = Pattern::parse(&source).unwrap();
        let canonical = pattern.to_string();
        prop_assert!(canonical.chars().count() <= source.chars().count());
        let reparsed = Pattern::parse(&canonical).unwrap();
        prop_assert_eq!(&reparsed, &pattern);
        prop_assert_eq!(reparsed.to_string(), canonical);
    }

    #[test]
    fn rendering_follows_the_rules(
        source in pattern_source(),
        profile in profile(),
        rules in rules(),
        seed in any::<u64>(),
    ) {
        let pattern = Pattern::parse(&source).unwrap();
        match pattern.render(&profile.context(), &rules, &mut lcg(seed)) {
            Ok(code) => {
                prop_assert!(rules.accepts(&code), "{code:?} breaks {rules:?}");
                if rules.uppercase && !source.contains("lower") {
                    prop_assert!(!code.bytes().any(|b| b.is_ascii_lowercase()), "{code:?}");
                }
                if pattern.random_chars() <= rules.max_len {
                    let random = code
                        .bytes()
                        .filter(|b| RANDOM_ALPHABET.as_bytes().contains(&b.to_ascii_uppercase()));
                    prop_assert!(random.count() >= pattern.random_chars());
                }
            }
            Err(RenderError::MissingSocialAccount(network)) => {
                prop_assert!(pattern.social_networks().contains(&network));
            }
            Err(RenderError::MissingField(name)) => {
                prop_assert!(pattern.variables().iter().any(|v| v.name() == name));
            }
            Err(RenderError::Empty) => {
                prop_assert!(pattern.random_chars() == 0 || rules.max_len == 0);
            }
        }
    }

    #[test]
    fn suffixes_fit_the_rules(
        code in "[A-Z0-9]{0,40}",
        n in 0..12_usize,
        max_len in 1..40_usize,
        seed in any::<u64>(),
    ) {
        let rules = Rules::new(max_len);
        let suffixed = append_suffix(&code, n, &rules, &mut lcg(seed));
        prop_assert!(suffixed.len() <= max_len);
        let n = n.min(max_len);
        prop_assert_eq!(suffixed.len(), (code.len() + n).min(max_len));
        prop_assert!(code.starts_with(&suffixed[..suffixed.len() - n]));
        prop_assert!(suffixed[suffixed.len() - n..].chars().all(|c| RANDOM_ALPHABET.contains(c)));
    }
}
