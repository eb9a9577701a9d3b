//! `GET /api/health[?provider=P][&probe=true]`: the provider-runtime health report
//! ([`crate::health`]), for admins and operators. Always 200 when the report could be
//! made: its `readinessCategory` is the answer, whatever it is.

use super::state::AppState;
use crate::auth::{Principal, Role};
use crate::health::HealthRequest;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use switchyard_contracts::ProviderName;
use switchyard_contracts::health::HealthReport;
use switchyard_platform::http::{ApiError, Json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthQuery {
    provider: Option<String>,
    #[serde(default)]
    probe: bool,
}

pub(super) async fn report(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> Result<Json<HealthReport>, ApiError> {
    if !matches!(principal.role, Role::Admin | Role::Operator) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only admins and operators may read the health report",
        ));
    }
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "{}; the parameters are provider=<name> and probe=true|false",
                e.body_text()
            ),
        )
    })?;
    let provider = match query.provider.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(ProviderName::parse(name).ok_or_else(|| {
            let known: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
            ApiError::bad_request(
                "unknown_provider",
                format!("unknown provider `{name}`; known: {}", known.join(", ")),
            )
        })?),
    };
    let request = HealthRequest {
        provider,
        probe: query.probe,
    };
    Ok(Json(state.health.report(&principal, &request).await))
}
