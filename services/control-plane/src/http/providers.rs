//! `/api/providers`: the provider registry (see [`crate::providers`]).

use crate::providers::{self, RegistryError};
use crate::state::AppState;
use axum::extract::State;
use switchyard_contracts::api::ProviderList;
use switchyard_platform::http::{ApiError, Json};
use switchyard_platform::routes::RouteTable;

pub(super) fn router() -> RouteTable<AppState> {
    RouteTable::new().get("/api/providers", list)
}

async fn list(State(state): State<AppState>) -> Result<Json<ProviderList>, ApiError> {
    providers::list(
        &state.js,
        state.nats_timeout,
        state.settings.default_provider,
    )
    .await
    .map(Json)
    .map_err(|e| match e {
        e @ (RegistryError::Nats { .. } | RegistryError::TimedOut { .. }) => {
            ApiError::unavailable("executor presence cannot be read right now", e)
        }
    })
}
