//! The `codex-app-server` adapter end to end: the real, pinned `codex app-server`
//! driven by an in-process executor over NATS, against the fake model's OpenAI
//! Responses API.

use crate::common::{
    Finished, ProviderHarness, RunSpec, UNSET_CREDENTIAL, processes_mentioning, require_cli,
    wait_no_process_mentioning,
};
use std::time::{Duration, Instant};
use switchyard_contracts::event::{
    FileChangeKind, HumanLoopDecision, HumanLoopKind, TerminalStatus, ToolStatus,
};
use switchyard_contracts::{FailureReason, RunEventKind};
use switchyard_test_support::fake_model::{
    FINAL_MARKER, PATCH_FILE, PATCH_LINE, TEXT_MARKER, TOOL_COMMAND, TOOL_FILE,
};

/// Longest a failing run may take, from dispatch to `run.completed`.
const FAILURE_BOUND: Duration = Duration::from_secs(60);

fn codex(prompt: &str) -> RunSpec {
    require_cli("codex");
    RunSpec::new("codex-app-server", prompt)
        .model("fake-model")
        .credential("OPENAI_API_KEY")
        // Failures surface within seconds.
        .option("streamIdleTimeoutMs", 3_000)
}

fn tool_status(finished: &Finished) -> Option<ToolStatus> {
    finished.events.iter().find_map(|e| match &e.kind {
        RunEventKind::ToolCompleted(completed) => Some(completed.status),
        _ => None,
    })
}

/// The pid of the run's app-server, from the adapter's start diagnostic.
fn app_server_pid(events: &[switchyard_contracts::RunEvent]) -> Option<u32> {
    events.iter().find_map(|e| match &e.kind {
        RunEventKind::Diagnostic(d) => d
            .message
            .strip_prefix("codex app-server started (pid ")?
            .strip_suffix(')')?
            .parse()
            .ok(),
        _ => None,
    })
}

fn alive(pid: u32) -> bool {
    switchyard_executor::test_support::process_alive(pid)
}

/// Nothing of the run's codex may be left.
async fn assert_no_process_left(finished: &Finished) {
    let workspace = finished.workspace().display().to_string();
    let left = wait_no_process_mentioning(&workspace, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes left in {workspace}: {left:?}");
    if let Some(pid) = app_server_pid(&finished.events) {
        assert!(!alive(pid), "the app-server {pid} survived the run");
    }
}

fn assert_no_secret(harness: &ProviderHarness, finished: &Finished) {
    harness.assert_no_secret_in("the run's events", &finished.json());
}

#[tokio::test]
async fn a_tool_turn_creates_the_file_and_answers() {
    let harness = ProviderHarness::start().await;
    let started = Instant::now();
    let finished = harness.run_simple(&codex("Create hello.txt please")).await;
    eprintln!("codex: one tool turn took {:?}", started.elapsed());

    let completed = finished.completed();
    assert_eq!(completed.status, TerminalStatus::Succeeded, "{completed:?}");
    assert!(
        finished.final_text().contains(FINAL_MARKER),
        "{}",
        finished.json()
    );
    let workspace = finished.workspace();
    let hello = std::fs::read_to_string(workspace.join(TOOL_FILE)).expect("hello.txt written");
    assert_eq!(hello, "hello from fake model\n");
    // `on-request` (the default) lets the agent work inside its sandbox unasked.
    assert!(finished.asked.is_empty(), "{:?}", finished.asked);
    let types = finished.types();
    for expected in [
        "run.started",
        "tool.started",
        "tool.output",
        "tool.completed",
        "message.delta",
        "message.completed",
        "usage",
        "run.completed",
    ] {
        assert!(types.contains(&expected), "{expected} missing in {types:?}");
    }
    let command = finished
        .events
        .iter()
        .find_map(|e| match &e.kind {
            RunEventKind::ToolStarted(started) => Some(started.input["command"].to_string()),
            _ => None,
        })
        .unwrap();
    assert!(command.contains(TOOL_COMMAND), "{command}");
    assert_eq!(tool_status(&finished), Some(ToolStatus::Succeeded));
    // The shell command's file is found by the workspace scan, once.
    assert_eq!(
        finished.file_changes(),
        [(TOOL_FILE.to_owned(), FileChangeKind::Added)],
        "{types:?}"
    );

    // The key reached the model API only through codex's environment.
    let requests = harness.fake.requests_for("/v1/responses");
    assert!(requests.len() >= 2, "a tool call and the final answer");
    assert!(
        requests
            .iter()
            .all(|r| r.api_key() == Some(harness.secret("OPENAI_API_KEY")))
    );
    assert_no_secret(&harness, &finished);
    assert_no_process_left(&finished).await;
}

#[tokio::test]
async fn an_approved_command_runs() {
    let harness = ProviderHarness::start().await;
    let spec = codex("Create hello.txt please").option("approvalPolicy", "untrusted");
    let finished = harness.run(&spec, |_| HumanLoopDecision::Approve).await;

    assert_eq!(finished.completed().status, TerminalStatus::Succeeded);
    let [asked] = finished.asked.as_slice() else {
        panic!("one approval expected: {:?}", finished.asked)
    };
    assert_eq!(asked.kind, HumanLoopKind::Command);
    assert!(asked.prompt.contains(TOOL_COMMAND), "{}", asked.prompt);
    assert!(finished.workspace().join(TOOL_FILE).is_file());
    assert_eq!(tool_status(&finished), Some(ToolStatus::Succeeded));
    assert!(finished.types().contains(&"human_loop.resolved"));
}

#[tokio::test]
async fn a_declined_command_does_not_run_and_the_turn_goes_on() {
    let harness = ProviderHarness::start().await;
    let spec = codex("Create hello.txt please").option("approvalPolicy", "untrusted");
    let finished = harness.run(&spec, |_| HumanLoopDecision::Deny).await;

    assert_eq!(
        finished.completed().status,
        TerminalStatus::Succeeded,
        "{:?}",
        finished.completed()
    );
    assert_eq!(finished.asked.len(), 1);
    assert!(!finished.workspace().join(TOOL_FILE).exists());
    assert_eq!(tool_status(&finished), Some(ToolStatus::Declined));
    assert!(finished.final_text().contains(FINAL_MARKER));
}

/// The v2 approval answer has no field for a message: the adapter steers it into the
/// running turn, and the model's next request holds it next to the declined call.
#[tokio::test]
async fn a_declined_commands_message_reaches_the_model() {
    const REASON: &str = "DENY_REASON_7f3a: write notes.txt instead";
    let harness = ProviderHarness::start().await;
    let spec = codex("Create hello.txt please").option("approvalPolicy", "untrusted");
    let run_id = harness.dispatch(&spec).await;
    // The first ask is declined with the message, any later one without.
    let mut first = true;
    let finished = harness
        .drive_with(run_id, |_| {
            let message = std::mem::take(&mut first).then(|| REASON.to_owned());
            (HumanLoopDecision::Deny, message)
        })
        .await;
    assert_eq!(
        finished.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        finished.json()
    );
    assert_eq!(tool_status(&finished), Some(ToolStatus::Declined));
    assert!(!finished.workspace().join(TOOL_FILE).exists());
    // The request right after the decline holds the declined call's result and the
    // message.
    let requests = harness.fake.requests_for("/v1/responses");
    let after = requests
        .iter()
        .find(|r| r.tool_result_count() >= 1)
        .unwrap_or_else(|| panic!("no request after the decline: {} requests", requests.len()));
    assert!(
        after.body_text().contains(REASON),
        "the model request after the decline lacks the message; its user text: {}",
        after.user_text()
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.body_text().contains(REASON))
            .count(),
        requests.len() - 1,
        "every request after the decline carries the message once it is in the history"
    );
}

#[tokio::test]
async fn an_approved_patch_is_a_file_change() {
    let harness = ProviderHarness::start().await;
    let spec = codex("SCN_PATCH add a file").option("approvalPolicy", "untrusted");
    let finished = harness.run(&spec, |_| HumanLoopDecision::Approve).await;

    assert_eq!(
        finished.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        finished.json()
    );
    let patched = std::fs::read_to_string(finished.workspace().join(PATCH_FILE)).unwrap();
    assert_eq!(patched.trim_end(), PATCH_LINE);
    let changed = finished
        .events
        .iter()
        .find_map(|e| match &e.kind {
            RunEventKind::FileChanged(changed) => Some(changed.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no file.changed in {:?}", finished.types()));
    assert_eq!(changed.path, PATCH_FILE);
    assert_eq!(changed.change, FileChangeKind::Added);
    // Reported by the patch, and not once more by the workspace scan.
    assert_eq!(
        finished.file_changes(),
        [(PATCH_FILE.to_owned(), FileChangeKind::Added)],
        "{}",
        finished.json()
    );
    let [asked] = finished.asked.as_slice() else {
        panic!("one approval expected: {:?}", finished.asked)
    };
    assert_eq!(asked.kind, HumanLoopKind::FileChange);
    assert_eq!(asked.prompt, PATCH_FILE);
    assert_eq!(asked.details["changes"][0]["kind"], "add");
}

#[tokio::test]
async fn a_stop_mid_turn_interrupts_and_leaves_no_process() {
    let harness = ProviderHarness::start().await;
    let run_id = harness.dispatch(&codex("SCN_SLOW talk for a while")).await;
    let first_delta = harness
        .wait_for_event(run_id, |e| {
            matches!(
                e.kind,
                RunEventKind::MessageDelta(_) | RunEventKind::RunCompleted(_)
            )
        })
        .await;
    assert!(
        matches!(first_delta.kind, RunEventKind::MessageDelta(_)),
        "{first_delta:?}"
    );
    let stop_sent = Instant::now();
    harness.stop(run_id).await;
    let events = harness.events_until_terminal(run_id).await;
    let took = stop_sent.elapsed();
    let finished = Finished {
        run_id,
        events,
        asked: Vec::new(),
    };
    let completed = finished.completed();
    assert_eq!(completed.status, TerminalStatus::Stopped, "{completed:?}");
    assert_eq!(completed.reason, Some(FailureReason::Stopped));
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
    let pid = app_server_pid(&finished.events).expect("the start diagnostic names the pid");
    assert_no_process_left(&finished).await;
    assert!(!alive(pid));
    assert!(processes_mentioning(&finished.workspace().display().to_string()).is_empty());
}

#[tokio::test]
async fn a_follow_up_run_continues_the_thread_in_the_same_workspace() {
    let harness = ProviderHarness::start().await;
    let first = harness.run_simple(&codex("Create hello.txt please")).await;
    assert_eq!(first.completed().status, TerminalStatus::Succeeded);
    let before = harness.fake.requests_for("/v1/responses").len();

    let second = harness
        .run_simple(&codex("SCN_TEXT what did you do?").conversation(first.run_id))
        .await;
    assert_eq!(
        second.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        second.json()
    );
    assert!(second.final_text().contains(TEXT_MARKER));
    assert_eq!(second.workspace(), first.workspace());
    // The model saw the first turn: the resumed thread carried its history.
    let requests = harness.fake.requests_for("/v1/responses");
    let resumed = &requests[before..];
    assert!(!resumed.is_empty());
    let conversation = resumed[0].user_text();
    assert!(
        conversation.contains("Create hello.txt please")
            && conversation.contains("what did you do?"),
        "{conversation}"
    );
    assert!(resumed[0].body_text().contains(FINAL_MARKER));
    // No warning about a failed resume.
    assert!(
        !second.json().contains("could not resume"),
        "{}",
        second.json()
    );
}

#[tokio::test]
async fn a_poisoned_session_starts_a_fresh_thread_in_the_same_workspace() {
    let harness = ProviderHarness::start().await;
    let first = harness.run_simple(&codex("SCN_TEXT hello")).await;
    assert_eq!(first.completed().status, TerminalStatus::Succeeded);
    // Lose the thread: its rollout files are gone, the recorded id stays.
    let state = first.workspace().parent().unwrap().join("state");
    std::fs::remove_dir_all(state.join("codex-home/sessions")).unwrap();
    for entry in std::fs::read_dir(state.join("codex-home"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sqlite") || name.contains(".sqlite-") || name.starts_with("state") {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    let second = harness
        .run_simple(&codex("SCN_TEXT again").conversation(first.run_id))
        .await;
    assert_eq!(
        second.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        second.json()
    );
    assert_eq!(second.workspace(), first.workspace());
    assert!(
        second.json().contains("could not resume codex thread"),
        "{}",
        second.json()
    );
}

/// Runs `prompt` and checks that it fails with `reason` within the bound; returns it.
async fn fails_with(harness: &ProviderHarness, spec: RunSpec, reason: FailureReason) -> Finished {
    let started = Instant::now();
    let finished = harness.run_simple(&spec).await;
    let took = started.elapsed();
    let completed = finished.completed();
    assert_eq!(completed.reason, Some(reason), "{}", finished.json());
    assert!(took < FAILURE_BOUND, "{reason:?} took {took:?}");
    eprintln!("codex: {} after {took:?}", reason.as_str());
    assert_no_secret(harness, &finished);
    finished
}

#[tokio::test]
async fn model_api_failures_are_classified() {
    let harness = ProviderHarness::start().await;
    let unauthorized = fails_with(&harness, codex("SCN_E401 hi"), FailureReason::AuthInvalid).await;
    let evidence = &unauthorized.completed().evidence;
    assert!(!evidence.raw_lines.is_empty(), "raw protocol lines kept");
    assert!(
        evidence.raw_lines.iter().any(|l| l.contains("401")),
        "{evidence:?}"
    );
    assert!(
        evidence.stderr_tail.iter().all(|l| !l.contains('\u{1b}')),
        "no terminal colours in the evidence: {evidence:?}"
    );
    fails_with(&harness, codex("SCN_E429 hi"), FailureReason::RateLimited).await;
    // Codex rewrites a 500's message; the detail still names the status.
    let server_error =
        fails_with(&harness, codex("SCN_E500 hi"), FailureReason::ProviderError).await;
    let detail = server_error.completed().detail.unwrap_or_default();
    assert!(detail.contains("HTTP 500"), "{detail}");
    fails_with(
        &harness,
        codex("SCN_EMPTY hi"),
        FailureReason::ProviderNoOutput,
    )
    .await;
}

/// What codex prints on every start, whatever the run (no bubblewrap on PATH, a
/// CODEX_HOME under the temporary directory — as in this harness — and its remote
/// control status), must not take the place of what a failure's evidence is for.
#[tokio::test]
async fn a_failed_runs_evidence_holds_no_start_up_noise() {
    let harness = ProviderHarness::start().await;
    let finished = fails_with(&harness, codex("SCN_E500 hi"), FailureReason::ProviderError).await;
    let evidence = finished.completed().evidence;
    assert!(
        evidence.raw_lines.iter().any(|l| l.contains("500")),
        "the evidence of the failure is kept: {evidence:#?}"
    );
    for line in evidence.stderr_tail.iter().chain(&evidence.raw_lines) {
        for noise in [
            "bubblewrap",
            "Refusing to create helper binaries",
            "could not create PATH aliases",
            "remoteControl/status/changed",
        ] {
            assert!(!line.contains(noise), "{noise:?} in the evidence: {line}");
        }
    }
}

#[tokio::test]
async fn a_model_api_that_hangs_or_stalls_ends_within_the_liveness_bounds() {
    let harness = ProviderHarness::start().await;
    // No response headers ever: nothing arrives within the first-output limit.
    let hang = fails_with(
        &harness,
        codex("SCN_HANG hi").option("firstOutputTimeoutMs", 5_000),
        FailureReason::ProviderNoOutput,
    )
    .await;
    assert!(
        hang.completed()
            .detail
            .unwrap_or_default()
            .contains("no model output"),
    );
    // Headers, one event, then silence: codex's idle timeout (3 s, no reconnect) fails
    // the turn before the liveness limits would, and the silence is a timeout.
    let started = Instant::now();
    let stall = harness
        .run_simple(&codex("SCN_STALL hi").option("streamMaxRetries", 0))
        .await;
    let reason = stall.completed().reason;
    eprintln!(
        "codex: stall ended {reason:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < FAILURE_BOUND);
    assert_eq!(reason, Some(FailureReason::Timeout), "{}", stall.json());
    assert!(
        stall
            .completed()
            .detail
            .unwrap_or_default()
            .contains("idle timeout"),
        "{}",
        stall.json()
    );
    assert_no_process_left(&stall).await;
}

#[tokio::test]
async fn a_missing_credential_fails_before_spawning() {
    let harness = ProviderHarness::start().await;
    let spec = RunSpec::new("codex-app-server", "hi").credential(UNSET_CREDENTIAL);
    let finished = fails_with(&harness, spec, FailureReason::AuthMissing).await;
    assert!(
        finished
            .completed()
            .detail
            .unwrap_or_default()
            .contains(UNSET_CREDENTIAL)
    );
    assert_eq!(app_server_pid(&finished.events), None, "nothing spawned");
    assert!(harness.fake.requests_for("/v1/responses").is_empty());
}

#[tokio::test]
async fn the_codex_cli_alias_runs_the_same_provider() {
    let harness = ProviderHarness::start().await;
    let mut spec = codex("SCN_TEXT hi");
    spec.provider = "codex-cli".to_owned();
    let finished = harness.run_simple(&spec).await;
    assert_eq!(
        finished.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        finished.json()
    );
    assert!(finished.final_text().contains(TEXT_MARKER));
    assert!(app_server_pid(&finished.events).is_some());
}

#[tokio::test]
async fn a_stop_while_a_human_is_asked_ends_the_run_and_the_process() {
    let harness = ProviderHarness::start().await;
    let spec = codex("Create hello.txt please").option("approvalPolicy", "untrusted");
    let run_id = harness.dispatch(&spec).await;
    let asked = harness
        .wait_for_event(run_id, |e| {
            matches!(
                e.kind,
                RunEventKind::HumanLoopRequested(_) | RunEventKind::RunCompleted(_)
            )
        })
        .await;
    assert!(
        matches!(asked.kind, RunEventKind::HumanLoopRequested(_)),
        "{asked:?}"
    );
    harness.stop(run_id).await;
    let finished = Finished {
        run_id,
        events: harness.events_until_terminal(run_id).await,
        asked: Vec::new(),
    };
    assert_eq!(finished.completed().status, TerminalStatus::Stopped);
    assert!(!finished.workspace().join(TOOL_FILE).exists());
    assert_no_process_left(&finished).await;
}

/// A stand-in `codex` (a shell script) for what the real one cannot be made to do:
/// crash, hang in the handshake, send lines and requests this adapter does not know.
fn fake_codex(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/bash\nif [ \"$1\" = \"--version\" ]; then echo 'codex-cli 0.0.0-fake'; exit 0; fi\n{body}\n"
    );
    let path = bin.join("codex");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The handshake of the fake: answers `initialize`, `thread/start` and `turn/start`.
const FAKE_HANDSHAKE: &str = r#"
read -r line; echo '{"id":1,"result":{}}'
read -r line
read -r line; echo '{"id":2,"result":{"thread":{"id":"th-1"}}}'
read -r line; echo '{"id":3,"result":{"turn":{"id":"tu-1","status":"inProgress"}}}'
"#;

async fn harness_with_fake_codex(body: &str) -> (ProviderHarness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_codex(dir.path(), body);
    let harness = ProviderHarness::start_with(|settings| {
        settings.cli_search_path = vec![bin];
    })
    .await;
    (harness, dir)
}

fn fake_spec() -> RunSpec {
    RunSpec::new("codex-app-server", "hi").credential("OPENAI_API_KEY")
}

#[tokio::test]
async fn unknown_lines_and_requests_are_tolerated_and_refused() {
    let body = format!(
        r#"{FAKE_HANDSHAKE}
echo 'this is not json'
echo '[1,2,3]'
echo '{{"method":"some/new/notification","params":{{"x":1}}}}'
echo '{{"method":"item/tool/requestUserInput","id":0,"params":{{"questions":[]}}}}'
read -r answer; echo "$answer" > answer.json
echo '{{"method":"item/agentMessage/delta","params":{{"threadId":"th-1","turnId":"tu-1","itemId":"m1","delta":"hi there"}}}}'
echo '{{"method":"item/completed","params":{{"threadId":"th-1","turnId":"tu-1","item":{{"type":"agentMessage","id":"m1","text":"hi there","futureField":true}}}}}}'
echo '{{"method":"turn/completed","params":{{"threadId":"th-1","turn":{{"id":"tu-1","status":"completed","items":[]}}}}}}'
read -r line
"#
    );
    let (harness, _dir) = harness_with_fake_codex(&body).await;
    let finished = harness.run_simple(&fake_spec()).await;
    assert_eq!(
        finished.completed().status,
        TerminalStatus::Succeeded,
        "{}",
        finished.json()
    );
    assert_eq!(finished.final_text(), "hi there");
    let answer: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(finished.workspace().join("answer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(answer["id"], 0);
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
}

#[tokio::test]
async fn a_crash_is_provider_crashed_with_its_exit_code_and_stderr() {
    let body = format!(
        r#"{FAKE_HANDSHAKE}
echo 'garbage before dying'
echo "fatal: the fake codex broke, key=$OPENAI_API_KEY" >&2
exit 3
"#
    );
    let (harness, _dir) = harness_with_fake_codex(&body).await;
    let finished = fails_with(&harness, fake_spec(), FailureReason::ProviderCrashed).await;
    let completed = finished.completed();
    assert_eq!(completed.evidence.exit_code, Some(3));
    assert!(
        completed
            .evidence
            .stderr_tail
            .iter()
            .any(|l| l.contains("the fake codex broke, key=[redacted]")),
        "{:?}",
        completed.evidence
    );
    assert!(
        completed
            .evidence
            .raw_lines
            .iter()
            .any(|l| l == "garbage before dying")
    );
}

#[tokio::test]
async fn a_cli_that_never_completes_the_handshake_times_out_and_is_killed() {
    let (harness, _dir) = harness_with_fake_codex("sleep 1000").await;
    let finished = fails_with(
        &harness,
        fake_spec().option("handshakeTimeoutMs", 1_000),
        FailureReason::Timeout,
    )
    .await;
    assert!(
        finished
            .completed()
            .detail
            .unwrap_or_default()
            .contains("handshake"),
    );
    assert_no_process_left(&finished).await;
}
