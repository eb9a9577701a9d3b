//! The control-plane's internal HTTP API (the gateway authenticates and forwards
//! `/api/*` here): the router of every resource's routes behind the access middleware,
//! the common layers and the body limit. Domain errors map to the shared
//! `{"error":{"code","message"}}` shape in each resource's module and in [`errors`].

mod access;
mod apps;
mod errors;
mod health;
mod human_loop;
mod input;
mod principals;
mod providers;
mod runs;

use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use switchyard_platform::http::{ReadinessCheck, health_routes, with_common_layers};
use switchyard_platform::routes::{Route, RouteTable};

/// Every resource's routes (the API without the health routes).
fn table() -> RouteTable<AppState> {
    apps::router()
        .merge(runs::router())
        .merge(human_loop::router())
        .merge(providers::router())
        .merge(principals::router())
}

/// The routes of [`router`] under `/api/`, the ones the gateway forwards.
pub(crate) fn api_routes() -> Vec<Route> {
    table()
        .routes()
        .into_iter()
        .filter(|route| route.path.starts_with("/api/"))
        .collect()
}

/// The whole HTTP surface with the common layers and the body limit.
/// `metrics` (`GET /metrics`) goes outside the access check: it has its own token.
pub(crate) fn router(state: AppState, ready: ReadinessCheck, metrics: Router) -> Router {
    let settings = state.settings.clone();
    let api = table()
        .into_router()
        .merge(health::router())
        .with_state(state.clone());
    let router = api
        .merge(health_routes(ready))
        // On the whole router, so every route — whichever module adds it — is covered.
        .layer(axum::middleware::from_fn_with_state(state, access::enforce))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .merge(metrics);
    with_common_layers(router, settings.request_timeout())
}
