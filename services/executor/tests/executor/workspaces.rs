//! Given workspace directories (`providerOptions.workspaceDir`): used only inside
//! `executor.allowed_workspace_dirs`, refused before the provider starts otherwise,
//! and never deleted by the cleanup policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{Harness, command, completion, dispatch_request, types};
use serde_json::json;
use std::path::Path;
use switchyard_contracts::dispatch::{DispatchOutcome, EventPosition};
use switchyard_contracts::event::TerminalStatus;
use switchyard_contracts::{FailureReason, RunEventKind};
use switchyard_executor::WorkspaceCleanup;

/// A scripted run whose `providerOptions` name `dir` as its workspace.
fn run_in(dir: &Path) -> switchyard_contracts::dispatch::DispatchRequest {
    let mut command = command(json!([{"message": {"text": "done"}}]));
    command.provider_options["workspaceDir"] = json!(dir.display().to_string());
    dispatch_request(command, EventPosition::EMPTY, 60_000)
}

#[tokio::test]
async fn an_allowed_directory_is_used_and_survives_the_delete_policy() {
    let root = tempfile::tempdir().unwrap();
    let allowed = tempfile::tempdir().unwrap();
    let given = allowed.path().join("project");
    std::fs::create_dir(&given).unwrap();
    std::fs::write(given.join("keep.txt"), b"mine").unwrap();
    let mut harness = Harness::start_with(|s| {
        s.workspace_root = root.path().to_path_buf();
        s.allowed_workspace_dirs = vec![allowed.path().to_path_buf()];
        s.workspace_cleanup = WorkspaceCleanup::Delete;
    })
    .await;

    // Through a `..` detour: the executor works in the canonical directory.
    let request = run_in(&given.join("..").join("project"));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(run_id).await;
    let started = events
        .iter()
        .find_map(|e| match &e.kind {
            RunEventKind::RunStarted(started) => started.workspace.clone(),
            _ => None,
        })
        .expect("run.started names the workspace");
    assert_eq!(
        Path::new(&started),
        given.canonicalize().unwrap(),
        "{events:?}"
    );
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);

    // Shutting down waits for the run's cleanup.
    harness.shutdown().await;
    assert!(
        !root.path().join(run_id.to_string()).exists(),
        "the delete policy removed the run's own directory (CLI state)"
    );
    assert_eq!(std::fs::read(given.join("keep.txt")).unwrap(), b"mine");
}

#[tokio::test]
async fn a_directory_outside_the_allowed_ones_fails_the_run_before_the_provider_starts() {
    let allowed = tempfile::tempdir().unwrap();
    // The runs' own directories inside an allowed one: neither may be given.
    let root = allowed.path().join("runs");
    std::fs::create_dir(&root).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = allowed.path().join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let escape = allowed.path().join("..").join(
        elsewhere
            .path()
            .strip_prefix(allowed.path().parent().unwrap())
            .unwrap_or(elsewhere.path()),
    );
    let harness = Harness::start_with(|s| {
        s.workspace_root = root.clone();
        s.allowed_workspace_dirs = vec![allowed.path().to_path_buf()];
    })
    .await;

    let cases = [
        (elsewhere.path().to_path_buf(), "not inside any of"),
        (escape, "not inside any of"),
        (file, "not a directory"),
        (allowed.path().join("missing"), "not an existing directory"),
        (
            allowed.path().to_path_buf(),
            "overlaps executor.workspace_root",
        ),
        (root.clone(), "overlaps executor.workspace_root"),
    ];
    for (dir, why) in cases {
        let request = run_in(&dir);
        let run_id = request.command.run_id;
        assert_eq!(
            harness.dispatch(&request).await.outcome,
            DispatchOutcome::Accepted
        );
        let events = harness.events_until_terminal(run_id).await;
        assert_eq!(
            types(&events),
            vec!["run.dispatched", "run.completed"],
            "{dir:?}: the provider never started"
        );
        let completed = completion(&events);
        assert_eq!(completed.status, TerminalStatus::Failed);
        assert_eq!(completed.reason, Some(FailureReason::ProviderError));
        let detail = completed.detail.unwrap_or_default();
        assert!(
            detail.contains("providerOptions.workspaceDir") && detail.contains(why),
            "{dir:?}: {detail}"
        );
    }
}

#[tokio::test]
async fn without_allowed_directories_a_given_directory_is_refused() {
    let allowed = tempfile::tempdir().unwrap();
    let harness = Harness::start().await;
    let request = run_in(allowed.path());
    let run_id = request.command.run_id;
    harness.dispatch(&request).await;
    let completed = completion(&harness.events_until_terminal(run_id).await);
    assert_eq!(completed.reason, Some(FailureReason::ProviderError));
    assert!(
        completed
            .detail
            .unwrap_or_default()
            .contains("allowed_workspace_dirs is empty")
    );
}
