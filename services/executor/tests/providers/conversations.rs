//! Conversations, provider-neutral (with the `scripted` provider, whose `session` step
//! reports what it was given to resume and reports a session of its own): the runs of
//! one conversation share `<root>/<conversation id>/{workspace,state}`, the session a
//! run reports is handed to the next run of the conversation, and the cleanup policy
//! is applied when a run ends.

use crate::common::{Finished, ProviderHarness, RunSpec};
use serde_json::{Value, json};
use switchyard_contracts::RunEventKind;
use switchyard_contracts::event::TerminalStatus;
use switchyard_executor::WorkspaceCleanup;

fn session_step(id: Option<&str>) -> RunSpec {
    let step = match id {
        Some(id) => json!({"session": {"id": id}}),
        None => json!({"session": {}}),
    };
    RunSpec::new("scripted", "continue").option("script", json!([step]))
}

/// The `raw` of the session step's diagnostic: what the run was given to resume.
fn resumed(finished: &Finished) -> Value {
    finished
        .events
        .iter()
        .find_map(|e| match &e.kind {
            RunEventKind::Diagnostic(d) => d.raw.as_deref(),
            _ => None,
        })
        .map(|raw| serde_json::from_str(raw).unwrap())
        .unwrap_or_else(|| panic!("no session diagnostic in {:?}", finished.types()))
}

#[tokio::test]
async fn the_runs_of_a_conversation_share_a_workspace_and_resume_its_session() {
    let harness = ProviderHarness::start().await;

    let first = harness.run_simple(&session_step(None)).await;
    assert_eq!(first.completed().status, TerminalStatus::Succeeded);
    assert_eq!(
        resumed(&first),
        json!({"conversation": false, "resumed": null})
    );
    let conversation = first.run_id;
    let base = harness.workspace_root.join(conversation.to_string());
    assert_eq!(first.workspace(), base.join("workspace"));
    assert!(base.join("state").is_dir());
    std::fs::write(base.join("workspace/notes.txt"), "from the first run").unwrap();

    // The follow-up resumes the session the first run reported, in the same workspace.
    let second = harness
        .run_simple(&session_step(Some("sess-2")).conversation(conversation))
        .await;
    assert_eq!(second.completed().status, TerminalStatus::Succeeded);
    assert_eq!(
        resumed(&second),
        json!({"conversation": true, "resumed": format!("scripted-{conversation}")})
    );
    assert_eq!(second.workspace(), first.workspace());
    assert!(second.workspace().join("notes.txt").is_file());

    // And the next one resumes the session the follow-up reported.
    let third = harness
        .run_simple(&session_step(None).conversation(conversation))
        .await;
    assert_eq!(
        resumed(&third),
        json!({"conversation": true, "resumed": "sess-2"})
    );

    // Another provider cannot resume a scripted session; a run that reports none keeps
    // the conversation's record as it was.
    let silent = RunSpec::new("scripted", "no session").conversation(conversation);
    harness.run_simple(&silent).await;
    let fourth = harness
        .run_simple(&session_step(None).conversation(conversation))
        .await;
    assert_eq!(
        resumed(&fourth),
        json!({"conversation": true, "resumed": format!("scripted-{}", third.run_id)})
    );

    // An unrelated run gets a directory of its own.
    let other = harness.run_simple(&session_step(None)).await;
    assert_ne!(other.workspace(), first.workspace());
    assert!(!other.workspace().join("notes.txt").exists());
}

#[tokio::test]
async fn the_cleanup_policy_is_applied_when_a_run_ends() {
    let harness = ProviderHarness::start_with(|settings| {
        settings.workspace_cleanup = WorkspaceCleanup::DeleteOnSuccess;
    })
    .await;
    let succeeded = harness.run_simple(&session_step(None)).await;
    assert_eq!(succeeded.completed().status, TerminalStatus::Succeeded);
    let failed = harness
        .run_simple(
            &RunSpec::new("scripted", "fail")
                .option("script", json!([{"fail": {"reason": "provider_error"}}])),
        )
        .await;
    assert_eq!(failed.completed().status, TerminalStatus::Failed);
    // The run's directory is settled before its slot is freed; wait for the slot.
    wait_idle(&harness, chrono::Utc::now()).await;
    assert!(
        !succeeded.workspace().parent().unwrap().exists(),
        "deleted after success"
    );
    assert!(
        failed.workspace().is_dir(),
        "kept for inspection after a failure"
    );
}

/// Waits for a presence record written after `since` that shows no active run (the
/// runs' directories are settled before their slots are freed).
async fn wait_idle(harness: &ProviderHarness, since: chrono::DateTime<chrono::Utc>) {
    let kv = harness
        .js
        .get_key_value(switchyard_contracts::subjects::EXECUTORS_BUCKET)
        .await
        .unwrap();
    let watch = async {
        use futures::StreamExt as _;
        let mut entries = kv
            .watch_with_history(harness.executor_id.as_str())
            .await
            .unwrap();
        while let Some(entry) = entries.next().await {
            let record: switchyard_contracts::presence::ExecutorPresence =
                serde_json::from_slice(&entry.unwrap().value).unwrap();
            if record.active == 0 && record.heartbeat_at > since {
                return;
            }
        }
    };
    tokio::time::timeout(crate::common::WAIT, watch)
        .await
        .expect("the executor became idle");
}
