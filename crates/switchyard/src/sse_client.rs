//! A small SSE client for the demo and the end-to-end tests: reads a `text/event-stream`
//! response frame by frame. Browsers have EventSource; command-line users have this.

use futures::{Stream, StreamExt};

/// One SSE frame. Comments (keep-alives) are not frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    /// The frame's data as JSON (run events are JSON objects).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Incremental parser: feed bytes, take complete frames.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: String,
    /// The start of a UTF-8 character whose other bytes are in the next chunk.
    partial: Vec<u8>,
    pending: Frame,
    has_field: bool,
    /// The last `retry:` the stream sent (milliseconds): a client setting, not a frame.
    pub retry: Option<u64>,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.decode(bytes);
        let mut frames = Vec::new();
        while let Some(newline) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=newline).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_field {
                    frames.push(std::mem::take(&mut self.pending));
                    self.has_field = false;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "retry" {
                if let Ok(millis) = value.parse() {
                    self.retry = Some(millis);
                }
                continue;
            }
            self.has_field = true;
            match field {
                "id" => self.pending.id = Some(value.to_owned()),
                "event" => self.pending.event = Some(value.to_owned()),
                "data" => {
                    if !self.pending.data.is_empty() {
                        self.pending.data.push('\n');
                    }
                    self.pending.data.push_str(value);
                }
                _ => {}
            }
        }
        frames
    }
}

impl Parser {
    /// Appends `bytes` to the text buffer. Chunks split anywhere, also inside a
    /// character: an incomplete one at the end waits for the next chunk, and only
    /// invalid bytes become U+FFFD.
    fn decode(&mut self, bytes: &[u8]) {
        let mut rest = std::mem::take(&mut self.partial);
        rest.extend_from_slice(bytes);
        let mut from = 0;
        while from < rest.len() {
            match std::str::from_utf8(&rest[from..]) {
                Ok(text) => {
                    self.buffer.push_str(text);
                    return;
                }
                Err(error) => {
                    let valid = from + error.valid_up_to();
                    self.buffer
                        .push_str(std::str::from_utf8(&rest[from..valid]).unwrap_or_default());
                    match error.error_len() {
                        Some(invalid) => {
                            self.buffer.push(char::REPLACEMENT_CHARACTER);
                            from = valid + invalid;
                        }
                        None => {
                            self.partial = rest[valid..].to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Turns a streaming HTTP response into a stream of frames.
pub fn frames(response: reqwest::Response) -> impl Stream<Item = Result<Frame, reqwest::Error>> {
    let mut parser = Parser::default();
    response
        .bytes_stream()
        .map(move |chunk| {
            chunk.map(|bytes| {
                futures::stream::iter(parser.feed(&bytes).into_iter().map(Ok::<_, reqwest::Error>))
            })
        })
        .flat_map(|result| match result {
            Ok(inner) => inner.left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_and_comments_are_skipped() {
        let mut p = Parser::default();
        assert!(
            p.feed(b"retry: 1000\n\n: keep-alive\n\nid: a\nevent: x\nda")
                .is_empty()
        );
        assert_eq!(p.retry, Some(1000));
        let frames = p.feed(b"ta: {\"k\":1}\n\n");
        assert_eq!(
            frames,
            vec![Frame {
                id: Some("a".into()),
                event: Some("x".into()),
                data: "{\"k\":1}".into()
            }]
        );
        assert_eq!(frames[0].json().unwrap()["k"], 1);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn feed_all(chunks: &[&[u8]]) -> Vec<Frame> {
            let mut parser = Parser::default();
            chunks.iter().flat_map(|c| parser.feed(c)).collect()
        }

        /// SSE-ish text: field lines, comments, blank lines, any unicode, CR LF.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    "(id|event|data|retry|x)?:? ?\\PC{0,30}".prop_map(|l| format!("{l}\n")),
                    Just("\n".to_owned()),
                    Just("\r\n".to_owned()),
                    Just(": keep-alive\n".to_owned()),
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
            fn where_the_chunks_split_does_not_change_the_frames(
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
