//! The control-plane's HTTP API as seen from the gateway: where it is, how long we wait
//! for it, and the two questions the gateway asks it on its own behalf (does a run
//! exist; is the control-plane healthy).

use axum::http::StatusCode;
use reqwest::Url;
use std::time::Duration;
use switchyard_contracts::principals::{ResolveTokenRequest, ResolveTokenResponse};
use switchyard_contracts::{RunId, RunStatus};

use crate::auth::{Principal, principal_headers};
use crate::config::{GatewayConfig, parse_control_plane_url};

/// Readiness probes must answer quickly even when the API deadline is long.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// The control-plane bounds its Postgres check at 5 s and its NATS read at the NATS
/// request timeout: together well under this.
const INTERNAL_HEALTH_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlPlaneError {
    /// Connection refused, reset, timed out, or an unreadable response.
    #[error("the control-plane did not answer: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("the control-plane answered {0} to {1}")]
    UnexpectedStatus(StatusCode, &'static str),
}

impl ControlPlaneError {
    /// Without the URL: reqwest's message names the control-plane's internal host,
    /// which must not reach a report or an API response.
    fn unreachable(e: reqwest::Error) -> Self {
        Self::Unreachable(e.without_url())
    }

    /// The request ran out of time (as opposed to being refused or answered badly).
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Self::Unreachable(e) if e.is_timeout())
    }
}

/// What the control-plane says about a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunLookup {
    /// The run exists and the principal may read it. `status` is the projected status
    /// when the answer carried a recognisable one.
    Found {
        status: Option<RunStatus>,
    },
    NotFound,
    /// The run exists but the principal may not read it.
    Forbidden,
}

/// Client of the control-plane's HTTP API.
#[derive(Clone)]
pub(crate) struct ControlPlane {
    http: reqwest::Client,
    /// The configured base URL without a trailing slash.
    base: String,
    /// Path every forwarded URL must stay under (`<base path>/api/`).
    api_prefix: String,
}

impl ControlPlane {
    /// `server_idle` is how long the control-plane keeps an idle connection open (its
    /// `http.header_read_timeout_ms`, which the deployment shares with the gateway).
    pub(crate) fn new(config: &GatewayConfig, server_idle: Duration) -> anyhow::Result<Self> {
        let base_url = parse_control_plane_url(&config.control_plane_url)
            .map_err(|p| anyhow::anyhow!("gateway.control_plane_url {p}"))?;
        let mut internal = reqwest::header::HeaderMap::new();
        if let Some(token) = &config.control_plane_token {
            use secrecy::ExposeSecret;
            let mut value =
                reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    anyhow::anyhow!("gateway.control_plane_token is not a valid header value")
                })?;
            value.set_sensitive(true);
            internal.insert(switchyard_contracts::auth::INTERNAL_TOKEN_HEADER, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(internal)
            .timeout(config.upstream_timeout())
            .connect_timeout(config.upstream_timeout().min(Duration::from_secs(5)))
            // Give up an idle pooled connection well before the control-plane closes
            // it: a request sent just as the server closes would fail, not retry.
            .pool_idle_timeout(server_idle / 2)
            // The control-plane is an internal peer: never route it through a proxy taken
            // from the environment, and hand redirects back to the client unchanged.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = config.control_plane_url.trim_end_matches('/').to_owned();
        let api_prefix = format!("{}/api/", base_url.path().trim_end_matches('/'));
        Ok(Self {
            http,
            base,
            api_prefix,
        })
    }

    /// The base URL for logs, without a password it might carry.
    pub(crate) fn display_url(&self) -> String {
        match Url::parse(&self.base) {
            Ok(mut url) => {
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => String::new(),
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The upstream URL for a gateway `path_and_query`, or `None` when it would leave
    /// the control-plane's `/api/` tree once normalised (`/api/../admin`, `%2e%2e`).
    pub(crate) fn api_url(&self, path_and_query: &str) -> Option<Url> {
        let url = Url::parse(&format!("{}{path_and_query}", self.base)).ok()?;
        url.path().starts_with(&self.api_prefix).then_some(url)
    }

    /// `GET /api/runs/{id}` as `principal`: does the run exist, and may they read it?
    #[tracing::instrument(skip_all, fields(run_id = %run_id))]
    pub(crate) async fn lookup_run(
        &self,
        run_id: RunId,
        principal: &Principal,
    ) -> Result<RunLookup, ControlPlaneError> {
        let path = format!("/api/runs/{run_id}");
        let url = self
            .api_url(&path)
            .ok_or(ControlPlaneError::UnexpectedStatus(
                StatusCode::BAD_REQUEST,
                "run lookup",
            ))?;
        let response = self
            .http
            .get(url)
            .headers(principal_headers(principal))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        match response.status() {
            s if s.is_success() => {
                let body = response
                    .bytes()
                    .await
                    .map_err(ControlPlaneError::unreachable)?;
                // Only the status is of interest, and only as a hint: an answer we cannot
                // read still proves the run exists.
                let status = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.get("status")
                            .and_then(|s| s.as_str())
                            .and_then(RunStatus::parse)
                    });
                Ok(RunLookup::Found { status })
            }
            StatusCode::NOT_FOUND => Ok(RunLookup::NotFound),
            StatusCode::FORBIDDEN => Ok(RunLookup::Forbidden),
            other => Err(ControlPlaneError::UnexpectedStatus(other, "run lookup")),
        }
    }

    /// `POST /internal/auth/resolve`: whose issued token is this? `Ok(None)` for an
    /// unknown or revoked one.
    pub(crate) async fn resolve_token(
        &self,
        token: &str,
    ) -> Result<Option<Principal>, ControlPlaneError> {
        let response = self
            .http
            .post(format!("{}/internal/auth/resolve", self.base))
            .json(&ResolveTokenRequest {
                token: token.to_owned(),
            })
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        match response.status() {
            s if s.is_success() => {
                let resolved: ResolveTokenResponse = response
                    .json()
                    .await
                    .map_err(ControlPlaneError::unreachable)?;
                Ok(Some(Principal {
                    id: resolved.principal_id.to_string(),
                    role: resolved.role,
                    apps: resolved.apps,
                }))
            }
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => Ok(None),
            other => Err(ControlPlaneError::UnexpectedStatus(
                other,
                "token resolution",
            )),
        }
    }

    /// `GET /internal/health`: Postgres, migrations and the live executors, as the
    /// control-plane sees them (for `GET /api/health`). `limit` is what is left of the
    /// report's budget; the call never waits longer than that (nor than 15 s).
    pub(crate) async fn internal_health(
        &self,
        limit: Duration,
    ) -> Result<switchyard_contracts::health::ControlPlaneHealth, ControlPlaneError> {
        let response = self
            .http
            .get(format!("{}/internal/health", self.base))
            .timeout(INTERNAL_HEALTH_TIMEOUT.min(limit))
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        if !response.status().is_success() {
            return Err(ControlPlaneError::UnexpectedStatus(
                response.status(),
                "internal health check",
            ));
        }
        response
            .json()
            .await
            .map_err(ControlPlaneError::unreachable)
    }

    /// `GET /healthz` answers 2xx.
    pub(crate) async fn healthy(&self) -> Result<(), ControlPlaneError> {
        let response = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ControlPlaneError::UnexpectedStatus(
                response.status(),
                "health check",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> ControlPlane {
        ControlPlane::new(
            &GatewayConfig {
                control_plane_url: base.to_owned(),
                ..Default::default()
            },
            Duration::from_secs(10),
        )
        .unwrap()
    }

    #[test]
    fn api_urls_keep_path_and_query() {
        let cp = client("http://127.0.0.1:8081/");
        assert_eq!(
            cp.api_url("/api/runs?limit=5&x=%20").unwrap().as_str(),
            "http://127.0.0.1:8081/api/runs?limit=5&x=%20"
        );
        let cp = client("http://cp:1/inner");
        assert_eq!(
            cp.api_url("/api/apps").unwrap().as_str(),
            "http://cp:1/inner/api/apps"
        );
    }

    #[test]
    fn paths_that_escape_the_api_tree_are_refused() {
        let cp = client("http://cp:1");
        for escape in [
            "/api/../admin",
            "/api/%2e%2e/admin",
            "/api/runs/../../x",
            "/api/.%2E/x",
        ] {
            assert!(cp.api_url(escape).is_none(), "{escape}");
        }
        assert!(cp.api_url("/api/runs/..x").is_some());
    }

    /// The error reaches the health report: it must not name the internal host.
    #[tokio::test]
    async fn an_unreachable_control_plane_is_reported_without_its_url() {
        // Port 1: nothing listens, the connection is refused at once.
        let cp = client("http://127.0.0.1:1/internal-host-path");
        let e = cp
            .internal_health(Duration::from_secs(5))
            .await
            .expect_err("nothing listens on port 1");
        assert!(matches!(e, ControlPlaneError::Unreachable(_)), "{e:?}");
        assert!(!e.is_timeout(), "{e:?}");
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        assert!(
            !text.contains("127.0.0.1") && !text.contains("internal-host-path"),
            "{text}"
        );
    }

    #[test]
    fn passwords_stay_out_of_the_logged_url() {
        let cp = client("http://user:hunter2@cp:1");
        assert!(
            !cp.display_url().contains("hunter2"),
            "{}",
            cp.display_url()
        );
    }
}
