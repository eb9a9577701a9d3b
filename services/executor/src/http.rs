//! The standalone provider-run API (debugging, and clients that talk to one executor
//! without the control-plane), plus `/healthz` and `/readyz`.
//!
//! | endpoint | answers |
//! |---|---|
//! | `POST /provider-runs/start` | 202 `{runId, streamUrl}`; 400 `unknown_provider`, `option_not_allowed` (a `providerOptions` key only the operator sets, e.g. `baseUrl`); 409 `run_exists`; 503 `executor_full` / `executor_draining` |
//! | `GET /provider-runs/{runId}/stream` | SSE of the run's events from JetStream (opening with `retry:`), resumable (`Last-Event-ID` or `?cursor=`), ending after `run.completed`; 204 when resuming at the terminal event; 400 `invalid_cursor` for another run's cursor or garbage; 404 for a run without events |
//! | `POST /provider-runs/{runId}/stop` | 202 `{runId, status: "stopping"}`; 404 when the run is not active here |
//! | `POST /provider-runs/{runId}/human-loop/reply` | 200 `{runId, accepted}`; 404; 409 `no_pending_request` |
//!
//! A started run goes through the same acceptance path as a dispatch from the
//! executor-manager, at the position of a run without events, so its log starts with
//! `run.dispatched` at seq 1.
//!
//! Whoever reaches this API can read any run's stream, answer its approvals, stop it
//! and start runs, so every `/provider-runs/*` request must carry
//! `Authorization: Bearer <executor.api_token>` (else 401 `unauthorized`); with no
//! token configured the API is off (403 `api_disabled`). The check runs before any
//! body is read. `/healthz` and `/readyz` answer without it: they return no data.

use crate::control;
use crate::dispatch;
use crate::executor::Executor;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use secrecy::SecretString;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::api::{
    HumanLoopReplyRequest, HumanLoopReplyResponse, ProviderRunStartRequest,
    ProviderRunStartResponse, StopRunResponse,
};
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::{DispatchOutcome, DispatchRequest, EventPosition};
use switchyard_contracts::provider::{operator_only_message, operator_only_option};
use switchyard_contracts::{RunCommand, RunId, WorkerId};
use switchyard_platform::http::{
    ApiError, Json, bearer_challenge, bearer_token, health_routes, nats_ready, secret_matches,
    with_common_layers,
};
use switchyard_platform::sse::{self, Cursor, InvalidCursor, ParsedCursor, RunTag};

/// Time a request may take before its response starts (SSE bodies are not cut by it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `worker_id` of dispatch requests made by this API.
const HTTP_WORKER_ID: &str = "executor-http";

/// `metrics` (`GET /metrics`) goes beside the health routes: it has its own token.
pub(crate) fn router(executor: Arc<Executor>, metrics: Router) -> Router {
    let max_body = executor.settings.max_body_bytes;
    let ready = nats_ready(executor.client.clone());
    let api = Router::new()
        .route("/provider-runs/start", post(start))
        .route("/provider-runs/{run_id}/stream", get(stream))
        .route("/provider-runs/{run_id}/stop", post(stop))
        .route(
            "/provider-runs/{run_id}/human-loop/reply",
            post(human_loop_reply),
        )
        .route_layer(middleware::from_fn_with_state(
            executor.settings.api_token.clone(),
            require_token,
        ))
        .with_state(executor)
        .merge(health_routes(ready))
        .merge(metrics)
        .layer(DefaultBodyLimit::max(max_body));
    with_common_layers(api, REQUEST_TIMEOUT)
}

/// Lets a request through only with the configured bearer token.
async fn require_token(
    State(token): State<Option<SecretString>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "api_disabled",
            "the provider-run API of this executor is off; set executor.api_token \
             (SWITCHYARD_EXECUTOR__API_TOKEN) to turn it on",
        )
        .into_response();
    };
    match bearer_token(request.headers()) {
        Some(given) if secret_matches(given.as_bytes(), &expected) => next.run(request).await,
        given => {
            tracing::debug!(
                path = %request.uri().path(),
                token_sent = given.is_some(),
                "provider-run API request refused"
            );
            bearer_challenge(
                "the provider-run API needs `Authorization: Bearer <executor.api_token>`",
            )
        }
    }
}

fn parse_run_id(text: &str) -> Result<RunId, ApiError> {
    RunId::parse_str(text)
        .map_err(|_| ApiError::bad_request("invalid_run_id", "the run id must be a UUID"))
}

fn stream_url(run_id: &RunId) -> String {
    format!("/provider-runs/{run_id}/stream")
}

/// `providerOptions.timeoutMs` or `providerOptions.runTimeoutMs`.
fn options_timeout(options: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    ["timeoutMs", "runTimeoutMs"]
        .iter()
        .find_map(|key| options.get(*key).and_then(serde_json::Value::as_u64))
}

async fn start(
    State(executor): State<Arc<Executor>>,
    Json(body): Json<ProviderRunStartRequest>,
) -> Result<Response, ApiError> {
    let unknown_provider = || {
        ApiError::bad_request(
            "unknown_provider",
            format!(
                "provider {:?} is not available on this executor",
                body.provider
            ),
        )
    };
    let provider = executor
        .providers
        .get(&body.provider)
        .filter(|p| p.availability().installed)
        .ok_or_else(unknown_provider)?;
    if let Some(key) = operator_only_option(body.provider_options.keys().map(String::as_str)) {
        return Err(ApiError::bad_request(
            "option_not_allowed",
            operator_only_message(&format!("providerOptions.{key}"), Some(provider.name())),
        ));
    }
    let run_id = body.run_id.unwrap_or_else(RunId::now_v7);
    // The literal is a valid worker id; were it not, this would be our bug, not the
    // caller's.
    let worker_id = WorkerId::try_from(HTTP_WORKER_ID).map_err(ApiError::internal)?;
    let timeout_ms = body
        .timeout_ms
        .or_else(|| options_timeout(&body.provider_options))
        .unwrap_or(executor.settings.default_timeout_ms);
    let request = DispatchRequest {
        command: RunCommand {
            run_id,
            provider: provider.name().as_str().to_owned(),
            model: body.model.clone(),
            prompt: body.prompt.clone(),
            app_id: None,
            execution_profile: None,
            provider_options: serde_json::Value::Object(body.provider_options.clone()),
            credential_env: body.credential_env.clone(),
            timeout_ms: body.timeout_ms,
            // Standalone runs are single turns; conversations go through the platform.
            conversation_id: None,
            preferred_executor: None,
            created_at: chrono::Utc::now(),
        },
        timeout_ms,
        worker_id,
        position: EventPosition::EMPTY,
    };
    let reply = dispatch::accept(&executor, request, None).await;
    let message = reply.message.unwrap_or_default();
    match reply.outcome {
        DispatchOutcome::Accepted => Ok((
            StatusCode::ACCEPTED,
            Json(ProviderRunStartResponse {
                run_id,
                stream_url: stream_url(&run_id),
            }),
        )
            .into_response()),
        DispatchOutcome::Full => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_full",
            "every slot of this executor is taken; retry later",
        )),
        DispatchOutcome::Draining => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_draining",
            "this executor is shutting down and takes no new runs",
        )),
        DispatchOutcome::UnsupportedProvider => Err(unknown_provider()),
        DispatchOutcome::Conflict => Err(ApiError::conflict(
            "run_exists",
            format!("run {run_id} already has events; start it with a new run id ({message})"),
        )),
        DispatchOutcome::Invalid => Err(ApiError::bad_request("invalid_request", message)),
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    cursor: Option<String>,
}

async fn stream(
    State(executor): State<Arc<Executor>>,
    Path(run_id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let query = query
        .map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))?
        .0;
    // EventSource sends Last-Event-ID on reconnect; it is newer than a cursor in the URL.
    let cursor_text = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("\u{0}").to_owned())
        .or(query.cursor);
    let tag = RunTag::of(&run_id);
    let invalid_cursor = |e: InvalidCursor| ApiError::bad_request("invalid_cursor", e.to_string());
    let cursor = cursor_text
        .map(|text| Cursor::parse(&text, &tag))
        .transpose()
        .map_err(invalid_cursor)?;

    let unavailable = |e| ApiError::unavailable("the event log is unavailable", e);
    // A cursor of the untagged earlier format must name an event of this run.
    let cursor = match cursor {
        Some(ParsedCursor::Run(cursor)) => Some(cursor),
        Some(ParsedCursor::Legacy(cursor)) => {
            let held = executor
                .log
                .holds(run_id, cursor.seq, cursor.stream_seq)
                .await
                .map_err(unavailable)?;
            if !held {
                return Err(invalid_cursor(InvalidCursor));
            }
            Some(cursor)
        }
        None => None,
    };
    let last = executor
        .log
        .last(run_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::not_found(format!("run {run_id} has no events")))?;
    if let Some(cursor) = cursor
        && last.header.is_terminal()
        && cursor.stream_seq >= last.stream_seq
    {
        // Nothing follows the terminal event: 204 makes EventSource stop reconnecting.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let from = cursor.map_or(0, |c| c.stream_seq + 1);
    let tail = executor.log.tail(run_id, from).await.map_err(unavailable)?;
    let keep_alive = Duration::from_secs(executor.settings.keep_alive_secs);
    let frames = futures::stream::unfold((Box::pin(tail), false), move |(mut tail, done)| async move {
        if done {
            return None;
        }
        // A quiet run gets a keep-alive comment; giving up on `next` loses nothing, the
        // tail keeps its place.
        let Ok(next) = tokio::time::timeout(keep_alive, tail.next()).await else {
            return Some((Ok::<_, Infallible>(sse::KEEP_ALIVE), (tail, false)));
        };
        match next {
            Some(Ok(event)) => {
                let terminal = event.header.is_terminal();
                Some((Ok(sse::frame(&event, &tag)), (tail, terminal)))
            }
            Some(Err(error)) => {
                // The client resumes from its last id; nothing is lost.
                tracing::warn!(run_id = %run_id, %error, "run event tail failed; ending the stream");
                None
            }
            None => None,
        }
    })
    .take_until(executor.http_stop.clone().cancelled_owned());
    let retry = futures::stream::once(std::future::ready(Ok(sse::retry(sse::RETRY_MS))));
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    Ok((headers, Body::from_stream(retry.chain(frames))).into_response())
}

async fn stop(
    State(executor): State<Arc<Executor>>,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let reply = control::apply_here(&executor, run_id, ControlRequest::Stop { reason: None }).await;
    match reply.outcome {
        ControlOutcome::Accepted => Ok((
            StatusCode::ACCEPTED,
            Json(StopRunResponse {
                run_id,
                status: "stopping".to_owned(),
            }),
        )
            .into_response()),
        _ => Err(ApiError::not_found(format!(
            "run {run_id} is not active on this executor"
        ))),
    }
}

async fn human_loop_reply(
    State(executor): State<Arc<Executor>>,
    Path(run_id): Path<String>,
    Json(body): Json<HumanLoopReplyRequest>,
) -> Result<Response, ApiError> {
    let run_id = parse_run_id(&run_id)?;
    let request = ControlRequest::HumanLoopReply {
        request_id: body.request_id,
        decision: body.decision,
        message: body.message,
    };
    let reply = control::apply_here(&executor, run_id, request).await;
    match reply.outcome {
        ControlOutcome::Accepted => Ok(Json(HumanLoopReplyResponse {
            run_id,
            accepted: true,
        })
        .into_response()),
        ControlOutcome::NoPendingRequest => Err(ApiError::conflict(
            "no_pending_request",
            reply
                .message
                .unwrap_or_else(|| "the run has no pending human-loop request".to_owned()),
        )),
        _ => Err(ApiError::not_found(format!(
            "run {run_id} is not active on this executor"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_options_timeouts_are_read_in_order() {
        let options = serde_json::json!({"runTimeoutMs": 5, "timeoutMs": 7});
        let serde_json::Value::Object(map) = options else {
            unreachable!()
        };
        assert_eq!(options_timeout(&map), Some(7));
        assert_eq!(options_timeout(&serde_json::Map::new()), None);
    }
}
