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

/// The whole HTTP surface with the common layers and the body limit.
pub(crate) fn router(state: AppState, ready: ReadinessCheck) -> Router {
    let settings = state.settings.clone();
    let api = Router::new()
        .merge(apps::router())
        .merge(runs::router())
        .merge(human_loop::router())
        .merge(providers::router())
        .merge(principals::router())
        .merge(health::router())
        .with_state(state.clone());
    let router = api
        .merge(health_routes(ready))
        // On the whole router, so every route — whichever module adds it — is covered.
        .layer(axum::middleware::from_fn_with_state(state, access::enforce))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    with_common_layers(router, settings.request_timeout())
}
