//! The gateway's HTTP surface: shared state and the route table.
//!
//! | route | auth | handler |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz` | public | platform health; ready = NATS connected and the control-plane's `/healthz` answers |
//! | `POST`, `GET`, `DELETE /api/session` | token in the body / any | [`session`]: sign in, who am I, sign out |
//! | `GET /api/runs/{id}/stream` | bearer or session cookie | [`streams::stream_run`] |
//! | `* /api/{*path}` | bearer or session cookie (+ CSRF header) | [`proxy::forward`] to the control-plane |
//! | `GET` anything else | public | [`portal::serve`]: the built portal, `index.html` for client-side routes |
//!
//! With `gateway.cors_allowed_origins` set, [`cors`] answers preflights of `/api/*`
//! before authentication.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{any, get, post};
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::events::EventLog;
use switchyard_platform::http::{ReadinessCheck, health_routes, nats_ready, with_common_layers};

use crate::GatewayConfig;
use crate::auth::{self, Authenticator};
use crate::control_plane::ControlPlane;
use crate::hub::Hub;
use crate::portal::Portal;
use crate::quota::StreamQuota;
use crate::revocation::Revocations;
use crate::session::Sessions;
use crate::{cors, portal, proxy, session, streams};

/// The request deadline beyond the upstream one, so that a slow control-plane yields the
/// proxy's own JSON 503 rather than the timeout layer's bare one.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// What every handler reaches, behind one `Arc`: axum clones the state for each request
/// (the auth middleware once more), and cloning these fields one by one (the NATS and
/// HTTP clients, the URLs) took more of a start request's CPU than the gateway's own
/// work.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub authenticator: Arc<dyn Authenticator>,
    /// Seals and opens browser session cookies.
    pub sessions: Sessions,
    pub portal: Portal,
    pub revocations: Revocations,
    pub control_plane: ControlPlane,
    pub hub: Hub,
    pub log: EventLog,
    pub quota: StreamQuota,
    pub keep_alive: Duration,
    /// The `retry:` field every stream starts with.
    pub retry_frame: bytes::Bytes,
}

pub fn router(state: AppState, config: &GatewayConfig, nats: async_nats::Client) -> Router {
    let api = Router::new()
        .route("/api/runs/{id}/stream", get(streams::stream_run))
        .route("/api/{*path}", any(proxy::forward))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ))
        // After the auth layer: signing in and out authenticate on their own.
        .route(
            "/api/session",
            post(session::sign_in)
                .get(session::show)
                .delete(session::sign_out),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    // Outermost, so that preflights (which carry no credentials) are answered.
    let api = match cors::layer(&config.cors_allowed_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let ready = readiness(nats, state.control_plane.clone());
    let router = Router::new()
        .merge(health_routes(ready))
        .merge(api)
        .route("/", get(portal::serve))
        .route("/{*path}", get(portal::serve))
        .with_state(state);
    with_common_layers(router, config.upstream_timeout() + TIMEOUT_MARGIN)
}

fn readiness(nats: async_nats::Client, control_plane: ControlPlane) -> ReadinessCheck {
    let nats = nats_ready(nats);
    Arc::new(move || {
        let nats = nats.clone();
        let control_plane = control_plane.clone();
        Box::pin(async move {
            nats().await?;
            control_plane.healthy().await.map_err(|e| {
                tracing::warn!(error = %e, "control-plane is not ready");
                "the control-plane does not answer its health check".to_owned()
            })
        })
    })
}
