//! `GET /api/runs/{id}/stream`: a run's events as Server-Sent Events.
//!
//! A stream starts with `retry: <gateway.sse_retry_ms>` (how long `EventSource` waits
//! before reconnecting); then every frame is `id: <cursor>`, `event: <type>`, `data:
//! <event JSON>`. The cursor is opaque to clients ([`Cursor`]) and belongs to its run:
//! sending it back as `?cursor=` or `Last-Event-ID` (the query wins) resumes exactly
//! after that event, and a cursor of another run (or garbage) is 400 `invalid_cursor`,
//! whether the run is live or finished. The stream ends after the terminal
//! `run.completed` event, and a reconnect with the terminal event's cursor gets 204 No
//! Content, which makes a browser's `EventSource` stop retrying. Keep-alive comments
//! flow while the run is quiet.
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

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use serde::Deserialize;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;
use switchyard_contracts::RunId;
use switchyard_platform::http::ApiError;
use switchyard_platform::sse::{self, Cursor, ParsedCursor, RunTag};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use super::quota::{QuotaExceeded, StreamPermit};
use super::state::{AppState, OpenStream};
use crate::auth::Principal;
use crate::control_plane::RunLookup;
use crate::hub::{FeedItem, Subscription};
use crate::revocation::{AuthEpoch, StreamWatch};

/// SSE event name of the "history is missing" notice.
const RESET_EVENT: &str = "stream.reset";

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    cursor: Option<String>,
}

pub(super) async fn stream_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(epoch): Extension<AuthEpoch>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run_id = path
        .ok()
        .and_then(|Path(raw)| raw.parse::<RunId>().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_run_id", "the run id must be a UUID"))?;
    let query = query.map_err(|_| invalid_cursor())?;
    let cursor = requested_cursor(query.cursor.as_deref(), &headers, &RunTag::of(&run_id))?;
    let span = tracing::info_span!("run_stream", run_id = %run_id, principal = %principal.id);
    open_stream(state, principal, epoch, run_id, cursor)
        .instrument(span)
        .await
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "invalid cursor: use the `id` of an event received from this stream",
    )
}

/// The cursor from `?cursor=` or else `Last-Event-ID`, parsed for the run tagged `run`;
/// empty values count as absent.
fn requested_cursor(
    query: Option<&str>,
    headers: &HeaderMap,
    run: &RunTag,
) -> Result<Option<ParsedCursor>, ApiError> {
    let from_query = query.map(str::trim).filter(|c| !c.is_empty());
    let from_header = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| invalid_cursor())?.trim()),
        None => None,
    }
    .filter(|c| !c.is_empty());
    from_query
        .or(from_header)
        .map(|text| Cursor::parse(text, run).map_err(|_| invalid_cursor()))
        .transpose()
}

async fn open_stream(
    state: AppState,
    principal: Principal,
    epoch: AuthEpoch,
    run_id: RunId,
    cursor: Option<ParsedCursor>,
) -> Result<Response, ApiError> {
    let permit = state.quota.acquire(&principal.id).map_err(|e| {
        let code = match e {
            QuotaExceeded::Concurrent { .. } => "too_many_streams",
            QuotaExceeded::Rate { .. } => "stream_rate_limited",
        };
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, e.to_string())
    })?;

    // A new stream's feed opens its tail (a consumer round trip) while the control-plane
    // answers, which takes that round trip off the time to the first event. Nothing of
    // it is sent before the lookup allowed the principal to read the run; returning
    // early drops the subscription, and with the last one the feed stops. A resume
    // waits: it may well end in 204 (a browser reconnecting after the terminal event),
    // which needs no feed.
    let early = cursor.is_none().then(|| state.hub.subscribe(run_id, 0));

    // A resume needs the run's last event (to answer 204 past the terminal one): read
    // it while the control-plane answers. Nothing of it is sent before the lookup
    // allowed the principal to read the run.
    // The run this principal just started here needs no lookup: it exists, they may
    // read it, and it is too young to have lost its history.
    let granted = cursor.is_none() && state.revocations.may_read(&principal.id, run_id);
    // A cursor of the untagged earlier format is checked against the log: the event it
    // names must be this run's.
    let (lookup, last, legacy) = tokio::join!(
        async {
            if granted {
                Ok(RunLookup::Found { status: None })
            } else {
                state.control_plane.lookup_run(run_id, &principal).await
            }
        },
        async {
            match cursor {
                Some(_) => Some(state.log.last(run_id).await),
                None => None,
            }
        },
        async {
            match cursor {
                Some(ParsedCursor::Legacy(c)) => {
                    Some(state.log.holds(run_id, c.seq, c.stream_seq).await)
                }
                _ => None,
            }
        }
    );
    let status = match lookup {
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

    let cursor = match (cursor, legacy) {
        (Some(ParsedCursor::Run(c)), _) => Some(c),
        (Some(ParsedCursor::Legacy(c)), Some(Ok(true))) => Some(c),
        (Some(ParsedCursor::Legacy(_)), Some(Err(e))) => {
            return Err(ApiError::unavailable(
                "run events are unavailable; retry later",
                e,
            ));
        }
        (Some(ParsedCursor::Legacy(_)), _) => return Err(invalid_cursor()),
        (None, _) => None,
    };

    // A new stream of a live run needs no last event: that read (a round trip) is only
    // made when its answer can change the response.
    let last = match last {
        Some(read) => read,
        None if status.is_some_and(|s| s.is_terminal()) => state.log.last(run_id).await,
        None => Ok(None),
    }
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
    let open = state.sse.opened();
    open.sent(state.retry_frame.len());
    let connection = Connection {
        open,
        subscription: early.unwrap_or_else(|| state.hub.subscribe(run_id, after_seq)),
        _permit: permit,
        access: state.revocations.watch(&principal.id, epoch),
        idle: Box::pin(tokio::time::sleep(state.keep_alive)),
        keep_alive: state.keep_alive,
    };
    let retry = futures::stream::once(std::future::ready(Ok(state.retry_frame.clone())));
    let body =
        Body::from_stream(retry.chain(futures::stream::unfold(connection, Connection::next)));
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        // Reverse proxies (nginx) must not buffer the stream.
        (
            header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
    ];
    Ok((headers, body).into_response())
}

/// What one SSE connection holds while it is open: its read position in the run's
/// feed, its stream quota permit (released when hyper drops the body: the stream ended
/// or the client went away), the watch that ends it when the principal's access
/// changes (the client reconnects and is authorised again) and the keep-alive timer.
struct Connection {
    /// Counts the stream open while the body lives, and its bytes.
    open: OpenStream,
    subscription: Subscription,
    _permit: StreamPermit,
    access: StreamWatch,
    idle: Pin<Box<Sleep>>,
    keep_alive: Duration,
}

impl Connection {
    /// The next bytes to write: the feed's shared frames, or a keep-alive comment after
    /// `keep_alive` without any. `None` ends the body.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        let bytes = tokio::select! {
            biased;
            () = self.access.revoked() => {
                tracing::debug!("the principal's access changed: ending the stream");
                return None;
            }
            items = self.subscription.next_batch() => batch_bytes(items?),
            () = self.idle.as_mut() => sse::KEEP_ALIVE,
        };
        // Extending a pending deadline does not touch tokio's timer wheel.
        self.idle.as_mut().reset(Instant::now() + self.keep_alive);
        self.open.sent(bytes.len());
        Some((Ok(bytes), self))
    }
}

/// One batch as one body chunk. A single event (the live case) is its shared frame
/// itself; a longer batch (catching up, replay) is copied into one buffer so hyper
/// writes one chunk instead of one per event.
fn batch_bytes(items: Vec<FeedItem>) -> Bytes {
    if let [FeedItem::Event(event)] = items.as_slice() {
        return event.frame.clone();
    }
    let size = items
        .iter()
        .map(|item| match item {
            FeedItem::Event(event) => event.frame.len(),
            FeedItem::Reset { .. } => 96,
        })
        .sum();
    let mut buf = BytesMut::with_capacity(size);
    for item in items {
        buf.extend_from_slice(&frame(item));
    }
    buf.freeze()
}

fn frame(item: FeedItem) -> Bytes {
    match item {
        FeedItem::Event(event) => event.frame.clone(),
        // No `id:`: the client's last id stays the last event it really received.
        FeedItem::Reset {
            expected_seq,
            first_available_seq,
        } => sse::encode(
            None,
            RESET_EVENT,
            &serde_json::json!({
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
        let run = RunTag::of(&uuid::Uuid::now_v7());
        let a = Cursor {
            seq: 1,
            stream_seq: 5,
        };
        let b = Cursor {
            seq: 2,
            stream_seq: 9,
        };
        let chosen = requested_cursor(Some(&a.encode(&run)), &header(&b.encode(&run)), &run);
        assert_eq!(chosen.unwrap(), Some(ParsedCursor::Run(a)));
        let chosen = requested_cursor(None, &header(&b.encode(&run)), &run).unwrap();
        assert_eq!(chosen, Some(ParsedCursor::Run(b)));
        let chosen = requested_cursor(Some(""), &header(&b.encode(&run)), &run).unwrap();
        assert_eq!(chosen, Some(ParsedCursor::Run(b)));
        assert_eq!(
            requested_cursor(None, &HeaderMap::new(), &run).unwrap(),
            None
        );
    }

    #[test]
    fn garbage_and_foreign_cursors_are_invalid() {
        let run = RunTag::of(&uuid::Uuid::now_v7());
        let foreign = Cursor {
            seq: 30,
            stream_seq: 31,
        }
        .encode(&RunTag::of(&uuid::Uuid::now_v7()));
        for bad in ["x", "Yzk6MTox", "%%%", foreign.as_str()] {
            let err = requested_cursor(Some(bad), &HeaderMap::new(), &run).unwrap_err();
            assert_eq!(err.code, "invalid_cursor");
            let err = requested_cursor(None, &header(bad), &run).unwrap_err();
            assert_eq!(err.code, "invalid_cursor");
        }
    }
}
