//! SSE of run streams: the wire bytes of a frame ([`frame`], [`encode`]), written by
//! the gateway and the executor alike, and the cursors.
//!
//! Cursors are the `id:` of every event a client receives. Opaque to clients; inside,
//! the run event's `seq`, its stream sequence (so a resume starts the JetStream read
//! exactly after that event without scanning the run's history) and a tag of the run
//! it belongs to, so that a cursor handed to another run's stream is refused instead of
//! silently skipping that run's first events.
//!
//! The tag is the first 8 bytes of the SHA-256 of the run id, unkeyed: it guards
//! against mix-ups, not forgery. Who may read a run is decided apart from the cursor,
//! and a made-up cursor of a run one may read only moves one's own resume point.
//!
//! Cursors of the earlier format (`c1`, without the tag) still parse, as
//! [`ParsedCursor::Legacy`]: the reader checks them against the event log (the event
//! at that stream sequence must be the run's event with that `seq`) before resuming.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use switchyard_contracts::RunId;

/// Position of one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The run event's `seq`.
    pub seq: u64,
    /// The event's sequence in the `RUN_EVENTS` stream.
    pub stream_seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cursor: use the `id` of an event received from this stream")]
pub struct InvalidCursor;

/// The run a cursor belongs to, as cursors carry it. Computed once per run stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTag([u8; TAG_HEX]);

const TAG_BYTES: usize = 8;
const TAG_HEX: usize = TAG_BYTES * 2;

impl RunTag {
    pub fn of(run_id: &RunId) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(run_id.as_bytes());
        let mut hex = [0u8; TAG_HEX];
        for (i, byte) in digest.iter().take(TAG_BYTES).enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(hex)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A cursor a client sent, parsed for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedCursor {
    /// Carries the run's tag: it was handed out by this run's stream.
    Run(Cursor),
    /// The untagged earlier format: whose run it is must be checked against the event
    /// log before it is used.
    Legacy(Cursor),
}

const VERSION: &str = "c2";
const LEGACY_VERSION: &str = "c1";

/// The longest encoded cursor: base64 of `c2:`, two 20-digit numbers, `:` and the tag
/// (61 bytes, 82 characters), rounded up.
const MAX_ENCODED: usize = 84;
/// Longer text is refused before it is decoded.
const MAX_TEXT: usize = 128;

/// An encoded cursor on the stack: the gateway writes one per event, and this spares it
/// two allocations each time.
#[derive(Clone, Copy)]
pub struct EncodedCursor {
    bytes: [u8; MAX_ENCODED],
    len: usize,
}

impl EncodedCursor {
    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Cursor {
    /// The cursor text of this position in `run`'s stream.
    pub fn encode(&self, run: &RunTag) -> String {
        self.encoded(run).as_str().to_owned()
    }

    /// Same text as [`Cursor::encode`], without allocating.
    pub fn encoded(&self, run: &RunTag) -> EncodedCursor {
        use std::io::Write as _;
        let mut raw = [0u8; 64];
        let mut writer = std::io::Cursor::new(&mut raw[..]);
        // 3 + 20 + 1 + 20 + 1 + 16 bytes at most: always fits.
        let _ = write!(writer, "{VERSION}:{}:{}:", self.seq, self.stream_seq);
        let _ = writer.write_all(run.as_bytes());
        let raw_len = usize::try_from(writer.position()).unwrap_or_default();
        let mut out = EncodedCursor {
            bytes: [0; MAX_ENCODED],
            len: 0,
        };
        out.len = URL_SAFE_NO_PAD
            .encode_slice(&raw[..raw_len], &mut out.bytes)
            .unwrap_or_default();
        out
    }

    /// A cursor of `run`'s stream: a cursor of another run, of the earlier format, or
    /// anything else is refused.
    pub fn decode(text: &str, run: &RunTag) -> Result<Cursor, InvalidCursor> {
        match Cursor::parse(text, run)? {
            ParsedCursor::Run(cursor) => Ok(cursor),
            ParsedCursor::Legacy(_) => Err(InvalidCursor),
        }
    }

    /// What a client sent for `run`'s stream: a cursor of this run, an untagged one of
    /// the earlier format, or (another run's, garbage) an error.
    pub fn parse(text: &str, run: &RunTag) -> Result<ParsedCursor, InvalidCursor> {
        if text.len() > MAX_TEXT {
            return Err(InvalidCursor);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| InvalidCursor)?;
        let raw = std::str::from_utf8(&raw).map_err(|_| InvalidCursor)?;
        let mut parts = raw.split(':');
        let version = parts.next();
        if version != Some(VERSION) && version != Some(LEGACY_VERSION) {
            return Err(InvalidCursor);
        }
        let mut number = || -> Result<u64, InvalidCursor> {
            match parts.next().map(str::parse::<u64>) {
                Some(Ok(n)) if n > 0 => Ok(n),
                _ => Err(InvalidCursor),
            }
        };
        let cursor = Cursor {
            seq: number()?,
            stream_seq: number()?,
        };
        let parsed = if version == Some(VERSION) {
            if parts.next().map(str::as_bytes) != Some(run.as_bytes()) {
                return Err(InvalidCursor);
            }
            ParsedCursor::Run(cursor)
        } else {
            ParsedCursor::Legacy(cursor)
        };
        if parts.next().is_some() {
            return Err(InvalidCursor);
        }
        Ok(parsed)
    }
}

/// The `retry:` every run stream starts with: how long a client (a browser's
/// `EventSource`) waits before it reconnects after the connection drops.
pub const RETRY_MS: u64 = 1000;

/// The SSE frame of a stored run event: `id:` cursor, `event:` type, `data:` the JSON.
pub fn frame(event: &crate::events::StoredEvent, run: &RunTag) -> Bytes {
    let cursor = Cursor {
        seq: event.header.seq,
        stream_seq: event.stream_seq,
    };
    encode(
        Some(cursor.encoded(run).as_str()),
        &event.header.event_type,
        &String::from_utf8_lossy(&event.payload),
    )
}

/// SSE comment sent while a stream is quiet (axum's default keep-alive).
pub const KEEP_ALIVE: Bytes = Bytes::from_static(b":\n\n");

/// The `retry:` field that opens a stream (a frame without data: clients set their
/// reconnection delay and dispatch no event).
pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// One SSE frame, exactly the bytes `axum::response::sse::Event` writes for the same
/// fields (`id: `, `event: `, `data: ` lines, a blank line), as [`Bytes`] that a
/// stream can encode once and write to any number of clients. Line breaks in `data`
/// continue on a new `data: ` line (as axum does); the id and event name cannot carry
/// them, so they are dropped there rather than let a garbage event type inject fields.
pub fn encode(id: Option<&str>, event: &str, data: &str) -> Bytes {
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

    fn run() -> RunTag {
        RunTag::of(&uuid::Uuid::from_u128(
            0x0190_a0e0_0000_7000_8000_0000_0000_0001,
        ))
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            seq: 7,
            stream_seq: 1234,
        };
        assert_eq!(Cursor::decode(&c.encode(&run()), &run()), Ok(c));
        let widest = Cursor {
            seq: u64::MAX,
            stream_seq: u64::MAX,
        };
        let text = widest.encode(&run());
        assert!(text.len() <= MAX_ENCODED, "{}", text.len());
        assert_eq!(Cursor::decode(&text, &run()), Ok(widest));
        let tag = std::str::from_utf8(run().as_bytes()).unwrap().to_owned();
        assert_eq!(
            text,
            URL_SAFE_NO_PAD.encode(format!("c2:{}:{}:{tag}", u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn another_runs_cursor_is_refused() {
        let c = Cursor {
            seq: 30,
            stream_seq: 90,
        };
        let other = RunTag::of(&uuid::Uuid::now_v7());
        assert_ne!(other, run());
        assert_eq!(
            Cursor::decode(&c.encode(&other), &run()),
            Err(InvalidCursor)
        );
        assert_eq!(Cursor::parse(&c.encode(&other), &run()), Err(InvalidCursor));
    }

    #[test]
    fn the_earlier_format_parses_as_legacy_only() {
        let legacy = URL_SAFE_NO_PAD.encode("c1:3:17");
        let cursor = Cursor {
            seq: 3,
            stream_seq: 17,
        };
        assert_eq!(
            Cursor::parse(&legacy, &run()),
            Ok(ParsedCursor::Legacy(cursor))
        );
        assert_eq!(Cursor::decode(&legacy, &run()), Err(InvalidCursor));
        // A legacy cursor with a tag, or a tagged one without, is garbage.
        let tag = std::str::from_utf8(run().as_bytes()).unwrap().to_owned();
        for bad in [format!("c1:3:17:{tag}"), "c2:3:17".to_owned()] {
            assert_eq!(
                Cursor::parse(&URL_SAFE_NO_PAD.encode(bad), &run()),
                Err(InvalidCursor)
            );
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        for bad in [
            "",
            "x",
            "YzE6MDow",
            "Yzk6MTox",
            "%%%",
            &"A".repeat(500),
            "YzE6MTox\n",
        ] {
            assert!(
                Cursor::parse(bad, &run()).is_err() || bad.trim() != bad,
                "{bad:?}"
            );
        }
        assert_eq!(
            Cursor::parse("YzE6MTox", &run()),
            Ok(ParsedCursor::Legacy(Cursor {
                seq: 1,
                stream_seq: 1
            }))
        );
    }

    /// What axum's own `Sse` writes for `event`.
    async fn axum_bytes(event: axum::response::sse::Event) -> Bytes {
        use axum::response::IntoResponse as _;
        let stream = futures::stream::iter([Ok::<_, std::convert::Infallible>(event)]);
        let sse = axum::response::sse::Sse::new(stream);
        axum::body::to_bytes(sse.into_response().into_body(), usize::MAX)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn frames_are_byte_identical_to_axum_events() {
        use axum::response::sse::Event;
        let event = crate::events::StoredEvent {
            stream_seq: 42,
            header: switchyard_contracts::event::RunEventHeader {
                run_id: uuid::Uuid::now_v7(),
                seq: 7,
                event_type: "message.delta".to_owned(),
            },
            payload: Bytes::from_static(br#"{"seq":7,"text":"h\u00e9"}"#),
        };
        let run = RunTag::of(&event.header.run_id);
        let cursor = Cursor {
            seq: 7,
            stream_seq: 42,
        };
        let expected = Event::default()
            .id(cursor.encode(&run))
            .event("message.delta")
            .data(r#"{"seq":7,"text":"h\u00e9"}"#);
        assert_eq!(frame(&event, &run), axum_bytes(expected).await);
        let expected = Event::default().retry(std::time::Duration::from_millis(1500));
        assert_eq!(retry(1500), axum_bytes(expected).await);
        let multi = encode(None, "stream.reset", "a\nb\rc");
        let expected = Event::default().event("stream.reset").data("a\nb\rc");
        assert_eq!(multi, axum_bytes(expected).await);
        assert_eq!(KEEP_ALIVE, axum_bytes(Event::DEFAULT_KEEP_ALIVE).await);
    }

    #[test]
    fn garbage_fields_cannot_inject_lines() {
        let frame = encode(Some("c"), "evil\nid: x", "{}");
        assert_eq!(&frame[..], b"id: c\nevent: evilid: x\ndata: {}\n\n");
    }
}
