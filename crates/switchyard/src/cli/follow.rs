//! Following a run's stream in the terminal (`run --follow`, `follow`): renders every
//! event, asks human-loop requests inline, and survives a lost connection.
//!
//! * Resume: a stream that breaks before the run's last event is reopened after the
//!   last cursor received, so nothing is lost or shown twice, with exponential backoff
//!   (`backon`, starting at the stream's `retry:`) until it delivers again.
//! * Ctrl-C: in `run --follow` the first stops the run (POST stop; rendering goes on
//!   until the run ends) and the second detaches; in `follow` the first detaches.
//!   Detaching prints the command that resumes where it left off.
//! * Approvals: when standard input is a terminal, a pending human-loop request is
//!   asked once the stream has gone quiet (a replay of requests already answered is
//!   not asked), and the answer is sent as a reply. When it is not a terminal nothing
//!   is asked: the request waits for `switchyard approve|deny` from anywhere, or is
//!   declined once the executor's human-loop timeout passes.

use super::client::{Client, ClientError, StreamOpen};
use super::exit::Exit;
use super::render::Renderer;
use super::style::{Styles, color_for};
use crate::sse_client::{Frame, Parser};
use anyhow::Context as _;
use backon::{BackoffBuilder as _, ExponentialBuilder};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;
use switchyard_contracts::api::{HumanLoopReplyResponse, RunView, StopRunResponse};
use switchyard_contracts::event::{
    HumanLoopDecision, HumanLoopRequested, RunEvent, RunEventKind, TerminalStatus,
};
use switchyard_contracts::{HumanLoopRequestId, RunId};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The SSE event name of the gateway's "history is missing" notice.
const RESET_EVENT: &str = "stream.reset";
/// How long the stream must be quiet before a pending request is asked.
const ASK_AFTER: Duration = Duration::from_millis(250);
/// Reconnect attempts in a row without an event before giving up.
const MAX_RECONNECTS: usize = 10;
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// What the first Ctrl-C does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Stop the run; a second Ctrl-C detaches.
    Stop,
    /// Detach at once.
    Detach,
}

pub struct FollowOptions {
    pub run_id: RunId,
    pub cursor: Option<String>,
    /// One event per line as JSON on stdout, nothing asked.
    pub json: bool,
    pub on_interrupt: OnInterrupt,
}

/// Results of the requests sent while the stream is being read.
enum Notice {
    Stop(Result<StopRunResponse, ClientError>),
    Reply {
        request_id: HumanLoopRequestId,
        decision: HumanLoopDecision,
        result: Result<HumanLoopReplyResponse, ClientError>,
    },
}

/// How one connection ended.
enum Connection {
    Done(Exit),
    Broken(String),
}

struct Follower {
    client: Client,
    run_id: RunId,
    cursor: Option<String>,
    json: bool,
    on_interrupt: OnInterrupt,
    renderer: Renderer<std::io::Stdout>,
    err: Styles,
    interrupts: u32,
    /// The stream's `retry:` (ms): the first reconnect delay.
    retry_ms: u64,
    notices: mpsc::UnboundedSender<Notice>,
    /// Requests seen and not yet resolved, oldest first (interactive only).
    pending: VecDeque<HumanLoopRequested>,
    /// Requests answered from here (their resolution is ours, not someone else's).
    answered: HashSet<HumanLoopRequestId>,
    asking: Option<HumanLoopRequestId>,
    ask_at: Option<Instant>,
    interactive: bool,
}

/// Follows the run until it ends (its outcome), the user detaches, or the stream is
/// lost for good.
pub async fn follow(client: &Client, options: FollowOptions) -> anyhow::Result<Exit> {
    let stdout = std::io::stdout();
    let color = color_for(&stdout);
    let interactive = !options.json && std::io::stdin().is_terminal();
    let (notices, mut notice_rx) = mpsc::unbounded_channel();
    let mut input = interactive.then(stdin_lines);
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let mut follower = Follower {
        client: client.clone(),
        run_id: options.run_id,
        cursor: options.cursor,
        json: options.json,
        on_interrupt: options.on_interrupt,
        renderer: Renderer::new(stdout, Styles::new(color)),
        err: Styles::new(color_for(&std::io::stderr())),
        interrupts: 0,
        retry_ms: 1_000,
        notices,
        pending: VecDeque::new(),
        answered: HashSet::new(),
        asking: None,
        ask_at: None,
        interactive,
    };
    let mut delays = follower.backoff();
    loop {
        let opened = tokio::select! {
            opened = follower.client.open_stream(follower.run_id, follower.cursor.as_deref()) => opened,
            _ = sigint.recv() => match follower.interrupt() {
                Some(exit) => return Ok(exit),
                None => continue,
            },
        };
        let connection = match opened {
            Ok(StreamOpen::Events(response)) => {
                follower
                    .read(
                        response,
                        &mut sigint,
                        &mut notice_rx,
                        &mut input,
                        &mut delays,
                    )
                    .await?
            }
            Ok(StreamOpen::Ended) => return follower.ended().await,
            Err(e) if e.is_transient() => Connection::Broken(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        let last_error = match connection {
            Connection::Done(exit) => return Ok(exit),
            Connection::Broken(why) => why,
        };
        let Some(delay) = delays.next() else {
            follower.renderer.end_line()?;
            anyhow::bail!(
                "lost the stream of run {} ({last_error}); follow it again: {}",
                follower.run_id,
                follower.resume_command()
            );
        };
        follower.note(&format!(
            "connection lost ({last_error}); reconnecting in {:.1} s",
            delay.as_secs_f64()
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = sigint.recv() => {
                if let Some(exit) = follower.interrupt() {
                    return Ok(exit);
                }
            }
        }
    }
}

impl Follower {
    fn backoff(&self) -> backon::ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.retry_ms.max(100)))
            .with_max_delay(MAX_RECONNECT_DELAY)
            .with_jitter()
            .with_max_times(MAX_RECONNECTS)
            .build()
    }

    /// Reads one connection until the run ends, the user detaches or it breaks.
    async fn read(
        &mut self,
        mut response: reqwest::Response,
        sigint: &mut Signal,
        notices: &mut mpsc::UnboundedReceiver<Notice>,
        input: &mut Option<mpsc::UnboundedReceiver<String>>,
        delays: &mut backon::ExponentialBackoff,
    ) -> anyhow::Result<Connection> {
        let mut parser = Parser::default();
        loop {
            let ask_at = self.ask_at;
            let asking = self.asking.is_some() && input.is_some();
            tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        let frames = parser.feed(&bytes);
                        if let Some(retry) = parser.take_retry() {
                            self.retry_ms = retry;
                        }
                        if !frames.is_empty() {
                            // Events arrive: the connection works, so a later break
                            // starts its backoff afresh.
                            *delays = self.backoff();
                        }
                        for frame in frames {
                            let frame = match frame {
                                Ok(frame) => frame,
                                // Reading it again after a reconnect would drop it
                                // again: say so and go on with the next.
                                Err(too_large) => {
                                    self.note(&format!("skipped an event: {too_large}"));
                                    continue;
                                }
                            };
                            if let Some(exit) = self.frame(frame)? {
                                return Ok(Connection::Done(exit));
                            }
                        }
                    }
                    Ok(None) => {
                        return Ok(Connection::Broken("the stream ended before the run did".into()));
                    }
                    Err(e) => return Ok(Connection::Broken(error_chain(&e))),
                },
                _ = sigint.recv() => {
                    if let Some(exit) = self.interrupt() {
                        return Ok(Connection::Done(exit));
                    }
                }
                Some(notice) = notices.recv() => self.notice(notice),
                line = recv_line(input), if asking => match line {
                    Some(line) => self.answer(&line),
                    None => {
                        // Standard input closed (Ctrl-D): stop asking.
                        *input = None;
                        self.interactive = false;
                        if let Some(id) = self.asking.take() {
                            self.renderer.end_line()?;
                            eprintln!();
                            self.hint(&id);
                        }
                    }
                },
                () = sleep_until(ask_at), if ask_at.is_some() => {
                    self.ask_at = None;
                    if let Some(input) = input.as_mut() {
                        self.ask(input)?;
                    }
                }
            }
        }
    }

    /// Handles one frame; the run's outcome when it was the last.
    fn frame(&mut self, frame: Frame) -> anyhow::Result<Option<Exit>> {
        let Some(value) = frame.json() else {
            return Ok(None);
        };
        if frame.event.as_deref() == Some(RESET_EVENT) {
            if self.json {
                print_json_line(&json!({"type": RESET_EVENT, "data": value}))?;
            } else {
                self.renderer.reset(&value)?;
            }
            return Ok(None);
        }
        let event = serde_json::from_value::<RunEvent>(value.clone()).ok();
        if self.json {
            print_json_line(&value)?;
        } else {
            match &event {
                Some(event) => self.renderer.event(event)?,
                None => self.renderer.unknown(&value)?,
            }
        }
        if let Some(id) = frame.id {
            self.cursor = Some(id);
        }
        let Some(event) = event else {
            return Ok(None);
        };
        match event.kind {
            RunEventKind::HumanLoopRequested(request) => {
                if self.interactive {
                    self.pending.push_back(request);
                } else if !self.json {
                    self.hint(&request.request_id);
                }
            }
            RunEventKind::HumanLoopResolved(resolved) => {
                self.pending.retain(|r| r.request_id != resolved.request_id);
                let ours = self.answered.remove(&resolved.request_id);
                if self.asking.as_ref() == Some(&resolved.request_id) {
                    self.asking = None;
                    if !ours {
                        eprintln!("(answered elsewhere)");
                    }
                }
            }
            RunEventKind::RunCompleted(done) => {
                self.renderer.end_line()?;
                return Ok(Some(Exit::of_run(done.status)));
            }
            _ => {}
        }
        // Ask once the stream is quiet: a replay brings a request's resolution right
        // after it, and an answered request must not be asked.
        if self.asking.is_none() && self.next_to_ask().is_some() {
            self.ask_at = Some(Instant::now() + ASK_AFTER);
        }
        Ok(None)
    }

    fn next_to_ask(&self) -> Option<&HumanLoopRequested> {
        self.pending
            .iter()
            .find(|r| !self.answered.contains(&r.request_id))
    }

    /// Asks the oldest unanswered request.
    fn ask(&mut self, input: &mut mpsc::UnboundedReceiver<String>) -> anyhow::Result<()> {
        let Some(request) = self.next_to_ask() else {
            return Ok(());
        };
        let id = request.request_id.clone();
        let prompt = request.prompt.clone();
        // Whatever was typed while events scrolled by is not an answer to this.
        while input.try_recv().is_ok() {}
        self.renderer.end_line()?;
        let s = self.err.ask;
        eprint!("{s}approve {prompt:?}? [y]es / [n]o:{s:#} ");
        let _ = std::io::stderr().flush();
        self.asking = Some(id);
        Ok(())
    }

    fn answer(&mut self, line: &str) {
        let Some(request_id) = self.asking.clone() else {
            return;
        };
        let decision = match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "a" | "approve" => HumanLoopDecision::Approve,
            "n" | "no" | "d" | "deny" => HumanLoopDecision::Deny,
            _ => {
                let s = self.err.ask;
                eprint!("{s}answer y to approve or n to deny:{s:#} ");
                let _ = std::io::stderr().flush();
                return;
            }
        };
        self.asking = None;
        self.answered.insert(request_id.clone());
        let client = self.client.clone();
        let notices = self.notices.clone();
        let path = format!("/api/runs/{}/human-loop/reply", self.run_id);
        tokio::spawn(async move {
            let result = client
                .post(
                    &path,
                    &json!({"requestId": request_id, "decision": decision}),
                )
                .await;
            let _ = notices.send(Notice::Reply {
                request_id,
                decision,
                result,
            });
        });
    }

    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Stop(Ok(answer)) => self.note(&format!("stop: {}", answer.status)),
            Notice::Stop(Err(e)) => self.note(&format!(
                "could not stop the run: {e}; Ctrl-C again to detach"
            )),
            Notice::Reply { result: Ok(_), .. } => {}
            Notice::Reply {
                request_id,
                decision,
                result: Err(e),
            } => {
                let verb = match decision {
                    HumanLoopDecision::Approve => "approve",
                    HumanLoopDecision::Deny => "deny",
                };
                self.note(&format!("could not {verb} request {request_id}: {e}"));
                // Ask again unless the request is not pending any more.
                if !matches!(&e, ClientError::Api { code, .. } if code == "no_pending_request" || code == "run_finished")
                {
                    self.answered.remove(&request_id);
                    self.ask_at = Some(Instant::now());
                }
            }
        }
    }

    /// Ctrl-C: `Some(exit)` when it detaches.
    fn interrupt(&mut self) -> Option<Exit> {
        self.interrupts += 1;
        if self.asking.take().is_some() {
            eprintln!();
        }
        if self.on_interrupt == OnInterrupt::Stop && self.interrupts == 1 {
            self.note(&format!(
                "stopping run {} (Ctrl-C again to detach)",
                self.run_id
            ));
            let client = self.client.clone();
            let notices = self.notices.clone();
            let path = format!("/api/runs/{}/stop", self.run_id);
            tokio::spawn(async move {
                let result = client
                    .post(&path, &json!({"reason": "Ctrl-C in switchyard"}))
                    .await;
                let _ = notices.send(Notice::Stop(result));
            });
            return None;
        }
        let _ = self.renderer.end_line();
        eprintln!(
            "detached from run {}; it goes on. Follow it again: {}",
            self.run_id,
            self.resume_command()
        );
        Some(Exit::Detached)
    }

    /// The stream answered 204: the cursor was the run's last event.
    async fn ended(&mut self) -> anyhow::Result<Exit> {
        let view: RunView = self
            .client
            .get(&format!("/api/runs/{}", self.run_id))
            .await?;
        let status = serde_json::to_value(view.status)
            .ok()
            .and_then(|s| serde_json::from_value::<TerminalStatus>(s).ok());
        let Some(status) = status else {
            anyhow::bail!(
                "the stream of run {} has ended but the run is {}",
                self.run_id,
                view.status.as_str()
            );
        };
        if !self.json {
            self.renderer.outcome_of_view(&view, status)?;
        }
        Ok(Exit::of_run(status))
    }

    fn resume_command(&self) -> String {
        match &self.cursor {
            Some(cursor) => format!("switchyard follow {} --cursor {cursor}", self.run_id),
            None => format!("switchyard follow {}", self.run_id),
        }
    }

    /// How to answer a request that is not asked here.
    fn hint(&self, request_id: &str) {
        let s = self.err.dim;
        eprintln!(
            "{s}the run waits for an answer (not asked here: standard input is not a terminal): \
             switchyard approve {run} --request {request_id}, or switchyard deny {run} --request \
             {request_id}; unanswered, it is declined when the executor's human-loop timeout \
             passes{s:#}",
            run = self.run_id
        );
    }

    /// A message of the CLI's own (not of the run): on stderr, dimmed.
    fn note(&mut self, text: &str) {
        let _ = self.renderer.end_line();
        let s = self.err.dim;
        eprintln!("{s}{text}{s:#}");
    }
}

/// The lines typed on standard input. A thread of its own: a blocking read cannot be
/// cancelled, and one reader for the whole command keeps every line for the prompt.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn recv_line(input: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match input {
        Some(input) => input.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn print_json_line(value: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
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
