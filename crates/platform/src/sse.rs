//! SSE cursors: the `id:` of every event a client receives. Opaque to clients; inside,
//! the run event's `seq` and its stream sequence, so a resume starts the JetStream
//! read exactly after that event without scanning the run's history.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

const VERSION: &str = "c1";

/// The longest encoded cursor: base64 of `c1:` and two 20-digit numbers.
const MAX_ENCODED: usize = 60;

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
    pub fn encode(&self) -> String {
        self.encoded().as_str().to_owned()
    }

    /// Same text as [`Cursor::encode`], without allocating.
    pub fn encoded(&self) -> EncodedCursor {
        use std::io::Write as _;
        let mut raw = [0u8; 48];
        let mut writer = std::io::Cursor::new(&mut raw[..]);
        // 3 + 20 + 1 + 20 bytes at most: always fits.
        let _ = write!(writer, "{VERSION}:{}:{}", self.seq, self.stream_seq);
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

    pub fn decode(text: &str) -> Result<Cursor, InvalidCursor> {
        if text.len() > 64 {
            return Err(InvalidCursor);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| InvalidCursor)?;
        let raw = std::str::from_utf8(&raw).map_err(|_| InvalidCursor)?;
        let mut parts = raw.split(':');
        if parts.next() != Some(VERSION) {
            return Err(InvalidCursor);
        }
        let seq = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(InvalidCursor)?;
        let stream_seq = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(InvalidCursor)?;
        if parts.next().is_some() || seq == 0 || stream_seq == 0 {
            return Err(InvalidCursor);
        }
        Ok(Cursor { seq, stream_seq })
    }
}

/// The SSE frame of a stored run event: `id:` cursor, `event:` type, `data:` the JSON.
pub fn frame(event: &crate::events::StoredEvent) -> axum::response::sse::Event {
    let cursor = Cursor {
        seq: event.header.seq,
        stream_seq: event.stream_seq,
    };
    // The payload is JSON produced by serde (no raw newlines), so it is one data line.
    axum::response::sse::Event::default()
        .id(cursor.encode())
        .event(event.header.event_type.as_str())
        .data(String::from_utf8_lossy(&event.payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            seq: 7,
            stream_seq: 1234,
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        let widest = Cursor {
            seq: u64::MAX,
            stream_seq: u64::MAX,
        };
        assert_eq!(Cursor::decode(&widest.encode()), Ok(widest));
        assert_eq!(
            widest.encode(),
            URL_SAFE_NO_PAD.encode(format!("c1:{}:{}", u64::MAX, u64::MAX))
        );
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
            assert!(Cursor::decode(bad).is_err() || bad.trim() != bad, "{bad:?}");
        }
        assert_eq!(
            Cursor::decode("YzE6MTox"),
            Ok(Cursor {
                seq: 1,
                stream_seq: 1
            })
        );
    }
}
