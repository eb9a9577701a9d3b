//! Who a bearer token belongs to: the [`Authenticator`] the configuration asks for.
//!
//! * the configured admin token is the built-in `admin` principal (compared in
//!   constant time);
//! * any other `sy_…` token is resolved by the control-plane
//!   (`POST /internal/auth/resolve`; it stores only SHA-256 hashes) into a principal
//!   with a role and its apps. Positive answers are cached for
//!   `gateway.token_cache_secs` ([`TokenCache`]); a change to the principal
//!   (revocation, deletion, role or apps) drops them at once when the control-plane's
//!   notice arrives ([`crate::revocation`]), and the TTL bounds a missed notice;
//! * without an admin token and with `allow_anonymous`, everyone is the anonymous
//!   admin.
//!
//! No token is ever logged.

use futures::future::BoxFuture;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

use switchyard_platform::http::secret_matches;

use crate::auth::{AuthError, Authenticator, Principal, Role};
use crate::config::GatewayConfig;
use crate::control_plane::ControlPlane;
use crate::revocation::Revocations;
use crate::token_cache::TokenCache;

/// Prefix of the tokens the control-plane issues; other tokens are not worth asking
/// it about.
const ISSUED_TOKEN_PREFIX: &str = "sy_";

/// The configured admin token.
pub(crate) struct AdminToken {
    token: SecretString,
}

impl AdminToken {
    pub(crate) const PRINCIPAL_ID: &'static str = "admin";

    pub(crate) fn new(token: SecretString) -> Self {
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
            Some(given) if secret_matches(given.as_bytes(), &self.token) => Ok(Principal {
                id: Self::PRINCIPAL_ID.to_owned(),
                role: Role::Admin,
                apps: Vec::new(),
            }),
            Some(_) => Err(AuthError::Invalid),
        };
        Box::pin(std::future::ready(result))
    }
}

/// `allow_anonymous = true` without a token: everyone is the anonymous admin.
pub(crate) struct Anonymous;

impl Anonymous {
    pub(crate) const PRINCIPAL_ID: &'static str = "anonymous";
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
pub(crate) trait TokenResolver: Send + Sync + 'static {
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
pub(crate) struct Tokens<R> {
    admin: AdminToken,
    resolver: R,
    cache: Arc<TokenCache>,
    revocations: Revocations,
}

impl<R: TokenResolver> Tokens<R> {
    /// `revocations` must evict from `cache`.
    pub(crate) fn new(
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

/// The authenticator the configuration asks for, and the [`Revocations`] that apply
/// the control-plane's notices to it. [`crate::config::Config::validate`] has already refused a
/// missing token without `allow_anonymous`.
pub(crate) fn from_config(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
