//! Reading what a request carries beside its JSON body: path ids, query strings and
//! optional bodies, each refused with the API's error shape.

use axum::extract::Path;
use axum::extract::rejection::{PathRejection, QueryRejection};
use switchyard_contracts::RunId;
use switchyard_platform::http::ApiError;

/// The `{id}` of a run route.
pub(super) fn run_id(path: Result<Path<String>, PathRejection>) -> Result<RunId, ApiError> {
    let Path(raw) =
        path.map_err(|_| ApiError::bad_request("invalid_run_id", "the run id is not valid"))?;
    RunId::parse_str(&raw)
        .map_err(|_| ApiError::bad_request("invalid_run_id", "the run id must be a UUID"))
}

/// A query string that did not deserialize.
pub(super) fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_request", rejection.body_text())
}

/// A JSON body that may be absent (`POST …/stop` with no body stops without a reason).
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
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
