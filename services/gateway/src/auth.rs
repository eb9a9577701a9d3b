//! Who is calling: the [`Principal`] a request is served as, the [`Authenticator`]
//! that turns a token into one ([`crate::tokens`] has the implementations), and how a
//! principal travels to the control-plane.
//!
//! Handlers read the `Principal` request extension that [`crate::http::auth`] stores;
//! the proxy and the run lookup send it to the control-plane in the `x-switchyard-*`
//! headers ([`principal_headers`]), after every client-sent `x-switchyard-*` header has
//! been dropped — the control-plane trusts them and decides what the principal may do.

use axum::http::{HeaderMap, HeaderValue};
use futures::future::BoxFuture;
use switchyard_contracts::AppId;
pub(crate) use switchyard_contracts::auth::{
    APPS_HEADER, INTERNAL_HEADER_PREFIX, PRINCIPAL_HEADER, ROLE_HEADER, Role,
};

/// The authenticated caller, stored as a request extension by
/// [`crate::http::auth::require_principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// A registered principal's id, or the name of a built-in caller
    /// ([`crate::tokens::AdminToken::PRINCIPAL_ID`],
    /// [`crate::tokens::Anonymous::PRINCIPAL_ID`]).
    pub(crate) id: String,
    pub(crate) role: Role,
    /// Apps the principal is a member of (what developers and viewers may see).
    pub(crate) apps: Vec<AppId>,
}

/// The headers that carry `principal` to the control-plane.
pub(crate) fn principal_headers(principal: &Principal) -> HeaderMap {
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
pub(crate) enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    /// The credential store (the control-plane) could not be asked.
    #[error("the credential store is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Decides who a bearer token belongs to. `token` is `None` when the request carries
/// no `Authorization` header.
pub(crate) trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

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
