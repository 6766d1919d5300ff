//! Clicks on tracking links: which requests count (no bots, no HEAD), what is kept about a
//! click (no raw IP address: a keyed hash of the visitor only), and where the shopper goes.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// User-agent fragments of crawlers and link-preview fetchers (lower case). Apps' in-app
/// browsers are shoppers: Pinterest's (`[Pinterest/iOS]`) and Telegram's (`Telegram-Android/…`)
/// are not their crawlers (`Pinterestbot`, `Pinterest/0.2 (+…/bot.html)`, `TelegramBot`), which
/// "bot" finds.
const BOTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "whatsapp",
    "preview",
    "bingpreview",
    "headlesschrome",
    "lighthouse",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
    "httpclient",
    "okhttp",
    "axios",
    "node-fetch",
    "monitor",
    "uptime",
    "pingdom",
    "scanner",
];

/// Whether a request comes from a crawler or a preview fetcher rather than a shopper.
pub fn is_bot(user_agent: &str) -> bool {
    is_bot_lowercase(&user_agent.to_ascii_lowercase())
}

/// Phones whose model name holds "bot" (Cubot's).
const NOT_BOTS: &[&str] = &["cubot"];

fn is_bot_lowercase(agent: &str) -> bool {
    let mut agent = std::borrow::Cow::Borrowed(agent);
    for phone in NOT_BOTS {
        if agent.contains(phone) {
            agent = agent.replace(phone, "").into();
        }
    }
    BOTS.iter().any(|bot| agent.contains(bot))
}

/// The class of a crawler's or a preview fetcher's user agent: not counted as a click.
pub const BOT: &str = "bot";

/// A coarse class of the user agent (all that is kept of it).
pub fn agent_class(user_agent: &str) -> &'static str {
    let agent = user_agent.to_ascii_lowercase();
    if agent.is_empty() {
        "unknown"
    } else if is_bot_lowercase(&agent) {
        BOT
    } else if agent.contains("ipad") || agent.contains("tablet") {
        "tablet"
    } else if agent.contains("mobi") || agent.contains("iphone") || agent.contains("android") {
        "mobile"
    } else {
        "desktop"
    }
}

/// The host of a referring URL (no path, no query: those may carry personal data).
pub fn referrer_host(referrer: &str) -> String {
    let rest = referrer
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(referrer);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    host.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        .take(255)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A keyed hash of what identifies a visitor (address and user agent), so repeat visits can be
/// told apart without storing the address.
pub fn visitor_hash(key: &[u8], visitor: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(visitor.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The click id of a `RecordClick` that sent `request_id` and no click id: `q_` and a keyed hash
/// of the brand and the request id, so that its retries name the same click.
pub fn request_click_id(key: &[u8], brand_id: i64, request_id: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&brand_id.to_be_bytes());
    mac.update(request_id.as_bytes());
    format!("q_{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// Base-32 digits in ascending byte order, so ids compare as the numbers they encode.
const BASE32: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A fresh click id at `now`: `c_`, the time in milliseconds (10 base-32 digits) and 16 random
/// base-32 characters (80 bits). Ids made later sort later, so a brand's new clicks are added at
/// the end of the clicks index rather than at random places in it.
pub fn new_click_id(now: DateTime<Utc>) -> Result<String, getrandom::Error> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)?;
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    let mut id = String::with_capacity(28);
    id.push_str("c_");
    for digit in (0..10).rev() {
        id.push(char::from(BASE32[((millis >> (digit * 5)) & 31) as usize]));
    }
    for b in random {
        id.push(char::from(BASE32[usize::from(b & 31)]));
    }
    Ok(id)
}

/// Whether a click id from outside has the shape we accept.
pub fn valid_click_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The redirect target: the link's destination (the plan's URL with its UTM parameters) with
/// the click id appended, before any fragment.
pub fn destination_with_click(destination: &str, click_id: &str) -> String {
    let (base, fragment) = match destination.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (destination, None),
    };
    let separator = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    let mut url = format!("{base}{separator}click_id={click_id}");
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_recognised() {
        assert!(is_bot(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        ));
        assert!(is_bot(
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
        ));
        assert!(is_bot(
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
        ));
        assert!(!is_bot(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
        ));
        // In-app browsers and phones are shoppers; the same apps' crawlers are not.
        for shopper in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
            "Mozilla/5.0 (Linux; Android 13; SM-A546B) AppleWebKit/537.36 Chrome/119.0 Mobile Safari/537.36 Telegram-Android/10.2.9",
            "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Chrome/118.0 Mobile Safari/537.36",
        ] {
            assert!(!is_bot(shopper), "{shopper}");
        }
        for crawler in [
            "Pinterest/0.2 (+https://www.pinterest.com/bot.html)",
            "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
            "TelegramBot (like TwitterBot)",
            "WhatsApp/2.23.20.0 A",
        ] {
            assert!(is_bot(crawler), "{crawler}");
        }
        assert_eq!(
            agent_class("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"),
            "mobile"
        );
        assert_eq!(
            agent_class("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            "desktop"
        );
        assert_eq!(agent_class(""), "unknown");
    }

    #[test]
    fn referrers_keep_only_the_host() {
        assert_eq!(
            referrer_host("https://www.Instagram.com/p/abc?utm=1"),
            "www.instagram.com"
        );
        assert_eq!(referrer_host("https://user:pw@evil.com/x"), "evil.com");
        assert_eq!(referrer_host(""), "");
    }

    #[test]
    fn click_ids_are_appended_before_the_fragment() {
        assert_eq!(
            destination_with_click("https://shop.example/p?utm_source=ig#top", "c_x"),
            "https://shop.example/p?utm_source=ig&click_id=c_x#top"
        );
        assert_eq!(
            destination_with_click("https://shop.example/", "c_x"),
            "https://shop.example/?click_id=c_x"
        );
        let id = new_click_id(Utc::now()).unwrap_or_default();
        assert_eq!(id.len(), 28);
        assert!(valid_click_id(&id));
        assert!(!valid_click_id("a b"));
    }

    #[test]
    fn click_ids_sort_by_when_they_were_made() {
        let at = |ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let times = [
            0,
            1,
            31,
            32,
            1_000,
            1_764_000_000_000,
            1_764_000_000_001,
            1 << 49,
        ];
        let ids: Vec<String> = times
            .iter()
            .map(|&ms| new_click_id(at(ms)).unwrap_or_default())
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0][..12] < pair[1][..12], "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(&ids[0][..12], "c_2222222222");
    }

    #[test]
    fn visitors_are_hashed() {
        let a = visitor_hash(b"k", "203.0.113.9|Mozilla");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!a.contains("203"));
        assert_ne!(a, visitor_hash(b"other", "203.0.113.9|Mozilla"));
    }
}
