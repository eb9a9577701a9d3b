//! The client side of Server-Sent Events: a parser of `text/event-stream` bytes, for
//! every Switchyard component that reads an event stream (the CLI, the executor's
//! opencode adapter, the benchmark, tests).
//!
//! It follows the WHATWG rules for interpreting an event stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>): lines end with
//! CRLF, LF or CR; a leading byte order mark is dropped; comment lines start with `:`;
//! a field's value loses one leading space; `data:` lines are joined with line feeds
//! (empty ones included); an `id:` containing NUL is ignored and the last event id
//! carries over to later events; `retry:` counts only when it is all digits; a blank
//! line dispatches the event unless it has no data; an event cut off by the end of the
//! stream is not dispatched. Invalid UTF-8 becomes U+FFFD.
//!
//! Unlike a browser it bounds memory: an event (with the line being read) larger than
//! the parser's limit is reported as [`EventTooLarge`] and skipped up to its blank line,
//! and the stream goes on after it.

use futures::{Stream, StreamExt as _};

/// The default bound on one event, in bytes.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// A dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The last event id as of this event (what `EventSource` calls `lastEventId`, and
    /// what a reconnecting client sends as `Last-Event-ID`): this event's `id:` or an
    /// earlier event's. `None` while it is empty.
    pub id: Option<String>,
    /// The event type (`event:`); `None` for the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// A dispatched event borrowed from the parser's buffers: reading it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// See [`Event::id`]; empty when there is none.
    pub id: &'a str,
    /// See [`Event::event`]; empty for the default type.
    pub event: &'a str,
    pub data: &'a str,
}

impl EventRef<'_> {
    pub fn to_event(&self) -> Event {
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        Event {
            id: non_empty(self.id),
            event: non_empty(self.event),
            data: self.data.to_owned(),
        }
    }
}

/// What the parser reads besides events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Event(EventRef<'a>),
    /// A comment line (a keep-alive, typically): its text after the `:`.
    Comment(&'a str),
    /// A valid `retry:` field: the reconnection delay the server asks for, in ms.
    Retry(u64),
}

/// An event grew past the parser's limit; it is dropped, the stream goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of more than {limit} bytes was dropped")]
pub struct EventTooLarge {
    pub limit: usize,
}

/// An incremental parser: feed it the body's bytes as they arrive, split anywhere.
#[derive(Debug)]
pub struct Parser {
    max_event_bytes: usize,
    /// The line being read (without its line ending).
    line: Vec<u8>,
    /// The data buffer: each `data:` value followed by `\n`.
    data: String,
    event_type: String,
    /// Not reset between events: it carries over until the next `id:`.
    last_event_id: String,
    /// The last valid `retry:`, until taken.
    retry: Option<u64>,
    /// The previous line ended with CR: a LF right after it belongs to that line end.
    after_cr: bool,
    /// No line has ended yet: a byte order mark may open the first one.
    first_line: bool,
    /// Dropping an oversized event up to its blank line.
    skipping: bool,
    /// While skipping: the current line has bytes (so it is not the blank line).
    skipped_line_has_bytes: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Parser {
    /// A parser that drops events of more than `max_event_bytes` (their data, type and
    /// the line being read, together).
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            last_event_id: String::new(),
            retry: None,
            after_cr: false,
            first_line: true,
            skipping: false,
            skipped_line_has_bytes: false,
        }
    }

    /// Parses `bytes` and returns the events they complete, in order, with an error in
    /// the place of each dropped event.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Event, EventTooLarge>> {
        let mut events = Vec::new();
        self.feed_with(bytes, |item| match item {
            Ok(Item::Event(event)) => events.push(Ok(event.to_event())),
            Ok(Item::Comment(_) | Item::Retry(_)) => {}
            Err(error) => events.push(Err(error)),
        });
        events
    }

    /// Parses `bytes`, handing every event, comment and `retry:` to `on` as it is read,
    /// borrowed (for readers that must not allocate per event).
    pub fn feed_with(
        &mut self,
        mut bytes: &[u8],
        mut on: impl FnMut(Result<Item<'_>, EventTooLarge>),
    ) {
        while !bytes.is_empty() {
            if std::mem::take(&mut self.after_cr) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.extend_line(bytes, &mut on);
                return;
            };
            self.after_cr = bytes[end] == b'\r';
            let line = &bytes[..end];
            if self.skipping {
                // The blank line ends the dropped event; it dispatches nothing.
                let blank = line.is_empty() && !self.skipped_line_has_bytes;
                self.skipping = !blank;
            } else if self.line.is_empty() {
                // The whole line is in this chunk: no copy.
                if self.fits(line.len(), &mut on) {
                    self.end_line(line, &mut on);
                }
            } else {
                self.extend_line(line, &mut on);
                if !self.skipping {
                    let mut buffered = std::mem::take(&mut self.line);
                    self.end_line(&buffered, &mut on);
                    buffered.clear();
                    self.line = buffered;
                }
            }
            if self.skipping {
                // This line has ended, whether it was dropped or started the skip.
                self.skipped_line_has_bytes = false;
                self.first_line = false;
            }
            bytes = &bytes[end + 1..];
        }
    }

    /// The last valid `retry:` the stream sent since the last call (milliseconds).
    pub fn take_retry(&mut self) -> Option<u64> {
        self.retry.take()
    }

    /// Whether bytes of an event not yet dispatched are held (a partial line or fields
    /// before their blank line): at the end of the stream, they are discarded.
    pub fn is_mid_event(&self) -> bool {
        !self.line.is_empty() || !self.data.is_empty() || !self.event_type.is_empty()
    }

    /// Appends part of the current line, unless the event gets too large.
    fn extend_line(&mut self, part: &[u8], on: &mut impl FnMut(Result<Item<'_>, EventTooLarge>)) {
        if self.skipping {
            self.skipped_line_has_bytes |= !part.is_empty();
        } else if self.fits(self.line.len() + part.len(), on) {
            self.line.extend_from_slice(part);
        } else {
            // The line that overflowed has bytes: its end is not the blank line.
            self.skipped_line_has_bytes = true;
        }
    }

    /// Whether the event stays within the limit with a line of `line_len` bytes;
    /// otherwise reports it and starts skipping it.
    fn fits(
        &mut self,
        line_len: usize,
        on: &mut impl FnMut(Result<Item<'_>, EventTooLarge>),
    ) -> bool {
        if line_len + self.data.len() + self.event_type.len() <= self.max_event_bytes {
            return true;
        }
        on(Err(EventTooLarge {
            limit: self.max_event_bytes,
        }));
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.skipping = true;
        false
    }

    fn end_line(&mut self, line: &[u8], on: &mut impl FnMut(Result<Item<'_>, EventTooLarge>)) {
        let mut line = line;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(on);
            return;
        }
        // Line endings are ASCII, so no character spans two lines: decoding line by line
        // is decoding the stream.
        let line = String::from_utf8_lossy(line);
        if let Some(comment) = line.strip_prefix(':') {
            on(Ok(Item::Comment(comment)));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                // The line itself fitted; the event as a whole must too.
                self.fits(0, on);
            }
            "id" if !value.contains('\0') => {
                self.last_event_id.clear();
                self.last_event_id.push_str(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(millis) = value.parse() {
                    self.retry = Some(millis);
                    on(Ok(Item::Retry(millis)));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on: &mut impl FnMut(Result<Item<'_>, EventTooLarge>)) {
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        on(Ok(Item::Event(EventRef {
            id: &self.last_event_id,
            event: &self.event_type,
            data: &self.data,
        })));
        self.data.clear();
        self.event_type.clear();
    }
}

/// Why an event stream could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    /// The body broke (the stream ends after it).
    #[error(transparent)]
    Body(E),
    /// One event was too large and was dropped; the stream goes on.
    #[error(transparent)]
    TooLarge(#[from] EventTooLarge),
}

/// The events of a response body (a stream of byte chunks), parsed by `parser`.
pub fn events<S, B, E>(
    body: S,
    mut parser: Parser,
) -> impl Stream<Item = Result<Event, StreamError<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    body.flat_map(move |chunk| {
        let items: Vec<Result<Event, StreamError<E>>> = match chunk {
            Ok(bytes) => parser
                .feed(bytes.as_ref())
                .into_iter()
                .map(|item| item.map_err(StreamError::TooLarge))
                .collect(),
            Err(error) => vec![Err(StreamError::Body(error))],
        };
        futures::stream::iter(items)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, event: Option<&str>, data: &str) -> Result<Event, EventTooLarge> {
        Ok(Event {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.to_owned(),
        })
    }

    fn parse(bytes: &[u8]) -> Vec<Result<Event, EventTooLarge>> {
        Parser::default().feed(bytes)
    }

    #[test]
    fn data_lines_are_joined_and_empty_ones_are_kept() {
        assert_eq!(
            parse(b"data: a\ndata:\ndata: b\n\n"),
            [event(None, None, "a\n\nb")]
        );
        assert_eq!(parse(b"data:\n\n"), [event(None, None, "")]);
        assert_eq!(parse(b"data\ndata\n\n"), [event(None, None, "\n")]);
    }

    #[test]
    fn one_leading_space_is_dropped_from_a_value() {
        assert_eq!(
            parse(b"data:  two\nevent:x\n\ndata:no space\n\n"),
            [
                event(None, Some("x"), " two"),
                event(None, None, "no space")
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"event: ping\n\nid: 7\n\n").is_empty());
        // Its type does not leak into the next event; its id does (it is the stream's).
        assert_eq!(parser.feed(b"data: x\n\n"), [event(Some("7"), None, "x")]);
    }

    #[test]
    fn the_last_event_id_carries_over_until_changed_or_cleared() {
        assert_eq!(
            parse(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\ndata: d\n\n"),
            [
                event(Some("1"), None, "a"),
                event(Some("1"), None, "b"),
                event(None, None, "c"),
                event(Some("2"), None, "d"),
            ]
        );
    }

    #[test]
    fn an_id_with_nul_is_ignored() {
        assert_eq!(
            parse(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"),
            [event(Some("1"), None, "a"), event(Some("1"), None, "b")]
        );
    }

    #[test]
    fn retry_counts_only_when_it_is_all_digits() {
        let mut parser = Parser::default();
        let mut retries = Vec::new();
        parser.feed_with(
            b"retry: 1500\n\nretry: 2x\nretry: -5\nretry:\nretry: 1 \nretry:42\n\n",
            |item| {
                if let Ok(Item::Retry(ms)) = item {
                    retries.push(ms);
                }
            },
        );
        assert_eq!(retries, [1500, 42]);
        assert_eq!(parser.take_retry(), Some(42));
        assert_eq!(parser.take_retry(), None);
    }

    #[test]
    fn comments_are_reported_and_dispatch_nothing() {
        let mut parser = Parser::default();
        let mut seen = Vec::new();
        parser.feed_with(b":\n\n: keep-alive\ndata: x\n: inside\n\n", |item| {
            seen.push(match item.unwrap() {
                Item::Comment(text) => format!("comment {text:?}"),
                Item::Event(event) => format!("event {:?}", event.data),
                Item::Retry(ms) => format!("retry {ms}"),
            });
        });
        assert_eq!(
            seen,
            [
                "comment \"\"",
                "comment \" keep-alive\"",
                "comment \" inside\"",
                "event \"x\""
            ]
        );
    }

    #[test]
    fn lines_end_with_lf_cr_or_crlf_even_across_chunks() {
        let expected = [event(None, None, "a\nb"), event(None, None, "c")];
        for stream in [
            &b"data: a\ndata: b\n\ndata: c\n\n"[..],
            b"data: a\rdata: b\r\rdata: c\r\r",
            b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            b"data: a\r\ndata: b\r\rdata: c\n\r\n",
        ] {
            assert_eq!(
                parse(stream),
                expected,
                "{:?}",
                String::from_utf8_lossy(stream)
            );
            for split in 0..=stream.len() {
                let mut parser = Parser::default();
                let mut got = parser.feed(&stream[..split]);
                got.extend(parser.feed(&stream[split..]));
                assert_eq!(got, expected, "split at {split}");
            }
        }
        // A CR, then a LF in the next chunk: one line end, not a blank line between.
        let mut parser = Parser::default();
        assert!(parser.feed(b"data: a\r").is_empty());
        assert!(parser.feed(b"\ndata: b\r").is_empty());
        assert_eq!(parser.feed(b"\n\r\n"), [event(None, None, "a\nb")]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped_once() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        // The second BOM makes the field name `\u{feff}data`: an unknown field.
        assert_eq!(parse(stream), [event(None, None, "a")]);
        let mut parser = Parser::default();
        assert!(parser.feed(b"\xEF").is_empty());
        assert!(parser.feed(b"\xBB").is_empty());
        assert_eq!(parser.feed(b"\xBFdata: a\n\n"), [event(None, None, "a")]);
    }

    #[test]
    fn field_names_are_exact_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse(b"Data: no\ndata : no\nfoo: bar\ndata: yes\n\n"),
            [event(None, None, "yes")]
        );
    }

    #[test]
    fn an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"data: a\n").is_empty());
        assert!(parser.is_mid_event());
        let mut parser = Parser::default();
        assert!(parser.feed(b"data: a\n\n: bye\n").len() == 1);
        assert!(!parser.is_mid_event());
    }

    #[test]
    fn invalid_utf8_becomes_the_replacement_character_and_chars_may_split() {
        assert_eq!(
            parse(b"data: a\xFFb\n\n"),
            [event(None, None, "a\u{fffd}b")]
        );
        let text = "data: grüße, 你好, 🚂\n\n".as_bytes();
        for split in 0..=text.len() {
            let mut parser = Parser::default();
            let mut got = parser.feed(&text[..split]);
            got.extend(parser.feed(&text[split..]));
            assert_eq!(
                got,
                [event(None, None, "grüße, 你好, 🚂")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_oversized_event_is_an_error_and_the_stream_goes_on() {
        // One line that never ends within the limit, fed in pieces.
        let mut parser = Parser::with_max_event_bytes(32);
        assert!(parser.feed(b"id: 1\ndata: ").is_empty());
        let got = parser.feed(&[b'x'; 40]);
        assert_eq!(got, [Err(EventTooLarge { limit: 32 })]);
        assert!(parser.feed(&[b'x'; 4000]).is_empty(), "reported once");
        assert_eq!(
            parser.feed(b"xxx\ndata: more of it\n\ndata: ok\n\n"),
            [event(Some("1"), None, "ok")]
        );
        // Many small data lines that add up, in one chunk.
        let mut parser = Parser::with_max_event_bytes(32);
        let mut stream = b"data: 0123456789\n".repeat(4);
        stream.extend_from_slice(b"\ndata: ok\n\n");
        assert_eq!(
            parser.feed(&stream),
            [Err(EventTooLarge { limit: 32 }), event(None, None, "ok")]
        );
        // A long line that arrives whole.
        let mut parser = Parser::with_max_event_bytes(32);
        let mut stream = b"data: ".to_vec();
        stream.extend_from_slice(&[b'y'; 64]);
        stream.extend_from_slice(b"\n\ndata: ok\n\n");
        assert_eq!(
            parser.feed(&stream),
            [Err(EventTooLarge { limit: 32 }), event(None, None, "ok")]
        );
        assert!(
            EventTooLarge { limit: 32 }
                .to_string()
                .contains("more than 32 bytes")
        );
    }

    #[test]
    fn an_event_of_exactly_the_limit_passes() {
        let mut parser = Parser::with_max_event_bytes(8);
        // "data: 12" is 8 bytes; its data buffer "12\n" is 3.
        assert_eq!(parser.feed(b"data: 12\n\n"), [event(None, None, "12")]);
    }

    #[tokio::test]
    async fn a_body_yields_its_events_then_its_error() {
        let chunks: Vec<Result<&[u8], &str>> =
            vec![Ok(b"data: {\"k\":"), Ok(b"1}\n\n"), Err("reset")];
        let got: Vec<_> = events(futures::stream::iter(chunks), Parser::default())
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().json().unwrap()["k"], 1);
        assert!(matches!(got[1], Err(StreamError::Body("reset"))));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn feed_all(chunks: &[&[u8]]) -> Vec<Result<Event, EventTooLarge>> {
            let mut parser = Parser::with_max_event_bytes(64);
            chunks.iter().flat_map(|c| parser.feed(c)).collect()
        }

        /// Event-stream-like text: fields, comments, blank lines, any unicode, every
        /// line ending, a BOM.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    "(id|event|data|retry|x)?:? ?\\PC{0,30}".prop_map(|l| format!("{l}\n")),
                    Just("\n".to_owned()),
                    Just("\r\n".to_owned()),
                    Just("\r".to_owned()),
                    Just(": keep-alive\n".to_owned()),
                    Just("\u{feff}".to_owned()),
                    "[\u{80}-\u{10ffff}]{1,8}",
                ],
                0..30,
            )
            .prop_map(|parts| parts.concat().into_bytes())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_bytes_in_any_chunks_never_panic(
                chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)
            ) {
                let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                let _ = feed_all(&chunks);
            }

            #[test]
            fn where_the_chunks_split_does_not_change_the_events(
                bytes in stream(),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                cuts.sort_unstable();
                let mut chunks = Vec::new();
                let mut from = 0;
                for cut in cuts {
                    chunks.push(&bytes[from..cut]);
                    from = cut;
                }
                chunks.push(&bytes[from..]);
                prop_assert_eq!(feed_all(&chunks), feed_all(&[&bytes]));
            }
        }
    }
}
