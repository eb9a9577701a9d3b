//! The control-plane's internal HTTP API (the gateway authenticates and forwards
//! `/api/*` here): the router, shared state, and the mapping of domain errors to the
//! shared `{"error":{"code","message"}}` shape.

mod apps;
mod human_loop;
mod principals;
mod providers;
mod runs;

use crate::config::ControlPlaneSettings;
use crate::control::RunControl;
use crate::runs::Runs;
use crate::store::StoreError;
use async_nats::jetstream;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use sqlx::PgPool;
use std::sync::Arc;
use switchyard_contracts::RunId;
use switchyard_platform::http::{ApiError, ReadinessCheck, health_routes, with_common_layers};

/// What every handler can reach, behind one `Arc`: axum clones the state for each
/// request, and cloning the fields one by one (the NATS client among them) cost more
/// than a lookup.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub runs: Arc<Runs>,
    pub control: Arc<RunControl>,
    pub settings: Arc<ControlPlaneSettings>,
    /// Bound on one read of NATS state for a request (the provider registry).
    pub nats_timeout: std::time::Duration,
}

/// The whole HTTP surface with the common layers and the body limit.
pub fn router(state: AppState, ready: ReadinessCheck) -> Router {
    let settings = state.settings.clone();
    let api = Router::new()
        .merge(apps::router())
        .merge(runs::router())
        .merge(human_loop::router())
        .merge(providers::router())
        .merge(principals::router())
        .with_state(state.clone());
    let router = api
        .merge(health_routes(ready))
        // On the whole router, so every route — whichever module adds it — is covered.
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::access::enforce,
        ))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    with_common_layers(router, settings.request_timeout())
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::unavailable("the database is unavailable; retry shortly", e)
        } else {
            ApiError::internal(e)
        }
    }
}

fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code, message)
}

/// The `{id}` of a run route.
fn run_id(path: Result<axum::extract::Path<String>, PathRejection>) -> Result<RunId, ApiError> {
    let axum::extract::Path(raw) =
        path.map_err(|_| ApiError::bad_request("invalid_run_id", "the run id is not valid"))?;
    RunId::parse_str(&raw)
        .map_err(|_| ApiError::bad_request("invalid_run_id", "the run id must be a UUID"))
}

/// A query string that did not deserialize.
fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_request", rejection.body_text())
}

/// A JSON body that may be absent (`POST …/stop` with no body stops without a reason).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::unprocessable("invalid_body", format!("the body has the wrong shape: {e}"))
        }
        _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
    })
}
