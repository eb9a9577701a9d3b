//! `GET /api/runs/{id}/human-loop`: the run's human-loop requests as the projection
//! stored them, so any client — after any restart — can see what waits for an answer
//! (and answer it with `POST …/human-loop/reply`).

use super::errors::run_not_found;
use super::input::{query_error, run_id};
use crate::state::AppState;
use crate::store;
use crate::store::columns::HumanLoopStatus;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use switchyard_contracts::api::{HumanLoopRequestList, HumanLoopRequestView};
use switchyard_platform::http::{ApiError, Json};
use switchyard_platform::routes::RouteTable;

pub(super) fn router() -> RouteTable<AppState> {
    RouteTable::new().get("/api/runs/{run_id}/human-loop", list)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListQuery {
    /// `pending` or `resolved`; absent lists every request.
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<HumanLoopRequestList>, ApiError> {
    let run_id = run_id(path)?;
    let Query(query) = query.map_err(query_error)?;
    let only = match query.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(HumanLoopStatus::Pending),
        Some("resolved") => Some(HumanLoopStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("unknown status `{other}` (pending or resolved)"),
            ));
        }
    };
    if store::runs::get(&state.pool, run_id).await?.is_none() {
        return Err(run_not_found(run_id));
    }
    let rows = store::human_loop::list(&state.pool, run_id, only == Some(HumanLoopStatus::Pending))
        .await?;
    let requests = rows
        .into_iter()
        .filter(|row| only.is_none_or(|s| row.status == s))
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok(Json(HumanLoopRequestList { requests }))
}

fn view(row: store::human_loop::Row) -> Result<HumanLoopRequestView, store::StoreError> {
    Ok(HumanLoopRequestView {
        request_id: store::stored_id("human-loop request id", row.request_id)?,
        kind: row.kind.unwrap_or_default(),
        prompt: row.prompt.unwrap_or_default(),
        details: row.details.unwrap_or(serde_json::Value::Null),
        status: row.status.as_str().to_owned(),
        decision: row.decision.map(Into::into),
        resolved_by: row.resolved_by.map(Into::into),
        requested_at: row.requested_at,
        resolved_at: row.resolved_at,
    })
}
