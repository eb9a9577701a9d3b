//! The SSE wire bytes of run events, encoded once per event and shared by every client.
//!
//! A run feed encodes each event's frame when it stores the event; every subscriber
//! writes the same [`Bytes`] (a reference count, no copy), so fan-out to N clients costs
//! N socket writes, not N cursor encodings, UTF-8 checks and buffers. The bytes are
//! exactly what `axum::response::sse::Event` would produce for the same fields
//! (`id: `, `event: `, `data: ` lines, a blank line), which the tests pin.

use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use switchyard_platform::events::StoredEvent;
use switchyard_platform::sse::{Cursor, RunTag};

/// SSE comment sent while a stream is quiet (axum's default keep-alive).
pub(crate) const KEEP_ALIVE: Bytes = Bytes::from_static(b":\n\n");

/// A stored run event as the gateway keeps it: what ordering needs, and its frame.
#[derive(Debug)]
pub(crate) struct FeedEvent {
    pub(crate) seq: u64,
    pub(crate) terminal: bool,
    pub(crate) frame: Bytes,
}

impl FeedEvent {
    /// `run` is the tag of the event's run (computed once per feed).
    pub(crate) fn new(event: &StoredEvent, run: &RunTag) -> Arc<Self> {
        let cursor = Cursor {
            seq: event.header.seq,
            stream_seq: event.stream_seq,
        };
        Arc::new(Self {
            seq: event.header.seq,
            terminal: event.header.is_terminal(),
            frame: encode(
                Some(cursor.encoded(run).as_str()),
                &event.header.event_type,
                &String::from_utf8_lossy(&event.payload),
            ),
        })
    }
}

/// The `retry:` field that opens every stream (a frame without data: clients set their
/// reconnection delay and dispatch no event).
pub(crate) fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// One SSE frame. Line breaks in `data` continue on a new `data: ` line (as axum does);
/// the id and event name cannot carry them, so they are dropped there rather than let a
/// garbage event type inject fields.
pub(crate) fn encode(id: Option<&str>, event: &str, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + id.map_or(0, str::len) + event.len() + data.len());
    if let Some(id) = id {
        field(&mut buf, b"id: ", id);
    }
    field(&mut buf, b"event: ", event);
    buf.put_slice(b"data: ");
    let data = data.as_bytes();
    let mut last = 0;
    for at in data
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, b'\n' | b'\r'))
        .map(|(i, _)| i)
    {
        buf.put_slice(&data[last..=at]);
        buf.put_slice(b"data: ");
        last = at + 1;
    }
    buf.put_slice(&data[last..]);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

fn field(buf: &mut BytesMut, name: &[u8], value: &str) {
    buf.put_slice(name);
    if value.contains(['\n', '\r']) {
        buf.extend(value.bytes().filter(|b| !matches!(b, b'\n' | b'\r')));
    } else {
        buf.put_slice(value.as_bytes());
    }
    buf.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, Sse};
    use std::convert::Infallible;

    /// What axum's own `Sse` writes for `event`.
    async fn axum_bytes(event: Event) -> Bytes {
        let sse = Sse::new(futures::stream::iter([Ok::<_, Infallible>(event)]));
        axum::body::to_bytes(sse.into_response().into_body(), usize::MAX)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn frames_are_byte_identical_to_axum_events() {
        let event = StoredEvent {
            stream_seq: 42,
            header: switchyard_contracts::event::RunEventHeader {
                run_id: uuid::Uuid::now_v7(),
                seq: 7,
                event_type: "message.delta".to_owned(),
            },
            payload: Bytes::from_static(br#"{"seq":7,"text":"h\u00e9"}"#),
        };
        let run = RunTag::of(&event.header.run_id);
        let ours = FeedEvent::new(&event, &run);
        assert_eq!(ours.seq, 7);
        assert!(!ours.terminal);
        assert_eq!(
            ours.frame,
            axum_bytes(switchyard_platform::sse::frame(&event, &run)).await
        );
        let retry =
            axum_bytes(Event::default().retry(std::time::Duration::from_millis(1500))).await;
        assert_eq!(super::retry(1500), retry);

        let multi = encode(None, "stream.reset", "a\nb\rc");
        let expected = axum_bytes(Event::default().event("stream.reset").data("a\nb\rc")).await;
        assert_eq!(multi, expected);
    }

    #[test]
    fn garbage_fields_cannot_inject_lines() {
        let frame = encode(Some("c"), "evil\nid: x", "{}");
        assert_eq!(&frame[..], b"id: c\nevent: evilid: x\ndata: {}\n\n");
    }
}
