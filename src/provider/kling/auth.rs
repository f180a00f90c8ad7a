//! Authorization headers for Kling: an HS256 JWT signed from the access key /
//! secret key (official API) or a static bearer key (gateways).
//!
//! [`Authorizer`] caches the JWT and re-signs it when fewer than
//! [`RESIGN_MARGIN_S`] seconds remain, so thousands of requests share one token
//! while a long batch never sends an expired one. Its `Debug` prints no secret.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::Credentials;

/// Token lifetime: the official sample's 30 minutes.
pub const TOKEN_TTL_S: i64 = 1800;
/// `nbf` this far in the past absorbs small clock skew (official sample).
pub const NBF_SKEW_S: i64 = 5;
/// Re-sign when fewer seconds than this remain.
pub const RESIGN_MARGIN_S: i64 = 60;

/// Exactly the claims of the official sample: no `iat`, `sub` or `aud`.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub exp: i64,
    pub nbf: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Signing failed; the jsonwebtoken error text carries no key material.
    #[error("cannot sign the Kling JWT: {0}")]
    Sign(String),
}

/// Sign a JWT for `access_key` valid from `now - 5` to `now + 1800`.
pub fn sign(access_key: &str, secret_key: &str, now: i64) -> Result<(String, i64), AuthError> {
    let exp = now + TOKEN_TTL_S;
    let claims = Claims {
        iss: access_key.to_owned(),
        exp,
        nbf: now - NBF_SKEW_S,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret_key.as_bytes()),
    )
    .map_err(|e| AuthError::Sign(e.to_string()))?;
    Ok((token, exp))
}

/// Current Unix time in seconds (0 if the clock is before 1970, which then
/// surfaces as a 1003/1004 from the server rather than a panic here).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Produces the `Authorization` header value for each request.
pub struct Authorizer {
    credentials: Credentials,
    /// The cached JWT and its `exp`.
    cache: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(credentials: Credentials) -> Self {
        Authorizer {
            credentials,
            cache: Mutex::new(None),
        }
    }

    /// Whether a rejected token can be fixed by signing a new one.
    pub fn can_resign(&self) -> bool {
        matches!(self.credentials, Credentials::Jwt { .. })
    }

    /// `Bearer <token>` for a request made now.
    pub fn header_value(&self) -> Result<String, AuthError> {
        self.header_value_at(unix_now())
    }

    /// `Bearer <token>` as of `now` (seconds): the cached JWT while more than
    /// the margin remains, else a freshly signed one.
    pub fn header_value_at(&self, now: i64) -> Result<String, AuthError> {
        match &self.credentials {
            Credentials::ApiKey(key) => Ok(format!("Bearer {key}")),
            Credentials::Jwt {
                access_key,
                secret_key,
            } => {
                // A poisoned lock only means another thread panicked mid-update;
                // the cache is then merely stale, so keep using it.
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((token, exp)) = cache.as_ref() {
                    if exp - now >= RESIGN_MARGIN_S {
                        return Ok(format!("Bearer {token}"));
                    }
                }
                let (token, exp) = sign(access_key, secret_key, now)?;
                let value = format!("Bearer {token}");
                *cache = Some((token, exp));
                Ok(value)
            }
        }
    }

    /// Drop the cached token so the next request signs a new one (after the
    /// server said 1003/1004: clock moved, or the token was revoked).
    pub fn invalidate(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        *cache = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn jwt_creds() -> Credentials {
        Credentials::Jwt {
            access_key: "AK-test".into(),
            secret_key: "SK-very-secret".into(),
        }
    }

    fn decode(token: &str, secret: &str) -> (jsonwebtoken::Header, Claims) {
        let mut v = Validation::new(Algorithm::HS256);
        // Claims are checked by value below, not against the wall clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
                .expect("token verifies with the secret");
        (data.header, data.claims)
    }

    #[test]
    fn jwt_has_exact_header_and_claims() {
        let now = 1_700_000_000;
        let (token, exp) = sign("AK-test", "SK-very-secret", now).expect("sign");
        assert_eq!(exp, now + 1800);
        let (header, claims) = decode(&token, "SK-very-secret");
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            claims,
            Claims {
                iss: "AK-test".into(),
                exp: now + 1800,
                nbf: now - 5
            }
        );

        // The raw segments hold exactly these members: no iat/sub/aud, no kid.
        let mut parts = token.split('.');
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header_json: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts.next().unwrap_or_default()).expect("b64"))
                .expect("json");
        assert_eq!(
            header_json,
            serde_json::json!({"alg": "HS256", "typ": "JWT"})
        );
        let claims_json: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts.next().unwrap_or_default()).expect("b64"))
                .expect("json");
        assert_eq!(
            claims_json,
            serde_json::json!({"iss": "AK-test", "exp": now + 1800, "nbf": now - 5})
        );
    }

    #[test]
    fn wrong_secret_does_not_verify() {
        let (token, _) = sign("AK", "right", 1_700_000_000).expect("sign");
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        assert!(
            jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_secret(b"wrong"), &v)
                .is_err()
        );
    }

    #[test]
    fn live_token_verifies_against_the_clock() {
        let auth = Authorizer::new(jwt_creds());
        let value = auth.header_value().expect("header");
        let token = value.strip_prefix("Bearer ").expect("bearer prefix");
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_nbf = true;
        v.set_issuer(&["AK-test"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(b"SK-very-secret"), &v)
                .expect("valid now");
        assert_eq!(data.claims.exp - data.claims.nbf, 1805);
    }

    #[test]
    fn token_is_cached_until_the_margin_then_resigned() {
        let auth = Authorizer::new(jwt_creds());
        let t0 = 1_700_000_000;
        let first = auth.header_value_at(t0).expect("sign");
        // Still more than 60 s left: same token.
        assert_eq!(auth.header_value_at(t0 + 1800 - 60).expect("cached"), first);
        // Fewer than 60 s left: a new token with a later exp.
        let renewed = auth.header_value_at(t0 + 1800 - 59).expect("resign");
        assert_ne!(renewed, first);
        let (_, claims) = decode(renewed.trim_start_matches("Bearer "), "SK-very-secret");
        assert_eq!(claims.exp, t0 + 1800 - 59 + 1800);
        // And that one is cached in turn.
        assert_eq!(auth.header_value_at(t0 + 1800).expect("cached"), renewed);
    }

    #[test]
    fn invalidate_forces_a_new_token() {
        let auth = Authorizer::new(jwt_creds());
        let first = auth.header_value_at(1_700_000_000).expect("sign");
        assert_eq!(auth.header_value_at(1_700_000_001).expect("cached"), first);
        auth.invalidate();
        let second = auth.header_value_at(1_700_000_001).expect("resign");
        assert_ne!(second, first);
    }

    #[test]
    fn api_key_is_a_plain_bearer() {
        let auth = Authorizer::new(Credentials::ApiKey("sk-static".into()));
        assert_eq!(auth.header_value().expect("header"), "Bearer sk-static");
        assert!(!auth.can_resign());
        assert!(Authorizer::new(jwt_creds()).can_resign());
    }

    #[test]
    fn debug_redacts_secrets() {
        let auth = Authorizer::new(jwt_creds());
        let _ = auth.header_value().expect("header");
        let dbg = format!("{auth:?}");
        assert!(
            !dbg.contains("AK-test") && !dbg.contains("SK-very-secret") && !dbg.contains("eyJ"),
            "{dbg}"
        );
        let dbg = format!(
            "{:?}",
            Authorizer::new(Credentials::ApiKey("sk-static".into()))
        );
        assert!(!dbg.contains("sk-static"), "{dbg}");
    }
}
