//! The run event log: appending events to a run's subject with fencing, and reading a
//! run's last event.
//!
//! Every append carries `Nats-Msg-Id = <run_id>:<seq>` (a retried append is a no-op
//! within the duplicate window) and `Nats-Expected-Last-Subject-Sequence` (an append from
//! a writer whose view of the run is stale — a zombie executor, a manager racing a stop —
//! is rejected by the stream instead of forking the history). Ownership of the next
//! append moves between services as an [`EventPosition`].
//!
//! Several consecutive events of a run can be appended as one unit
//! ([`EventLog::append_events`]): one atomic batch, fenced as a whole on the position,
//! where the server and the stream allow it (nats-server 2.12+, `allow_atomic`),
//! otherwise one fenced append after another.

mod batch;

use batch::MAX_BATCH_EVENTS;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::RunEventHeader;
use switchyard_contracts::{RunEvent, RunEventKind, RunId, subjects};

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The run's history moved on since `position` was read: someone else appended.
    #[error(
        "run {run_id}: the event log moved past the expected position (another writer owns the run)"
    )]
    Fenced { run_id: RunId },
    #[error("run {run_id}: event {seq} of {size} bytes is larger than the stream allows")]
    TooLarge {
        run_id: RunId,
        size: usize,
        seq: u64,
    },
    /// The event could not be serialised (nothing was sent).
    #[error("run {run_id}: event {seq} ({event_type}) could not be serialised: {source}")]
    Encode {
        run_id: RunId,
        seq: u64,
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("run {run_id}: could not append an event: {source}")]
    Publish {
        run_id: RunId,
        #[source]
        source: jetstream::context::PublishError,
    },
    #[error("run {run_id}: could not append a batch of events: {message}")]
    Batch { run_id: RunId, message: String },
    #[error("run {run_id}: could not read the event log: {source}")]
    Read {
        run_id: RunId,
        #[source]
        source: stream::DirectGetError,
    },
    #[error("run {run_id}: stored event {stream_seq} is not a valid run event: {source}")]
    Corrupt {
        run_id: RunId,
        stream_seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("the RUN_EVENTS stream is not available: {0}")]
    Stream(#[source] jetstream::context::GetStreamError),
    #[error("run {run_id}: could not tail the event log: {message}")]
    Tail { run_id: RunId, message: String },
}

/// The last stored event of a run.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream_seq: u64,
    pub header: RunEventHeader,
    pub payload: Bytes,
}

impl StoredEvent {
    /// Where the event after this one goes.
    pub fn next_position(&self) -> EventPosition {
        EventPosition {
            next_seq: self.header.seq + 1,
            last_stream_seq: self.stream_seq,
        }
    }

    pub fn decode(&self) -> Result<RunEvent, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// An event serialized once, as it goes on the stream.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    event: RunEvent,
    payload: Bytes,
}

impl EncodedEvent {
    /// Serialises `event`; a failure is logged and returned, never an empty payload.
    pub fn new(event: RunEvent) -> Result<Self, EventLogError> {
        let payload = encode(&event)?;
        Ok(Self { event, payload })
    }

    pub fn event(&self) -> &RunEvent {
        &self.event
    }

    /// The serialized size in bytes.
    pub fn size(&self) -> usize {
        self.payload.len()
    }

    /// Whether `stored` is this very event (the same bytes).
    pub fn is(&self, stored: &StoredEvent) -> bool {
        stored.header.seq == self.event.seq && stored.payload == self.payload
    }
}

#[derive(Clone)]
pub struct EventLog {
    js: jetstream::Context,
    stream: stream::Stream,
    /// Whether a batch goes out as one atomic batch; decided at open, turned off if the
    /// stream later says atomic publish is disabled.
    atomic: Arc<AtomicBool>,
    /// The largest message (headers and payload) the server and the stream accept.
    max_message: usize,
    /// Append latency and batch sizes, when the service reports metrics.
    metrics: Option<AppendMetrics>,
}

#[derive(Clone)]
struct AppendMetrics {
    latency: crate::metrics::Histogram,
    batch: crate::metrics::Histogram,
}

/// `switchyard_event_append_seconds`: one append call, batch or single event.
const APPEND_SECONDS: &str = "switchyard_event_append_seconds";
/// `switchyard_event_append_batch_events`: events per append call.
const APPEND_BATCH: &str = "switchyard_event_append_batch_events";

impl EventLog {
    pub async fn open(js: jetstream::Context) -> Result<Self, EventLogError> {
        let stream = js
            .get_stream(subjects::RUN_EVENTS_STREAM)
            .await
            .map_err(EventLogError::Stream)?;
        let server = js.client().server_info();
        let config = &stream.cached_info().config;
        // Older servers drop the option they do not know, so the stream's own config
        // says it; the version check only guards against a server that echoes it back.
        let atomic =
            config.allow_atomic_publish && crate::nats::version_at_least(&server.version, (2, 12));
        let max_message = match usize::try_from(config.max_message_size) {
            Ok(stream_max) if stream_max > 0 => stream_max.min(server.max_payload),
            _ => server.max_payload,
        };
        if !atomic {
            tracing::info!(
                server = %server.version,
                "event batches are appended one event at a time (needs nats-server 2.12+ and allow_atomic on RUN_EVENTS)"
            );
        }
        Ok(Self {
            js,
            stream,
            atomic: Arc::new(AtomicBool::new(atomic)),
            max_message,
            metrics: None,
        })
    }

    /// Records each append's latency and size in `metrics`.
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        metrics.describe_histogram(
            APPEND_SECONDS,
            "Time to append to a run's event log (one call: an event or a batch), in seconds.",
        );
        metrics.describe_histogram(APPEND_BATCH, "Events per append to a run's event log.");
        self.metrics = Some(AppendMetrics {
            latency: metrics.histogram(APPEND_SECONDS, &[]),
            batch: metrics.histogram(APPEND_BATCH, &[]),
        });
        self
    }

    fn record_append(&self, started: std::time::Instant, events: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.latency.record(started.elapsed().as_secs_f64());
            metrics.batch.record(events as f64);
        }
    }

    /// Whether [`EventLog::append_events`] stores a batch with one atomic publish.
    pub fn batches_atomically(&self) -> bool {
        self.atomic.load(Ordering::Relaxed)
    }

    fn disable_batches(&self) {
        self.atomic.store(false, Ordering::Relaxed);
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Appends one event at `position` and advances it. Transient failures (timeouts,
    /// a NATS restart) are retried with the same message id, so a retry after a lost
    /// ack is deduplicated by the stream rather than stored twice.
    pub async fn append(
        &self,
        run_id: RunId,
        position: &mut EventPosition,
        kind: RunEventKind,
    ) -> Result<RunEvent, EventLogError> {
        let event = RunEvent::new(run_id, position.next_seq, kind);
        *position = self.append_event(&event, *position).await?;
        Ok(event)
    }

    /// Appends an already built event (its `seq` must be `position.next_seq`) and
    /// returns the position after it. Appending the same event again at the same
    /// position succeeds without storing it twice, so callers may retry freely.
    pub async fn append_event(
        &self,
        event: &RunEvent,
        position: EventPosition,
    ) -> Result<EventPosition, EventLogError> {
        let payload = encode(event)?;
        let started = std::time::Instant::now();
        let stream_seq = self
            .publish_raw(
                event.run_id,
                event.seq,
                event.kind.type_name(),
                position,
                payload,
            )
            .await?;
        self.record_append(started, 1);
        Ok(EventPosition {
            next_seq: event.seq + 1,
            last_stream_seq: stream_seq,
        })
    }

    /// Appends consecutive events (`events[0].seq` must be `position.next_seq`) and
    /// returns the position after the last. With atomic batches the events are stored
    /// all or none, fenced as a whole on `position`; otherwise one at a time, each
    /// fenced on the one before. Like [`EventLog::append_event`], appending the same
    /// events again at the same position succeeds without storing them twice.
    /// `TooLarge` names the event (by seq) that cannot be stored; then none of the
    /// events is stored.
    pub async fn append_events(
        &self,
        events: &[RunEvent],
        position: EventPosition,
    ) -> Result<EventPosition, EventLogError> {
        let encoded = events
            .iter()
            .cloned()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.append_encoded(&encoded, position).await
    }

    /// [`EventLog::append_events`] for events already serialized.
    pub async fn append_encoded(
        &self,
        events: &[EncodedEvent],
        mut position: EventPosition,
    ) -> Result<EventPosition, EventLogError> {
        // Checked before anything is sent, so that `TooLarge` means nothing is stored
        // (a half-sent batch would also hold one of the stream's few batch slots until
        // the server abandons it). A lone event gets the client's exact check instead.
        if events.len() > 1 {
            for encoded in events {
                if encoded.size() + batch::HEADER_ROOM > self.max_message {
                    return Err(EventLogError::TooLarge {
                        run_id: encoded.event.run_id,
                        size: encoded.size(),
                        seq: encoded.event.seq,
                    });
                }
            }
        }
        let started = std::time::Instant::now();
        let mut start = 0;
        while start < events.len() {
            let end = (start + MAX_BATCH_EVENTS).min(events.len());
            let chunk = &events[start..end];
            if chunk.len() > 1 && self.batches_atomically() {
                match self.publish_batch(chunk, position).await? {
                    batch::Outcome::Stored(next) => {
                        position = next;
                        start = end;
                        continue;
                    }
                    batch::Outcome::Partly { count, next } => {
                        position = next;
                        start += count;
                        continue;
                    }
                    batch::Outcome::Refused => {}
                }
            }
            start += self.publish_one_by_one(chunk, &mut position).await?;
        }
        self.record_append(started, events.len());
        Ok(position)
    }

    /// Appends each event fenced on the one before. A conflict whose stored side is
    /// our own events (an earlier attempt of this very append) skips past them.
    /// Returns how many events are stored.
    async fn publish_one_by_one(
        &self,
        events: &[EncodedEvent],
        position: &mut EventPosition,
    ) -> Result<usize, EventLogError> {
        let mut i = 0;
        while let Some(encoded) = events.get(i) {
            let event = &encoded.event;
            match self
                .publish_raw(
                    event.run_id,
                    event.seq,
                    event.kind.type_name(),
                    *position,
                    encoded.payload.clone(),
                )
                .await
            {
                Ok(stream_seq) => {
                    *position = EventPosition {
                        next_seq: event.seq + 1,
                        last_stream_seq: stream_seq,
                    };
                    i += 1;
                }
                Err(EventLogError::Fenced { run_id }) => {
                    match self
                        .ours_after_conflict(run_id, &events[i..], *position)
                        .await?
                    {
                        batch::Outcome::Stored(next) => {
                            *position = next;
                            i = events.len();
                        }
                        batch::Outcome::Partly { count, next } => {
                            *position = next;
                            i += count;
                        }
                        batch::Outcome::Refused => return Err(EventLogError::Fenced { run_id }),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(i)
    }

    async fn publish_raw(
        &self,
        run_id: RunId,
        seq: u64,
        event_type: &str,
        position: EventPosition,
        payload: Bytes,
    ) -> Result<u64, EventLogError> {
        let subject = subjects::run_events(&run_id);
        let mut headers = HeaderMap::new();
        headers.insert(subjects::HEADER_EVENT_TYPE, event_type);
        headers.insert(subjects::HEADER_RUN_ID, run_id.to_string().as_str());
        let size = payload.len();
        let attempt = || async {
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .headers(headers.clone())
                .message_id(subjects::event_msg_id(&run_id, seq))
                .expected_last_subject_sequence(position.last_stream_seq);
            self.js.send_publish(subject.clone(), publish).await?.await
        };
        let ack = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(8),
            )
            .when(|e: &jetstream::context::PublishError| is_transient(e.kind()))
            .notify(|e, after| {
                tracing::warn!(%run_id, seq, error = %e, ?after, "event append failed; retrying");
            })
            .await;
        match ack {
            Ok(ack) => Ok(ack.sequence),
            // The server checks the expected sequence before the duplicate window, so a
            // retry of an append whose ack was lost looks fenced. It is ours when the
            // stored last event is byte-for-byte the one we sent.
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                match self.last(run_id).await {
                    Ok(Some(last)) if last.header.seq == seq && last.payload == payload => {
                        Ok(last.stream_seq)
                    }
                    _ => Err(EventLogError::Fenced { run_id }),
                }
            }
            Err(source) if source.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(EventLogError::TooLarge { run_id, size, seq })
            }
            Err(source) => Err(EventLogError::Publish { run_id, source }),
        }
    }

    /// The run's last stored event, or `None` when the run has no events.
    pub async fn last(&self, run_id: RunId) -> Result<Option<StoredEvent>, EventLogError> {
        let subject = subjects::run_events(&run_id);
        let get = || async {
            self.stream
                .direct_get_last_for_subject(subject.clone())
                .await
        };
        let read = get
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(6),
            )
            .when(|e: &stream::DirectGetError| {
                matches!(
                    e.kind(),
                    stream::DirectGetErrorKind::TimedOut | stream::DirectGetErrorKind::Request
                )
            })
            .await;
        stored_event(run_id, read)
    }

    /// The run's first stored event, or `None` when the run has no events: one direct
    /// get, no retries (a reader that must not miss it tails the run).
    pub async fn first(&self, run_id: RunId) -> Result<Option<StoredEvent>, EventLogError> {
        let read = self
            .stream
            .direct_get_first_for_subject(subjects::run_events(&run_id))
            .await;
        stored_event(run_id, read)
    }

    /// Whether the event stored at `stream_seq` is `run_id`'s event number `seq`: how a
    /// cursor that does not name its run is checked. `false` as well when that event is
    /// gone (retention) and nothing can be checked.
    pub async fn holds(
        &self,
        run_id: RunId,
        seq: u64,
        stream_seq: u64,
    ) -> Result<bool, EventLogError> {
        let read = self.stream.direct_get(stream_seq).await;
        Ok(match stored_event(run_id, read) {
            Ok(Some(event)) => event.header.run_id == run_id && event.header.seq == seq,
            Ok(None) | Err(EventLogError::Corrupt { .. }) => false,
            Err(error) => return Err(error),
        })
    }

    /// Where the run's next event goes.
    pub async fn position(&self, run_id: RunId) -> Result<EventPosition, EventLogError> {
        Ok(self
            .last(run_id)
            .await?
            .map_or(EventPosition::EMPTY, |e| e.next_position()))
    }
}

impl EventLog {
    /// Reads the run's events in order, starting at stream sequence `from_stream_seq`
    /// (0 = the run's first event), and keeps following new ones. One ordered consumer:
    /// the server recreates it transparently after a gap or a NATS restart.
    pub async fn tail(
        &self,
        run_id: RunId,
        from_stream_seq: u64,
    ) -> Result<
        impl futures::Stream<Item = Result<StoredEvent, EventLogError>> + use<>,
        EventLogError,
    > {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        use futures::StreamExt;
        let tail_error = move |e: &dyn std::fmt::Display| EventLogError::Tail {
            run_id,
            message: e.to_string(),
        };
        let deliver_policy = if from_stream_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from_stream_seq,
            }
        };
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects::run_events(&run_id),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| tail_error(&e))?;
        let messages = consumer.messages().await.map_err(|e| tail_error(&e))?;
        Ok(messages.map(move |item| {
            let message = item.map_err(|e| tail_error(&e))?;
            let stream_seq = message.info().map_err(|e| tail_error(&e))?.stream_sequence;
            let header: RunEventHeader =
                serde_json::from_slice(&message.payload).map_err(|source| {
                    EventLogError::Corrupt {
                        run_id,
                        stream_seq,
                        source,
                    }
                })?;
            Ok(StoredEvent {
                stream_seq,
                header,
                payload: message.payload.clone(),
            })
        }))
    }
}

/// The bytes of a run event. Run events are plain data, so a failure here is a bug: it
/// is logged where it happens and returned, and nothing is appended (rather than an
/// empty payload).
fn encode(event: &RunEvent) -> Result<Bytes, EventLogError> {
    encode_value(event, event.run_id, event.seq, event.kind.type_name())
}

fn encode_value(
    value: &impl serde::Serialize,
    run_id: RunId,
    seq: u64,
    event_type: &'static str,
) -> Result<Bytes, EventLogError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|source| {
        crate::metrics::serialization_failed();
        tracing::error!(%run_id, seq, event_type, error = %source, "cannot serialise a run event");
        EventLogError::Encode {
            run_id,
            seq,
            event_type,
            source,
        }
    })
}

/// A direct get's answer as a stored event (not found: `None`).
fn stored_event(
    run_id: RunId,
    read: Result<async_nats::jetstream::message::StreamMessage, stream::DirectGetError>,
) -> Result<Option<StoredEvent>, EventLogError> {
    let message = match read {
        Ok(message) => message,
        Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EventLogError::Read { run_id, source }),
    };
    let header: RunEventHeader =
        serde_json::from_slice(&message.payload).map_err(|source| EventLogError::Corrupt {
            run_id,
            stream_seq: message.sequence,
            source,
        })?;
    Ok(Some(StoredEvent {
        stream_seq: message.sequence,
        header,
        payload: message.payload,
    }))
}

/// Whether an append is worth retrying. "No stream" included: a restarted nats-server
/// answers publishes with no responders until JetStream has loaded its streams from
/// disk (the fault suite's NATS restart failed runs on it), and `RUN_EVENTS` is
/// provisioned at start-up, so its absence is almost always that moment.
fn is_transient(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending
            | PublishErrorKind::StreamNotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_cannot_be_serialised_is_an_error_naming_the_event() {
        // JSON object keys must be strings: serde_json refuses this map.
        let unencodable = std::collections::HashMap::from([((1, 2), "x")]);
        let run_id = RunId::now_v7();
        let error = encode_value(&unencodable, run_id, 7, "message.delta").unwrap_err();
        assert!(
            matches!(&error, EventLogError::Encode { run_id: r, seq: 7, event_type: "message.delta", .. } if *r == run_id),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("event 7 (message.delta) could not be serialised"),
            "{message}"
        );
    }

    #[test]
    fn a_run_event_serialises_to_its_json() {
        let event = RunEvent::new(
            RunId::now_v7(),
            3,
            RunEventKind::MessageDelta(switchyard_contracts::event::MessageDelta {
                message_id: "m".into(),
                text: "hi".into(),
            }),
        );
        let encoded = EncodedEvent::new(event.clone()).unwrap();
        assert!(encoded.size() > 0);
        let back: RunEvent = serde_json::from_slice(&encode(&event).unwrap()).unwrap();
        assert_eq!(back, event);
    }
}
