//! A deliberately small SSE reader for load generation: one TCP connection, one HTTP/1.1
//! GET, a chunked-body decoder and a scanner that counts complete events as the
//! platform's parser reads them, borrowed from its buffers. The demo's reqwest-based
//! client builds an owned frame per event; at hundreds of thousands of events per
//! second and ten thousand connections the client would otherwise cost as much CPU and
//! memory as the gateway it measures.

use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use switchyard_platform::sse::client::{EventTooLarge, Item, Parser};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
const TERMINAL_EVENT: &str = "run.completed";

/// One open event stream.
pub(crate) struct SseStream {
    tcp: TcpStream,
    buf: Vec<u8>,
    body: Body,
    pub(crate) scan: Scanner,
    ended: bool,
}

enum Body {
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size(u64, bool),
    Data(u64),
    AfterData,
    Done,
}

impl SseStream {
    /// Connects, sends `GET path` and reads the response head; anything but 200 is an
    /// error naming the status. `buffer` is the read buffer size.
    pub(crate) async fn open(
        addr: SocketAddr,
        path: &str,
        token: &str,
        buffer: usize,
    ) -> anyhow::Result<Self> {
        let mut tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;

        let mut buf = vec![0u8; buffer.max(1024)];
        let mut head = Vec::new();
        let head_end = loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                bail!("the server closed the connection before answering");
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = find(&head, b"\r\n\r\n") {
                break end + 4;
            }
            if head.len() > MAX_HEAD {
                bail!("the response head is larger than {MAX_HEAD} bytes");
            }
        };
        let text = String::from_utf8_lossy(&head[..head_end]);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .context("no HTTP status in the response")?;
        if status != 200 {
            let body = String::from_utf8_lossy(&head[head_end..]);
            bail!("the stream answered HTTP {status}: {}", body.trim());
        }
        let chunked = text.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("transfer-encoding:") && line.contains("chunked")
        });
        let mut stream = Self {
            tcp,
            buf,
            body: if chunked {
                Body::Chunked(Chunk::Size(0, false))
            } else {
                Body::UntilClose
            },
            scan: Scanner::default(),
            ended: false,
        };
        let rest = head[head_end..].to_vec();
        stream.feed(&rest);
        Ok(stream)
    }

    /// Reads until the first complete event; an error if the body ends before one.
    pub(crate) async fn first_event(&mut self) -> anyhow::Result<()> {
        while self.scan.events == 0 {
            if self.read().await?.is_none() {
                bail!("the stream ended without an event");
            }
        }
        Ok(())
    }

    /// Reads what has arrived; returns how many events it completed, or `None` once the
    /// response body has ended.
    pub(crate) async fn read(&mut self) -> anyhow::Result<Option<u64>> {
        if self.ended {
            return Ok(None);
        }
        let before = self.scan.events;
        let n = self.tcp.read(&mut self.buf).await?;
        if n == 0 {
            self.ended = true;
        } else {
            let data = std::mem::take(&mut self.buf);
            self.feed(&data[..n]);
            self.buf = data;
        }
        if let Some(error) = self.scan.too_large {
            bail!("the stream sent an event the client cannot read: {error}");
        }
        let new = self.scan.events - before;
        if self.ended && new == 0 {
            return Ok(None);
        }
        Ok(Some(new))
    }

    /// Reads until the terminal event (or the end of the body); returns the events read.
    pub(crate) async fn read_to_end(&mut self) -> anyhow::Result<u64> {
        while !self.scan.terminal {
            if self.read().await?.is_none() {
                break;
            }
        }
        Ok(self.scan.events)
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        match &mut self.body {
            Body::UntilClose => self.scan.feed(bytes),
            Body::Chunked(state) => {
                while !bytes.is_empty() {
                    match *state {
                        Chunk::Size(size, in_extension) => {
                            let byte = bytes[0];
                            bytes = &bytes[1..];
                            *state = match byte {
                                b'\n' if size == 0 => Chunk::Done,
                                b'\n' => Chunk::Data(size),
                                b';' => Chunk::Size(size, true),
                                _ if in_extension => Chunk::Size(size, true),
                                _ => match (byte as char).to_digit(16) {
                                    Some(digit) => Chunk::Size(size * 16 + u64::from(digit), false),
                                    None => Chunk::Size(size, false),
                                },
                            };
                        }
                        Chunk::Data(left) => {
                            let take = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                            self.scan.feed(&bytes[..take]);
                            bytes = &bytes[take..];
                            let left = left - take as u64;
                            *state = if left == 0 {
                                Chunk::AfterData
                            } else {
                                Chunk::Data(left)
                            };
                        }
                        Chunk::AfterData => {
                            if bytes[0] == b'\n' {
                                *state = Chunk::Size(0, false);
                            }
                            bytes = &bytes[1..];
                        }
                        Chunk::Done => {
                            self.ended = true;
                            return;
                        }
                    }
                }
                if matches!(state, Chunk::Done) {
                    self.ended = true;
                }
            }
        }
    }
}

/// Counts the events of a stream with the platform's parser (borrowed events: nothing
/// is allocated per event) and notes the terminal one.
#[derive(Default)]
pub(crate) struct Scanner {
    pub(crate) events: u64,
    pub(crate) body_bytes: u64,
    /// The terminal `run.completed` event was read.
    pub(crate) terminal: bool,
    /// An event larger than the parser's limit was dropped.
    too_large: Option<EventTooLarge>,
    parser: Parser,
}

impl Scanner {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.body_bytes += bytes.len() as u64;
        let Self {
            events,
            terminal,
            too_large,
            parser,
            ..
        } = self;
        parser.feed_with(bytes, |item| match item {
            Ok(Item::Event(event)) => {
                *events += 1;
                *terminal |= event.event == TERMINAL_EVENT;
            }
            Ok(Item::Comment(_) | Item::Retry(_)) => {}
            Err(error) => *too_large = Some(error),
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMES: &[u8] = b": keep-alive\n\nid: a\nevent: message.delta\ndata: {\"seq\":1}\n\n\
        id: b\nevent: run.completed\ndata: {\"seq\":2,\"type\":\"run.completed\"}\n\n";

    #[test]
    fn counts_events_split_anywhere_and_spots_the_terminal_one() {
        for split in 0..FRAMES.len() {
            let mut scan = Scanner::default();
            scan.feed(&FRAMES[..split]);
            scan.feed(&FRAMES[split..]);
            assert_eq!(scan.events, 2, "split at {split}");
            assert!(scan.terminal, "split at {split}");
        }
    }

    #[test]
    fn a_comment_or_an_unfinished_frame_is_not_an_event() {
        let mut scan = Scanner::default();
        scan.feed(b": keep-alive\n\nid: a\nevent: run.completed\ndata: {}\n");
        assert_eq!(scan.events, 0);
        assert!(!scan.terminal);
        scan.feed(b"\n");
        assert_eq!(scan.events, 1);
        assert!(scan.terminal);
    }

    #[tokio::test]
    async fn reads_a_chunked_stream_from_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            let mut response =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec();
            for piece in FRAMES.chunks(7) {
                response.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                response.extend_from_slice(piece);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"0\r\n\r\n");
            // Byte by byte, so every state of the decoder meets a read boundary.
            for byte in response {
                socket.write_all(&[byte]).await.unwrap();
            }
        });
        let mut stream = SseStream::open(addr, "/x", "t", 1024).await.unwrap();
        assert_eq!(stream.read_to_end().await.unwrap(), 2);
        assert!(stream.scan.terminal);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refusal_names_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\nno")
                .await
                .unwrap();
        });
        let error = SseStream::open(addr, "/x", "t", 1024)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("429"), "{error}");
    }
}
