//! Fuzz target for BigCommerce's thin webhooks (`webhooks::bigcommerce`): the notice parser and
//! the `X-Tracking-Secret` check.
//!
//! Input layout: the bytes before the last `0xFF` are the body; the bytes after it split at their
//! first `0xFE` into the integration's secret and the header value (lossy UTF-8). Without a
//! `0xFF` (plain JSON seeds) the secret is `s3cret` and the header is absent. Any panic,
//! including a failed assertion, is a bug.

#![no_main]

use gateway_service::webhooks::bigcommerce::{parse, verify};
use gateway_service_fuzz::split_tail;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (body, tail) = split_tail(data);

    match parse(body) {
        Ok(Some(notice)) => {
            assert!(notice.scope.starts_with("store/order/"), "{notice:?}");
            assert!(
                !notice.order_id.is_empty() && notice.order_id.bytes().all(|b| b.is_ascii_digit()),
                "order_id of {notice:?}"
            );
            assert!(
                notice
                    .delivery_id
                    .starts_with(&format!("{}:", notice.scope)),
                "delivery_id of {notice:?}"
            );
            assert!(notice.delivery_id.len() > notice.scope.len() + 1);
            assert_eq!(parse(body), Ok(Some(notice)));
        }
        Ok(None) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }

    let (secret, header): (&[u8], Option<String>) = match tail {
        Some(tail) => match tail.iter().position(|&byte| byte == 0xFE) {
            Some(split) => (
                &tail[..split],
                Some(String::from_utf8_lossy(&tail[split + 1..]).into_owned()),
            ),
            None => (tail, None),
        },
        None => (b"s3cret", None),
    };
    let accepted = verify(secret, header.as_deref());
    assert_eq!(
        accepted,
        header
            .as_deref()
            .is_some_and(|value| value.trim().as_bytes() == secret),
        "verify({secret:?}, {header:?})"
    );
    assert!(!verify(secret, None));
    // The secret as the header (with the whitespace HTTP may add) passes; any other value not.
    if let Ok(text) = std::str::from_utf8(secret)
        && text == text.trim()
    {
        assert!(verify(secret, Some(text)));
        assert!(verify(secret, Some(&format!(" {text}\t"))));
        assert!(!verify(secret, Some(&format!("{text}x"))));
        if let Some(last) = text.chars().last() {
            assert!(!verify(secret, Some(&text[..text.len() - last.len_utf8()])));
        }
    }
});
