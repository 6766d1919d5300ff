//! Fuzz target for CodeMintService's check of a code a brand types (`UpdateCode`): a store's
//! capabilities become code rules (`render::rules_for`), and the typed code is normalized and
//! checked against them (`render::normalize_manual`).
//!
//! Input layout: the first byte `n`, then `n` bytes decoded as `tracking.gateway.v1.Capabilities`
//! (arbitrary: any length limit and punctuation a store might declare), then the rest decoded as
//! `tracking.mint.v1.UpdateCodeRequest`. Any panic, including a failed assertion, is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mint_service::domain::render::{normalize_manual, rules_for};
use prost::Message;
use tracking_api::gateway::v1::Capabilities;
use tracking_api::mint::v1::UpdateCodeRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (caps, request) = rest.split_at(usize::from(n).min(rest.len()));
    let (Ok(caps), Ok(request)) = (
        Capabilities::decode(caps),
        UpdateCodeRequest::decode(request),
    ) else {
        return;
    };
    let rules = match rules_for(&caps) {
        Ok(rules) => rules,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    assert!(rules.max_len > 0);
    // The same input, the same answer.
    let verdict = normalize_manual(&request.code, &rules);
    assert_eq!(verdict, normalize_manual(&request.code, &rules));
    let code = match verdict {
        Ok(code) => code,
        Err(why) => {
            assert!(!why.is_empty(), "an empty reason for {:?}", request.code);
            return;
        }
    };
    // What an accepted code promises: the store can take it as it is.
    assert!(!code.is_empty());
    assert!(code.chars().count() <= rules.max_len, "{code:?} too long");
    assert!(code.chars().all(|c| rules.allowed.contains(c)), "{code:?}");
    assert_eq!(code, code.to_ascii_uppercase(), "{code:?} not upper-cased");
    assert_eq!(code, code.trim(), "{code:?} not trimmed");
    // Accepted codes are stable: checking one again changes nothing.
    assert_eq!(normalize_manual(&code, &rules), Ok(code.clone()));
    // Case never decides: the lower-cased input is the same code.
    assert_eq!(
        normalize_manual(&request.code.to_ascii_lowercase(), &rules),
        Ok(code)
    );
});
