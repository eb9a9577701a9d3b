//! A swarm of SSE clients in a child process (`switchyard-bench --sse-client-worker`).
//!
//! Ten thousand clients in the benchmark's own process would need twenty thousand file
//! descriptors (both ends of every connection) and would mix the clients' memory into
//! the gateway's. In a child process the clients have their own descriptor limit, and
//! this process's resident memory is the server side alone.
//!
//! Protocol: the parent writes one [`SwarmJob`] as a JSON line to the child's stdin; the
//! child answers with JSON lines on stdout: [`SwarmMessage::Ready`] once every client
//! has connected and read `ready_events` events (or failed), then
//! [`SwarmMessage::Done`] when every stream has ended.

use super::sse::SseStream;
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::{Semaphore, mpsc};

/// Read buffer per client: SSE frames are small, and ten thousand buffers add up.
const CLIENT_BUFFER: usize = 4 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SwarmJob {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    pub(crate) token: String,
    pub(crate) clients: usize,
    /// Events every client reads before it counts as connected.
    pub(crate) ready_events: u64,
    /// Connections being opened at once (the listen backlog is finite).
    pub(crate) connect_concurrency: usize,
    pub(crate) timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum SwarmMessage {
    Ready {
        ready: usize,
        failed: usize,
        first_error: Option<String>,
    },
    Done {
        /// Clients that read their stream to the terminal event.
        finished: usize,
        /// Events read after `ready_events`, all clients together.
        deliveries: u64,
        body_bytes: u64,
        /// When the last of those events arrived (Unix time, ns).
        last_delivery_unix_ns: Option<u64>,
        errors: usize,
        first_error: Option<String>,
    },
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Now, as the swarm reports times.
pub(crate) fn now_unix_ns() -> u64 {
    unix_ns()
}

struct ClientOutcome {
    finished: bool,
    deliveries: u64,
    body_bytes: u64,
    last_delivery: Option<u64>,
    error: Option<String>,
}

async fn client(
    job: Arc<SwarmJob>,
    connect: Arc<Semaphore>,
    ready_tx: mpsc::UnboundedSender<Result<(), String>>,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        finished: false,
        deliveries: 0,
        body_bytes: 0,
        last_delivery: None,
        error: None,
    };
    // The permit is held until this client is ready, so at most `connect_concurrency`
    // connections are being set up at once.
    let permit = connect.acquire_owned().await.ok();
    let mut stream = match SseStream::open(job.addr, &job.path, &job.token, CLIENT_BUFFER).await {
        Ok(stream) => stream,
        Err(e) => {
            let reason = format!("{e:#}");
            let _ = ready_tx.send(Err(reason.clone()));
            outcome.error = Some(reason);
            return outcome;
        }
    };
    let became_ready = loop {
        if stream.scan.events >= job.ready_events {
            break Ok(());
        }
        if stream.scan.terminal {
            break Err("the stream ended before the client was ready".to_owned());
        }
        match stream.read().await {
            Ok(Some(_)) => {}
            Ok(None) => break Err("the stream ended before the client was ready".to_owned()),
            Err(e) => break Err(format!("{e:#}")),
        }
    };
    drop(permit);
    if let Err(reason) = became_ready {
        let _ = ready_tx.send(Err(reason.clone()));
        outcome.error = Some(reason);
        outcome.body_bytes = stream.scan.body_bytes;
        return outcome;
    }
    let _ = ready_tx.send(Ok(()));
    drop(ready_tx);
    if stream.scan.events > job.ready_events {
        outcome.last_delivery = Some(unix_ns());
    }
    // From here on every event is a delivery being measured.
    while !stream.scan.terminal {
        match stream.read().await {
            Ok(Some(new)) => {
                if new > 0 {
                    outcome.last_delivery = Some(unix_ns());
                }
            }
            Ok(None) => break,
            Err(e) => {
                outcome.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    outcome.deliveries = stream.scan.events.saturating_sub(job.ready_events);
    outcome.finished = stream.scan.terminal;
    outcome.body_bytes = stream.scan.body_bytes;
    outcome
}

/// Runs a swarm and reports through `report`; what the child process does.
pub(crate) async fn run(job: SwarmJob, mut report: impl FnMut(SwarmMessage)) {
    let job = Arc::new(job);
    let connect = Arc::new(Semaphore::new(job.connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..job.clients {
        tasks.spawn(client(job.clone(), connect.clone(), ready_tx.clone()));
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(job.timeout_secs);

    let (mut ready, mut failed, mut first_error) = (0, 0, None);
    while ready + failed < job.clients {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Ok(None) => break,
            Err(_) => {
                first_error.get_or_insert_with(|| "timed out connecting".to_owned());
                failed = job.clients - ready;
                break;
            }
        }
    }
    report(SwarmMessage::Ready {
        ready,
        failed,
        first_error,
    });

    let (mut finished, mut deliveries, mut body_bytes, mut last, mut errors) =
        (0, 0, 0, None::<u64>, 0);
    let mut first_error = None;
    loop {
        let next = tokio::time::timeout_at(deadline, tasks.join_next()).await;
        match next {
            Ok(Some(Ok(outcome))) => {
                finished += usize::from(outcome.finished);
                deliveries += outcome.deliveries;
                body_bytes += outcome.body_bytes;
                last = last.max(outcome.last_delivery);
                if let Some(e) = outcome.error {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            Ok(Some(Err(e))) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            Ok(None) => break,
            Err(_) => {
                errors += tasks.len();
                first_error.get_or_insert_with(|| "timed out reading the streams".to_owned());
                tasks.abort_all();
                break;
            }
        }
    }
    report(SwarmMessage::Done {
        finished,
        deliveries,
        body_bytes,
        last_delivery_unix_ns: last,
        errors,
        first_error,
    });
}

/// The child process's side: reads the job from stdin, writes messages to stdout.
/// Two short messages in all, so plain blocking standard I/O is enough.
pub(crate) async fn worker_main() -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("read the swarm job from stdin")?;
    let job: SwarmJob = serde_json::from_str(&line).context("decode the swarm job")?;
    run(job, |message| {
        // The parent waits for the message: an unencodable one is reported on stderr
        // (shared with the benchmark's) rather than sent as an empty line.
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("cannot encode a message to the benchmark: {error}");
                return;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    })
    .await;
    Ok(())
}

/// The parent's handle on a swarm child process.
pub(crate) struct Swarm {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Swarm {
    /// Starts `exe --sse-client-worker` and hands it `job`.
    pub(crate) async fn spawn(exe: &Path, job: &SwarmJob) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(exe)
            .arg("--sse-client-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start the SSE client process {}", exe.display()))?;
        let mut stdin = child
            .stdin
            .take()
            .context("the client process has no stdin")?;
        let mut text = serde_json::to_string(job)?;
        text.push('\n');
        stdin.write_all(text.as_bytes()).await?;
        drop(stdin);
        let stdout = child
            .stdout
            .take()
            .context("the client process has no stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next message, within `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> anyhow::Result<SwarmMessage> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .context("the SSE client process did not answer in time")??;
        match line {
            Some(line) => serde_json::from_str(&line)
                .with_context(|| format!("the SSE client process said {line:?}")),
            None => {
                let status = self.child.wait().await?;
                bail!("the SSE client process exited ({status}) without reporting")
            }
        }
    }

    pub(crate) async fn finish(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
