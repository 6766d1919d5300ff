//! Registering an integration: what each provider's connection needs, checked before anything is
//! stored.

use std::collections::BTreeMap;

use tracking_api::common::v1::Provider;

use super::capabilities::capabilities;
use crate::error::Error;
use tracking_server::fields::check_required_text;
use tracking_server::net::is_local_address;

/// A validated registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntegration {
    pub provider: Provider,
    pub name: String,
    pub shop_domain: String,
    pub base_url: String,
    pub credentials: BTreeMap<String, String>,
    pub webhook_secret: Option<String>,
}

const MAX_NAME: usize = 200;
const MAX_CREDENTIAL: usize = 4096;

impl NewIntegration {
    /// Checks the registration against the provider's connection requirements. A `base_url` on
    /// this machine or a private network is taken only with `local_stores` ([`is_store_url`]).
    pub fn validate(
        provider: Provider,
        name: &str,
        shop_domain: &str,
        base_url: &str,
        credentials: BTreeMap<String, String>,
        webhook_secret: &str,
        local_stores: bool,
    ) -> Result<NewIntegration, Error> {
        let caps = capabilities(provider)
            .ok_or_else(|| Error::invalid("provider", "must be set to a known provider"))?;
        let provider_name = provider.as_str_name();
        let name = name.trim();
        check_required_text(name, MAX_NAME).map_err(|message| Error::invalid("name", message))?;
        let conn = &caps.connection;

        let shop_domain = shop_domain.trim().to_ascii_lowercase();
        if conn.requires_shop_domain {
            if !is_shopify_domain(&shop_domain) {
                return Err(Error::invalid(
                    "shop_domain",
                    format!("{provider_name} needs the shop's domain, like my-shop.myshopify.com"),
                ));
            }
        } else if !shop_domain.is_empty() {
            return Err(Error::invalid(
                "shop_domain",
                format!("not used by {provider_name}; leave it empty"),
            ));
        }

        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if (conn.requires_base_url || !base_url.is_empty())
            && !is_store_url(&base_url, local_stores)
        {
            let local = if local_stores {
                "plain http only to this machine: 127.0.0.1, localhost"
            } else {
                "not on this machine or a private network: this gateway takes no local stores"
            };
            return Err(Error::invalid(
                "base_url",
                format!("{provider_name} needs the store's https base URL ({local})"),
            ));
        }

        for field in conn.required_credentials {
            if credentials.get(*field).is_none_or(|v| v.trim().is_empty()) {
                return Err(Error::invalid(
                    &format!("credentials.{field}"),
                    format!("required by {provider_name}"),
                ));
            }
        }
        for (field, value) in &credentials {
            if !conn.required_credentials.contains(&field.as_str()) {
                return Err(Error::invalid(
                    &format!("credentials.{field}"),
                    format!(
                        "unknown for {provider_name}; expected {}",
                        if conn.required_credentials.is_empty() {
                            "none".to_owned()
                        } else {
                            conn.required_credentials.join(", ")
                        }
                    ),
                ));
            }
            if value.len() > MAX_CREDENTIAL {
                return Err(Error::invalid(
                    &format!("credentials.{field}"),
                    format!("longer than {MAX_CREDENTIAL} bytes"),
                ));
            }
        }

        let webhook_secret = webhook_secret.trim();
        if conn.requires_webhook_secret && webhook_secret.len() < 8 {
            return Err(Error::invalid(
                "webhook_secret",
                format!(
                    "{provider_name} deliveries are checked with a secret; give it (at least 8 characters)"
                ),
            ));
        }
        // WooCommerce saves a webhook's secret through `sanitize_text_field`, which strips tags
        // and `%xx` octets and folds whitespace: a secret it would change is not the one it signs
        // with, and every delivery would be refused.
        if provider == Provider::Woocommerce
            && webhook_secret
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '%'))
        {
            return Err(Error::invalid(
                "webhook_secret",
                "WooCommerce would change a secret with spaces, <, > or %: choose one without",
            ));
        }
        if webhook_secret.len() > MAX_CREDENTIAL {
            return Err(Error::invalid(
                "webhook_secret",
                format!("longer than {MAX_CREDENTIAL} bytes"),
            ));
        }

        Ok(NewIntegration {
            provider,
            name: name.to_owned(),
            shop_domain,
            base_url,
            credentials,
            webhook_secret: (!webhook_secret.is_empty()).then(|| webhook_secret.to_owned()),
        })
    }
}

fn is_shopify_domain(domain: &str) -> bool {
    domain.strip_suffix(".myshopify.com").is_some_and(|shop| {
        !shop.is_empty()
            && !shop.starts_with('-')
            && shop
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

/// An https URL; plain http only to a loopback host (test stores, a local proxy): credentials
/// sent in the clear across a network would be anyone's. A host on this machine or a private
/// network only with `local_stores`: otherwise a brand could have the gateway call the services
/// beside it (named by address here; a name that resolves to one is refused when the store is
/// called, [`crate::adapters::http`]).
fn is_store_url(url: &str, local_stores: bool) -> bool {
    if url.len() > 2048 || url.contains(char::is_whitespace) {
        return false;
    }
    // Read as the HTTP client reads it: user info, letter case and the other spellings of an
    // address (`2130706433`, `0x7f.1`, `[::ffff:7f00:1]`) cannot pass for another host.
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let secure = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return false,
    };
    let Some(host) = parsed.host_str().filter(|host| !host.is_empty()) else {
        return false;
    };
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    let name = host.trim_end_matches('.');
    let loopback = name == "localhost" || ip.is_some_and(|ip| ip.to_canonical().is_loopback());
    let local = loopback || name.ends_with(".localhost") || ip.is_some_and(is_local_address);
    (secure || loopback) && (local_stores || !local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn field_of(result: Result<NewIntegration, Error>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn shopify_needs_domain_token_and_secret() {
        let ok = NewIntegration::validate(
            Provider::Shopify,
            "Main store",
            "My-Shop.myshopify.com",
            "",
            creds(&[("access_token", "shpat_x")]),
            "whsec-123456",
            false,
        );
        assert!(ok.is_ok_and(|i| i.shop_domain == "my-shop.myshopify.com"));
        let no_domain = NewIntegration::validate(
            Provider::Shopify,
            "s",
            "example.com",
            "",
            creds(&[("access_token", "x")]),
            "whsec-123456",
            false,
        );
        assert_eq!(field_of(no_domain), "shop_domain");
        let no_token = NewIntegration::validate(
            Provider::Shopify,
            "s",
            "a.myshopify.com",
            "",
            creds(&[]),
            "whsec-123456",
            false,
        );
        assert_eq!(field_of(no_token), "credentials.access_token");
    }

    #[test]
    fn rejects_unknown_credentials_and_bad_urls() {
        let unknown = NewIntegration::validate(
            Provider::Sandbox,
            "s",
            "",
            "",
            creds(&[("password", "x")]),
            "",
            false,
        );
        assert_eq!(field_of(unknown), "credentials.password");
        let bad_url = NewIntegration::validate(
            Provider::Magento,
            "m",
            "",
            "ftp://store",
            creds(&[("access_token", "x")]),
            "",
            false,
        );
        assert_eq!(field_of(bad_url), "base_url");
        // Credentials go to the store in every call: over https, or to this machine.
        let magento = |url: &str, local_stores: bool| {
            NewIntegration::validate(
                Provider::Magento,
                "m",
                "",
                url,
                creds(&[("access_token", "x")]),
                "",
                local_stores,
            )
        };
        for plain in [
            "http://shop.example.com",
            "http://10.0.0.5:8080",
            "http://169.254.169.254",
        ] {
            for local_stores in [false, true] {
                let refused = field_of(magento(plain, local_stores));
                assert_eq!(refused, "base_url", "{plain}");
            }
        }
        // This machine and private networks only where local stores are taken (trackd, tests):
        // a gateway beside other services would call them for any brand.
        for local in [
            "http://127.0.0.1:8089",
            "http://localhost:9000",
            "http://[::1]:9000",
            "https://127.0.0.1",
            "https://10.0.0.5/rest",
            "https://172.16.4.1",
            "https://192.168.1.10",
            "https://169.254.169.254",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:10.0.0.5]",
            "https://admin.localhost",
            "https://LOCALHOST.",
            "https://2130706433",
            "https://0x7f.1",
            "https://user@10.0.0.5",
            "https://[::ffff:7f00:1]",
        ] {
            assert!(magento(local, true).is_ok(), "{local}");
            assert_eq!(field_of(magento(local, false)), "base_url", "{local}");
        }
        for public in [
            "https://shop.example.com/rest",
            "https://93.184.216.34",
            "https://100.128.0.1",
            "https://[2606:4700::1111]",
        ] {
            assert!(magento(public, false).is_ok(), "{public}");
        }
        let unspecified =
            NewIntegration::validate(Provider::Unspecified, "x", "", "", creds(&[]), "", false);
        assert_eq!(field_of(unspecified), "provider");
    }
}
