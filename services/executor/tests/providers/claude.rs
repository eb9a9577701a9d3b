//! The `claude-code` provider with the real `claude` CLI (the pinned version from
//! `scripts/install-providers.sh`) against the fake model server, through an in-process
//! executor driven over NATS (`common::ProviderHarness`).
//!
//! Approvals: the provider runs claude in its `default` permission mode, so the Bash
//! call of the fake model's default scenario becomes a `human_loop.requested` event
//! that the test answers (approve or deny) over the control subject.

use crate::common::{
    Finished, ProviderHarness, RunSpec, UNSET_CREDENTIAL, wait_no_process_mentioning,
};
use std::time::{Duration, Instant};
use switchyard_contracts::event::{
    FileChangeKind, HumanLoopDecision, HumanLoopKind, TerminalStatus, ToolStatus,
};
use switchyard_contracts::{FailureReason, RunEventKind};
use switchyard_test_support::fake_model::{
    FINAL_ANSWER, PATCH_FILE, PATCH_LINE, TEXT_MARKER, TOOL_FILE,
};

const PROVIDER: &str = "claude-code";
const KEY: &str = "ANTHROPIC_API_KEY";
/// Failures the CLI reports itself surface in a few seconds; this leaves room for a
/// loaded 2-core machine.
const FAILURE_BOUND: Duration = Duration::from_secs(40);

fn spec(prompt: &str) -> RunSpec {
    RunSpec::new(PROVIDER, prompt)
        .credential(KEY)
        .model("fake-model")
}

/// Asserts the run ended as expected and that no credential value reached its events.
fn check(h: &ProviderHarness, run: &Finished, status: TerminalStatus) {
    h.assert_no_secret_in("the run's events", &run.json());
    let completed = run.completed();
    assert_eq!(completed.status, status, "{completed:?}\n{:?}", run.types());
}

async fn no_process_left(run: &Finished) {
    let workspace = run.workspace().display().to_string();
    let left = wait_no_process_mentioning(&workspace, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "processes left in {workspace}: {left:?}");
}

#[tokio::test]
async fn a_turn_runs_an_approved_command_and_answers() {
    let h = ProviderHarness::start().await;
    let started = Instant::now();
    let run = h
        .run(&spec("Create hello.txt please"), |_| {
            HumanLoopDecision::Approve
        })
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "claude-code: one turn with a tool call and an approval, dispatch → run.completed: {elapsed:?}"
    );
    check(&h, &run, TerminalStatus::Succeeded);
    let workspace = run.workspace();
    assert_eq!(
        std::fs::read_to_string(workspace.join(TOOL_FILE))
            .unwrap()
            .trim(),
        "hello from fake model"
    );
    assert_eq!(run.asked.len(), 1, "{:?}", run.asked);
    assert_eq!(run.asked[0].kind, HumanLoopKind::Command);
    assert!(
        run.asked[0].prompt.contains("echo hello from fake model"),
        "{}",
        run.asked[0].prompt
    );
    let has = |f: &dyn Fn(&RunEventKind) -> bool| run.events.iter().any(|e| f(&e.kind));
    assert!(has(
        &|k| matches!(k, RunEventKind::ToolStarted(t) if t.name == "Bash")
    ));
    assert!(has(
        &|k| matches!(k, RunEventKind::ToolOutput(o) if o.output.contains("hello from fake model"))
    ));
    assert!(has(
        &|k| matches!(k, RunEventKind::ToolCompleted(t) if t.status == ToolStatus::Succeeded && t.exit_code == Some(0))
    ));
    assert!(has(&|k| matches!(k, RunEventKind::MessageDelta(_))));
    assert!(has(&|k| matches!(k, RunEventKind::Usage(_))));
    // The shell command's file is found by the workspace scan, once.
    assert_eq!(
        run.file_changes(),
        [(TOOL_FILE.to_owned(), FileChangeKind::Added)],
        "{:?}",
        run.types()
    );
    assert!(
        run.final_text().ends_with(FINAL_ANSWER),
        "{}",
        run.final_text()
    );
    // The key reached the model API, and only through claude's environment.
    let request = h
        .fake
        .model_requests()
        .into_iter()
        .next()
        .expect("claude called the model");
    assert_eq!(request.api_key(), Some(h.secret(KEY)));
    assert_eq!(request.body["model"], "fake-model");
    no_process_left(&run).await;
}

#[tokio::test]
async fn a_written_file_is_reported_once() {
    let h = ProviderHarness::start().await;
    let run = h
        .run(&spec("SCN_PATCH add a file"), |_| {
            HumanLoopDecision::Approve
        })
        .await;
    check(&h, &run, TerminalStatus::Succeeded);
    let written = std::fs::read_to_string(run.workspace().join(PATCH_FILE)).unwrap();
    assert_eq!(written.trim_end(), PATCH_LINE);
    // Reported by the Write tool, and not once more by the workspace scan.
    assert_eq!(
        run.file_changes(),
        [(PATCH_FILE.to_owned(), FileChangeKind::Added)],
        "{}",
        run.json()
    );
    no_process_left(&run).await;
}

#[tokio::test]
async fn a_denied_command_does_not_run_and_the_turn_goes_on() {
    let h = ProviderHarness::start().await;
    let run = h
        .run(&spec("Create hello.txt please"), |_| {
            HumanLoopDecision::Deny
        })
        .await;
    check(&h, &run, TerminalStatus::Succeeded);
    assert_eq!(run.asked.len(), 1);
    assert!(!run.workspace().join(TOOL_FILE).exists());
    assert!(run.events.iter().any(|e| matches!(
        &e.kind,
        RunEventKind::ToolCompleted(t) if t.status == ToolStatus::Declined
    )));
    // The model got the denial as the tool's result and answered after it.
    assert!(
        h.fake
            .model_requests()
            .iter()
            .any(|r| r.tool_result_count() > 0 && r.body_text().contains("denied")),
        "the denial reached the model"
    );
    assert!(
        run.final_text().ends_with(FINAL_ANSWER),
        "{}",
        run.final_text()
    );
}

#[tokio::test]
async fn a_stop_mid_turn_interrupts_and_leaves_no_process() {
    let h = ProviderHarness::start().await;
    let run_id = h.dispatch(&spec("SCN_SLOW talk slowly")).await;
    h.wait_for_event(run_id, |e| matches!(&e.kind, RunEventKind::MessageDelta(_)))
        .await;
    let stopped_at = Instant::now();
    let reply = h.stop(run_id).await;
    assert_eq!(
        reply.outcome,
        switchyard_contracts::control::ControlOutcome::Accepted
    );
    let run = h.drive(run_id, |_| HumanLoopDecision::Deny).await;
    check(&h, &run, TerminalStatus::Stopped);
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped_at.elapsed()
    );
    no_process_left(&run).await;
}

#[tokio::test]
async fn a_follow_up_run_resumes_the_conversation_and_a_lost_session_starts_fresh() {
    let h = ProviderHarness::start().await;
    let first = h
        .run_simple(&spec("SCN_TEXT remember the word BLUE-FALCON"))
        .await;
    check(&h, &first, TerminalStatus::Succeeded);

    let second = h
        .run_simple(
            &spec("SCN_TEXT which word did I ask you to remember?").conversation(first.run_id),
        )
        .await;
    check(&h, &second, TerminalStatus::Succeeded);
    assert!(
        second.final_text().contains(TEXT_MARKER),
        "{}",
        second.final_text()
    );
    assert_eq!(second.workspace(), first.workspace());
    let text = h.fake.model_requests().pop().unwrap().user_text();
    assert!(
        text.contains("BLUE-FALCON"),
        "the resumed request holds the first turn: {text}"
    );
    assert!(text.contains("which word"), "{text}");

    // The CLI's session store loses the session: the next run starts afresh in the
    // same workspace and says so.
    let projects = first
        .workspace()
        .parent()
        .unwrap()
        .join("state/.claude/projects");
    let mut removed = 0;
    for project in std::fs::read_dir(&projects).unwrap() {
        for file in std::fs::read_dir(project.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                std::fs::remove_file(path).unwrap();
                removed += 1;
            }
        }
    }
    assert!(
        removed > 0,
        "claude keeps its sessions under {}",
        projects.display()
    );
    let third = h
        .run_simple(&spec("SCN_TEXT a fresh start").conversation(first.run_id))
        .await;
    check(&h, &third, TerminalStatus::Succeeded);
    assert_eq!(third.workspace(), first.workspace());
    assert!(third.events.iter().any(|e| matches!(
        &e.kind,
        RunEventKind::Diagnostic(d) if d.message.contains("could not resume")
    )));
    let text = h.fake.model_requests().pop().unwrap().user_text();
    assert!(!text.contains("BLUE-FALCON"), "{text}");
}

/// Runs `spec` to its end (denying any request) and returns it with its duration.
async fn timed(h: &ProviderHarness, spec: &RunSpec) -> (Finished, Duration) {
    let started = Instant::now();
    let run = h.run_simple(spec).await;
    (run, started.elapsed())
}

#[tokio::test]
async fn model_api_errors_end_with_their_reasons_in_seconds() {
    let h = ProviderHarness::start().await;
    for (prompt, reason) in [
        ("SCN_E401 hi", FailureReason::AuthInvalid),
        ("SCN_E429 hi", FailureReason::RateLimited),
        ("SCN_E500 hi", FailureReason::ProviderError),
        ("SCN_EMPTY hi", FailureReason::ProviderNoOutput),
    ] {
        let (run, elapsed) = timed(&h, &spec(prompt)).await;
        check(&h, &run, TerminalStatus::Failed);
        let completed = run.completed();
        assert_eq!(completed.reason, Some(reason), "{prompt}: {completed:?}");
        assert!(elapsed < FAILURE_BOUND, "{prompt}: {elapsed:?}");
        assert!(
            !completed.evidence.raw_lines.is_empty(),
            "{prompt}: evidence"
        );
        assert!(
            completed.evidence.exit_code.is_some(),
            "{prompt}: {completed:?}"
        );
        h.assert_no_secret_in("the evidence", &serde_json::to_string(&completed).unwrap());
        no_process_left(&run).await;
    }
}

#[tokio::test]
async fn a_hanging_or_stalled_model_ends_within_the_liveness_bound() {
    let h = ProviderHarness::start().await;
    // No response headers: claude's own request timeout, sized from the first-output
    // limit, gives up before that limit would (and says why); with no model output
    // yet, that is the first-output fault.
    let (run, elapsed) = timed(
        &h,
        &spec("SCN_HANG hi").option("firstOutputTimeoutMs", 6000),
    )
    .await;
    check(&h, &run, TerminalStatus::Failed);
    let completed = run.completed();
    assert_eq!(completed.reason, Some(FailureReason::ProviderNoOutput));
    assert!(
        completed
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("Request timed out"),
        "{completed:?}"
    );
    assert!(elapsed < FAILURE_BOUND, "{elapsed:?}");
    no_process_left(&run).await;
    // Headers and one event, then silence: claude would wait forever; the inactivity
    // limit ends it.
    let (run, elapsed) = timed(
        &h,
        &spec("SCN_STALL hi").option("inactivityTimeoutMs", 3000),
    )
    .await;
    check(&h, &run, TerminalStatus::TimedOut);
    let completed = run.completed();
    assert_eq!(completed.reason, Some(FailureReason::Timeout));
    assert!(
        completed
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("3000"),
        "{completed:?}"
    );
    assert!(elapsed < FAILURE_BOUND, "{elapsed:?}");
    no_process_left(&run).await;
}

#[tokio::test]
async fn a_missing_key_fails_auth_missing_before_spawning() {
    let h = ProviderHarness::start().await;
    // The app names a credential the operator allows but the executor has no value for.
    let spec = RunSpec::new(PROVIDER, "Create hello.txt please").credential(UNSET_CREDENTIAL);
    let (run, elapsed) = timed(&h, &spec).await;
    check(&h, &run, TerminalStatus::Failed);
    let completed = run.completed();
    assert_eq!(
        completed.reason,
        Some(FailureReason::AuthMissing),
        "{completed:?}"
    );
    assert!(
        completed
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(UNSET_CREDENTIAL),
        "{completed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(h.fake.requests().is_empty(), "claude was never started");
}
