//! One append of several consecutive events of a run, stored as a unit: nats-server
//! 2.12's atomic batch publish (ADR-50, stream option `allow_atomic`).
//!
//! What the pinned server (2.12.8) does, checked against it:
//! * `Nats-Expected-Last-Subject-Sequence` goes on the first message only (on a later
//!   one the batch is rejected); it is checked against the stream as it was before the
//!   batch, so a stale position rejects the whole batch ("wrong last sequence", 10071).
//! * Every message keeps its `Nats-Msg-Id`. A batch holding an id the stream already
//!   stored is rejected whole (10201) — this is what a retry after a lost commit ack
//!   gets, before any sequence check, so a conflict is examined like the single append's.
//! * At most 1,000 messages per batch (10199); no byte limit beyond each message's own.
//! * Only the commit (the last message) is a request; its ack carries the last
//!   message's stream sequence, the batch id and the count.

use super::{EncodedEvent, EventLog, EventLogError};
use async_nats::{HeaderMap, RequestErrorKind, header};
use backon::{ExponentialBuilder, Retryable as _};
use std::time::Duration;
use switchyard_contracts::{RunId, dispatch::EventPosition, subjects};

/// The server's limit on messages in one atomic batch.
pub(super) const MAX_BATCH_EVENTS: usize = 1000;

const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// JetStream API error codes the batch path tells apart.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// "wrong last sequence" without a sequence: the expected-sequence check could not be
/// made (another expectation on the subject in flight).
const WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
const ATOMIC_PUBLISH_DISABLED: u64 = 10174;
const DUPLICATE_MESSAGE_ID: u64 = 10201;

/// How long the commit's ack may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Sends of one batch in all, the first included.
const ATTEMPTS: usize = 8;

/// Delays between sends after a transient failure: 50 ms doubling up to 2 s, at most
/// [`ATTEMPTS`] sends. Every send of the batch carries the same message ids, so a
/// retry after a lost commit ack is recognised (see [`EventLog::ours_after_conflict`]).
fn retry_delays() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(ATTEMPTS - 1)
}

#[derive(serde::Deserialize)]
struct BatchAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// What one batch publish came to.
pub(super) enum Outcome {
    /// Every event is stored; the position after the last.
    Stored(EventPosition),
    /// The first `count` events are stored (ours, from an earlier attempt); the rest
    /// still go at `next`.
    Partly { count: usize, next: EventPosition },
    /// The server refused the batch as a batch (atomic publish off, too many batches in
    /// flight, ...): nothing is stored, the events go one at a time.
    Refused,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("rejected with code {code}: {description}")]
    Rejected { code: u64, description: String },
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Failed(String),
}

impl EventLog {
    /// Publishes `events` (consecutive, `events[0].seq == position.next_seq`, at most
    /// [`MAX_BATCH_EVENTS`]) as one atomic batch fenced on `position`.
    pub(super) async fn publish_batch(
        &self,
        events: &[EncodedEvent],
        position: EventPosition,
    ) -> Result<Outcome, EventLogError> {
        let Some(last) = events.last() else {
            return Ok(Outcome::Stored(position));
        };
        let run_id = last.event.run_id;
        let last_seq = last.event.seq;
        let messages = self.batch_headers(run_id, events, position);
        let subject = subjects::run_events(&run_id);
        let send = || self.send_batch(&subject, &messages, events);
        let reply = send
            .retry(retry_delays())
            .when(|error| matches!(error, SendError::Transient(_)))
            .notify(|error, delay| {
                tracing::warn!(%run_id, first_seq = position.next_seq, events = events.len(), %error, ?delay, "batch append failed; retrying");
            })
            .await;
        match reply {
            Ok(stream_seq) => Ok(Outcome::Stored(EventPosition {
                next_seq: last_seq + 1,
                last_stream_seq: stream_seq,
            })),
            Err(SendError::Rejected {
                code: WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CONSTANT | DUPLICATE_MESSAGE_ID,
                ..
            }) => self.ours_after_conflict(run_id, events, position).await,
            Err(SendError::Rejected { code, description }) => {
                if code == ATOMIC_PUBLISH_DISABLED {
                    self.disable_batches();
                }
                tracing::warn!(%run_id, code, %description, "batch append refused; appending one at a time");
                Ok(Outcome::Refused)
            }
            Err(SendError::Transient(message) | SendError::Failed(message)) => {
                Err(EventLogError::Batch { run_id, message })
            }
        }
    }

    /// Each message's headers.
    fn batch_headers(
        &self,
        run_id: RunId,
        events: &[EncodedEvent],
        position: EventPosition,
    ) -> Vec<HeaderMap> {
        let batch_id = uuid::Uuid::now_v7().to_string();
        let run = run_id.to_string();
        let last = events.len().saturating_sub(1);
        let mut messages = Vec::with_capacity(events.len());
        for (i, encoded) in events.iter().enumerate() {
            let event = &encoded.event;
            let mut headers = HeaderMap::new();
            headers.insert(subjects::HEADER_EVENT_TYPE, event.kind.type_name());
            headers.insert(subjects::HEADER_RUN_ID, run.as_str());
            headers.insert(
                header::NATS_MESSAGE_ID,
                subjects::event_msg_id(&run_id, event.seq).as_str(),
            );
            headers.insert(BATCH_ID, batch_id.as_str());
            headers.insert(BATCH_SEQUENCE, (i + 1).to_string().as_str());
            if i == 0 {
                headers.insert(
                    header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    position.last_stream_seq.to_string().as_str(),
                );
            }
            if i == last {
                headers.insert(BATCH_COMMIT, "1");
            }
            messages.push(headers);
        }
        messages
    }

    /// One attempt: every message but the last without a reply, the last as a request
    /// for the batch's ack. Returns the stream sequence of the last message.
    async fn send_batch(
        &self,
        subject: &str,
        messages: &[HeaderMap],
        events: &[EncodedEvent],
    ) -> Result<u64, SendError> {
        let client = self.js.client();
        let Some((commit, rest)) = messages.split_last() else {
            return Err(SendError::Failed("an empty batch".into()));
        };
        for (headers, encoded) in rest.iter().zip(events) {
            client
                .publish_with_headers(subject.to_owned(), headers.clone(), encoded.payload.clone())
                .await
                .map_err(|e| SendError::Transient(e.to_string()))?;
        }
        let payload = events.last().map(|e| e.payload.clone()).unwrap_or_default();
        let request = async_nats::Request::new()
            .headers(commit.clone())
            .payload(payload)
            .timeout(Some(COMMIT_TIMEOUT));
        let reply = client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut | RequestErrorKind::NoResponders => {
                    SendError::Transient(e.to_string())
                }
                _ => SendError::Failed(e.to_string()),
            })?;
        let ack: BatchAck = serde_json::from_slice(&reply.payload)
            .map_err(|e| SendError::Failed(format!("unreadable batch ack: {e}")))?;
        match ack.error {
            Some(error) => Err(SendError::Rejected {
                code: error.err_code,
                description: error.description,
            }),
            None => Ok(ack.seq),
        }
    }

    /// After a conflict: how much of the batch the run's last stored event shows to be
    /// ours already. Byte-for-byte equal to the event we sent at that seq, stored after
    /// `position`: an earlier attempt of ours whose ack was lost (batches are stored
    /// whole, so everything before it in the batch is stored too). Anything else is
    /// another writer.
    pub(super) async fn ours_after_conflict(
        &self,
        run_id: RunId,
        events: &[EncodedEvent],
        position: EventPosition,
    ) -> Result<Outcome, EventLogError> {
        let fenced = EventLogError::Fenced { run_id };
        let Ok(Some(last)) = self.last(run_id).await else {
            return Err(fenced);
        };
        let Some(index) = last.header.seq.checked_sub(position.next_seq) else {
            return Err(fenced);
        };
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        if last.stream_seq <= position.last_stream_seq
            || events.get(index).is_none_or(|sent| !sent.is(&last))
        {
            return Err(fenced);
        }
        tracing::info!(%run_id, seq = last.header.seq, "batch conflict is our own earlier append");
        let next = last.next_position();
        if index + 1 == events.len() {
            Ok(Outcome::Stored(next))
        } else {
            Ok(Outcome::Partly {
                count: index + 1,
                next,
            })
        }
    }
}

/// Room for an event's headers (ours and the batch's: under 400 bytes on the wire) when
/// checking a payload against the server's message limit before sending.
pub(super) const HEADER_ROOM: usize = 512;
