//! Browser sessions: an API token exchanged once for a cookie that authenticates API
//! calls and `EventSource` streams (which cannot send an `Authorization` header). This
//! module is the cookie itself; `http::session` serves `/api/session` and
//! [`crate::http::auth`] authenticates requests by it.
//!
//! * The cookie is `sy_session=…; Path=/api; HttpOnly; SameSite=Strict;
//!   Max-Age=<gateway.session_ttl_secs>` (plus `Secure` with
//!   `gateway.session_cookie_secure`).
//! * It is sealed (ChaCha20-Poly1305, key from `gateway.session_secret` or else the
//!   admin token, through HKDF): it holds the API token, the expiry, a fingerprint of
//!   the principal (id, role, apps) and the CSRF token. Nothing is stored on the
//!   gateway, so every gateway with the same key accepts it and a restart keeps it.
//! * The cookie is not stored anywhere else, so a copy taken before sign-out works
//!   until it expires (or its token is revoked).

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

use switchyard_platform::http::secret_matches;

use crate::auth::Principal;
use crate::config::GatewayConfig;

/// Name of the session cookie.
const COOKIE_NAME: &str = "sy_session";
/// The header a cookie-authenticated state-changing request must carry.
pub(crate) const CSRF_HEADER: &str = "x-switchyard-csrf";
/// The cookie is only sent to the API (static files need none).
const COOKIE_PATH: &str = "/api";

/// First byte of a sealed cookie: the format, so that a later one can be told apart.
const FORMAT: u8 = 1;
/// Binds the ciphertext to its use: a value sealed for anything else does not open.
const AAD: &[u8] = b"switchyard sy_session v1";
const HKDF_SALT: &[u8] = b"switchyard-gateway-session";
const HKDF_INFO: &[u8] = b"sy_session cookie key v1";

/// Seals and opens session cookies, and builds their `Set-Cookie` headers.
pub(crate) struct Sessions {
    key: LessSafeKey,
    rng: SystemRandom,
    ttl: Duration,
    secure: bool,
}

/// What a sealed cookie holds (short field names keep the cookie small). No `Debug`:
/// it holds the token.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The API token.
    #[serde(rename = "t")]
    token: String,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    expires: i64,
    /// [`fingerprint`] of the principal at sign-in.
    #[serde(rename = "p")]
    principal: String,
    /// The CSRF token.
    #[serde(rename = "c")]
    csrf: String,
}

/// An opened, unexpired session cookie.
pub(crate) struct Session {
    token: SecretString,
    expires_at: DateTime<Utc>,
    principal: String,
    csrf: SecretString,
}

impl Session {
    /// The API token the session was opened with.
    pub(crate) fn token(&self) -> &SecretString {
        &self.token
    }

    pub(crate) fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    pub(crate) fn csrf_token(&self) -> &str {
        self.csrf.expose_secret()
    }

    /// Whether `principal` is who the session was opened for, with the same role and
    /// apps.
    pub(crate) fn is_for(&self, principal: &Principal) -> bool {
        // Not a secret (the cookie that carries it is sealed), so a plain comparison.
        self.principal == fingerprint(principal)
    }

    /// Whether `headers` carry this session's CSRF token.
    pub(crate) fn csrf_matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(CSRF_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => secret_matches(value.as_bytes(), &self.csrf),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("the session cookie is not valid")]
    Invalid,
    #[error("the session has expired")]
    Expired,
}

impl Sessions {
    /// The key comes from `session_secret`, else the admin token, else (anonymous mode,
    /// where sessions carry no rights of their own) from fresh random bytes.
    pub(crate) fn from_config(config: &GatewayConfig) -> anyhow::Result<Sessions> {
        let rng = SystemRandom::new();
        let secret: Vec<u8> = match (&config.session_secret, &config.admin_token) {
            (Some(secret), _) => secret.expose_secret().as_bytes().to_vec(),
            (None, Some(token)) => token.expose_secret().as_bytes().to_vec(),
            (None, None) => {
                let mut bytes = vec![0u8; 32];
                rng.fill(&mut bytes)
                    .map_err(|_| anyhow::anyhow!("no randomness for the session key"))?;
                bytes
            }
        };
        Self::new(
            &secret,
            config.session_ttl_secs,
            config.session_cookie_secure,
        )
    }

    fn new(secret: &[u8], ttl_secs: u64, secure: bool) -> anyhow::Result<Sessions> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let okm = prk
            .expand(&[HKDF_INFO], &CHACHA20_POLY1305)
            .map_err(|_| anyhow::anyhow!("cannot derive the session key"))?;
        Ok(Sessions {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            rng: SystemRandom::new(),
            ttl: Duration::from_secs(ttl_secs),
            secure,
        })
    }

    /// A new session for `token`, which authenticated as `principal` just now: the
    /// cookie value, the CSRF token and the expiry.
    pub(crate) fn seal(
        &self,
        token: &str,
        principal: &Principal,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, String, DateTime<Utc>)> {
        let mut csrf = [0u8; 18];
        self.rng
            .fill(&mut csrf)
            .map_err(|_| anyhow::anyhow!("no randomness for a CSRF token"))?;
        let csrf = URL_SAFE_NO_PAD.encode(csrf);
        let ttl = chrono::Duration::from_std(self.ttl)?;
        let expires_at = now + ttl;
        let sealed = Sealed {
            token: token.to_owned(),
            expires: expires_at.timestamp(),
            principal: fingerprint(principal),
            csrf: csrf.clone(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut data = serde_json::to_vec(&sealed)?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing the session failed"))?;
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + data.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&data);
        // Whole seconds, as stored: the cookie and the answer say the same instant.
        let expires_at = DateTime::from_timestamp(sealed.expires, 0).unwrap_or(expires_at);
        Ok((URL_SAFE_NO_PAD.encode(bytes), csrf, expires_at))
    }

    /// Opens a cookie value sealed by [`Sessions::seal`] with the same key.
    pub(crate) fn open(&self, value: &str, now: DateTime<Utc>) -> Result<Session, SessionError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(value.as_bytes())
            .map_err(|_| SessionError::Invalid)?;
        let (format, rest) = bytes.split_first().ok_or(SessionError::Invalid)?;
        if *format != FORMAT || rest.len() < NONCE_LEN {
            return Err(SessionError::Invalid);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SessionError::Invalid)?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut data)
            .map_err(|_| SessionError::Invalid)?;
        let sealed: Sealed = serde_json::from_slice(plain).map_err(|_| SessionError::Invalid)?;
        let expires_at =
            DateTime::from_timestamp(sealed.expires, 0).ok_or(SessionError::Invalid)?;
        if expires_at <= now {
            return Err(SessionError::Expired);
        }
        Ok(Session {
            token: SecretString::from(sealed.token),
            expires_at,
            principal: sealed.principal,
            csrf: SecretString::from(sealed.csrf),
        })
    }

    /// `Set-Cookie` for a new session.
    pub(crate) fn set_cookie(&self, value: String) -> HeaderValue {
        let cookie = Cookie::build((COOKIE_NAME, value))
            .path(COOKIE_PATH)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
            ))
            .build();
        header_value(&cookie)
    }

    /// `Set-Cookie` that removes the session cookie.
    pub(crate) fn removal_cookie(&self) -> HeaderValue {
        let mut cookie = Cookie::build((COOKIE_NAME, ""))
            .path(COOKIE_PATH)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .build();
        cookie.make_removal();
        header_value(&cookie)
    }
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    // Base64url values and fixed attributes: always a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who the principal is and what it may see: a session opened for one principal ends
/// when any of it changes. Apps are sorted, so their order does not matter.
fn fingerprint(principal: &Principal) -> String {
    let mut apps = principal.apps.clone();
    apps.sort();
    let mut hasher = Sha256::new();
    hasher.update(principal.id.as_bytes());
    hasher.update([0]);
    hasher.update(principal.role.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(apps.join(",").as_bytes());
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The request's session cookie value: `Ok(None)` without one, `Err` when it carries
/// several (which one the browser meant cannot be told, so none is trusted).
pub(crate) fn cookie_value(headers: &HeaderMap) -> Result<Option<String>, SessionError> {
    let mut found: Option<String> = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() == COOKIE_NAME {
                if found.is_some() {
                    return Err(SessionError::Invalid);
                }
                found = Some(cookie.value().to_owned());
            }
        }
    }
    Ok(found)
}

/// Whether the request carries a session cookie at all.
pub(crate) fn has_cookie(headers: &HeaderMap) -> bool {
    !matches!(cookie_value(headers), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn sessions() -> Sessions {
        Sessions::new(b"a secret of at least thirty-two chars", 3600, false).unwrap()
    }

    fn principal(role: Role, apps: &[&str]) -> Principal {
        Principal {
            id: "p1".to_owned(),
            role,
            apps: apps.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let sessions = sessions();
        let now = Utc::now();
        let (value, csrf, expires_at) = sessions
            .seal("sy_token", &principal(Role::Developer, &["a"]), now)
            .unwrap();
        assert!(!value.contains("sy_token"), "the token is not readable");
        let session = sessions.open(&value, now).unwrap();
        assert_eq!(session.token.expose_secret(), "sy_token");
        assert_eq!(session.csrf_token(), csrf);
        assert_eq!(session.expires_at(), expires_at);
        assert!(expires_at > now + chrono::Duration::seconds(3590));
        assert!(matches!(
            sessions.open(&value, expires_at),
            Err(SessionError::Expired)
        ));
    }

    #[test]
    fn tampered_or_foreign_cookies_do_not_open() {
        let sessions = sessions();
        let now = Utc::now();
        let (value, _, _) = sessions
            .seal("sy_token", &principal(Role::Admin, &[]), now)
            .unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(sessions.open(&tampered, now).is_err(), "byte {i}");
            bytes[i] ^= 1;
        }
        let other = Sessions::new(b"another secret of thirty-two chars!", 3600, false).unwrap();
        assert!(other.open(&value, now).is_err());
        for garbage in ["", "x", "%%%", "AQ", &"A".repeat(300)] {
            assert!(sessions.open(garbage, now).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn fingerprints_change_with_role_or_apps_only() {
        let a = fingerprint(&principal(Role::Developer, &["a", "b"]));
        assert_eq!(a, fingerprint(&principal(Role::Developer, &["b", "a"])));
        assert_ne!(a, fingerprint(&principal(Role::Viewer, &["a", "b"])));
        assert_ne!(a, fingerprint(&principal(Role::Developer, &["a"])));
    }

    #[test]
    fn cookies_have_the_session_attributes() {
        let plain = sessions().set_cookie("v".to_owned());
        let text = plain.to_str().unwrap();
        for attribute in [
            "sy_session=v",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/api",
            "Max-Age=3600",
        ] {
            assert!(text.contains(attribute), "{text}");
        }
        assert!(!text.contains("Secure"), "{text}");
        let secure = Sessions::new(b"a secret of at least thirty-two chars", 60, true)
            .unwrap()
            .set_cookie("v".to_owned());
        assert!(secure.to_str().unwrap().contains("Secure"));
        let removal = sessions().removal_cookie();
        assert!(
            removal.to_str().unwrap().contains("Max-Age=0"),
            "{removal:?}"
        );
    }

    #[test]
    fn two_session_cookies_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sy_session=x; b=2"),
        );
        assert_eq!(cookie_value(&headers).unwrap().as_deref(), Some("x"));
        headers.append(header::COOKIE, HeaderValue::from_static("sy_session=y"));
        assert!(cookie_value(&headers).is_err());
        assert!(has_cookie(&headers));
        assert!(!has_cookie(&HeaderMap::new()));
    }
}
