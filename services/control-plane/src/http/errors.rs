//! Errors every resource answers the same way.

use crate::store::StoreError;
use axum::http::StatusCode;
use switchyard_contracts::RunId;
use switchyard_platform::http::ApiError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::unavailable("the database is unavailable; retry shortly", e)
        } else {
            ApiError::internal(e)
        }
    }
}

pub(super) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code, message)
}

pub(super) fn run_not_found(run_id: RunId) -> ApiError {
    not_found("run_not_found", format!("no run {run_id}"))
}
