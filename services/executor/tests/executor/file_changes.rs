//! `file.changed` for changes nobody reported: after tool calls the executor scans the
//! run's workspace and reports what changed, once, leaving out what the provider
//! reported itself. Driven with the scripted provider; the test makes the "shell"
//! changes while the script waits for an approval.

use crate::common::*;
use serde_json::json;
use std::path::PathBuf;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{FileChangeKind, HumanLoopDecision, TerminalStatus};
use switchyard_contracts::{RunEvent, RunEventKind, RunId};

/// Waits for the approval asked with `prompt` and for `changed` `file.changed` events
/// in the run so far (the scan that the approval's request set off has reported), lets
/// `change` touch the workspace, then approves.
async fn while_asked(
    harness: &Harness,
    run_id: RunId,
    prompt: &str,
    changed: usize,
    change: impl FnOnce(&PathBuf),
) {
    let mut workspace = None;
    let (mut asked, mut seen) = (false, 0);
    harness
        .wait_for_event(run_id, |e| {
            match &e.kind {
                RunEventKind::RunStarted(started) => {
                    workspace = started.workspace.clone().map(PathBuf::from);
                }
                RunEventKind::HumanLoopRequested(r) => asked |= r.prompt == prompt,
                RunEventKind::FileChanged(_) => seen += 1,
                _ => {}
            }
            asked && seen == changed
        })
        .await;
    change(&workspace.expect("run.started names the workspace"));
    let answer = harness
        .control(
            run_id,
            &ControlRequest::HumanLoopReply {
                request_id: None,
                decision: HumanLoopDecision::Approve,
                message: None,
            },
        )
        .await;
    assert_eq!(answer.outcome, ControlOutcome::Accepted, "{answer:?}");
}

fn changes(events: &[RunEvent]) -> Vec<(String, FileChangeKind, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::FileChanged(c) => Some((c.path.clone(), c.change, c.diff.is_some())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn changes_after_tool_calls_are_reported_once_and_never_twice_with_the_providers_own() {
    let harness = Harness::start().await;
    let tool = |name: &str| json!({"toolCall": {"name": name, "output": "ok"}});
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "shell"}},
        tool("shell"),
        {"humanLoop": {"prompt": "edit after"}},
        tool("write"),
        {"fileChange": {"path": "edited.txt", "change": "added", "diff": "+x"}},
        {"humanLoop": {"prompt": "edit before"}},
        {"fileChange": {"path": "./src/early.rs", "change": "modified", "diff": "+y"}},
        tool("apply_patch"),
        {"message": {"text": "done"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    while_asked(&harness, run_id, "shell", 0, |w| {
        std::fs::write(w.join("hello.txt"), "hello\n").unwrap();
        std::fs::create_dir_all(w.join("src")).unwrap();
        std::fs::write(w.join("src/early.rs"), "fn a() {}").unwrap();
        std::fs::create_dir_all(w.join(".git")).unwrap();
        std::fs::write(w.join(".git/index"), "skipped").unwrap();
    })
    .await;
    while_asked(&harness, run_id, "edit after", 2, |w| {
        std::fs::write(w.join("edited.txt"), "x").unwrap();
        std::fs::remove_file(w.join("hello.txt")).unwrap();
    })
    .await;
    while_asked(&harness, run_id, "edit before", 4, |w| {
        std::fs::write(w.join("src/early.rs"), "fn a() { b() }").unwrap();
    })
    .await;
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
    assert_eq!(
        changes(&events),
        [
            // Scanned after the shell tool: two files, nothing of .git.
            ("hello.txt".to_owned(), FileChangeKind::Added, false),
            ("src/early.rs".to_owned(), FileChangeKind::Added, false),
            // The provider reports edited.txt after its tool.completed; the scan adds
            // only the deletion nobody reported.
            ("edited.txt".to_owned(), FileChangeKind::Added, true),
            ("hello.txt".to_owned(), FileChangeKind::Deleted, false),
            // Reported before the tool completed: not repeated by the scan.
            ("./src/early.rs".to_owned(), FileChangeKind::Modified, true),
        ],
        "{:?}",
        types(&events)
    );
}

#[tokio::test]
async fn a_run_without_tool_calls_reports_nothing_and_the_last_tool_is_scanned_at_the_end() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "no tool"}},
        {"message": {"text": "no tools here"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    while_asked(&harness, run_id, "no tool", 0, |w| {
        std::fs::write(w.join("untouched-by-tools.txt"), "x").unwrap();
    })
    .await;
    let events = harness.events_until_terminal(run_id).await;
    assert!(changes(&events).is_empty(), "{:?}", types(&events));

    // A tool call as the script's last step: its change is found when the run ends.
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "last"}},
        {"toolCall": {"name": "shell"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    while_asked(&harness, run_id, "last", 0, |w| {
        std::fs::write(w.join("last.txt"), "x").unwrap();
    })
    .await;
    let events = harness.events_until_terminal(run_id).await;
    assert_eq!(
        changes(&events),
        [("last.txt".to_owned(), FileChangeKind::Added, false)]
    );
    let kinds = types(&events);
    assert_eq!(kinds[kinds.len() - 2], "file.changed", "{kinds:?}");
}
