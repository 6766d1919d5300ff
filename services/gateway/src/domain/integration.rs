//! Registering an integration: what each provider's connection needs, checked before anything is
//! stored.

use std::collections::BTreeMap;

use tracking_api::common::v1::Provider;

use super::capabilities::capabilities;
use crate::error::Error;

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
    /// Checks the registration against the provider's connection requirements.
    pub fn validate(
        provider: Provider,
        name: &str,
        shop_domain: &str,
        base_url: &str,
        credentials: BTreeMap<String, String>,
        webhook_secret: &str,
    ) -> Result<NewIntegration, Error> {
        let caps = capabilities(provider)
            .ok_or_else(|| Error::invalid("provider", "must be set to a known provider"))?;
        let provider_name = provider.as_str_name();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(Error::invalid(
                "name",
                format!("must be 1..={MAX_NAME} characters"),
            ));
        }
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
        if (conn.requires_base_url || !base_url.is_empty()) && !is_store_url(&base_url) {
            return Err(Error::invalid(
                "base_url",
                format!(
                    "{provider_name} needs the store's https base URL (plain http only to this machine: 127.0.0.1, localhost)"
                ),
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
/// sent in the clear across a network would be anyone's.
fn is_store_url(url: &str) -> bool {
    let (rest, secure) = match url.strip_prefix("https://") {
        Some(rest) => (rest, true),
        None => match url.strip_prefix("http://") {
            Some(rest) => (rest, false),
            None => return false,
        },
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !host.is_empty()
        && !rest.contains(char::is_whitespace)
        && url.len() <= 2048
        && (secure || loopback)
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
        );
        assert!(ok.is_ok_and(|i| i.shop_domain == "my-shop.myshopify.com"));
        let no_domain = NewIntegration::validate(
            Provider::Shopify,
            "s",
            "example.com",
            "",
            creds(&[("access_token", "x")]),
            "whsec-123456",
        );
        assert_eq!(field_of(no_domain), "shop_domain");
        let no_token = NewIntegration::validate(
            Provider::Shopify,
            "s",
            "a.myshopify.com",
            "",
            creds(&[]),
            "whsec-123456",
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
        );
        assert_eq!(field_of(unknown), "credentials.password");
        let bad_url = NewIntegration::validate(
            Provider::Magento,
            "m",
            "",
            "ftp://store",
            creds(&[("access_token", "x")]),
            "",
        );
        assert_eq!(field_of(bad_url), "base_url");
        // Credentials go to the store in every call: over https, or to this machine.
        let magento = |url: &str| {
            NewIntegration::validate(
                Provider::Magento,
                "m",
                "",
                url,
                creds(&[("access_token", "x")]),
                "",
            )
        };
        for plain in [
            "http://shop.example.com",
            "http://10.0.0.5:8080",
            "http://169.254.169.254",
        ] {
            assert_eq!(field_of(magento(plain)), "base_url", "{plain}");
        }
        for fine in [
            "https://shop.example.com/rest",
            "http://127.0.0.1:8089",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert!(magento(fine).is_ok(), "{fine}");
        }
        let unspecified =
            NewIntegration::validate(Provider::Unspecified, "x", "", "", creds(&[]), "");
        assert_eq!(field_of(unspecified), "provider");
    }
}
