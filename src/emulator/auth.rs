//! Authorization checks for both path styles (kling-api.md §1.2, §1.3, §15.1).
//! [`check`] answers `Ok(())` or the documented [`AuthError`] code; neither
//! the header nor the token ever reaches an error message or a log.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `/v1/videos/...`: JWT HS256 when keys are configured.
    Official,
    /// `/v1/ai/{endpoint}/kling/videos/...`: static Bearer key when configured.
    Gateway,
}

/// A refused Authorization header, as (HTTP 401, business code, message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("Authentication failed")]
    Failed,
    #[error("Authorization is empty")]
    Empty,
    #[error("Authorization is invalid")]
    Invalid,
    #[error("Authorization is not yet valid")]
    NotYetValid,
    #[error("Authorization has expired")]
    Expired,
}

impl AuthError {
    pub(crate) fn code(self) -> i64 {
        match self {
            AuthError::Failed => 1000,
            AuthError::Empty => 1001,
            AuthError::Invalid => 1002,
            AuthError::NotYetValid => 1003,
            AuthError::Expired => 1004,
        }
    }
}

/// The configured credentials; `Debug` never shows them.
pub(crate) struct Keys {
    jwt: Option<(String, DecodingKey)>,
    api_key: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("jwt", &self.jwt.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Keys {
    pub(crate) fn new(
        access_key: Option<&str>,
        secret_key: Option<&str>,
        api_key: Option<&str>,
    ) -> Self {
        let jwt = match (access_key, secret_key) {
            (Some(ak), Some(sk)) => Some((ak.to_owned(), DecodingKey::from_secret(sk.as_bytes()))),
            _ => None,
        };
        Keys {
            jwt,
            api_key: api_key.map(str::to_owned),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

/// Check an `Authorization` header value (None when absent) for a style.
pub(crate) fn check(
    keys: &Keys,
    style: Style,
    header: Option<&[u8]>,
    now_s: i64,
) -> Result<(), AuthError> {
    let raw = match header {
        None => return Err(AuthError::Empty),
        Some(h) if h.iter().all(u8::is_ascii_whitespace) => return Err(AuthError::Empty),
        Some(h) => h,
    };
    let text = std::str::from_utf8(raw).map_err(|_| AuthError::Invalid)?;
    // Exactly "Bearer <token>" with one space (§1.2).
    let token = text.strip_prefix("Bearer ").ok_or(AuthError::Invalid)?;
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(AuthError::Invalid);
    }
    match style {
        Style::Official => match &keys.jwt {
            None => Ok(()),
            Some((ak, key)) => check_jwt(ak, key, token, now_s),
        },
        Style::Gateway => match &keys.api_key {
            None => Ok(()),
            Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(AuthError::Failed),
        },
    }
}

fn check_jwt(ak: &str, key: &DecodingKey, token: &str, now_s: i64) -> Result<(), AuthError> {
    // jsonwebtoken checks the signature and algorithm; the time claims are
    // checked here with the reference's exact rules (exp <= now is expired).
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Invalid,
        })?;
    let claims = data.claims;
    if claims.iss.as_deref() != Some(ak) {
        return Err(AuthError::Failed);
    }
    let exp = claims.exp.ok_or(AuthError::Invalid)?;
    if exp <= now_s {
        return Err(AuthError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now_s) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(iss: &str, sk: &str, exp: i64, nbf: i64) -> String {
        let claims = serde_json::json!({"iss": iss, "exp": exp, "nbf": nbf});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(sk.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn strict() -> Keys {
        Keys::new(Some("ak"), Some("sk"), Some("static"))
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn jwt_codes() {
        let k = strict();
        let now = 1_000_000;
        let ok = token("ak", "sk", now + 1800, now - 5);
        assert_eq!(check(&k, Style::Official, Some(&bearer(&ok)), now), Ok(()));
        assert_eq!(check(&k, Style::Official, None, now), Err(AuthError::Empty));
        assert_eq!(
            check(&k, Style::Official, Some(b"Token x"), now),
            Err(AuthError::Invalid)
        );
        let bad_sig = token("ak", "other", now + 1800, now - 5);
        assert_eq!(
            check(&k, Style::Official, Some(&bearer(&bad_sig)), now),
            Err(AuthError::Invalid)
        );
        let future = token("ak", "sk", now + 1800, now + 60);
        assert_eq!(
            check(&k, Style::Official, Some(&bearer(&future)), now),
            Err(AuthError::NotYetValid)
        );
        let expired = token("ak", "sk", now, now - 5);
        assert_eq!(
            check(&k, Style::Official, Some(&bearer(&expired)), now),
            Err(AuthError::Expired)
        );
        let wrong_iss = token("someone", "sk", now + 1800, now - 5);
        assert_eq!(
            check(&k, Style::Official, Some(&bearer(&wrong_iss)), now),
            Err(AuthError::Failed)
        );
    }

    #[test]
    fn gateway_static_key_and_lenient_mode() {
        let k = strict();
        assert_eq!(check(&k, Style::Gateway, Some(b"Bearer static"), 0), Ok(()));
        assert_eq!(
            check(&k, Style::Gateway, Some(b"Bearer nope"), 0),
            Err(AuthError::Failed)
        );
        let lenient = Keys::new(None, None, None);
        assert_eq!(
            check(&lenient, Style::Official, Some(b"Bearer anything"), 0),
            Ok(())
        );
        assert_eq!(
            check(&lenient, Style::Gateway, Some(b"Bearer  two"), 0),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            check(&lenient, Style::Gateway, Some(b""), 0),
            Err(AuthError::Empty)
        );
    }

    #[test]
    fn debug_hides_keys() {
        let shown = format!("{:?}", strict());
        assert!(
            !shown.contains("static") && !shown.contains("sk\""),
            "{shown}"
        );
    }
}
