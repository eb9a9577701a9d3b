//! The translator and the failure classification fed with transcripts captured from
//! the real `codex app-server` 0.169 (`testdata/`, copied from the protocol samples).

use super::failure;
use super::protocol::{Incoming, ThreadResult, Turn, TurnEnvelope, TurnStatus};
use super::translate::Translator;
use serde_json::{Value, json};
use std::path::Path;
use switchyard_contracts::event::{
    DiagnosticLevel, FileChangeKind, FileChanged, ToolStatus, Usage,
};
use switchyard_contracts::{FailureReason, RunEventKind};

/// What replaying the server's side of one turn produced.
struct TurnReplay {
    events: Vec<RunEventKind>,
    end: Turn,
    /// Server requests: (id, method, params).
    requests: Vec<(Value, String, Value)>,
    translator: Translator,
}

/// Feeds every `recv` line of a transcript through the framing and the translator the
/// way the session does, one translator per turn.
fn replay(file: &str, workspace: &str) -> Vec<TurnReplay> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/providers/codex/testdata")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut turns = Vec::new();
    let mut thread_id: Option<String> = None;
    let mut translator = Translator::new(Path::new(workspace));
    let mut events = Vec::new();
    let mut requests = Vec::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if record["dir"] != "recv" {
            continue;
        }
        match Incoming::parse(&record["msg"].to_string()).unwrap() {
            Incoming::Response { outcome, .. } => {
                let Ok(result) = outcome else { continue };
                if let Ok(ThreadResult { thread }) = serde_json::from_value(result.clone()) {
                    translator.set_thread(&thread.id);
                    thread_id = Some(thread.id);
                } else if let Ok(TurnEnvelope { turn }) = serde_json::from_value(result) {
                    translator.set_turn(&turn.id);
                }
            }
            Incoming::Request { id, method, params } => requests.push((id, method, params)),
            Incoming::Notification { method, params } => {
                let translated = translator.notification(&method, &params);
                events.extend(translated.events);
                if let Some(end) = translated.turn_end {
                    if let Some(usage) = translator.take_usage() {
                        events.push(RunEventKind::Usage(usage));
                    }
                    let mut next = Translator::new(Path::new(workspace));
                    if let Some(id) = &thread_id {
                        next.set_thread(id);
                    }
                    turns.push(TurnReplay {
                        events: std::mem::take(&mut events),
                        end,
                        requests: std::mem::take(&mut requests),
                        translator: std::mem::replace(&mut translator, next),
                    });
                }
            }
        }
    }
    turns
}

fn types(events: &[RunEventKind]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = events.iter().map(RunEventKind::type_name).collect();
    names.dedup();
    names
}

fn message_text(events: &[RunEventKind]) -> (String, Vec<String>) {
    let mut deltas = String::new();
    let mut completed = Vec::new();
    for event in events {
        match event {
            RunEventKind::MessageDelta(delta) => deltas.push_str(&delta.text),
            RunEventKind::MessageCompleted(done) => completed.push(done.text.clone()),
            _ => {}
        }
    }
    (deltas, completed)
}

const FINAL: &str = "Done. I ran the command and created hello.txt. FINAL_ANSWER_OK";

#[test]
fn two_turns_translate_to_tool_and_message_events() {
    let turns = replay("app-server-two-turns.jsonl", "<workdir>/ws/as_st");
    assert_eq!(turns.len(), 2);

    let first = &turns[0];
    assert_eq!(first.end.status, TurnStatus::Completed);
    assert!(first.translator.agent_output());
    assert_eq!(
        types(&first.events),
        [
            "diagnostic",
            "tool.started",
            "tool.output",
            "tool.completed",
            "message.delta",
            "message.completed",
            "usage"
        ]
    );
    let started = first
        .events
        .iter()
        .find_map(|e| match e {
            RunEventKind::ToolStarted(started) => Some(started),
            _ => None,
        })
        .unwrap();
    assert_eq!(started.name, "shell");
    assert_eq!(
        started.input["command"],
        "/bin/bash -lc 'echo hello from fake model > hello.txt && cat hello.txt'"
    );
    let output: String = first
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::ToolOutput(o) if o.call_id == started.call_id => Some(o.output.as_str()),
            _ => None,
        })
        .collect();
    assert!(output.ends_with("hello from fake model\n"), "{output:?}");
    assert!(first.events.iter().any(|e| matches!(e,
        RunEventKind::ToolCompleted(c) if c.call_id == started.call_id && c.status == ToolStatus::Succeeded && c.exit_code == Some(0))));
    let (deltas, completed) = message_text(&first.events);
    assert_eq!(deltas, FINAL, "the deltas add up to the message");
    assert_eq!(completed, [FINAL]);
    assert_eq!(
        first.events.last(),
        Some(&RunEventKind::Usage(Usage {
            input_tokens: 200,
            output_tokens: 40,
            cached_input_tokens: Some(0)
        }))
    );

    // The second turn on the same thread: only its own tokens count.
    let second = &turns[1];
    assert_eq!(second.end.status, TurnStatus::Completed);
    assert!(second.translator.agent_output());
    assert_eq!(
        types(&second.events),
        ["diagnostic", "message.delta", "message.completed", "usage"]
    );
    assert_eq!(
        second.events.last(),
        Some(&RunEventKind::Usage(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cached_input_tokens: Some(0)
        }))
    );
}

#[test]
fn an_accepted_command_approval_runs_the_tool() {
    let turns = replay(
        "app-server-command-approval-accept.jsonl",
        "<workdir>/ws/as1",
    );
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    let [(id, method, params)] = turn.requests.as_slice() else {
        panic!("one server request: {:?}", turn.requests)
    };
    assert_eq!(id, &json!(0));
    assert_eq!(method, "item/commandExecution/requestApproval");
    assert_eq!(params["itemId"], "call_9e65d35806874e66");
    assert!(turn.events.iter().any(|e| matches!(e,
        RunEventKind::ToolCompleted(c) if c.call_id == "call_9e65d35806874e66" && c.status == ToolStatus::Succeeded)));
    assert!(turn.translator.agent_output());
}

#[test]
fn a_declined_command_completes_declined_and_the_turn_goes_on() {
    let turns = replay(
        "app-server-command-approval-decline.jsonl",
        "<workdir>/ws/as_decline",
    );
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    assert_eq!(turn.requests.len(), 1);
    assert!(turn.events.iter().any(|e| matches!(e,
        RunEventKind::ToolCompleted(c) if c.status == ToolStatus::Declined && c.exit_code.is_none())));
    assert!(
        !turn
            .events
            .iter()
            .any(|e| matches!(e, RunEventKind::ToolOutput(_))),
        "a declined command has no output"
    );
    assert_eq!(turn.end.status, TurnStatus::Completed);
    assert!(turn.translator.agent_output());
}

#[test]
fn an_applied_patch_is_a_file_change_relative_to_the_workspace() {
    let turns = replay(
        "app-server-filechange-approval-accept.jsonl",
        "<workdir>/ws/as_patch",
    );
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    let [(_, method, params)] = turn.requests.as_slice() else {
        panic!("one server request")
    };
    assert_eq!(method, "item/fileChange/requestApproval");
    let item_id = params["itemId"].as_str().unwrap();
    let (files, details) = turn.translator.file_change_summary(item_id);
    assert_eq!(files, ["patched.txt"]);
    assert_eq!(details[0]["kind"], "add");
    assert_eq!(details[0]["diff"], "patched by fake model\n");
    assert!(turn.events.iter().any(|e| matches!(e,
        RunEventKind::ToolStarted(s) if s.name == "apply_patch" && s.input["changes"][0]["path"] == "patched.txt")));
    let changed: Vec<&FileChanged> = turn
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::FileChanged(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed,
        [&FileChanged {
            path: "patched.txt".into(),
            change: FileChangeKind::Added,
            diff: Some("patched by fake model\n".into()),
        }]
    );
}

#[test]
fn an_interrupted_turn_ends_interrupted_without_a_message() {
    let turns = replay(
        "app-server-turn-interrupt.jsonl",
        "<workdir>/ws/as_interrupt",
    );
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    assert_eq!(turn.end.status, TurnStatus::Interrupted);
    assert!(!turn.translator.agent_output());
}

#[test]
fn a_missing_key_fails_the_turn_auth_missing() {
    let turns = replay("app-server-missing-key.jsonl", "<workdir>/ws/as_nokey");
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    assert_eq!(turn.end.status, TurnStatus::Failed);
    let (reason, detail) = failure::classify(turn.end.error.as_ref(), turn.translator.errors());
    assert_eq!(reason, FailureReason::AuthMissing);
    assert!(detail.contains("FAKE_API_KEY"), "{detail}");
}

#[test]
fn http_401_after_retries_is_auth_invalid_and_each_retry_a_diagnostic() {
    let turns = replay("app-server-http401.jsonl", "<workdir>/ws/as_401");
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    assert_eq!(turn.end.status, TurnStatus::Failed);
    let (reason, detail) = failure::classify(turn.end.error.as_ref(), turn.translator.errors());
    assert_eq!(reason, FailureReason::AuthInvalid);
    assert!(detail.contains("401 Unauthorized"), "{detail}");
    let levels: Vec<DiagnosticLevel> = turn
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::Diagnostic(d)
                if d.message.contains("401") || d.message.contains("Reconnecting") =>
            {
                Some(d.level)
            }
            _ => None,
        })
        .collect();
    assert_eq!(levels.len(), 6);
    assert!(levels[..5].iter().all(|l| *l == DiagnosticLevel::Warn));
    assert_eq!(levels[5], DiagnosticLevel::Error);
    assert!(!turn.translator.agent_output());
}

#[test]
fn a_resumed_thread_answers_on_the_same_thread() {
    let turns = replay("app-server-thread-resume.jsonl", "<workdir>/ws/as1");
    let [turn] = turns.as_slice() else {
        panic!("one turn")
    };
    assert_eq!(turn.end.status, TurnStatus::Completed);
    assert!(turn.translator.agent_output());
    let (_, completed) = message_text(&turn.events);
    assert_eq!(completed, [FINAL]);
}

#[test]
fn other_threads_unknown_methods_and_garbage_produce_nothing() {
    let mut translator = Translator::new(Path::new("/ws"));
    translator.set_thread("t1");
    let other = translator.notification(
        "item/agentMessage/delta",
        &json!({"threadId": "t2", "turnId": "x", "itemId": "m", "delta": "sub-agent text"}),
    );
    assert!(other.events.is_empty());
    assert!(
        translator
            .notification("thread/realtime/sdp", &json!({"threadId": "t1"}))
            .events
            .is_empty()
    );
    for garbage in [
        json!(null),
        json!([1]),
        json!({"item": 5}),
        json!({"itemId": 3}),
    ] {
        for method in [
            "item/started",
            "item/completed",
            "item/agentMessage/delta",
            "error",
            "turn/completed",
            "thread/tokenUsage/updated",
        ] {
            let translated = translator.notification(method, &garbage);
            assert!(translated.events.is_empty() && translated.turn_end.is_none());
        }
    }
    assert_eq!(translator.take_usage(), None);
}

#[test]
fn a_tool_item_that_only_completes_still_starts_and_reports_its_output() {
    let mut translator = Translator::new(Path::new("/ws"));
    let item = json!({"type": "commandExecution", "id": "c1", "command": "false", "cwd": "/ws",
                      "status": "failed", "aggregatedOutput": "oops\n", "exitCode": 1});
    let translated = translator.notification("item/completed", &json!({"item": item}));
    assert_eq!(
        types(&translated.events),
        ["tool.started", "tool.output", "tool.completed"]
    );
    assert!(matches!(&translated.events[2],
        RunEventKind::ToolCompleted(c) if c.status == ToolStatus::Failed && c.exit_code == Some(1)));
    assert!(translated.model_output);
    // A reasoning item that streamed nothing is reported whole.
    let reasoning = translator.notification(
        "item/completed",
        &json!({"item": {"type": "reasoning", "id": "r1", "summary": ["thinking hard"], "content": []}}),
    );
    assert!(matches!(&reasoning.events[..],
        [RunEventKind::ReasoningDelta(r)] if r.text == "thinking hard"));
}

/// Garbage from the app-server: any line, any JSON-RPC-looking value, never panics the
/// framing, the translator or the failure classification.
mod garbage {
    use super::super::failure;
    use super::super::protocol::{Incoming, ThreadResult, TurnEnvelope};
    use super::super::translate::Translator;
    use crate::providers::arbitrary;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::path::Path;

    fn feed(translator: &mut Translator, raw: &str) {
        let Ok(incoming) = Incoming::parse(raw) else {
            return;
        };
        match incoming {
            Incoming::Response { outcome, .. } => {
                let Ok(result) = outcome else { return };
                if let Ok(ThreadResult { thread }) = serde_json::from_value(result.clone()) {
                    translator.set_thread(&thread.id);
                } else if let Ok(TurnEnvelope { turn }) = serde_json::from_value(result) {
                    translator.set_turn(&turn.id);
                }
            }
            Incoming::Request { params, .. } => {
                if let Some(item) = params.get("itemId").and_then(Value::as_str) {
                    let _ = translator.file_change_summary(item);
                }
                if let Some(changes) = params.get("fileChanges").and_then(Value::as_object) {
                    for path in changes.keys() {
                        let _ = translator.relative(path);
                    }
                }
            }
            Incoming::Notification { method, params } => {
                let translated = translator.notification(&method, &params);
                if let Some(end) = translated.turn_end {
                    let _ = failure::classify(end.error.as_ref(), translator.errors());
                    let _ = translator.take_usage();
                }
            }
        }
    }

    /// A JSON-RPC message with a real-looking method and arbitrary params.
    fn rpc() -> impl Strategy<Value = String> {
        (
            arbitrary::tagged("method"),
            arbitrary::json(),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(mut message, params, id)| {
                message["params"] = params;
                if let Some(id) = id {
                    message["id"] = id.into();
                }
                message.to_string()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_sequence_of_lines_never_panics(
            lines in prop::collection::vec(
                prop_oneof![2 => rpc(), 1 => arbitrary::line("method")],
                1..12,
            ),
            workspace in prop_oneof![Just("/work/x".to_owned()), ".{0,10}"],
        ) {
            let mut translator = Translator::new(Path::new(&workspace));
            translator.set_thread("thread");
            translator.set_turn("turn");
            for raw in &lines {
                feed(&mut translator, raw);
            }
            let _ = failure::classify(None, translator.errors());
        }
    }
}
