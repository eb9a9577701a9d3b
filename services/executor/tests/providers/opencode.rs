//! The `opencode` adapter end to end: the real, pinned `opencode serve` driven by an
//! in-process executor over NATS, against the fake model's Chat Completions API.
//!
//! opencode takes 3–5 s per turn on an idle machine (more on the shared 2-core one),
//! so the runs are few and the bounds generous.

use crate::common::{
    Finished, ProviderHarness, RunSpec, UNSET_CREDENTIAL, require_cli, wait_no_process_mentioning,
};
use std::time::{Duration, Instant};
use switchyard_contracts::event::{
    FileChangeKind, HumanLoopDecision, HumanLoopKind, TerminalStatus, ToolStatus,
};
use switchyard_contracts::{FailureReason, RunEventKind};
use switchyard_test_support::fake_model::{FINAL_MARKER, PATCH_FILE, TOOL_COMMAND, TOOL_FILE};

/// Longest a failing run may take, from dispatch to `run.completed`.
const FAILURE_BOUND: Duration = Duration::from_secs(75);

fn opencode(prompt: &str) -> RunSpec {
    require_cli("opencode");
    RunSpec::new("opencode", prompt)
        .model("fake-model")
        .credential("OPENAI_API_KEY")
}

fn tool_status(finished: &Finished) -> Option<ToolStatus> {
    finished.events.iter().find_map(|e| match &e.kind {
        RunEventKind::ToolCompleted(completed) => Some(completed.status),
        _ => None,
    })
}

/// Nothing of the run's opencode server may be left.
async fn assert_no_process_left(finished: &Finished) {
    let workspace = finished.workspace().display().to_string();
    let left = wait_no_process_mentioning(&workspace, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes left in {workspace}: {left:?}");
}

#[tokio::test]
async fn a_tool_turn_runs_the_approved_command_and_answers() {
    let harness = ProviderHarness::start().await;
    let started = Instant::now();
    let finished = harness
        .run(&opencode("Create hello.txt please"), |_| {
            HumanLoopDecision::Approve
        })
        .await;
    eprintln!("opencode: one tool turn took {:?}", started.elapsed());

    let completed = finished.completed();
    assert_eq!(completed.status, TerminalStatus::Succeeded, "{completed:?}");
    assert!(
        finished.final_text().contains(FINAL_MARKER),
        "{}",
        finished.json()
    );
    let workspace = finished.workspace();
    assert!(
        workspace.join(TOOL_FILE).is_file(),
        "hello.txt in {workspace:?}"
    );

    let [asked] = finished.asked.as_slice() else {
        panic!("one approval expected: {:?}", finished.asked)
    };
    assert_eq!(asked.kind, HumanLoopKind::Command);
    assert!(asked.prompt.contains(TOOL_COMMAND), "{}", asked.prompt);
    let types = finished.types();
    for expected in [
        "run.started",
        "tool.started",
        "human_loop.requested",
        "human_loop.resolved",
        "tool.output",
        "tool.completed",
        "message.delta",
        "message.completed",
        "usage",
        "run.completed",
    ] {
        assert!(types.contains(&expected), "no {expected} in {types:?}");
    }
    assert_eq!(tool_status(&finished), Some(ToolStatus::Succeeded));
    // The shell command's file is found by the workspace scan, once.
    assert_eq!(
        finished.file_changes(),
        [(TOOL_FILE.to_owned(), FileChangeKind::Added)],
        "{types:?}"
    );

    // The key reached the model API, and nowhere else.
    let key = harness.secret("OPENAI_API_KEY");
    let requests = harness.fake.model_requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.api_key() == Some(key)));
    harness.assert_no_secret_in("the run's events", &finished.json());
    assert_no_process_left(&finished).await;
}

#[tokio::test]
async fn a_denied_command_does_not_run_and_the_run_goes_on() {
    let harness = ProviderHarness::start().await;
    let finished = harness
        .run(&opencode("Create hello.txt please"), |_| {
            HumanLoopDecision::Deny
        })
        .await;
    let completed = finished.completed();
    assert_eq!(completed.status, TerminalStatus::Succeeded, "{completed:?}");
    assert_eq!(finished.asked.len(), 1);
    assert!(!finished.workspace().join(TOOL_FILE).exists());
    assert_eq!(tool_status(&finished), Some(ToolStatus::Declined));
    assert_no_process_left(&finished).await;
}

#[tokio::test]
async fn a_stopped_turn_leaves_no_process_and_the_conversation_continues() {
    let harness = ProviderHarness::start().await;
    let first = opencode("SCN_SLOW please talk slowly about PINEAPPLE");
    let run_id = harness.dispatch(&first).await;
    harness
        .wait_for_event(run_id, |e| matches!(e.kind, RunEventKind::MessageDelta(_)))
        .await;
    let stop_sent = Instant::now();
    harness.stop(run_id).await;
    let stopped = harness.drive(run_id, |_| HumanLoopDecision::Deny).await;
    eprintln!(
        "opencode: stopped {:?} after the stop request",
        stop_sent.elapsed()
    );
    let completed = stopped.completed();
    assert_eq!(completed.status, TerminalStatus::Stopped, "{completed:?}");
    assert_no_process_left(&stopped).await;

    // The follow-up prompts the same session in a new server: the model sees the
    // first turn, and the file tool's change is approved and reported.
    let follow_up = opencode("SCN_PATCH now add the file").conversation(run_id);
    let finished = harness
        .run(&follow_up, |_| HumanLoopDecision::Approve)
        .await;
    let completed = finished.completed();
    assert_eq!(completed.status, TerminalStatus::Succeeded, "{completed:?}");
    assert_eq!(finished.workspace(), stopped.workspace());
    assert!(finished.workspace().join(PATCH_FILE).is_file());
    assert!(finished.final_text().contains(FINAL_MARKER));
    // Reported by the file tool, and not once more by the workspace scan.
    assert_eq!(
        finished.file_changes(),
        [(PATCH_FILE.to_owned(), FileChangeKind::Added)],
        "{}",
        finished.json()
    );
    let last = harness.fake.model_requests().pop().unwrap();
    assert!(
        last.user_text().contains("PINEAPPLE"),
        "the follow-up's request lacks the first turn: {}",
        last.user_text()
    );
    assert_no_process_left(&finished).await;
}

/// Runs `prompt` and asserts it fails with `reason`, in bounded time, with evidence.
async fn fails_with(prompt: &str, options: &[(&str, u64)], reason: FailureReason) {
    let harness = ProviderHarness::start().await;
    let mut spec = opencode(prompt);
    for (key, value) in options {
        spec = spec.option(key, *value);
    }
    let started = Instant::now();
    let finished = harness.run_simple(&spec).await;
    let elapsed = started.elapsed();
    eprintln!("opencode: {prompt} ended after {elapsed:?}");
    let completed = finished.completed();
    assert_eq!(completed.reason, Some(reason), "{completed:?}");
    assert!(elapsed < FAILURE_BOUND, "{prompt} took {elapsed:?}");
    assert!(
        !completed.evidence.raw_lines.is_empty(),
        "no evidence: {completed:?}"
    );
    harness.assert_no_secret_in("the run's events", &finished.json());
    assert_no_process_left(&finished).await;
}

#[tokio::test]
async fn http_401_is_auth_invalid() {
    fails_with("SCN_E401 hi", &[], FailureReason::AuthInvalid).await;
}

#[tokio::test]
async fn http_429_is_rate_limited_after_the_retry_budget() {
    fails_with("SCN_E429 hi", &[], FailureReason::RateLimited).await;
}

#[tokio::test]
async fn http_500_is_provider_error_after_the_retry_budget() {
    fails_with("SCN_E500 hi", &[], FailureReason::ProviderError).await;
}

#[tokio::test]
async fn an_empty_completion_is_provider_no_output() {
    fails_with("SCN_EMPTY hi", &[], FailureReason::ProviderNoOutput).await;
}

#[tokio::test]
async fn a_missing_key_is_auth_missing_without_spawning() {
    let harness = ProviderHarness::start().await;
    let mut spec = opencode("hi");
    spec.credential_env = vec![UNSET_CREDENTIAL.to_owned()];
    let finished = harness.run_simple(&spec).await;
    let completed = finished.completed();
    assert_eq!(
        completed.reason,
        Some(FailureReason::AuthMissing),
        "{completed:?}"
    );
    assert!(
        completed
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(UNSET_CREDENTIAL))
    );
    assert!(harness.fake.requests().is_empty());
}
