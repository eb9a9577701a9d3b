//! Authentication: turns the request's bearer token (or, without one, its session
//! cookie: [`crate::session`]) into a [`Principal`].
//!
//! * the configured admin token is the built-in `admin` principal (compared in
//!   constant time);
//! * any other `sy_…` token is resolved by the control-plane
//!   (`POST /internal/auth/resolve`; it stores only SHA-256 hashes) into a principal
//!   with a role and its apps. Positive answers are cached for
//!   `gateway.token_cache_secs`; a change to the principal (revocation, deletion, role
//!   or apps) drops them at once when the control-plane's notice arrives
//!   ([`crate::revocation`]), and the TTL bounds a missed notice;
//! * without an admin token and with `allow_anonymous`, everyone is the anonymous
//!   admin.
//!
//! Handlers read the `Principal` request extension; the proxy and the run lookup send
//! it to the control-plane in the `x-switchyard-*` headers ([`principal_headers`]),
//! after every client-sent `x-switchyard-*` header has been dropped — the
//! control-plane trusts them and decides what the principal may do.
//!
//! No token is ever logged.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use switchyard_contracts::AppId;
pub use switchyard_contracts::auth::{
    APPS_HEADER, INTERNAL_HEADER_PREFIX, PRINCIPAL_HEADER, ROLE_HEADER, Role,
};
use switchyard_platform::http::ApiError;

use crate::GatewayConfig;
use crate::control_plane::ControlPlane;
use crate::revocation::Revocations;
use crate::routes::AppState;

/// Prefix of the tokens the control-plane issues; other tokens are not worth asking
/// it about.
pub const ISSUED_TOKEN_PREFIX: &str = "sy_";

/// The authenticated caller, stored as a request extension by [`require_principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A registered principal's id, or the name of a built-in caller
    /// ([`AdminToken::PRINCIPAL_ID`], [`Anonymous::PRINCIPAL_ID`]).
    pub id: String,
    pub role: Role,
    /// Apps the principal is a member of (what developers and viewers may see).
    pub apps: Vec<AppId>,
}

/// The headers that carry `principal` to the control-plane.
pub fn principal_headers(principal: &Principal) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // Ids are UUIDs or built-in names and app ids are `[A-Za-z0-9_-]`, so these never
    // fail; a value that did would leave the header out and the control-plane refuse.
    if let Ok(id) = HeaderValue::from_str(&principal.id) {
        headers.insert(PRINCIPAL_HEADER, id);
    }
    headers.insert(
        ROLE_HEADER,
        HeaderValue::from_static(principal.role.as_str()),
    );
    let apps: Vec<&str> = principal.apps.iter().map(AppId::as_str).collect();
    if let Ok(apps) = HeaderValue::from_str(&apps.join(",")) {
        headers.insert(APPS_HEADER, apps);
    }
    headers
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    /// The credential store could not be asked (future RBAC backends).
    #[error("the credential store is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Decides who a bearer token belongs to. `token` is `None` when the request carries
/// no `Authorization` header.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

/// The configured admin token.
pub struct AdminToken {
    token: SecretString,
}

impl AdminToken {
    pub const PRINCIPAL_ID: &'static str = "admin";

    pub fn new(token: SecretString) -> Self {
        Self { token }
    }
}

impl Authenticator for AdminToken {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let result = match token {
            None => Err(AuthError::Missing),
            Some(given)
                if constant_time_eq(self.token.expose_secret().as_bytes(), given.as_bytes()) =>
            {
                Ok(Principal {
                    id: Self::PRINCIPAL_ID.to_owned(),
                    role: Role::Admin,
                    apps: Vec::new(),
                })
            }
            Some(_) => Err(AuthError::Invalid),
        };
        Box::pin(std::future::ready(result))
    }
}

/// `allow_anonymous = true` without a token: everyone is the anonymous admin.
pub struct Anonymous;

impl Anonymous {
    pub const PRINCIPAL_ID: &'static str = "anonymous";
}

impl Authenticator for Anonymous {
    fn authenticate<'a>(
        &'a self,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(std::future::ready(Ok(Principal {
            id: Self::PRINCIPAL_ID.to_owned(),
            role: Role::Admin,
            apps: Vec::new(),
        })))
    }
}

/// Where issued tokens are looked up: the control-plane, in production.
pub trait TokenResolver: Send + Sync + 'static {
    /// `Ok(None)` for an unknown or revoked token.
    fn resolve<'a>(&'a self, token: &'a str)
    -> BoxFuture<'a, Result<Option<Principal>, AuthError>>;
}

impl TokenResolver for ControlPlane {
    fn resolve<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            self.resolve_token(token)
                .await
                .map_err(|e| AuthError::Unavailable(e.into()))
        })
    }
}

/// The admin token, then issued tokens through a [`TokenResolver`] and a [`TokenCache`]
/// (filled through [`Revocations`], so a notice that overtakes a resolution wins).
pub struct Tokens<R> {
    admin: AdminToken,
    resolver: R,
    cache: Arc<TokenCache>,
    revocations: Revocations,
}

impl<R: TokenResolver> Tokens<R> {
    /// `revocations` must evict from `cache`.
    pub fn new(
        admin: AdminToken,
        resolver: R,
        cache: Arc<TokenCache>,
        revocations: Revocations,
    ) -> Self {
        Self {
            admin,
            resolver,
            cache,
            revocations,
        }
    }
}

impl<R: TokenResolver> Authenticator for Tokens<R> {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            let token = token.ok_or(AuthError::Missing)?;
            match self.admin.authenticate(Some(token)).await {
                Err(AuthError::Invalid) => {}
                outcome => return outcome,
            }
            if !token.starts_with(ISSUED_TOKEN_PREFIX) {
                return Err(AuthError::Invalid);
            }
            let key = TokenCache::key(token);
            if let Some(principal) = self.cache.get(&key) {
                return Ok(principal);
            }
            let since = self.revocations.epoch();
            let principal = self
                .resolver
                .resolve(token)
                .await?
                .ok_or(AuthError::Invalid)?;
            self.revocations.cache_if_current(since, key, &principal);
            Ok(principal)
        })
    }
}

/// Recently resolved tokens, keyed by the token's SHA-256 (the plaintext is not kept),
/// each trusted for `ttl`, at most `max_entries` of them.
pub struct TokenCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Principal> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((principal, at)) if at.elapsed() < self.ttl => Some(principal.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: [u8; 32], principal: Principal) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                // Still full of live entries: start over rather than track recency; the
                // cost is one control-plane lookup per active token.
                entries.clear();
            }
        }
        entries.insert(key, (principal, Instant::now()));
    }

    /// Drops every answer about the principal (all of its tokens).
    pub fn forget_principal(&self, principal_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (principal, _)| principal.id != principal_id);
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The authenticator the configuration asks for, and the [`Revocations`] that apply
/// the control-plane's notices to it. [`crate::Config::validate`] has already refused a
/// missing token without `allow_anonymous`.
pub fn from_config(
    config: &GatewayConfig,
    control_plane: ControlPlane,
) -> (Arc<dyn Authenticator>, Revocations) {
    match &config.admin_token {
        Some(token) => {
            let cache = Arc::new(TokenCache::new(
                Duration::from_secs(config.token_cache_secs),
                config.token_cache_max_entries,
            ));
            let revocations = Revocations::new(Some(cache.clone()));
            let tokens = Tokens::new(
                AdminToken::new(token.clone()),
                control_plane,
                cache,
                revocations.clone(),
            );
            (Arc::new(tokens), revocations)
        }
        None => (Arc::new(Anonymous), Revocations::new(None)),
    }
}

/// Equality of two byte strings in time that depends only on `expected`'s length, so a
/// caller probing tokens learns nothing from response times.
pub fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(byte ^ other);
    }
    // Keep the optimizer from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header; `Ok(None)` without one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Invalid);
    }
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Invalid);
    }
    Ok(Some(token))
}

/// Middleware: authenticates the request and stores its [`Principal`] and the
/// [`AuthEpoch`](crate::revocation::AuthEpoch) it started at, or answers 401
/// `unauthorized` with `WWW-Authenticate: Bearer`.
pub async fn require_principal(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let epoch = state.revocations.epoch();
    let outcome = match bearer_token(request.headers()) {
        // No bearer token: a browser's session cookie, if it sent one (crate::session).
        Ok(None) if crate::session::has_cookie(request.headers()) => {
            match crate::session::authenticate(&state, request.method(), request.headers()).await {
                Ok((principal, _)) => Ok(principal),
                Err(refusal) => return refusal.into_response(&state.sessions),
            }
        }
        Ok(token) => state.authenticator.authenticate(token).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(epoch);
            next.run(request).await
        }
        Err(AuthError::Unavailable(cause)) => {
            ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response()
        }
        Err(e) => {
            tracing::debug!(reason = %e, path = %request.uri().path(), "request not authenticated");
            let (message, challenge) = match e {
                AuthError::Missing => (
                    "this endpoint needs `Authorization: Bearer <token>`",
                    HeaderValue::from_static("Bearer"),
                ),
                _ => (
                    "the bearer token is not valid",
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ),
            };
            let mut response = ApiError::unauthorized(message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(constant_time_eq(b"", b""));
        // A prefix padded with NULs must not pass for the shorter token.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
        assert_eq!(
            bearer_token(&headers(&["Bearer abc"])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  abc "])).unwrap(),
            Some("abc")
        );
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert!(bearer_token(&headers(&[bad])).is_err(), "{bad:?}");
        }
        assert!(bearer_token(&headers(&["Bearer a", "Bearer b"])).is_err());
    }

    #[tokio::test]
    async fn the_admin_token_yields_the_admin_principal() {
        let auth = AdminToken::new(SecretString::from("tok"));
        let principal = auth.authenticate(Some("tok")).await.unwrap();
        assert_eq!(principal.id, "admin");
        assert_eq!(principal.role, Role::Admin);
        assert!(matches!(
            auth.authenticate(Some("tak")).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        let principal = Anonymous.authenticate(None).await.unwrap();
        assert_eq!(principal.id, "anonymous");
    }

    /// Issued tokens from a table, counting the lookups.
    struct Table {
        known: HashMap<String, Principal>,
        lookups: std::sync::atomic::AtomicUsize,
    }

    impl TokenResolver for Table {
        fn resolve<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(self.known.get(token).cloned())))
        }
    }

    fn developer(id: &str) -> Principal {
        Principal {
            id: id.to_owned(),
            role: Role::Developer,
            apps: vec!["a".parse().unwrap()],
        }
    }

    fn tokens(ttl: Duration) -> Tokens<Table> {
        let cache = Arc::new(TokenCache::new(ttl, 100));
        Tokens::new(
            AdminToken::new(SecretString::from("admin-tok")),
            Table {
                known: [
                    ("sy_dev".to_owned(), developer("p1")),
                    ("sy_dev2".to_owned(), developer("p1")),
                    ("sy_other".to_owned(), developer("p2")),
                ]
                .into(),
                lookups: 0.into(),
            },
            cache.clone(),
            Revocations::new(Some(cache)),
        )
    }

    fn lookups(auth: &Tokens<Table>) -> usize {
        auth.resolver
            .lookups
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn issued_tokens_are_resolved_once_then_cached() {
        let auth = tokens(Duration::from_secs(30));
        assert_eq!(
            auth.authenticate(Some("admin-tok")).await.unwrap().role,
            Role::Admin
        );
        assert_eq!(lookups(&auth), 0, "the admin token is not looked up");
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate(Some("sy_dev")).await.unwrap(),
                developer("p1")
            );
        }
        assert_eq!(lookups(&auth), 1);
        // Unknown tokens are not cached: each is asked about, and refused.
        for _ in 0..2 {
            assert!(matches!(
                auth.authenticate(Some("sy_nope")).await,
                Err(AuthError::Invalid)
            ));
        }
        assert_eq!(lookups(&auth), 3);
        // Tokens the control-plane cannot have issued are refused without asking.
        assert!(matches!(
            auth.authenticate(Some("other")).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        assert_eq!(lookups(&auth), 3);
        assert_eq!(auth.cache.len(), 1);
    }

    #[tokio::test]
    async fn cached_answers_expire() {
        let auth = tokens(Duration::from_millis(1));
        auth.authenticate(Some("sy_dev")).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        auth.authenticate(Some("sy_dev")).await.unwrap();
        assert_eq!(lookups(&auth), 2);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(30), 3);
        for i in 0..10 {
            cache.insert(TokenCache::key(&format!("sy_{i}")), developer("p"));
            assert!(cache.len() <= 3, "{}", cache.len());
        }
        assert!(cache.get(&TokenCache::key("sy_9")).is_some());
        assert!(!cache.is_empty());
        let off = TokenCache::new(Duration::ZERO, 3);
        off.insert(TokenCache::key("sy_1"), developer("p"));
        assert!(off.is_empty());
    }

    #[test]
    fn principals_travel_in_headers() {
        let headers = principal_headers(&Principal {
            id: "p1".to_owned(),
            role: Role::Viewer,
            apps: vec!["a".parse().unwrap(), "b".parse().unwrap()],
        });
        assert_eq!(headers[PRINCIPAL_HEADER], "p1");
        assert_eq!(headers[ROLE_HEADER], "viewer");
        assert_eq!(headers[APPS_HEADER], "a,b");
        assert!(
            headers
                .keys()
                .all(|k| k.as_str().starts_with(INTERNAL_HEADER_PREFIX))
        );
    }
}
