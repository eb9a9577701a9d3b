//! The load: scripted runs started through the gateway (retried until acknowledged), and
//! one SSE reader per acknowledged run that reconnects with its last cursor whenever its
//! connection breaks.

use crate::cluster::TOKEN;
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard::sse_client;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A script of a few messages, a tool call and a file change with pauses between them:
/// 3.0 to 4.5 s of run time.
pub(crate) fn script(index: usize) -> (Value, Duration) {
    let pause = 1_000 + (index % 6) as u64 * 100;
    let script = json!([
        {"message": {"text": format!("run {index} is thinking about the task"), "chunks": 3}},
        {"sleepMs": pause},
        {"toolCall": {"name": "shell", "input": {"cmd": "ls"}, "output": "a.txt\n", "exitCode": 0}},
        {"sleepMs": pause},
        {"fileChange": {"path": "a.txt", "change": "modified", "diff": "+1"}},
        {"sleepMs": pause},
        {"message": {"text": "done with it", "chunks": 2}},
    ]);
    (script, Duration::from_millis(pause * 3))
}

/// A run the platform acknowledged (202).
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) run_id: String,
    pub(crate) script: Duration,
}

/// What one reader saw, across all its connections.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReaderLog {
    pub(crate) seqs: Vec<u64>,
    pub(crate) last_type: Option<String>,
    /// Connections opened (1 when nothing broke).
    pub(crate) connections: u32,
    /// `stream.reset` notices (history the cursor pointed into was missing).
    pub(crate) resets: u32,
    /// 204 before the reader had seen the terminal event.
    pub(crate) early_204: bool,
    pub(crate) finished: bool,
}

/// Starts `count` runs with at most `parallel` requests in flight; every run is retried
/// until the gateway answers 202 (a request that fails on a dead gateway or
/// control-plane may or may not have created a run: only acknowledged ones count). A
/// reader is attached to each as soon as it is acknowledged.
pub(crate) struct Launch {
    pub(crate) acked: Arc<std::sync::Mutex<Vec<Acked>>>,
    pub(crate) acked_count: Arc<AtomicUsize>,
    pub(crate) failed_attempts: Arc<AtomicUsize>,
    starts: JoinSet<()>,
    pub(crate) readers: Arc<tokio::sync::Mutex<JoinSet<(String, ReaderLog)>>>,
}

impl Launch {
    pub(crate) fn begin(
        http: reqwest::Client,
        base: String,
        first_index: usize,
        count: usize,
        parallel: usize,
        reader_deadline: Instant,
    ) -> Launch {
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let failed_attempts = Arc::new(AtomicUsize::new(0));
        let readers = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let mut starts = JoinSet::new();
        for _ in 0..parallel {
            let (http, base) = (http.clone(), base.clone());
            let (acked, acked_count, failed_attempts, readers, next) = (
                acked.clone(),
                acked_count.clone(),
                failed_attempts.clone(),
                readers.clone(),
                next.clone(),
            );
            starts.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return;
                    }
                    let (script, length) = script(first_index + i);
                    let run_id = loop {
                        match start_run(&http, &base, &script).await {
                            Ok(run_id) => break run_id,
                            Err(_) => {
                                failed_attempts.fetch_add(1, Ordering::SeqCst);
                                if Instant::now() > reader_deadline {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    };
                    acked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Acked {
                            run_id: run_id.clone(),
                            script: length,
                        });
                    acked_count.fetch_add(1, Ordering::SeqCst);
                    let reader = read(http.clone(), base.clone(), run_id.clone(), reader_deadline);
                    readers
                        .lock()
                        .await
                        .spawn(async move { (run_id, reader.await) });
                }
            });
        }
        Launch {
            acked,
            acked_count,
            failed_attempts,
            starts,
            readers,
        }
    }

    /// Waits until every start was acknowledged (or gave up at the deadline).
    pub(crate) async fn started(&mut self) {
        while self.starts.join_next().await.is_some() {}
    }

    /// Waits for every reader (each gives up at its deadline) and returns their logs.
    pub(crate) async fn read_all(&mut self) -> Vec<(String, ReaderLog)> {
        let mut readers = self.readers.lock().await;
        let mut logs = Vec::new();
        while let Some(result) = readers.join_next().await {
            if let Ok(log) = result {
                logs.push(log);
            }
        }
        logs
    }
}

async fn start_run(http: &reqwest::Client, base: &str, script: &Value) -> Result<String, String> {
    let response = http
        .post(format!("{base}/api/runs/start"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(10))
        .json(&json!({
            "provider": "scripted",
            "prompt": "fault injection load",
            "providerOptions": {"script": script}
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().as_u16() != 202 {
        return Err(format!("status {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    body["runId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no runId in {body}"))
}

/// Follows the run's stream to its terminal event, reconnecting with the last cursor
/// (`Last-Event-ID`, as a browser's EventSource does) after every break.
pub(crate) async fn read(
    http: reqwest::Client,
    base: String,
    run_id: String,
    deadline: Instant,
) -> ReaderLog {
    let mut log = ReaderLog::default();
    let mut cursor: Option<String> = None;
    let url = format!("{base}/api/runs/{run_id}/stream");
    let attempt = async {
        loop {
            log.connections += 1;
            let mut request = http.get(&url).bearer_auth(TOKEN);
            if let Some(cursor) = &cursor {
                request = request.header("Last-Event-ID", cursor);
            }
            match request.send().await {
                Ok(response) if response.status().as_u16() == 204 => {
                    log.early_204 = log.last_type.as_deref() != Some("run.completed");
                    log.finished = true;
                    return;
                }
                Ok(response) if response.status().as_u16() == 200 => {
                    let mut frames = Box::pin(sse_client::frames(response));
                    while let Some(frame) = frames.next().await {
                        let Ok(frame) = frame else { break };
                        if frame.event.as_deref() == Some("stream.reset") {
                            log.resets += 1;
                            continue;
                        }
                        let Some(event) = frame.json() else { continue };
                        if let Some(id) = frame.id {
                            cursor = Some(id);
                        }
                        log.seqs.push(event["seq"].as_u64().unwrap_or(0));
                        let kind = event["type"].as_str().unwrap_or("").to_owned();
                        let terminal = kind == "run.completed";
                        log.last_type = Some(kind);
                        if terminal {
                            log.finished = true;
                            return;
                        }
                    }
                }
                // A dead gateway, a control-plane or NATS that does not answer yet.
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let _ = tokio::time::timeout_at(deadline, attempt).await;
    log
}
