//! The links each minted code gets: a tracking link on the suite's redirect (every provider) and
//! an affiliate link where the provider has them.

use tracking_api::common::v1::Provider;

use super::PlanTerms;

/// `https://shop/landing` with the plan's UTM parameters appended (existing query kept).
pub fn destination_url(terms: &PlanTerms) -> String {
    if terms.click_url.is_empty() {
        return String::new();
    }
    let params: Vec<String> = [
        ("utm_source", &terms.utm.source),
        ("utm_medium", &terms.utm.medium),
        ("utm_campaign", &terms.utm.campaign),
        ("utm_term", &terms.utm.term),
        ("utm_content", &terms.utm.content),
    ]
    .iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| format!("{key}={}", encode(value)))
    .collect();
    if params.is_empty() {
        return terms.click_url.clone();
    }
    let (base, fragment) = match terms.click_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (terms.click_url.as_str(), None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut url = format!("{base}{separator}{}", params.join("&"));
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// The suite's redirect for `slug`.
pub fn tracking_url(public_base_url: &str, slug: &str) -> String {
    format!("{}/r/{slug}", public_base_url.trim_end_matches('/'))
}

/// What the affiliate link is for a provider:
/// - Shopify: the shop's discount link, which applies the code at checkout and then sends the
///   shopper on to the plan's page (`https://{shop}/discount/{code}?redirect={path}`);
/// - AST: the tracking link itself, which carries the click id that comes back with the
///   conversion;
/// - sandbox: the tracking link too (the simulated store has no shop pages to apply a code at);
/// - Amazon Ads: none yet; the gateway makes the creator's attribution tag after minting
///   ([`tag_from_gateway`], [`with_amazon_tag`]);
/// - others: none.
pub fn affiliate_url(
    provider: Provider,
    tracking_url: &str,
    shop_domain: &str,
    code: Option<&str>,
    terms: &PlanTerms,
) -> String {
    match (provider, code) {
        (Provider::Shopify, Some(code)) if !shop_domain.is_empty() => format!(
            "https://{shop_domain}/discount/{}{REDIRECT_QUERY}{}",
            encode(code),
            shopify_redirect(terms)
        ),
        (provider, _) if affiliate_is_tracking(provider) => tracking_url.to_owned(),
        _ => String::new(),
    }
}

/// `previous`, a Shopify discount link a code had before an edit, sending the shopper on where
/// the code's `current` one does: the plan's page may have moved during the edit. Other links
/// stay as they were.
pub fn with_redirect_of(previous: &str, current: &str) -> String {
    match (
        previous.split_once(REDIRECT_QUERY),
        current.split_once(REDIRECT_QUERY),
    ) {
        (Some((link, _)), Some((_, redirect))) => format!("{link}{REDIRECT_QUERY}{redirect}"),
        _ => previous.to_owned(),
    }
}

/// What precedes a Shopify discount link's page (see [`affiliate_url`]).
const REDIRECT_QUERY: &str = "?redirect=";

/// Whether a plan's change of terms changes its codes' links: where they lead, or when they end.
pub fn links_changed(before: &PlanTerms, after: &PlanTerms) -> bool {
    destination_url(before) != destination_url(after) || before.ends_at != after.ends_at
}

/// Where a Shopify discount link sends the shopper on to, encoded for its `redirect`: the
/// plan's page, within the shop.
pub fn shopify_redirect(terms: &PlanTerms) -> String {
    encode(&path_of(&terms.click_url))
}

/// Whether a provider's affiliate link is the code's tracking link: AST's, whose click id comes
/// back with the conversion, and the sandbox's, whose simulated store has no shop to apply a code
/// at. Such a link is made again at every read from the suite's base URL now, as the tracking
/// link is, so it follows a move of the suite's address.
pub fn affiliate_is_tracking(provider: Provider) -> bool {
    matches!(provider, Provider::Ast | Provider::Sandbox)
}

/// Whether a provider's links wait for the gateway after minting: an Amazon Ads link is the
/// plan's page with the creator's Amazon attribution tag, which the gateway makes (the link stays
/// pending until then, retried while Amazon is unreachable).
pub fn tag_from_gateway(provider: Provider) -> bool {
    provider == Provider::AmazonAds
}

/// `url` with an Amazon attribution tag (a query string, `?maas=…`) appended before its fragment,
/// after the query it already has; the tag alone when there is no URL (it fits any Amazon product
/// or Store page).
pub fn with_amazon_tag(url: &str, tag: &str) -> String {
    let params = tag.trim_start_matches(['?', '&']);
    if url.is_empty() {
        return format!("?{params}");
    }
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}{params}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The path and query of a URL ("/" when it has none).
fn path_of(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or_default();
    match rest.find('/') {
        Some(slash) => rest[slash..].to_owned(),
        None => "/".to_owned(),
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Utm;

    #[test]
    fn a_discount_link_put_back_sends_the_shopper_where_the_current_one_does() {
        assert_eq!(
            with_redirect_of(
                "https://s.myshopify.com/discount/ANA20?redirect=%2Fsummer",
                "https://s.myshopify.com/discount/ANA20VIP?redirect=%2Fautumn%3Fc%3D1"
            ),
            "https://s.myshopify.com/discount/ANA20?redirect=%2Fautumn%3Fc%3D1"
        );
        for (previous, current) in [
            ("https://t.example/r/abc", "https://t.example/r/abc"),
            (
                "https://t.example/r/abc",
                "https://s.myshopify.com/discount/X?redirect=%2F",
            ),
            ("https://s.myshopify.com/discount/ANA20?redirect=%2F", ""),
        ] {
            assert_eq!(with_redirect_of(previous, current), previous);
        }
    }

    fn terms(url: &str) -> PlanTerms {
        PlanTerms {
            click_url: url.into(),
            utm: Utm {
                source: "influencer".into(),
                campaign: "summer sale".into(),
                ..Utm::default()
            },
            ..PlanTerms::default()
        }
    }

    #[test]
    fn destination_keeps_query_and_fragment() {
        assert_eq!(
            destination_url(&terms("https://shop.example.com/p?x=1#top")),
            "https://shop.example.com/p?x=1&utm_source=influencer&utm_campaign=summer%20sale#top"
        );
        assert_eq!(destination_url(&terms("")), "");
    }

    #[test]
    fn affiliate_links_per_provider() {
        let t = terms("https://shop.example.com/summer?c=1");
        assert_eq!(
            affiliate_url(
                Provider::Shopify,
                "http://b/r/s",
                "s.myshopify.com",
                Some("JOSE20"),
                &t
            ),
            "https://s.myshopify.com/discount/JOSE20?redirect=%2Fsummer%3Fc%3D1"
        );
        assert_eq!(
            affiliate_url(Provider::Ast, "http://b/r/s", "", None, &t),
            "http://b/r/s"
        );
        assert_eq!(
            affiliate_url(Provider::Woocommerce, "http://b/r/s", "", Some("X"), &t),
            ""
        );
        assert_eq!(tracking_url("http://b/", "abc"), "http://b/r/abc");
        assert_eq!(
            affiliate_url(Provider::AmazonAds, "http://b/r/s", "", None, &t),
            "",
            "made later, from the gateway's tag"
        );
        assert_eq!(
            affiliate_url(Provider::Sandbox, "http://b/r/s", "", Some("X"), &t),
            "http://b/r/s",
            "the simulated store has no shop pages: the suite's own link"
        );
    }

    #[test]
    fn amazon_tags_join_the_page_url() {
        let tag = "?maas=maas_adg_api_1_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=campaign-7";
        assert_eq!(
            with_amazon_tag("https://www.amazon.com/dp/B0TEST", tag),
            "https://www.amazon.com/dp/B0TEST?maas=maas_adg_api_1_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=campaign-7"
        );
        assert_eq!(
            with_amazon_tag("https://www.amazon.com/stores/page/X?ref=a#top", tag),
            "https://www.amazon.com/stores/page/X?ref=a&maas=maas_adg_api_1_static_9_99&ref_=aa_maas&tag=maas&aa_campaignid=campaign-7#top"
        );
        assert_eq!(with_amazon_tag("", tag), tag);
        assert!(tag_from_gateway(Provider::AmazonAds));
        assert!(!tag_from_gateway(Provider::Ast));
    }
}
