//! What each provider can do: the one table the whole suite validates against
//! (PlanService reads it through `GetCapabilities`).

use tracking_api::common::v1::Provider;

/// One provider's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub provider: Provider,
    pub discount_codes: bool,
    pub affiliate_links: bool,
    pub click_links: bool,
    pub active_dates: bool,
    pub minimum_purchase: bool,
    pub product_restrictions: bool,
    /// Products or categories in a plan, not both (a line elsewhere qualifies through either).
    pub products_or_categories_only: bool,
    /// Restriction ids are the store's numeric ids (Shopify's also as their gids).
    pub numeric_restriction_ids: bool,
    /// The global-id prefixes the store also takes before a product's and a category's number.
    pub product_gid_prefix: &'static str,
    pub category_gid_prefix: &'static str,
    pub usage_limits: bool,
    pub one_time_use: bool,
    pub tracking_without_discount: bool,
    pub max_code_length: u32,
    pub code_punctuation: &'static str,
    pub connection: Connection,
}

/// Shopify's global ids of products and collections (categories), before their numbers.
pub const SHOPIFY_PRODUCT_GID: &str = "gid://shopify/Product/";
pub const SHOPIFY_COLLECTION_GID: &str = "gid://shopify/Collection/";

/// What registering an integration of the provider needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub required_credentials: &'static [&'static str],
    pub requires_shop_domain: bool,
    pub requires_base_url: bool,
    pub requires_webhook_secret: bool,
}

/// The capability table. Facts from the stores' documentation:
/// - Shopify: discount codes with dates, minimum subtotal, product or collection scope (not both:
///   a discount's items are "either collections or products"), usage limit and
///   once-per-customer; shareable discount links apply a code at checkout; a sale is only
///   tracked through a code (255 characters max).
/// - WooCommerce: coupons without a start date (expiry only), no affiliate links.
/// - BigCommerce: coupon codes of at most 50 characters, no affiliate links.
/// - Magento: cart price rules with coupons, no affiliate links.
/// - Amazon Ads: no codes; attribution tags are the creators' links. Besides the Login with
///   Amazon credentials and the profile, an integration names the Amazon Attribution advertiser
///   whose sales are tracked and the publisher whose tag template the creators' tags fill.
/// - AST: no store API; links carry a click id that comes back with the conversion.
/// - Sandbox: a simulated store that supports everything, for demos and load tests.
pub fn capabilities(provider: Provider) -> Option<Capabilities> {
    let none = Connection {
        required_credentials: &[],
        requires_shop_domain: false,
        requires_base_url: false,
        requires_webhook_secret: false,
    };
    let caps = match provider {
        Provider::Unspecified => return None,
        Provider::Shopify => Capabilities {
            provider,
            discount_codes: true,
            affiliate_links: true,
            click_links: true,
            active_dates: true,
            minimum_purchase: true,
            product_restrictions: true,
            products_or_categories_only: true,
            numeric_restriction_ids: true,
            product_gid_prefix: SHOPIFY_PRODUCT_GID,
            category_gid_prefix: SHOPIFY_COLLECTION_GID,
            usage_limits: true,
            one_time_use: true,
            tracking_without_discount: false,
            max_code_length: 255,
            code_punctuation: "-_",
            connection: Connection {
                required_credentials: &["access_token"],
                requires_shop_domain: true,
                requires_base_url: false,
                requires_webhook_secret: true,
            },
        },
        Provider::Woocommerce => Capabilities {
            provider,
            discount_codes: true,
            affiliate_links: false,
            click_links: true,
            active_dates: false,
            minimum_purchase: false,
            product_restrictions: true,
            products_or_categories_only: false,
            numeric_restriction_ids: true,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: true,
            one_time_use: true,
            tracking_without_discount: false,
            max_code_length: 100,
            code_punctuation: "-_",
            connection: Connection {
                required_credentials: &["consumer_key", "consumer_secret"],
                requires_shop_domain: false,
                requires_base_url: true,
                requires_webhook_secret: true,
            },
        },
        Provider::Bigcommerce => Capabilities {
            provider,
            discount_codes: true,
            affiliate_links: false,
            click_links: true,
            active_dates: true,
            minimum_purchase: false,
            product_restrictions: true,
            products_or_categories_only: false,
            numeric_restriction_ids: true,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: true,
            one_time_use: true,
            tracking_without_discount: false,
            max_code_length: 50,
            code_punctuation: "-_",
            // The secret is the `X-Tracking-Secret` header the brand gives the webhook: without
            // it every delivery would be refused, and no sale tracked.
            connection: Connection {
                required_credentials: &["store_hash", "access_token"],
                requires_shop_domain: false,
                requires_base_url: false,
                requires_webhook_secret: true,
            },
        },
        Provider::Magento => Capabilities {
            provider,
            discount_codes: true,
            affiliate_links: false,
            click_links: true,
            active_dates: true,
            minimum_purchase: false,
            product_restrictions: true,
            products_or_categories_only: false,
            numeric_restriction_ids: false,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: true,
            one_time_use: true,
            tracking_without_discount: false,
            max_code_length: 255,
            code_punctuation: "-_",
            connection: Connection {
                required_credentials: &["access_token"],
                requires_shop_domain: false,
                requires_base_url: true,
                requires_webhook_secret: false,
            },
        },
        Provider::AmazonAds => Capabilities {
            provider,
            discount_codes: false,
            affiliate_links: true,
            click_links: true,
            active_dates: true,
            minimum_purchase: false,
            product_restrictions: false,
            products_or_categories_only: false,
            numeric_restriction_ids: false,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: false,
            one_time_use: false,
            tracking_without_discount: true,
            max_code_length: 0,
            code_punctuation: "",
            connection: Connection {
                required_credentials: &[
                    "client_id",
                    "client_secret",
                    "refresh_token",
                    "profile_id",
                    "advertiser_id",
                    "publisher_id",
                ],
                ..none
            },
        },
        Provider::Ast => Capabilities {
            provider,
            discount_codes: false,
            affiliate_links: true,
            click_links: true,
            active_dates: true,
            minimum_purchase: false,
            product_restrictions: false,
            products_or_categories_only: false,
            numeric_restriction_ids: false,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: false,
            one_time_use: false,
            tracking_without_discount: true,
            max_code_length: 0,
            code_punctuation: "",
            connection: Connection {
                requires_webhook_secret: true,
                ..none
            },
        },
        Provider::Sandbox => Capabilities {
            provider,
            discount_codes: true,
            affiliate_links: true,
            click_links: true,
            active_dates: true,
            minimum_purchase: true,
            product_restrictions: true,
            products_or_categories_only: false,
            numeric_restriction_ids: false,
            product_gid_prefix: "",
            category_gid_prefix: "",
            usage_limits: true,
            one_time_use: true,
            tracking_without_discount: true,
            max_code_length: 64,
            code_punctuation: "-_",
            connection: none,
        },
    };
    Some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_rules_hold() {
        let get = capabilities;
        let shopify = get(Provider::Shopify);
        assert!(
            shopify
                .as_ref()
                .is_some_and(|c| c.minimum_purchase && !c.tracking_without_discount)
        );
        for provider in [
            Provider::Woocommerce,
            Provider::Bigcommerce,
            Provider::Magento,
            Provider::AmazonAds,
            Provider::Ast,
        ] {
            assert!(
                get(provider).is_some_and(|c| !c.minimum_purchase),
                "{provider:?}"
            );
        }
        for provider in [
            Provider::Woocommerce,
            Provider::Bigcommerce,
            Provider::Magento,
        ] {
            assert!(
                get(provider).is_some_and(|c| !c.affiliate_links),
                "{provider:?}"
            );
        }
        // A restriction to both is the other stores' "either"; Shopify cannot say it.
        assert!(shopify.is_some_and(|c| c.product_restrictions && c.products_or_categories_only));
        assert!(get(Provider::Woocommerce).is_some_and(|c| !c.active_dates));
        assert!(get(Provider::Bigcommerce).is_some_and(|c| c.max_code_length == 50));
        assert!(get(Provider::Ast).is_some_and(|c| c.click_links && !c.discount_codes));
        assert!(get(Provider::Unspecified).is_none());
    }

    #[test]
    fn orders_may_name_every_code_a_store_takes() {
        for provider in [
            Provider::Shopify,
            Provider::Woocommerce,
            Provider::Bigcommerce,
            Provider::Magento,
            Provider::AmazonAds,
            Provider::Ast,
            Provider::Sandbox,
        ] {
            let longest = capabilities(provider).map_or(0, |c| c.max_code_length);
            assert!(
                usize::try_from(longest).is_ok_and(|n| n <= crate::domain::orders::MAX_CODE_CHARS),
                "{provider:?}"
            );
        }
    }
}
