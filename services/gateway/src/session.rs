//! Browser sessions: an API token exchanged once for a cookie that authenticates API
//! calls and `EventSource` streams (which cannot send an `Authorization` header).
//!
//! * `POST /api/session {"token"}` checks the token like a bearer token and answers
//!   with the principal, a CSRF token and a `Set-Cookie: sy_session=…; Path=/api;
//!   HttpOnly; SameSite=Strict; Max-Age=<gateway.session_ttl_secs>` (plus `Secure` with
//!   `gateway.session_cookie_secure`).
//! * The cookie is sealed (ChaCha20-Poly1305, key from `gateway.session_secret` or else
//!   the admin token, through HKDF): it holds the API token, the expiry, a fingerprint
//!   of the principal (id, role, apps) and the CSRF token. Nothing is stored on the
//!   gateway, so every gateway with the same key accepts it and a restart keeps it.
//! * Every request that carries the cookie (and no `Authorization` header) is
//!   authenticated by the token inside it, through the same authenticator and cache as
//!   a bearer token: a revoked token (or a rotated admin token) ends the session at
//!   once, as it ends the token's streams. When the principal's role or apps differ
//!   from the fingerprint, the session ends too: the user signs in again.
//! * A request the cookie authenticates with a method other than GET / HEAD / OPTIONS
//!   must carry `X-Switchyard-CSRF: <the session's CSRF token>`, else 403
//!   `csrf_rejected`: the cookie alone never authorises a change. (SameSite=Strict
//!   already keeps other sites' requests from carrying it; the header check also holds
//!   where SameSite does not, e.g. a sibling subdomain.) Sign-in itself needs
//!   `Content-Type: application/json`, which a cross-site form cannot send and a
//!   cross-site script cannot send without a preflight the gateway refuses.
//! * `GET /api/session` says who the caller is (cookie, bearer or anonymous) and, for
//!   a cookie, returns its CSRF token, so a reloaded page needs no second sign-in.
//! * `DELETE /api/session` (CSRF header required while the session is valid) clears
//!   the cookie. The cookie is not stored anywhere else, so a copy taken before sign-out
//!   works until it expires; revoking the token ends every session made from it.
//! * A cookie that is not valid any more (expired, tampered with, token revoked,
//!   principal changed) is answered 401 `unauthorized` with a `Set-Cookie` that
//!   removes it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
use switchyard_contracts::session::{SessionAuth, SessionPrincipal, SessionView, SignInRequest};
use switchyard_platform::http::{ApiError, Json};

use crate::GatewayConfig;
use crate::auth::{AuthError, Principal, constant_time_eq};
use crate::routes::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "sy_session";
/// The header a cookie-authenticated state-changing request must carry.
pub const CSRF_HEADER: &str = "x-switchyard-csrf";
/// The cookie is only sent to the API (static files need none).
pub const COOKIE_PATH: &str = "/api";
/// Longest session lifetime `gateway.session_ttl_secs` may ask for: 30 days.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Shortest `gateway.session_secret`.
pub const MIN_SECRET_CHARS: usize = 32;

/// First byte of a sealed cookie: the format, so that a later one can be told apart.
const FORMAT: u8 = 1;
/// Binds the ciphertext to its use: a value sealed for anything else does not open.
const AAD: &[u8] = b"switchyard sy_session v1";
const HKDF_SALT: &[u8] = b"switchyard-gateway-session";
const HKDF_INFO: &[u8] = b"sy_session cookie key v1";

/// Seals and opens session cookies, and builds their `Set-Cookie` headers.
pub struct Sessions {
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
pub struct Session {
    token: SecretString,
    expires_at: DateTime<Utc>,
    principal: String,
    csrf: String,
}

impl Session {
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Whether `headers` carry this session's CSRF token.
    pub fn csrf_matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(CSRF_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => constant_time_eq(self.csrf.as_bytes(), value.as_bytes()),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is not valid")]
    Invalid,
    #[error("the session has expired")]
    Expired,
}

impl Sessions {
    /// The key comes from `session_secret`, else the admin token, else (anonymous mode,
    /// where sessions carry no rights of their own) from fresh random bytes.
    pub fn from_config(config: &GatewayConfig) -> anyhow::Result<Sessions> {
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

    pub fn new(secret: &[u8], ttl_secs: u64, secure: bool) -> anyhow::Result<Sessions> {
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
    pub fn seal(
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
    pub fn open(&self, value: &str, now: DateTime<Utc>) -> Result<Session, SessionError> {
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
            csrf: sealed.csrf,
        })
    }

    /// `Set-Cookie` for a new session.
    pub fn set_cookie(&self, value: String) -> HeaderValue {
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
    pub fn removal_cookie(&self) -> HeaderValue {
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
pub fn fingerprint(principal: &Principal) -> String {
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
pub fn cookie_value(headers: &HeaderMap) -> Result<Option<String>, SessionError> {
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
pub fn has_cookie(headers: &HeaderMap) -> bool {
    !matches!(cookie_value(headers), Ok(None))
}

/// Why a cookie did not authenticate a request.
#[derive(Debug)]
pub enum Refusal {
    /// 401, and the cookie is removed.
    SignedOut(&'static str),
    /// 403 `csrf_rejected`.
    Csrf,
    /// 503: the credential store could not be asked.
    Unavailable(anyhow::Error),
}

impl Refusal {
    pub fn into_response(self, sessions: &Sessions) -> Response {
        match self {
            Refusal::SignedOut(message) => {
                let mut response = ApiError::unauthorized(message).into_response();
                let headers = response.headers_mut();
                headers.insert(header::SET_COOKIE, sessions.removal_cookie());
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Refusal::Csrf => ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                format!(
                    "a request signed in by the session cookie must send the session's CSRF \
                     token (from GET /api/session) in the `{CSRF_HEADER}` header"
                ),
            )
            .into_response(),
            Refusal::Unavailable(cause) => {
                ApiError::unavailable("authentication is unavailable; retry later", cause)
                    .into_response()
            }
        }
    }
}

/// Authenticates a request by its session cookie (the caller checked there is one):
/// the sealed token must still authenticate, as the same principal, and a
/// state-changing `method` must carry the CSRF header.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(Principal, Session), Refusal> {
    const ENDED: &str = "your session has ended; sign in again";
    let value = cookie_value(headers)
        .ok()
        .flatten()
        .ok_or(Refusal::SignedOut(ENDED))?;
    let session = state
        .sessions
        .open(&value, Utc::now())
        .map_err(|e| match e {
            SessionError::Expired => Refusal::SignedOut("your session has expired; sign in again"),
            SessionError::Invalid => Refusal::SignedOut(ENDED),
        })?;
    let principal = match state
        .authenticator
        .authenticate(Some(session.token.expose_secret()))
        .await
    {
        Ok(principal) => principal,
        Err(AuthError::Unavailable(cause)) => return Err(Refusal::Unavailable(cause)),
        Err(_) => {
            return Err(Refusal::SignedOut(
                "the token this session was opened with is no longer valid; sign in again",
            ));
        }
    };
    if !constant_time_eq(
        session.principal.as_bytes(),
        fingerprint(&principal).as_bytes(),
    ) {
        return Err(Refusal::SignedOut(
            "your access changed since you signed in; sign in again",
        ));
    }
    if !is_safe(method) && !session.csrf_matches(headers) {
        return Err(Refusal::Csrf);
    }
    Ok((principal, session))
}

/// Methods that change nothing, so need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn view(
    principal: Principal,
    auth: SessionAuth,
    csrf_token: Option<String>,
    expires_at: Option<DateTime<Utc>>,
) -> SessionView {
    SessionView {
        principal: SessionPrincipal {
            id: principal.id,
            role: principal.role,
            apps: principal.apps,
        },
        auth,
        csrf_token,
        expires_at,
    }
}

/// Answers that carry a session must not be stored by any cache.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /api/session {"token"}`: sign in.
pub async fn sign_in(
    State(state): State<AppState>,
    Json(request): Json<SignInRequest>,
) -> Response {
    let token = request.token.trim();
    if token.is_empty() {
        return ApiError::bad_request("invalid_request", "`token` must not be empty")
            .into_response();
    }
    let principal = match state.authenticator.authenticate(Some(token)).await {
        Ok(principal) => principal,
        Err(AuthError::Unavailable(cause)) => {
            return ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response();
        }
        Err(_) => {
            tracing::debug!("sign-in refused: the token is not valid");
            return ApiError::unauthorized("the token is not valid").into_response();
        }
    };
    let (value, csrf, expires_at) = match state.sessions.seal(token, &principal, Utc::now()) {
        Ok(sealed) => sealed,
        Err(cause) => return ApiError::internal(cause).into_response(),
    };
    tracing::info!(principal = %principal.id, "signed in: session opened");
    let body = view(principal, SessionAuth::Cookie, Some(csrf), Some(expires_at));
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.sessions.set_cookie(value));
    no_store(response)
}

/// `GET /api/session`: who is asking, by bearer token, session cookie, or neither.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = crate::auth::bearer_token(&headers);
    let answer = match bearer {
        Ok(Some(token)) => match state.authenticator.authenticate(Some(token)).await {
            Ok(principal) => Ok(view(principal, SessionAuth::Bearer, None, None)),
            Err(e) => Err(e),
        },
        Ok(None) if has_cookie(&headers) => {
            return match authenticate(&state, &Method::GET, &headers).await {
                Ok((principal, session)) => no_store(
                    Json(view(
                        principal,
                        SessionAuth::Cookie,
                        Some(session.csrf.clone()),
                        Some(session.expires_at()),
                    ))
                    .into_response(),
                ),
                Err(refusal) => refusal.into_response(&state.sessions),
            };
        }
        Ok(None) => match state.authenticator.authenticate(None).await {
            Ok(principal) => Ok(view(principal, SessionAuth::Anonymous, None, None)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => no_store(Json(body).into_response()),
        Err(AuthError::Unavailable(cause)) => {
            ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response()
        }
        Err(AuthError::Missing) => ApiError::unauthorized("you are not signed in").into_response(),
        Err(AuthError::Invalid) => {
            ApiError::unauthorized("the bearer token is not valid").into_response()
        }
    }
}

/// `DELETE /api/session`: sign out (clears the cookie). A valid session must send its
/// CSRF token; one that is no longer valid is cleared without it.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Ok(Some(value)) = cookie_value(&headers)
        && let Ok(session) = state.sessions.open(&value, Utc::now())
        && !session.csrf_matches(&headers)
    {
        return Refusal::Csrf.into_response(&state.sessions);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.sessions.removal_cookie());
    no_store(response)
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
        assert_eq!(session.csrf, csrf);
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
