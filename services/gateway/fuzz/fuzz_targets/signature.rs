//! Fuzz target for the webhook signature check (`webhooks::verify_signature`, base64
//! HMAC-SHA256 of the raw body, used by Shopify, WooCommerce and AST).
//!
//! Input layout: byte 0 is the secret's length, byte 1 the header's; then the secret, the header
//! (lossy UTF-8) and the rest is the body (short inputs give empty parts). Any panic, including
//! a failed assertion, is a bug.

#![no_main]

use gateway_service::webhooks::{sign, verify_signature};
use libfuzzer_sys::fuzz_target;

/// Takes up to `n` bytes off the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let lengths = take(&mut rest, 2);
    let secret_len = lengths.first().copied().map_or(0, usize::from);
    let header_len = lengths.get(1).copied().map_or(0, usize::from);
    let secret = take(&mut rest, secret_len);
    let header = String::from_utf8_lossy(take(&mut rest, header_len)).into_owned();
    let body = rest;

    // Arbitrary headers: no panic, and only the exact signature (give or take whitespace) passes.
    let signature = sign(secret, body);
    assert_eq!(
        signature.len(),
        44,
        "{signature:?} is not base64 of 32 bytes"
    );
    if verify_signature(secret, body, Some(&header)) {
        assert_eq!(
            header.trim(),
            signature,
            "a header other than the signature passed"
        );
    }
    assert!(!verify_signature(secret, body, None));

    // The real signature passes, trimmed or not.
    assert!(verify_signature(secret, body, Some(&signature)));
    assert!(verify_signature(
        secret,
        body,
        Some(&format!(" {signature}\r\n"))
    ));

    // Any other body fails: flip each byte (the first 256), drop the last one, add one.
    let mut flipped = body.to_vec();
    for index in 0..flipped.len().min(256) {
        let bit = 1 << (index % 8);
        flipped[index] ^= bit;
        assert!(
            !verify_signature(secret, &flipped, Some(&signature)),
            "byte {index} flipped still passes"
        );
        flipped[index] ^= bit;
    }
    if let Some((_, shorter)) = body.split_last() {
        assert!(!verify_signature(secret, shorter, Some(&signature)));
    }
    let mut longer = body.to_vec();
    longer.push(header_len as u8);
    assert!(!verify_signature(secret, &longer, Some(&signature)));

    // A different secret of the same length fails.
    if let Some(first) = secret.first() {
        let mut other = secret.to_vec();
        other[0] = first ^ 0x80;
        assert!(!verify_signature(&other, body, Some(&signature)));
    }

    // Mangled signatures fail: truncated, padding dropped, case changed, a character changed.
    let truncated = &signature[..signature.len() - 4];
    assert!(!verify_signature(secret, body, Some(truncated)));
    assert!(!verify_signature(
        secret,
        body,
        Some(signature.trim_end_matches('='))
    ));
    let swapped: String = signature
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' => c.to_ascii_lowercase(),
            other => other,
        })
        .collect();
    if swapped != signature {
        assert!(!verify_signature(secret, body, Some(&swapped)));
    }
    let position = header_len % 43;
    let mut changed: Vec<u8> = signature.clone().into_bytes();
    changed[position] = if changed[position] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let changed = String::from_utf8(changed).expect("base64 is ASCII");
    assert!(!verify_signature(secret, body, Some(&changed)));
});
