//! The reference a gateway SSE connection is compared with: a bare axum SSE endpoint,
//! no authentication, no JetStream, no run feed, sending frames of the same shape and
//! size as the gateway's (cursor `id:`, `event:` type, the JSON of a filler event). Its
//! memory per connection and its fan-out rate are what hyper, axum and the same client
//! cost on this machine, so the gateway's ratio to it is what the gateway adds.
//!
//! It runs in a child process of its own (`switchyard-bench --sse-reference-worker`):
//! measured in the benchmark's process after the gateway's ten thousand connections
//! were freed, its connections would reuse their memory and look almost free.
//!
//! Protocol: the parent writes a [`ReferenceJob`] JSON line to the child's stdin; the
//! child answers `{"kind":"listening","addr":…,"rss_kib":…}`; then every `rss` line is
//! answered with `{"kind":"rss",…}` and a `go` line starts the frames. End of stdin
//! stops the child.

use super::baselines::sample_event;
use super::machine::rss_kib;
use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::StreamExt as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::sse::{Cursor, RunTag};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `(id, event, data)` of one frame.
type Frame = (String, &'static str, String);

#[derive(Clone)]
struct Shared {
    go: watch::Receiver<bool>,
    hello: Arc<Frame>,
    /// Sent to every client once [`ReferenceSse::go`] is called; the last is the
    /// terminal `run.completed`, so clients know the stream is over.
    frames: Arc<Vec<Frame>>,
}

pub(crate) struct ReferenceSse {
    pub(crate) addr: SocketAddr,
    go: watch::Sender<bool>,
    server: BareServer,
}

/// A bare axum server in this process (a reference or a raw path to compare with).
pub(crate) struct BareServer {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl BareServer {
    /// Serves `app` on a free loopback port until [`BareServer::stop`].
    pub(crate) async fn start(app: Router, name: &'static str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, server = name, "a bare benchmark server failed");
            }
        });
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

pub(crate) const PATH: &str = "/sse";

fn frame(seq: u64, event: &'static str) -> anyhow::Result<Frame> {
    let id = Cursor {
        seq,
        stream_seq: 1_000_000 + seq,
    }
    .encode(&RunTag::of(&uuid::Uuid::nil()));
    let data = String::from_utf8_lossy(&sample_event(seq)?).into_owned();
    Ok((id, event, data))
}

impl ReferenceSse {
    /// Serves `GET /sse`: one frame at once, then `after_go` frames when told to go.
    pub(crate) async fn start(after_go: usize) -> anyhow::Result<Self> {
        let (go, go_rx) = watch::channel(false);
        let count = after_go.max(1) as u64;
        let frames = (2..=count + 1)
            .map(|seq| {
                let kind = if seq == count + 1 {
                    "run.completed"
                } else {
                    "message.delta"
                };
                frame(seq, kind)
            })
            .collect::<anyhow::Result<Vec<Frame>>>()?;
        let shared = Shared {
            go: go_rx,
            hello: Arc::new(frame(1, "run.queued")?),
            frames: Arc::new(frames),
        };
        let app = Router::new().route(PATH, get(stream)).with_state(shared);
        let server = BareServer::start(app, "reference SSE").await?;
        Ok(Self {
            addr: server.addr,
            go,
            server,
        })
    }

    pub(crate) fn go(&self) {
        self.go.send_replace(true);
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

fn event(frame: &Frame) -> Event {
    Event::default()
        .id(frame.0.as_str())
        .event(frame.1)
        .data(frame.2.as_str())
}

async fn stream(
    State(shared): State<Shared>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let hello = event(&shared.hello);
    let mut go = shared.go.clone();
    let frames = shared.frames.clone();
    let rest = futures::stream::once(async move {
        let _ = go.wait_for(|go| *go).await;
    })
    .flat_map(move |()| {
        let frames = frames.clone();
        futures::stream::iter((0..frames.len()).map(move |i| Ok(event(&frames[i]))))
    });
    Sse::new(futures::stream::once(async move { Ok(hello) }).chain(rest))
        .keep_alive(KeepAlive::default())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ReferenceJob {
    pub(crate) events_after_go: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ReferenceMessage {
    Listening {
        addr: SocketAddr,
        rss_kib: Option<u64>,
    },
    Rss {
        rss_kib: Option<u64>,
    },
    Going,
}

/// The child process's side.
pub(crate) async fn worker_main() -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let say = |message: &ReferenceMessage| {
        // The parent waits for the message: an unencodable one is reported on stderr
        // (shared with the benchmark's) rather than sent as an empty line.
        let text = match serde_json::to_string(message) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("cannot encode a message to the benchmark: {error}");
                return;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    };
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Standard input is read on a blocking thread: tokio's stdin is not enabled here.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let job: ReferenceJob =
        serde_json::from_str(&lines.recv().await.context("no reference job on stdin")?)
            .context("decode the reference job")?;
    let server = ReferenceSse::start(job.events_after_go).await?;
    say(&ReferenceMessage::Listening {
        addr: server.addr,
        rss_kib: rss_kib(),
    });
    while let Some(line) = lines.recv().await {
        match line.trim() {
            "rss" => say(&ReferenceMessage::Rss { rss_kib: rss_kib() }),
            "go" => {
                server.go();
                say(&ReferenceMessage::Going);
            }
            _ => {}
        }
    }
    server.stop().await;
    Ok(())
}

/// The parent's handle on a reference server child process.
pub(crate) struct ReferenceChild {
    pub(crate) addr: SocketAddr,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl ReferenceChild {
    /// Starts `exe --sse-reference-worker`; returns it with its RSS at start.
    pub(crate) async fn spawn(exe: &Path, job: &ReferenceJob) -> anyhow::Result<(Self, u64)> {
        let mut child = tokio::process::Command::new(exe)
            .arg("--sse-reference-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start the reference server process {}", exe.display()))?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        stdin
            .write_all(format!("{}\n", serde_json::to_string(job)?).as_bytes())
            .await?;
        let mut lines = BufReader::new(stdout).lines();
        let first = next(&mut lines).await?;
        let ReferenceMessage::Listening { addr, rss_kib } = first else {
            bail!("the reference server process answered out of order");
        };
        let rss = rss_kib.context("the reference server process has no VmRSS")?;
        Ok((
            Self {
                addr,
                child,
                stdin,
                lines,
            },
            rss,
        ))
    }

    pub(crate) async fn rss_kib(&mut self) -> anyhow::Result<u64> {
        self.stdin.write_all(b"rss\n").await?;
        match next(&mut self.lines).await? {
            ReferenceMessage::Rss { rss_kib } => {
                rss_kib.context("the reference server process has no VmRSS")
            }
            _ => bail!("the reference server process answered out of order"),
        }
    }

    /// Starts the frames (returns once the order is written, not when it is obeyed).
    pub(crate) async fn go(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"go\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(crate) async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<ReferenceMessage> {
    let line = tokio::time::timeout(ANSWER_TIMEOUT, lines.next_line())
        .await
        .context("the reference server process did not answer in time")??
        .context("the reference server process exited")?;
    serde_json::from_str(&line)
        .with_context(|| format!("the reference server process said {line:?}"))
}
