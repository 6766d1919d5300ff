//! BigCommerce webhooks are thin: they name the order (`store/order/*` scopes), and the gateway
//! fetches it through the BigCommerce adapter. BigCommerce does not sign deliveries; the webhook
//! is registered with a custom header `X-Tracking-Secret` holding the integration's webhook
//! secret, compared in constant time before the body is parsed.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{ParseError, field};

/// The custom header the brand registers the webhook with.
pub const SECRET_HEADER: &str = "x-tracking-secret";

/// Whether the delivery carries the integration's secret.
pub fn verify(secret: &[u8], header: Option<&str>) -> bool {
    header.is_some_and(|value| bool::from(value.trim().as_bytes().ct_eq(secret)))
}

/// What a thin delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNotice {
    pub scope: String,
    pub order_id: String,
    /// The event's scope, BigCommerce's hash of its data and its time: the same delivery sent
    /// again has the same one. The hash alone is not enough: it covers only `data`, which for
    /// `store/order/updated` is `{"type":"order","id":N}` at every update of the order.
    pub delivery_id: String,
}

#[derive(Deserialize)]
struct Payload {
    scope: String,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "type")]
    kind: String,
    id: serde_json::Value,
}

/// The order a delivery is about; `None` for scopes other than orders (acknowledged, ignored).
pub fn parse(body: &[u8]) -> Result<Option<OrderNotice>, ParseError> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if !payload.scope.starts_with("store/order/") || payload.data.kind != "order" {
        return Ok(None);
    }
    let order_id = match &payload.data.id {
        serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
        serde_json::Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            s.clone()
        }
        _ => return Err(field("data.id", "must be an order number")),
    };
    let created_at = payload.created_at.unwrap_or_default();
    let delivery_id = match payload.hash {
        Some(hash) if !hash.is_empty() && hash.len() <= 128 => {
            format!("{}:{hash}:{created_at}", payload.scope)
        }
        _ => format!("{}:{order_id}:{created_at}", payload.scope),
    };
    Ok(Some(OrderNotice {
        scope: payload.scope,
        order_id,
        delivery_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = r#"{"created_at": 1561482670, "store_id": "1025646",
        "producer": "stores/abc123", "scope": "store/order/created",
        "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "data": {"type": "order", "id": 250}}"#;

    #[test]
    fn thin_order_deliveries() {
        let notice = parse(CREATED.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            notice,
            Some(OrderNotice {
                scope: "store/order/created".into(),
                order_id: "250".into(),
                delivery_id:
                    "store/order/created:352e4afc6dd3fc85ea26bfdf3f91852604d57528:1561482670".into(),
            })
        );
        // Every update of an order hashes the same data: its time tells the updates apart, and
        // a delivery sent again keeps it.
        let delivery = |body: &str| {
            parse(body.as_bytes())
                .ok()
                .flatten()
                .map(|notice| notice.delivery_id)
        };
        let updated = CREATED.replace("store/order/created", "store/order/updated");
        let later = updated.replace("1561482670", "1561482999");
        assert_ne!(delivery(&updated), delivery(&later));
        assert_eq!(delivery(&later), delivery(&later.clone()));
        let product = CREATED
            .replace("store/order/created", "store/product/updated")
            .replace("\"order\"", "\"product\"");
        assert_eq!(parse(product.as_bytes()), Ok(None));
        assert!(parse(b"{}").is_err());
        assert!(verify(b"s3cret", Some("s3cret")));
        assert!(!verify(b"s3cret", Some("s3creT")));
        assert!(!verify(b"s3cret", None));
    }
}
