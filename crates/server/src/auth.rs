//! Bearer-JWT authentication (HS256) and the caller's identity.
//!
//! Every RPC of the suite (health and reflection excepted) carries `authorization: Bearer <JWT>`.
//! The token names the brand, the role and, for creators, the creator. The interceptor verifies it
//! and puts the [`Claims`] into the request's extensions; handlers ask them for the scope they need.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tonic::{Request, Status};

type HmacSha256 = Hmac<Sha256>;

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A brand's user or backend: reads and changes that brand's data.
    Brand,
    /// A creator: reads only their own report, when the brand allows it.
    Creator,
    /// Another service of the suite: acts for the token's brand, and may read every brand's streams.
    Service,
    /// An on-call engineer: acts for the token's brand, and may read every brand's streams.
    Ops,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Brand => "brand",
            Role::Creator => "creator",
            Role::Service => "service",
            Role::Ops => "ops",
        }
    }
}

/// The verified content of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub brand_id: i64,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<i64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

impl Claims {
    /// The brand whose data the caller may read and change; creators may not use brand RPCs.
    pub fn brand_scope(&self) -> Result<i64, Status> {
        match self.role {
            Role::Brand | Role::Service | Role::Ops => Ok(self.brand_id),
            Role::Creator => Err(Status::permission_denied(
                "a creator token cannot call this RPC; use a brand token",
            )),
        }
    }

    /// For streams: `None` (every brand) for service and ops tokens, the token's brand otherwise.
    pub fn stream_scope(&self) -> Result<Option<i64>, Status> {
        match self.role {
            Role::Service | Role::Ops => Ok(None),
            Role::Brand => Ok(Some(self.brand_id)),
            Role::Creator => Err(Status::permission_denied(
                "a creator token cannot watch event streams",
            )),
        }
    }

    /// Claims of a request that went through the [`Authenticator`].
    pub fn of<T>(request: &Request<T>) -> Result<&Claims, Status> {
        request
            .extensions()
            .get::<Claims>()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Why a token was refused (all map to UNAUTHENTICATED; the reason is logged at debug only).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is not a JWT")]
    Malformed,
    #[error("token algorithm must be HS256")]
    Algorithm,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token claims are invalid")]
    Claims,
}

/// The shared HS256 secret: signs (trackctl, trackd's dev token, service calls) and verifies.
#[derive(Clone)]
pub struct JwtKeys {
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: Arc::from(secret),
        }
    }

    /// A key for another purpose (hashing visitors, ...) derived from the secret, so that one
    /// secret is all there is to manage; distinct `label`s give unrelated keys.
    pub fn derive(&self, label: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(b"derive:");
        mac.update(label);
        mac.finalize().into_bytes().to_vec()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `brand_id` with `role`, valid for `ttl`.
    pub fn sign(
        &self,
        brand_id: i64,
        role: Role,
        creator_id: Option<i64>,
        ttl: Duration,
    ) -> String {
        let now = now_secs();
        let claims = Claims {
            brand_id,
            role,
            creator_id,
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
        };
        self.sign_claims(&claims)
    }

    /// Signs arbitrary claims (tests use it to make expired tokens).
    pub fn sign_claims(&self, claims: &Claims) -> String {
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Verifies signature (constant time), algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let signing_input_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..signing_input_len]);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Claims)?;
        if claims.exp <= now_secs() {
            return Err(TokenError::Expired);
        }
        if claims.brand_id < 0 || (claims.role == Role::Creator && claims.creator_id.is_none()) {
            return Err(TokenError::Claims);
        }
        Ok(claims)
    }
}

/// The tonic interceptor: verifies the bearer token and attaches its [`Claims`].
#[derive(Clone, Debug)]
pub struct Authenticator {
    keys: JwtKeys,
}

impl Authenticator {
    pub fn new(keys: JwtKeys) -> Self {
        Self { keys }
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <token>"))?;
        let claims = self.keys.verify(token.trim()).map_err(|err| {
            tracing::debug!(reason = %err, "token refused");
            Status::unauthenticated(err.to_string())
        })?;
        request.extensions_mut().insert(claims);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let token = keys().sign(7, Role::Brand, None, Duration::from_secs(60));
        let claims = keys().verify(&token);
        assert_eq!(claims.as_ref().map(|c| c.brand_id), Ok(7));

        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&token), Err(TokenError::Signature));

        // Swap the payload for brand 8, keeping the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                brand_id: 8,
                role: Role::Brand,
                creator_id: None,
                exp: now_secs() + 60,
                iat: 0,
            })
            .unwrap_or_default(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(keys().verify(&forged), Err(TokenError::Signature));
        assert_eq!(keys().verify("abc"), Err(TokenError::Malformed));
    }

    #[test]
    fn rejects_expired_and_none_algorithm() {
        let expired = keys().sign_claims(&Claims {
            brand_id: 1,
            role: Role::Brand,
            creator_id: None,
            exp: now_secs() - 1,
            iat: 0,
        });
        assert_eq!(keys().verify(&expired), Err(TokenError::Expired));

        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let token = keys().sign(1, Role::Brand, None, Duration::from_secs(60));
        let rest: Vec<&str> = token.split('.').collect();
        let unsigned = format!("{none_header}.{}.", rest[1]);
        assert_eq!(keys().verify(&unsigned), Err(TokenError::Algorithm));
    }

    #[test]
    fn creator_tokens_need_a_creator() {
        let token = keys().sign(1, Role::Creator, None, Duration::from_secs(60));
        assert_eq!(keys().verify(&token), Err(TokenError::Claims));
    }
}
