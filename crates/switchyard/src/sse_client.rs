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
    pending: Frame,
    has_field: bool,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
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
        assert!(p.feed(b": keep-alive\n\nid: a\nevent: x\nda").is_empty());
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
}
