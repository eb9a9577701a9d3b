//! The provider against the real opencode CLI and the fake model, without the
//! supervisor: a real nats-server holds the run's events, a task plays the human.
//! The tests here are ignored by default (each run spawns opencode, 3–5 s, and the
//! end-to-end tests through the executor, `tests/providers/opencode.rs`, cover the same
//! paths); run them with
//! `cargo test -p switchyard-executor --lib opencode::live_tests -- --ignored`. The
//! re-subscription tests in `resubscribe` always run: nothing else covers a cut stream;
//! so does the test that calls the server without the run's password.

mod proxy;
mod resubscribe;

use super::OpencodeProvider;
use crate::cli::{CliEnv, CliLocator, CredentialPolicies, Credentials, ProviderCredentials};
use crate::clock::ActiveClock;
use crate::human_loop::{HumanLoop, HumanReply, PendingRequests};
use crate::provider::{Provider, ProviderOutcome, RunContext, SessionReport};
use crate::sink::EventSink;
use crate::workdirs::{ConversationState, WorkDirs};
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::HumanLoopDecision;
use switchyard_contracts::{
    FailureReason, ProviderName, RunCommand, RunEvent, RunEventKind, RunId,
};
use switchyard_platform::events::EventLog;
use switchyard_platform::nats::{self, Resources};
use switchyard_test_support::NatsServer;
use switchyard_test_support::fake_model::{FINAL_MARKER, FakeModel, TOOL_FILE};
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-fake-opencode-live-0123456789";
/// A variable the operator allows that has no value.
const UNSET: &str = "UNSET_OPENCODE_TEST_KEY";

/// The CLI environment of these tests: the key, and the fake model as the operator's
/// endpoint.
fn cli_env(bin: PathBuf, model: &FakeModel) -> CliEnv {
    let mut env = CliEnv::for_tests(
        CliLocator::new(vec![bin], None),
        Credentials::from_pairs([("OPENAI_API_KEY", KEY)]),
    );
    env.policies = CredentialPolicies::default().with(
        ProviderName::Opencode,
        ProviderCredentials {
            env: vec!["OPENAI_API_KEY".into(), UNSET.into()],
            base_url: Some(model.openai_url()),
        },
    );
    env
}

struct Live {
    _nats: NatsServer,
    log: EventLog,
    model: FakeModel,
    env: Arc<CliEnv>,
    root: tempfile::TempDir,
    /// Where the adapter connects instead of the server (see `api::ROUTE`).
    route: Option<Arc<dyn Fn(u16) -> u16 + Send + Sync>>,
    /// Runs while a human-loop request waits, before it is answered.
    before_answer: Option<Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
}

struct Finished {
    outcome: ProviderOutcome,
    events: Vec<RunEvent>,
    session: Option<String>,
    elapsed: Duration,
}

impl Live {
    async fn start() -> Live {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        nats::provision(
            &js,
            Resources {
                run_events: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let log = EventLog::open(js).await.unwrap();
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../.local/providers/node_modules/.bin");
        let model = FakeModel::start().await.unwrap();
        let env = Arc::new(cli_env(bin, &model));
        Live {
            _nats: nats,
            log,
            model,
            env,
            root: tempfile::tempdir().unwrap(),
            route: None,
            before_answer: None,
        }
    }

    fn command(&self, prompt: &str, options: Value) -> RunCommand {
        let provider_options = if options.is_object() {
            options
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "runId": RunId::now_v7(),
            "provider": "opencode",
            "model": "fake-model",
            "prompt": prompt,
            "providerOptions": provider_options,
            "createdAt": chrono::Utc::now(),
        }))
        .unwrap()
    }

    async fn dirs(&self, name: &str) -> WorkDirs {
        let dirs = WorkDirs::under(&self.root.path().join(name));
        dirs.create().await.unwrap();
        dirs
    }

    /// Runs the command to its end; `decide` answers human-loop requests, `stop_when`
    /// cancels the stop token at the first event it matches.
    async fn run(
        &self,
        command: RunCommand,
        dirs: WorkDirs,
        conversation: Option<ConversationState>,
        decision: HumanLoopDecision,
        stop_when: Option<fn(&RunEvent) -> bool>,
    ) -> Finished {
        let run_id = command.run_id;
        let sink = EventSink::new(self.log.clone(), run_id, EventPosition::EMPTY);
        let pending = Arc::new(PendingRequests::default());
        let stop = CancellationToken::new();
        let human_loop = HumanLoop::new(
            pending.clone(),
            Arc::new(ActiveClock::start()),
            sink.clone(),
            stop.clone(),
        );
        let session = SessionReport::default();
        let ctx = RunContext {
            command,
            workspace: dirs.workspace.clone(),
            dirs,
            conversation,
            events: sink.clone(),
            human_loop,
            stop: stop.clone(),
            session_id: session.clone(),
            evidence: Default::default(),
        };
        let log = self.log.clone();
        let before_answer = self.before_answer.clone();
        let watcher = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut tail = Box::pin(log.tail(run_id, 0).await.unwrap());
                while let Some(Ok(stored)) = tail.next().await {
                    let event = stored.decode().unwrap();
                    if let RunEventKind::HumanLoopRequested(request) = &event.kind {
                        if let Some(before_answer) = &before_answer {
                            before_answer().await;
                        }
                        let _ = pending.answer(
                            Some(&request.request_id),
                            HumanReply {
                                decision,
                                message: None,
                            },
                        );
                    }
                    if stop_when.is_some_and(|matches| matches(&event)) {
                        stop.cancel();
                    }
                }
            }
        });
        let started = Instant::now();
        let run = OpencodeProvider::new(self.env.clone()).run(ctx);
        let bound = Duration::from_secs(120);
        let outcome = match &self.route {
            Some(route) => {
                tokio::time::timeout(bound, super::api::ROUTE.scope(route.clone(), run)).await
            }
            None => tokio::time::timeout(bound, run).await,
        }
        .expect("the provider ends in bounded time");
        let elapsed = started.elapsed();
        // `emit` only queues: what is still queued is appended before the run's
        // events are read back (as the supervisor does before the closing events).
        drop(sink.seal().await);
        watcher.abort();
        Finished {
            outcome,
            events: self.events(run_id).await,
            session: session.get(),
            elapsed,
        }
    }

    async fn events(&self, run_id: RunId) -> Vec<RunEvent> {
        let Some(last) = self.log.last(run_id).await.unwrap() else {
            return Vec::new();
        };
        let count = last.header.seq as usize;
        let tail = self.log.tail(run_id, 0).await.unwrap();
        tail.take(count)
            .map(|stored| stored.unwrap().decode().unwrap())
            .collect()
            .await
    }
}

fn text_of(events: &[RunEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::MessageCompleted(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect()
}

fn failure(outcome: &ProviderOutcome) -> FailureReason {
    match outcome {
        ProviderOutcome::Failed { reason, .. } => *reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Processes (not zombies) whose working directory is `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat.rsplit(')').next()?.split_whitespace().next()?;
            (cwd == dir && !matches!(state, "Z" | "X")).then_some(pid)
        })
        .collect()
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_tool_turn_approved() {
    let live = Live::start().await;
    let dirs = live.dirs("tool").await;
    let workspace = dirs.workspace.clone();
    let done = live
        .run(
            live.command("Create hello.txt please", json!({})),
            dirs,
            None,
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    eprintln!("elapsed {:?}", done.elapsed);
    for event in &done.events {
        eprintln!("{}", serde_json::to_string(&event.kind).unwrap());
    }
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    assert!(text_of(&done.events).contains(FINAL_MARKER));
    assert!(workspace.join(TOOL_FILE).is_file());
    assert!(done.session.is_some());
    assert!(processes_in(&workspace).is_empty());
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_failures() {
    let live = Live::start().await;
    for (prompt, options, expected) in [
        ("SCN_E401 hi", json!({}), FailureReason::AuthInvalid),
        ("SCN_E429 hi", json!({}), FailureReason::RateLimited),
        ("SCN_E500 hi", json!({}), FailureReason::ProviderError),
        ("SCN_EMPTY hi", json!({}), FailureReason::ProviderNoOutput),
        (
            "SCN_HANG hi",
            json!({"firstOutputTimeoutMs": 4000}),
            FailureReason::ProviderNoOutput,
        ),
        (
            "SCN_STALL hi",
            json!({"inactivityTimeoutMs": 4000}),
            FailureReason::Timeout,
        ),
        ("SCN_CUT hi", json!({}), FailureReason::ProviderError),
    ] {
        let dirs = live.dirs(&format!("fail-{}", &prompt[..8])).await;
        let workspace = dirs.workspace.clone();
        let done = live
            .run(
                live.command(prompt, options),
                dirs,
                None,
                HumanLoopDecision::Approve,
                None,
            )
            .await;
        eprintln!("{prompt}: {:?} after {:?}", done.outcome, done.elapsed);
        assert_eq!(failure(&done.outcome), expected, "{prompt}");
        assert!(processes_in(&workspace).is_empty());
    }
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_stop_and_follow_up() {
    let live = Live::start().await;
    let dirs = live.dirs("conv").await;
    let workspace = dirs.workspace.clone();
    let stopped = live
        .run(
            live.command("SCN_SLOW talk slowly", json!({})),
            dirs.clone(),
            None,
            HumanLoopDecision::Approve,
            Some(|event| matches!(event.kind, RunEventKind::MessageDelta(_))),
        )
        .await;
    eprintln!("stop: {:?} after {:?}", stopped.outcome, stopped.elapsed);
    assert_eq!(stopped.outcome, ProviderOutcome::Stopped);
    assert!(processes_in(&workspace).is_empty());
    let session = stopped.session.clone().unwrap();

    let follow = live
        .run(
            live.command("SCN_TEXT and now something else", json!({})),
            dirs,
            Some(ConversationState {
                session_id: Some(session.clone()),
            }),
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    eprintln!("follow-up: {:?} after {:?}", follow.outcome, follow.elapsed);
    assert_eq!(follow.outcome, ProviderOutcome::Succeeded);
    assert_eq!(follow.session.as_deref(), Some(session.as_str()));
    let last = live.model.model_requests().pop().unwrap();
    assert!(
        last.user_text().contains("talk slowly"),
        "{}",
        last.user_text()
    );
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_denied_command_and_approved_file_write() {
    let live = Live::start().await;
    let dirs = live.dirs("deny").await;
    let workspace = dirs.workspace.clone();
    let denied = live
        .run(
            live.command("Create hello.txt please", json!({})),
            dirs,
            None,
            HumanLoopDecision::Deny,
            None,
        )
        .await;
    for event in &denied.events {
        eprintln!("{}", serde_json::to_string(&event.kind).unwrap());
    }
    assert_eq!(denied.outcome, ProviderOutcome::Succeeded);
    assert!(!workspace.join(TOOL_FILE).exists());

    let dirs = live.dirs("patch").await;
    let workspace = dirs.workspace.clone();
    let patched = live
        .run(
            live.command("SCN_PATCH add a file", json!({})),
            dirs,
            None,
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    for event in &patched.events {
        eprintln!("{}", serde_json::to_string(&event.kind).unwrap());
    }
    assert_eq!(patched.outcome, ProviderOutcome::Succeeded);
    assert!(workspace.join("patched.txt").is_file());
    assert!(patched.events.iter().any(|e| matches!(
        &e.kind,
        RunEventKind::FileChanged(change) if change.path == "patched.txt"
    )));
}

#[tokio::test]
async fn a_missing_key_or_binary_fails_before_spawning() {
    let live = Live::start().await;
    let dirs = live.dirs("nokey").await;
    let mut command = live.command("hi", json!({}));
    command.credential_env = vec![UNSET.into()];
    let done = live
        .run(command, dirs, None, HumanLoopDecision::Approve, None)
        .await;
    assert_eq!(failure(&done.outcome), FailureReason::AuthMissing);
    assert!(done.events.is_empty());

    let empty = tempfile::tempdir().unwrap();
    let env = Arc::new(cli_env(empty.path().to_path_buf(), &live.model));
    let live = Live { env, ..live };
    let dirs = live.dirs("nobin").await;
    let done = live
        .run(
            live.command("hi", json!({})),
            dirs,
            None,
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    assert_eq!(failure(&done.outcome), FailureReason::BinaryMissing);
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_a_gone_session_starts_fresh_in_the_same_workspace() {
    let live = Live::start().await;
    let dirs = live.dirs("gone").await;
    let done = live
        .run(
            live.command("SCN_TEXT hello again", json!({})),
            dirs,
            Some(ConversationState {
                session_id: Some("ses_0000000000000000000000gone".into()),
            }),
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    let fresh = done.session.unwrap();
    assert_ne!(fresh, "ses_0000000000000000000000gone");
    assert!(done.events.iter().any(|e| matches!(
        &e.kind,
        RunEventKind::Diagnostic(d) if d.message.contains("is gone")
    )));
}

#[tokio::test]
#[ignore = "spawns the real opencode CLI"]
async fn live_a_server_killed_mid_turn_is_provider_crashed() {
    let live = Live::start().await;
    let dirs = live.dirs("crash").await;
    let workspace = dirs.workspace.clone();
    let command = live.command("SCN_SLOW talk", json!({}));
    let run_id = command.run_id;
    let log = live.log.clone();
    let killer = tokio::spawn(async move {
        // Kill the whole server once the turn streams.
        let mut tail = Box::pin(log.tail(run_id, 0).await.unwrap());
        while let Some(Ok(stored)) = tail.next().await {
            if matches!(stored.decode().unwrap().kind, RunEventKind::MessageDelta(_)) {
                for pid in processes_in(&workspace) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return;
            }
        }
    });
    let done = live
        .run(command, dirs, None, HumanLoopDecision::Approve, None)
        .await;
    killer.abort();
    eprintln!("{:?}", done.outcome);
    let ProviderOutcome::Failed {
        reason, evidence, ..
    } = &done.outcome
    else {
        panic!("{:?}", done.outcome)
    };
    assert_eq!(*reason, FailureReason::ProviderCrashed);
    assert!(
        evidence
            .raw_lines
            .iter()
            .any(|l| l.contains("message.part.delta"))
    );
}

/// The value of `name` in the environment of one of `pids` (the server's processes).
fn environment_value(pids: &[u32], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    pids.iter().find_map(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|b| *b == 0)
            .filter_map(|entry| std::str::from_utf8(entry).ok())
            .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_owned))
    })
}

/// `opencode serve` listens on loopback, which every local process reaches — another
/// run's agent included. While the run waits for an approval, a caller without the
/// run's password (none, or a wrong one) is refused on every route, so it can neither
/// read the session nor answer the permission; the adapter's own calls go through.
#[tokio::test]
async fn the_opencode_server_refuses_callers_without_the_runs_password() {
    let mut live = Live::start().await;
    let port = Arc::new(std::sync::OnceLock::new());
    live.route = Some(Arc::new({
        let port = port.clone();
        move |server_port| {
            let _ = port.set(server_port);
            server_port
        }
    }));
    let dirs = live.dirs("password").await;
    let workspace = dirs.workspace.clone();
    /// What the probes saw while the approval waited.
    #[derive(Clone, Default)]
    struct Seen {
        /// (request, status) of each probe.
        probes: Vec<(String, u16)>,
        /// The password the server was started with.
        password: Option<String>,
    }
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    live.before_answer = Some(Arc::new({
        let port = port.clone();
        let seen = seen.clone();
        let workspace = workspace.clone();
        move || {
            let port = port.clone();
            let seen = seen.clone();
            let workspace = workspace.clone();
            Box::pin(async move {
                let port = *port.get().expect("the adapter connected to the server");
                let base = format!("http://127.0.0.1:{port}");
                let http = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut probes = Vec::new();
                for (who, auth) in [
                    ("no password", None),
                    ("a wrong password", Some("not-the-password")),
                ] {
                    for (method, path, body) in [
                        (reqwest::Method::GET, "/session", None),
                        (reqwest::Method::GET, "/permission", None),
                        (reqwest::Method::GET, "/event", None),
                        (
                            reqwest::Method::POST,
                            "/permission/per_0000000000000000000000000/reply",
                            Some(json!({"reply": "always"})),
                        ),
                    ] {
                        let mut request = http
                            .request(method.clone(), format!("{base}{path}"))
                            .timeout(Duration::from_secs(10));
                        if let Some(password) = auth {
                            request =
                                request.basic_auth(super::api::SERVER_USERNAME, Some(password));
                        }
                        if let Some(body) = body {
                            request = request.json(&body);
                        }
                        let status = request.send().await.unwrap().status().as_u16();
                        probes.push((format!("{method} {path} with {who}"), status));
                    }
                }
                // The right password, read from the server's environment as only the
                // executor's own user can: the refusals above were about the password.
                let password =
                    environment_value(&processes_in(&workspace), "OPENCODE_SERVER_PASSWORD");
                if let Some(password) = &password {
                    let status = http
                        .get(format!("{base}/session"))
                        .basic_auth(super::api::SERVER_USERNAME, Some(password))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    probes.push(("GET /session with the password".to_owned(), status));
                }
                *seen.lock().unwrap() = Seen { probes, password };
            })
        }
    }));
    let done = live
        .run(
            live.command("Create hello.txt please", json!({})),
            dirs,
            None,
            HumanLoopDecision::Approve,
            None,
        )
        .await;
    let Seen { probes, password } = seen.lock().unwrap().clone();
    assert!(!probes.is_empty(), "the run never asked for an approval");
    for (probe, status) in &probes {
        let expected = if probe.ends_with("with the password") {
            200
        } else {
            401
        };
        assert_eq!(*status, expected, "{probe}");
    }
    let password = password.expect("the server runs with OPENCODE_SERVER_PASSWORD");
    assert!(password.len() >= 32, "a weak password");
    // The approval that counted was the run's own, and the password is nowhere in
    // what the run recorded.
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    assert!(workspace.join(TOOL_FILE).is_file());
    let recorded = serde_json::to_string(&done.events).unwrap();
    assert!(
        !recorded.contains(&password),
        "the password is in the run's events"
    );
}
