//! `/api/runs` and `/api/run-queue`: starting, listing and reading runs, stopping them
//! and answering their human-loop requests.

use super::errors::{not_found, run_not_found};
use super::input::{optional_json, query_error, run_id};
use crate::actor::Actor;
use crate::control::ControlError;
use crate::idempotency;
use crate::queue::{self, QueueError};
use crate::runs::StartRunError;
use crate::state::AppState;
use crate::store;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use switchyard_contracts::api::{
    HumanLoopReplyRequest, HumanLoopReplyResponse, RunList, RunQueueView, RunView, StartRunRequest,
    StopRunRequest, StopRunResponse,
};
use switchyard_contracts::event::HumanLoopDecision;
use switchyard_contracts::{AppId, RunId, RunStatus};
use switchyard_platform::http::{ApiError, Json};
use switchyard_platform::routes::RouteTable;
use switchyard_platform::trace::{TRACEPARENT, TraceParent};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub(super) fn router() -> RouteTable<AppState> {
    RouteTable::new()
        .post("/api/runs/start", start)
        .get("/api/runs", list)
        .get("/api/runs/{run_id}", show)
        .post("/api/runs/{run_id}/stop", stop)
        .post("/api/runs/{run_id}/human-loop/reply", reply)
        .get("/api/run-queue", run_queue)
}

async fn start(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Json(request): Json<StartRunRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    // A follow-up continues a conversation the caller must be able to see.
    if let Some(parent) = request.parent_run_id
        && !may_see(&state, &actor, parent).await?
    {
        return Err(start_error(StartRunError::RunNotFound(parent)));
    }
    if let Some(conversation) = request.conversation_id
        && !may_see(&state, &actor, conversation).await?
    {
        return Err(start_error(StartRunError::ConversationNotFound(
            conversation,
        )));
    }
    let started = state
        .runs
        .start(request, &actor, idempotency_key, start_trace(&headers))
        .await
        .map_err(start_error)?;
    let mut response = (StatusCode::ACCEPTED, Json(started.response)).into_response();
    if started.replayed {
        response.headers_mut().insert(
            idempotency::REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The trace the run joins: the request's W3C `traceparent` when it is valid (one
/// header), else a new one (the spec says to restart a trace on a malformed header
/// rather than refuse the request).
fn start_trace(headers: &HeaderMap) -> TraceParent {
    let mut values = headers.get_all(TRACEPARENT).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => TraceParent::from_header(Some(value.as_bytes())),
        _ => TraceParent::from_header(None),
    }
}

/// The `Idempotency-Key` header, if the request has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(idempotency::HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if values.next().is_none() && idempotency::is_valid_key(key) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "the `Idempotency-Key` header must be given once, as 1-{} visible ASCII \
                 characters",
                idempotency::MAX_KEY_LEN
            ),
        )),
    }
}

fn start_error(e: StartRunError) -> ApiError {
    let message = e.to_string();
    match e {
        StartRunError::Invalid(_) => ApiError::bad_request("invalid_request", message),
        StartRunError::OptionNotAllowed { .. } => {
            ApiError::bad_request("option_not_allowed", message)
        }
        StartRunError::UnknownProvider(_) => ApiError::bad_request("unknown_provider", message),
        StartRunError::InvalidDuration(_) => ApiError::bad_request("invalid_duration", message),
        StartRunError::PromptTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_large", message)
        }
        StartRunError::CommandTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
        }
        StartRunError::AppNotFound(_) => not_found("app_not_found", message),
        StartRunError::ProfileNotFound(_) => not_found("profile_not_found", message),
        StartRunError::RunNotFound(_) => not_found("run_not_found", message),
        StartRunError::ConversationNotFound(_) => not_found("conversation_not_found", message),
        StartRunError::ConversationBusy { .. } => ApiError::conflict("conversation_busy", message),
        StartRunError::ConversationProviderMismatch { .. } => {
            ApiError::conflict("conversation_provider_mismatch", message)
        }
        StartRunError::ConversationAppMismatch { .. } => {
            ApiError::conflict("conversation_app_mismatch", message)
        }
        StartRunError::IdempotencyKeyReused { .. } => {
            ApiError::unprocessable("idempotency_key_reused", message)
        }
        StartRunError::EventLog { source, .. } => ApiError::unavailable(message, source),
        e @ StartRunError::Encode { .. } => ApiError::internal(e),
        StartRunError::Store(e) => e.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    app_id: Option<String>,
    provider: Option<String>,
    conversation_id: Option<String>,
    limit: Option<i64>,
    before: Option<String>,
}

/// Whether `actor` may see the run `run_id`; unknown runs count as visible so the
/// caller answers its usual "not found".
async fn may_see(state: &AppState, actor: &Actor, run_id: RunId) -> Result<bool, ApiError> {
    if actor.sees_everything() {
        return Ok(true);
    }
    Ok(match store::runs::owner(&state.pool, run_id).await? {
        Some((app_id, created_by)) => actor.may_see_run(app_id.as_ref(), created_by.as_deref()),
        None => true,
    })
}

/// Newest first; `before=<runId>` continues after the last run of the previous page.
/// Filters: `status`, `appId`, `provider` (a name or alias), `conversationId`.
/// Developers and viewers get the runs of their apps and their own app-less runs.
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("unknown status `{s}`"))
        })?),
    };
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(n) if n >= 1 => n.min(MAX_LIMIT),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`limit` must be at least 1",
            ));
        }
    };
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(RunId::parse_str(cursor).map_err(|_| {
            ApiError::bad_request("invalid_cursor", "`before` must be a run id from a listing")
        })?),
    };
    let app_id = match query.app_id.as_deref() {
        None | Some("") => None,
        Some(id) => Some(id.parse::<AppId>().map_err(|e| {
            ApiError::bad_request("invalid_request", format!("`appId` {}", e.rule()))
        })?),
    };
    let conversation_id = match query.conversation_id.as_deref() {
        None | Some("") => None,
        Some(id) => Some(RunId::parse_str(id).map_err(|_| {
            ApiError::bad_request("invalid_request", "`conversationId` must be a UUID")
        })?),
    };
    // An alias lists the runs stored under its canonical name.
    let provider = match query.provider.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            switchyard_contracts::ProviderName::parse(name)
                .ok_or_else(|| {
                    ApiError::bad_request("unknown_provider", format!("unknown provider `{name}`"))
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let filter = store::runs::RunFilter {
        status,
        app_id,
        provider,
        conversation_id,
        before,
        limit,
        app_scope: actor.app_scope().map(<[AppId]>::to_vec),
        visible_to: (!actor.sees_everything()).then(|| actor.id.clone()),
    };
    let runs = store::runs::list(&state.pool, &filter)
        .await?
        .into_iter()
        .map(|row| {
            let url = state.settings.stream_url(&row.run_id);
            row.into_view(url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RunList { runs }))
}

async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RunView>, ApiError> {
    let run_id = run_id(path)?;
    let row = store::runs::get(&state.pool, run_id)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
    let url = state.settings.stream_url(&run_id);
    let mut view = [row.into_view(url)?];
    crate::waiting::annotate(&state.js, state.nats_timeout, &mut view).await;
    let [view] = view;
    Ok(Json(view))
}

async fn stop(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<StopRunResponse>), ApiError> {
    let run_id = run_id(path)?;
    let body = body.map_err(switchyard_platform::http::body_rejection)?;
    let request: StopRunRequest = optional_json(&body)?;
    ensure_not_finished(&state, run_id).await?;
    let outcome = state
        .control
        .stop(run_id, request.reason)
        .await
        .map_err(control_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StopRunResponse {
            run_id,
            status: outcome.as_str().to_owned(),
        }),
    ))
}

async fn reply(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<HumanLoopReplyResponse>, ApiError> {
    let run_id = run_id(path)?;
    let request = reply_request(body)?;
    ensure_not_finished(&state, run_id).await?;
    state
        .control
        .reply(
            run_id,
            request.request_id,
            request.decision,
            request.message,
        )
        .await
        .map_err(control_error)?;
    Ok(Json(HumanLoopReplyResponse {
        run_id,
        accepted: true,
    }))
}

/// What `decision` accepts, in the words of every answer that refuses one.
const DECISIONS: &str = "`approve` or `deny` (`accept`, `allow` and `approved` also \
                         mean approve; `decline`, `reject` and `denied` also mean deny)";

/// The reply body, with a decision the API does not know answered 422
/// `invalid_decision` naming the accepted values (serde's own text lists variants and
/// aliases in its words, with line and column).
fn reply_request(body: serde_json::Value) -> Result<HumanLoopReplyRequest, ApiError> {
    if let Some(fields) = body.as_object() {
        let message = match fields.get("decision") {
            None => Some(format!("`decision` is required: {DECISIONS}")),
            Some(serde_json::Value::String(decision))
                if serde_json::from_value::<HumanLoopDecision>(decision.as_str().into())
                    .is_ok() =>
            {
                None
            }
            Some(serde_json::Value::String(decision)) => Some(format!(
                "unknown decision `{}`: `decision` must be {DECISIONS}",
                decision.chars().take(40).collect::<String>()
            )),
            Some(_) => Some(format!("`decision` must be a string: {DECISIONS}")),
        };
        if let Some(message) = message {
            return Err(ApiError::unprocessable("invalid_decision", message));
        }
    }
    switchyard_platform::http::decode_value(body)
}

/// Developers and viewers see only their runs in the listing; the counts are global.
async fn run_queue(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<RunQueueView>, ApiError> {
    queue::snapshot(
        &state.js,
        &state.pool,
        &state.settings,
        &actor,
        state.nats_timeout,
    )
    .await
    .map(Json)
    .map_err(|e| match e {
        QueueError::Store(e) => e.into(),
        e @ QueueError::Nats { .. } => {
            ApiError::unavailable("the run queue cannot be read right now", e)
        }
    })
}

/// 404 for a run we do not know, 409 for one the projection already saw finish (its
/// events may have aged out of the stream, so the event log alone cannot tell).
async fn ensure_not_finished(state: &AppState, run_id: RunId) -> Result<(), ApiError> {
    let row = store::runs::get(&state.pool, run_id)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
    if row.status.is_terminal() {
        return Err(control_error(ControlError::Finished));
    }
    Ok(())
}

fn control_error(e: ControlError) -> ApiError {
    let message = e.to_string();
    match e {
        ControlError::Finished => ApiError::conflict("run_finished", message),
        ControlError::NoPendingRequest(_) => ApiError::conflict("no_pending_request", message),
        ControlError::OwnerUnavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "owner_unavailable",
            message,
        ),
        ControlError::Rejected(_) => ApiError::conflict("control_rejected", message),
        e @ (ControlError::BadReply(_) | ControlError::Encode(_)) => ApiError::internal(e),
        e @ ControlError::EventLog(_) => {
            ApiError::unavailable("the run's event log cannot be reached right now", e)
        }
    }
}
