//! `GET /api/runs/{id}/stream`: a run's events as Server-Sent Events.
//!
//! Every frame is `id: <cursor>`, `event: <type>`, `data: <event JSON>`. The cursor is
//! opaque to clients ([`Cursor`]); sending it back as `?cursor=` or `Last-Event-ID`
//! (the query wins) resumes exactly after that event. The stream ends after the
//! terminal `run.completed` event, and a reconnect with the terminal event's cursor gets
//! 204 No Content, which makes a browser's `EventSource` stop retrying. Keep-alive
//! comments flow while the run is quiet.
//!
//! When the stream's retention has removed events the cursor points into (or, without
//! a cursor, the run's first events), a `stream.reset` event with data
//! `{"expectedSeq": n, "firstAvailableSeq": m}` precedes the first available event. If
//! a finished run has no stored events left at all, the answer is 410
//! `history_expired`.
//!
//! Before streaming, the gateway asks the control-plane whether the run exists (and,
//! with RBAC, whether the principal may read it). The events themselves come from the
//! [`Hub`](crate::hub::Hub), never from the control-plane.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use switchyard_contracts::RunId;
use switchyard_platform::http::ApiError;
use switchyard_platform::sse::{self, Cursor};
use tracing::Instrument;

use crate::auth::Principal;
use crate::control_plane::RunLookup;
use crate::hub::FeedItem;
use crate::routes::AppState;

/// SSE event name of the "history is missing" notice.
pub const RESET_EVENT: &str = "stream.reset";

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    cursor: Option<String>,
}

pub async fn stream_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run_id = path
        .ok()
        .and_then(|Path(raw)| raw.parse::<RunId>().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_run_id", "the run id must be a UUID"))?;
    let query = query.map_err(|_| invalid_cursor())?;
    let cursor = requested_cursor(query.cursor.as_deref(), &headers)?;
    let span = tracing::info_span!("run_stream", run_id = %run_id, principal = %principal.id);
    open_stream(state, principal, run_id, cursor)
        .instrument(span)
        .await
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "invalid cursor: use the `id` of an event received from this stream",
    )
}

/// The cursor from `?cursor=` or else `Last-Event-ID`; empty values count as absent.
fn requested_cursor(query: Option<&str>, headers: &HeaderMap) -> Result<Option<Cursor>, ApiError> {
    let from_query = query.map(str::trim).filter(|c| !c.is_empty());
    let from_header = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| invalid_cursor())?.trim()),
        None => None,
    }
    .filter(|c| !c.is_empty());
    from_query
        .or(from_header)
        .map(|text| Cursor::decode(text).map_err(|_| invalid_cursor()))
        .transpose()
}

async fn open_stream(
    state: AppState,
    principal: Principal,
    run_id: RunId,
    cursor: Option<Cursor>,
) -> Result<Response, ApiError> {
    let permit = state.quota.acquire(&principal.id).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            e.to_string(),
        )
    })?;

    let status = match state.control_plane.lookup_run(run_id, &principal).await {
        Ok(RunLookup::Found { status }) => status,
        Ok(RunLookup::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "run_not_found",
                format!("run {run_id} does not exist"),
            ));
        }
        Ok(RunLookup::Forbidden) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "you may not read this run",
            ));
        }
        Err(e) => {
            return Err(ApiError::unavailable(
                "the control-plane is unavailable; retry later",
                e,
            ));
        }
    };

    let last = state
        .log
        .last(run_id)
        .await
        .map_err(|e| ApiError::unavailable("run events are unavailable; retry later", e))?;
    match (&last, cursor) {
        (Some(last), Some(cursor))
            if last.header.is_terminal() && cursor.seq >= last.header.seq =>
        {
            tracing::debug!(run_id = %run_id, seq = cursor.seq, "resume past the terminal event");
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        (None, _) if status.is_some_and(|s| s.is_terminal()) => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "history_expired",
                "the run has finished and its events are no longer stored",
            ));
        }
        _ => {}
    }

    let after_seq = cursor.map_or(0, |c| c.seq);
    tracing::debug!(run_id = %run_id, after_seq, "streaming run events");
    let subscription = state.hub.subscribe(run_id, after_seq);
    // The permit travels with the body: it is released when the stream ends or the
    // client goes away and hyper drops the body.
    let frames = futures::stream::unfold(
        (subscription, permit),
        |(mut subscription, permit)| async move {
            let items = subscription.next_batch().await?;
            Some((items, (subscription, permit)))
        },
    )
    .flat_map(|items| {
        futures::stream::iter(
            items
                .into_iter()
                .map(|item| Ok::<_, Infallible>(frame(item))),
        )
    });

    let mut response = Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(state.keep_alive))
        .into_response();
    // Reverse proxies (nginx) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn frame(item: FeedItem) -> Event {
    match item {
        FeedItem::Event(event) => sse::frame(&event),
        // No `id:`: the client's last id stays the last event it really received.
        FeedItem::Reset {
            expected_seq,
            first_available_seq,
        } => Event::default().event(RESET_EVENT).data(
            serde_json::json!({
                "expectedSeq": expected_seq,
                "firstAvailableSeq": first_available_seq,
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_query_cursor_wins_over_last_event_id() {
        let a = Cursor {
            seq: 1,
            stream_seq: 5,
        };
        let b = Cursor {
            seq: 2,
            stream_seq: 9,
        };
        let chosen = requested_cursor(Some(&a.encode()), &header(&b.encode())).unwrap();
        assert_eq!(chosen, Some(a));
        let chosen = requested_cursor(None, &header(&b.encode())).unwrap();
        assert_eq!(chosen, Some(b));
        let chosen = requested_cursor(Some(""), &header(&b.encode())).unwrap();
        assert_eq!(chosen, Some(b));
        assert_eq!(requested_cursor(None, &HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn garbage_cursors_are_invalid() {
        for bad in ["x", "Yzk6MTox", "%%%"] {
            let err = requested_cursor(Some(bad), &HeaderMap::new()).unwrap_err();
            assert_eq!(err.code, "invalid_cursor");
            let err = requested_cursor(None, &header(bad)).unwrap_err();
            assert_eq!(err.code, "invalid_cursor");
        }
    }
}
