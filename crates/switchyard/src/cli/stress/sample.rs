//! One sample of a stress run: start a run, read its stream on one connection (no
//! resume: a broken stream is a finding, not something to hide), time it, keep the raw
//! bytes, and conclude a [`Class`].

use super::report::Class;
use crate::cli::client::{Client, ClientError, StreamOpen};
use crate::sse_client::{Frame, Parser};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;
use switchyard_contracts::RunId;
use switchyard_contracts::api::{StartRunRequest, StartRunResponse};
use switchyard_contracts::event::{FailureReason, RunCompleted, RunStatus, TerminalStatus};
use tokio::time::{Instant, timeout_at};

/// The SSE `type` of a run's terminal event.
const RUN_COMPLETED: &str = "run.completed";
/// How long `run.json` waits for the run's record to catch up with the stream (the
/// control-plane projects events a moment after the gateway streams them), or for the
/// end of a run the client stopped.
const RECORD_WAIT: Duration = Duration::from_secs(10);
const RECORD_POLL: Duration = Duration::from_millis(200);
/// Attempts at `GET /api/runs/{id}` when the gateway cannot be reached for a moment.
const RECORD_ATTEMPTS: usize = 3;

/// How the sample's connections went: the equivalent of curl's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The stream delivered the run's terminal event.
    Completed,
    /// A connection broke (or the gateway ended the stream) before the answer or the
    /// terminal event.
    Reset,
    /// The client gave up: `--timeout-ms` passed, or the stream stayed silent longer
    /// than the client's read timeout.
    ClientTimeout,
    /// No connection to the gateway could be made.
    ConnectFailed,
    /// The stream request was answered with an HTTP error (`streamHttpStatus`).
    HttpError,
    /// No stream was opened: the start call was refused.
    NotOpened,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Completed => "completed",
            Transport::Reset => "reset",
            Transport::ClientTimeout => "client_timeout",
            Transport::ConnectFailed => "connect_failed",
            Transport::HttpError => "http_error",
            Transport::NotOpened => "not_opened",
        }
    }
}

/// The start call's refusal: the API's error code and message, or the start of a body
/// that is not the API's.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// 1-based; the evidence directory is `samples/<n>`.
    pub n: usize,
    pub class: Class,
    /// Which provider-option set (0-based) the sample used.
    pub option_set: usize,
    pub run_id: Option<RunId>,
    pub start_http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_error: Option<StartError>,
    pub transport: Transport,
    /// What broke, in words, when the transport did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_detail: Option<String>,
    pub stream_http_status: Option<u16>,
    pub start_ms: Option<u64>,
    pub first_event_ms: Option<u64>,
    pub terminal_ms: Option<u64>,
    /// SSE frames received (keep-alive comments are not frames).
    pub events: u64,
    /// The `seq` of the last run event received.
    pub last_seq: Option<u64>,
    pub stream_bytes: u64,
    /// The run's terminal event: status, failure reason and detail.
    pub status: Option<TerminalStatus>,
    pub reason: Option<FailureReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The client stopped the run after its own timeout.
    pub stopped_by_client: bool,
    /// The run's status in `run.json`, for a failed sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_status: Option<String>,
    /// The sample's evidence directory, relative to the report (failed samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

impl Sample {
    pub fn new(n: usize, option_set: usize) -> Self {
        Sample {
            n,
            class: Class::Succeeded,
            option_set,
            run_id: None,
            start_http_status: None,
            start_error: None,
            transport: Transport::NotOpened,
            transport_detail: None,
            stream_http_status: None,
            start_ms: None,
            first_event_ms: None,
            terminal_ms: None,
            events: 0,
            last_seq: None,
            stream_bytes: 0,
            status: None,
            reason: None,
            detail: None,
            stopped_by_client: false,
            run_status: None,
            evidence: None,
        }
    }

    /// One line on what happened, for the failed-samples table.
    pub fn summary(&self) -> String {
        if let Some(error) = &self.start_error {
            let status = self
                .start_http_status
                .map(|s| format!("HTTP {s} "))
                .unwrap_or_default();
            return match &error.code {
                Some(code) => format!("{status}{code}: {}", error.message),
                None => format!("{status}{}", error.message),
            };
        }
        let mut text = self.detail.clone().unwrap_or_default();
        if let Some(transport) = &self.transport_detail {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(transport);
        }
        if let Some(status) = &self.run_status {
            text.push_str(&format!(" (run: {status})"));
        }
        text.trim().to_owned()
    }
}

/// A finished sample: its row, the raw stream bytes and, for a failed one, `run.json`.
pub(super) struct Outcome {
    pub sample: Sample,
    pub raw: Vec<u8>,
    pub run_json: Option<Value>,
}

/// What every sample shares.
pub(super) struct Plan {
    pub client: Client,
    /// The start request without provider options.
    pub request: StartRunRequest,
    /// The provider-option sets, cycled by sample number; `None` sends none.
    pub option_sets: Vec<Option<Map<String, Value>>>,
    pub timeout: Duration,
}

impl Plan {
    /// Runs sample `n` (1-based) to its end.
    pub(super) async fn sample(&self, n: usize) -> Outcome {
        let option_set = (n - 1) % self.option_sets.len().max(1);
        let mut sample = Sample::new(n, option_set);
        let mut raw = Vec::new();
        let request = StartRunRequest {
            provider_options: self.option_sets.get(option_set).cloned().flatten(),
            ..self.request.clone()
        };
        let sent = Instant::now();
        let deadline = sent + self.timeout;
        let mut start_answer = None;

        let started = self
            .start(&request, deadline, &mut sample, &mut start_answer)
            .await;
        sample.start_ms = Some(millis(sent.elapsed()));
        let mut terminal = None;
        if let Some(run_id) = started {
            sample.run_id = Some(run_id);
            terminal = self
                .read_stream(run_id, sent, deadline, &mut sample, &mut raw)
                .await;
        }
        if let Some(done) = &terminal {
            sample.status = Some(done.status);
            sample.reason = done.reason;
            sample.detail = done.detail.clone();
        }
        sample.class = Class::of(
            started.is_some(),
            sample.transport,
            terminal.as_ref().map(|d| (d.status, d.reason)),
        );

        if sample.transport == Transport::ClientTimeout
            && let Some(run_id) = started
        {
            // The client's timeout is the most this run may take: stop it, so that it
            // neither holds an executor slot past the sample nor lingers after the stress
            // run. Its record then shows what the stop made of it.
            sample.stopped_by_client = self.stop(run_id).await;
        }

        let run_json = if sample.class == Class::Succeeded {
            None
        } else {
            Some(match started {
                Some(run_id) => {
                    let record = self
                        .record(run_id, sample.last_seq, sample.stopped_by_client)
                        .await;
                    sample.run_status = record
                        .get("status")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    record
                }
                None => start_answer.unwrap_or(Value::Null),
            })
        };
        sample.stream_bytes = raw.len() as u64;
        Outcome {
            sample,
            raw,
            run_json,
        }
    }

    /// The start call; the run id when it started one. A refusal's answer goes to
    /// `answer` (it is the sample's `run.json`).
    async fn start(
        &self,
        request: &StartRunRequest,
        deadline: Instant,
        sample: &mut Sample,
        answer: &mut Option<Value>,
    ) -> Option<RunId> {
        let call = self
            .client
            .post_with_status::<_, StartRunResponse>("/api/runs/start", request);
        let error = match timeout_at(deadline, call).await {
            Ok(Ok((status, started))) => {
                sample.start_http_status = Some(status);
                return Some(started.run_id);
            }
            Err(_) => {
                sample.transport = Transport::ClientTimeout;
                let why = format!("the start call had no answer within {}", self.limit());
                sample.transport_detail = Some(why.clone());
                *answer = Some(no_run(&why, None));
                return None;
            }
            Ok(Err(error)) => error,
        };
        match &error {
            ClientError::Api {
                status,
                code,
                message,
            } => {
                sample.start_http_status = Some(*status);
                sample.start_error = Some(StartError {
                    code: Some(code.clone()),
                    message: message.clone(),
                });
                *answer = Some(no_run(
                    "the start call was refused",
                    Some((
                        *status,
                        json!({"error": {"code": code, "message": message}}),
                    )),
                ));
            }
            ClientError::Http { status, body, .. } => {
                sample.start_http_status = Some(*status);
                let body = body.trim_start_matches(": ").to_owned();
                sample.start_error = Some(StartError {
                    code: None,
                    message: body.clone(),
                });
                *answer = Some(no_run(
                    "the start call was refused",
                    Some((*status, Value::String(body))),
                ));
            }
            ClientError::Unreachable { source, .. } => {
                sample.transport = unanswered(source);
                let why = format!("the start call got no answer: {}", error_chain(source));
                sample.transport_detail = Some(why.clone());
                *answer = Some(no_run(&why, None));
            }
            // A 2xx whose body is not a start answer: the run may exist, but it is
            // unknown to us.
            ClientError::Decode { .. } => {
                sample.start_error = Some(StartError {
                    code: None,
                    message: error.to_string(),
                });
                *answer = Some(no_run(&error.to_string(), None));
            }
        }
        None
    }

    /// Reads the run's stream on one connection until its terminal event, a break, or
    /// the deadline; the terminal event when it came.
    async fn read_stream(
        &self,
        run_id: RunId,
        sent: Instant,
        deadline: Instant,
        sample: &mut Sample,
        raw: &mut Vec<u8>,
    ) -> Option<RunCompleted> {
        let mut response = match timeout_at(deadline, self.client.open_stream(run_id, None)).await {
            Err(_) => {
                sample.transport = Transport::ClientTimeout;
                sample.transport_detail =
                    Some(format!("the stream did not open within {}", self.limit()));
                return None;
            }
            Ok(Ok(StreamOpen::Events(response))) => response,
            Ok(Ok(StreamOpen::Ended)) => {
                sample.stream_http_status = Some(204);
                sample.transport = Transport::HttpError;
                sample.transport_detail =
                    Some("the gateway answered 204: no events will follow".to_owned());
                return None;
            }
            Ok(Err(error)) => {
                match &error {
                    ClientError::Api { status, .. } | ClientError::Http { status, .. } => {
                        sample.stream_http_status = Some(*status);
                        sample.transport = Transport::HttpError;
                    }
                    ClientError::Unreachable { source, .. } => {
                        sample.transport = unanswered(source);
                    }
                    ClientError::Decode { .. } => sample.transport = Transport::HttpError,
                }
                sample.transport_detail = Some(error.to_string());
                return None;
            }
        };
        sample.stream_http_status = Some(response.status().as_u16());
        let mut parser = Parser::default();
        loop {
            let chunk = match timeout_at(deadline, response.chunk()).await {
                Err(_) => {
                    sample.transport = Transport::ClientTimeout;
                    sample.transport_detail = Some(format!(
                        "{} passed before the run's terminal event",
                        self.limit()
                    ));
                    return None;
                }
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => {
                    sample.transport = Transport::Reset;
                    sample.transport_detail = Some(
                        "the gateway ended the stream before the run's terminal event".to_owned(),
                    );
                    return None;
                }
                Ok(Err(error)) => {
                    if error.is_timeout() {
                        sample.transport = Transport::ClientTimeout;
                        sample.transport_detail = Some(format!(
                            "the stream was silent longer than the client's read timeout: {}",
                            error_chain(&error)
                        ));
                    } else {
                        sample.transport = Transport::Reset;
                        sample.transport_detail = Some(error_chain(&error));
                    }
                    return None;
                }
            };
            // The bytes as they came, before the parser sees them.
            raw.extend_from_slice(&chunk);
            for frame in parser.feed(&chunk) {
                sample.events += 1;
                if let Some(seq) = frame
                    .json()
                    .and_then(|event| event.get("seq").and_then(Value::as_u64))
                {
                    sample.last_seq = Some(seq);
                }
                sample
                    .first_event_ms
                    .get_or_insert_with(|| millis(sent.elapsed()));
                if let Some(done) = terminal_of(&frame) {
                    sample.terminal_ms = Some(millis(sent.elapsed()));
                    sample.transport = Transport::Completed;
                    return Some(done);
                }
            }
        }
    }

    /// The client's limit, in words.
    fn limit(&self) -> String {
        format!(
            "the client's --timeout-ms ({} ms)",
            self.timeout.as_millis()
        )
    }

    async fn stop(&self, run_id: RunId) -> bool {
        let path = format!("/api/runs/{run_id}/stop");
        self.client
            .post::<_, Value>(
                &path,
                &json!({"reason": "switchyard stress: the client's --timeout-ms passed"}),
            )
            .await
            .is_ok()
    }

    /// `GET /api/runs/{id}`, once the record has caught up with the stream (its
    /// `lastEventSeq` reaches `seen`, the last event the stream delivered) and, for a run
    /// the client stopped, once it has ended; at most [`RECORD_WAIT`], so that `run.json`
    /// tells at least what `sse.raw.txt` shows.
    async fn record(&self, run_id: RunId, seen: Option<u64>, stopped: bool) -> Value {
        let path = format!("/api/runs/{run_id}");
        let until = Instant::now() + RECORD_WAIT;
        let mut failures = 0;
        loop {
            match self.client.get::<Value>(&path).await {
                Ok(record) => {
                    let ended = record
                        .get("status")
                        .and_then(Value::as_str)
                        .and_then(RunStatus::parse)
                        .is_some_and(RunStatus::is_terminal);
                    let projected = record.get("lastEventSeq").and_then(Value::as_u64);
                    let caught_up = match seen {
                        Some(seen) => projected.is_some_and(|p| p >= seen),
                        None => true,
                    };
                    if (caught_up && (ended || !stopped)) || Instant::now() >= until {
                        return record;
                    }
                }
                Err(error) => {
                    failures += 1;
                    if !error.is_transient() || failures >= RECORD_ATTEMPTS {
                        return json!({
                            "runId": run_id,
                            "recordError": error.to_string(),
                        });
                    }
                }
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
    }
}

/// The run's outcome when `frame` is its terminal event.
fn terminal_of(frame: &Frame) -> Option<RunCompleted> {
    let value = frame.json()?;
    if value.get("type").and_then(Value::as_str) != Some(RUN_COMPLETED) {
        return None;
    }
    serde_json::from_value(value.get("data")?.clone()).ok()
}

/// `run.json` of a sample without a run: what the start call answered.
fn no_run(why: &str, answer: Option<(u16, Value)>) -> Value {
    let mut record = json!({"noRun": why});
    if let Some((status, body)) = answer {
        record["startHttpStatus"] = json!(status);
        record["startAnswer"] = body;
    }
    record
}

/// The transport outcome of a request that got no HTTP answer.
fn unanswered(error: &reqwest::Error) -> Transport {
    if error.is_timeout() {
        Transport::ClientTimeout
    } else if error.is_connect() {
        Transport::ConnectFailed
    } else {
        Transport::Reset
    }
}

/// An error with its causes, on one line (reqwest's own text says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The content of `sse.raw.txt`: the bytes as received, or one SSE comment line saying
/// that none arrived (a comment, so the file still reads as a stream).
pub(super) fn raw_file(sample: &Sample, raw: &[u8]) -> Vec<u8> {
    if !raw.is_empty() {
        return raw.to_vec();
    }
    let why = match (sample.run_id, sample.transport) {
        (None, _) => format!(
            "no stream was opened: the start call did not start a run ({})",
            sample.summary()
        ),
        (Some(_), transport) => format!(
            "the stream delivered no bytes ({}{})",
            transport.as_str(),
            sample
                .transport_detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
    };
    let why: String = why.chars().filter(|c| !c.is_control()).collect();
    format!(": switchyard stress: {why}\n").into_bytes()
}
