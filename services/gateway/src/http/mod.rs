//! The gateway's HTTP surface: the route table, and the middleware and handlers in
//! this module's children.
//!
//! | route | auth | handler |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz` | public | platform health; ready = NATS connected and the control-plane's `/healthz` answers |
//! | `POST`, `GET`, `DELETE /api/session` | token in the body / any | [`session`]: sign in, who am I, sign out |
//! | `GET /api/openapi.json`, `GET /api/docs` | public | [`docs`]: the API description ([`crate::openapi`]) and its HTML page |
//! | `GET /api/runs/{id}/stream` | bearer or session cookie | [`streams::stream_run`] |
//! | `GET /api/health` | bearer or session cookie; admin or operator | [`health::report`]: the provider-runtime health report |
//! | `* /api/{*path}` | bearer or session cookie (+ CSRF header) | [`proxy::forward`] to the control-plane |
//! | `GET` anything else | public | the portal ([`crate::portal`]), `index.html` for client-side routes |
//!
//! [`auth::require_principal`] authenticates the `/api/*` routes but the session ones.
//! With `gateway.cors_allowed_origins` set, [`cors`] answers preflights of `/api/*`
//! before authentication.

pub(crate) mod auth;
mod cors;
mod docs;
mod health;
mod proxy;
pub(crate) mod quota;
mod session;
pub(crate) mod state;
mod streams;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get};
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::http::{
    ReadinessCheck, health_route_table, nats_ready, with_common_layers,
};
use switchyard_platform::routes::{Route, RouteTable};

use crate::config::GatewayConfig;
use crate::control_plane::ControlPlane;
use state::AppState;

/// The request deadline beyond the upstream one, so that a slow control-plane yields the
/// proxy's own JSON 503 rather than the timeout layer's bare one.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The gateway's own `/api/*` routes that need a principal (the forwarded ones are the
/// control-plane's).
fn authenticated() -> RouteTable<AppState> {
    RouteTable::new()
        .get("/api/runs/{id}/stream", streams::stream_run)
        .get("/api/health", health::report)
}

/// The gateway's own `/api/*` routes that authenticate on their own (session) or not
/// at all (the API description).
fn unauthenticated() -> RouteTable<AppState> {
    RouteTable::new()
        .post("/api/session", session::sign_in)
        .get("/api/session", session::show)
        .delete("/api/session", session::sign_out)
        .get("/api/openapi.json", docs::openapi_json)
        .get("/api/docs", docs::docs_page)
}

/// Every route the gateway answers itself but the portal's: the health routes and its
/// own `/api/*` ones (the rest of `/api/*` is the control-plane's, forwarded).
pub(crate) fn own_routes() -> Vec<Route> {
    // Only the list is wanted: the check is never called.
    let ready: ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    health_route_table::<AppState>(ready)
        .merge(authenticated())
        .merge(unauthenticated())
        .routes()
}

/// Every route, with the common layers around them. A new route of the API goes into
/// one of the tables above (and into `crate::openapi`), never straight onto this
/// router: the end-to-end tests hold the OpenAPI description to those tables.
///
/// `metrics` (`GET /metrics`) has its own token, so it is merged beside (not under) the
/// API's authentication, and inside the common layers like every other route.
pub(crate) fn router(
    state: AppState,
    config: &GatewayConfig,
    nats: async_nats::Client,
    metrics: Router<AppState>,
) -> Router {
    let api = authenticated()
        .into_router()
        .route("/api/{*path}", any(proxy::forward))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ))
        // After the auth layer: signing in and out authenticate on their own.
        .merge(unauthenticated().into_router())
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    // Outermost, so that preflights (which carry no credentials) are answered.
    let api = match cors::layer(&config.cors_allowed_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let ready = readiness(nats, state.control_plane.clone());
    let router = Router::new()
        .merge(health_route_table(ready).into_router())
        .merge(api)
        .merge(metrics)
        .route("/", get(portal))
        .route("/{*path}", get(portal))
        .with_state(state);
    with_common_layers(router, config.upstream_timeout() + TIMEOUT_MARGIN)
}

/// `GET` of any path no other route takes: the portal.
async fn portal(State(state): State<AppState>, request: Request) -> Response {
    state.portal.serve(request).await
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
