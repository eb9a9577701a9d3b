//! Unit tests of the translator, the classifier and the launch, fed with the captured
//! transcripts (see [`super::transcripts`]).

use super::launch::{ClaudeOptions, Launch, OptionsError, PermissionMode};
use super::outcome::{TurnFacts, TurnOutcome, classify};
use super::protocol::{ContentBlock, ControlRequest, Line, ResultLine, StreamEvent, UserContent};
use super::transcripts::{replay, stdout_lines};
use super::translate::Translator;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_contracts::event::{
    DiagnosticLevel, FileChangeKind, MessageCompleted, MessageDelta, ToolStatus, Usage,
};
use switchyard_contracts::{FailureReason, RunEventKind};

fn deltas(events: &[RunEventKind]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::MessageDelta(MessageDelta { message_id, text }) => {
                Some((message_id.clone(), text.clone()))
            }
            _ => None,
        })
        .collect()
}

fn completed(events: &[RunEventKind]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::MessageCompleted(MessageCompleted { message_id, text }) => {
                Some((message_id.clone(), text.clone()))
            }
            _ => None,
        })
        .collect()
}

fn types(events: &[RunEventKind]) -> Vec<&'static str> {
    events.iter().map(RunEventKind::type_name).collect()
}

fn failed_with(outcome: &TurnOutcome) -> Option<FailureReason> {
    match outcome {
        TurnOutcome::Failed { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn every_captured_line_decodes() {
    for name in [
        "p-connection-refused-maxretries1",
        "p-default-permission-denied",
        "p-empty-output",
        "p-http401-maxretries1",
        "p-http500-maxretries1",
        "p-missing-key",
        "p-request-timeout-api-timeout-10s",
        "p-resume",
        "p-sigint",
        "p-stream-json-text-only",
        "stdio-interrupt-partial-messages",
        "stdio-permission-allow",
        "stdio-permission-deny",
        "stdio-two-turns",
        "x-http429",
        "x-resume-not-found",
        "x-thinking",
        "x-write-create",
    ] {
        let lines = stdout_lines(name);
        assert!(!lines.is_empty(), "{name}");
        for line in lines {
            let parsed = Line::parse(&line);
            assert!(
                parsed.is_some() && parsed != Some(Line::Other),
                "{name}: {line}"
            );
        }
    }
}

#[test]
fn a_permitted_tool_turn_becomes_text_tool_and_final_answer_events() {
    let replay = replay("stdio-permission-allow", false, false);
    assert_eq!(
        types(&replay.events),
        vec![
            "message.delta",
            "message.completed",
            "tool.started",
            "tool.output",
            "tool.completed",
            "message.delta",
            "message.completed",
            "usage",
        ]
    );
    let RunEventKind::ToolStarted(started) = &replay.events[2] else {
        panic!("tool.started expected");
    };
    assert_eq!(started.name, "Bash");
    assert_eq!(started.call_id, "toolu_f6d4fdb1849e4ecc");
    assert_eq!(
        started.input["command"],
        "echo hello from fake model > hello.txt && cat hello.txt"
    );
    let RunEventKind::ToolOutput(output) = &replay.events[3] else {
        panic!("tool.output expected");
    };
    assert_eq!(output.output, "hello from fake model");
    let RunEventKind::ToolCompleted(done) = &replay.events[4] else {
        panic!("tool.completed expected");
    };
    assert_eq!(done.status, ToolStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    // The text and the tool call of one API message share its id; the final answer
    // is another message.
    assert_eq!(
        completed(&replay.events),
        vec![
            (
                "msg_dcd28645037a4833".to_owned(),
                "I will create the file.".to_owned()
            ),
            (
                "msg_30715d1624734a2c".to_owned(),
                "Done. I ran the command and created hello.txt. FINAL_ANSWER_OK".to_owned()
            ),
        ]
    );
    assert_eq!(
        replay.events.last(),
        Some(&RunEventKind::Usage(Usage {
            input_tokens: 200,
            output_tokens: 40,
            cached_input_tokens: None
        }))
    );
    assert_eq!(replay.permission_requests, vec!["toolu_f6d4fdb1849e4ecc"]);
    assert_eq!(replay.turns.len(), 1);
    assert_eq!(replay.turns[0].1, TurnOutcome::Succeeded);
    assert_eq!(
        replay.session_ids,
        vec!["ded9f582-4bb7-49cd-8df7-d2477984d0b9"]
    );
}

#[test]
fn a_denied_tool_completes_declined_and_the_turn_goes_on() {
    let replay = replay("stdio-permission-deny", true, false);
    let completed_tools: Vec<_> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::ToolCompleted(done) => Some((done.call_id.clone(), done.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        completed_tools,
        vec![("toolu_59543233ab4442ef".to_owned(), ToolStatus::Declined)]
    );
    assert!(replay.events.iter().any(|e| matches!(
        e,
        RunEventKind::ToolOutput(o) if o.output == "Denied by driver policy"
    )));
    assert!(
        completed(&replay.events)
            .iter()
            .any(|(_, text)| text.ends_with("FINAL_ANSWER_OK"))
    );
    assert_eq!(replay.turns[0].1, TurnOutcome::Succeeded);
}

#[test]
fn without_our_denial_a_refused_tool_is_a_failed_tool() {
    let replay = replay("p-default-permission-denied", false, false);
    assert!(replay.events.iter().any(|e| matches!(
        e,
        RunEventKind::ToolCompleted(done) if done.status == ToolStatus::Failed && done.exit_code.is_none()
    )));
    assert_eq!(replay.turns[0].1, TurnOutcome::Succeeded);
}

#[test]
fn partial_messages_stream_deltas_once_and_an_interrupted_turn_is_a_stop() {
    let replay = replay("stdio-interrupt-partial-messages", false, true);
    let streamed = deltas(&replay.events);
    assert_eq!(streamed.len(), 5, "{streamed:?}");
    assert!(streamed.iter().all(|(id, _)| id == "msg_2c9904f8d4684430"));
    assert_eq!(streamed[0].1, "slow chunk 0. ");
    let text: String = streamed.iter().map(|(_, t)| t.as_str()).collect();
    // The complete (partial) message follows under the same id, without a repeated delta.
    assert_eq!(
        completed(&replay.events),
        vec![("msg_2c9904f8d4684430".to_owned(), text)]
    );
    assert_eq!(replay.turns[0].1, TurnOutcome::Interrupted);

    // The same result without our interrupt is not ours to call a stop.
    let uninterrupted =
        super::transcripts::replay("stdio-interrupt-partial-messages", false, false);
    assert_eq!(
        failed_with(&uninterrupted.turns[0].1),
        Some(FailureReason::UnknownFailure)
    );
    // SIGINT in plain -p mode ends the same way.
    let sigint = super::transcripts::replay("p-sigint", false, true);
    assert_eq!(sigint.turns[0].1, TurnOutcome::Interrupted);
}

#[test]
fn two_turns_in_one_process_each_end_with_their_result() {
    let replay = replay("stdio-two-turns", false, false);
    assert_eq!(replay.turns.len(), 2);
    assert!(
        replay
            .turns
            .iter()
            .all(|(_, o)| *o == TurnOutcome::Succeeded)
    );
    assert_eq!(replay.session_ids.len(), 2);
    assert_eq!(replay.session_ids[0], replay.session_ids[1]);
    assert_eq!(completed(&replay.events).len(), 3);
    let usages = replay
        .events
        .iter()
        .filter(|e| matches!(e, RunEventKind::Usage(_)))
        .count();
    assert_eq!(usages, 2);
}

#[test]
fn text_without_partial_messages_gets_one_delta_then_completed() {
    let replay = replay("p-stream-json-text-only", false, false);
    assert_eq!(
        types(&replay.events),
        vec!["message.delta", "message.completed", "usage"]
    );
    assert_eq!(
        deltas(&replay.events),
        vec![(
            "msg_bf58d698138a4105".to_owned(),
            "Plain text answer from fake model.".to_owned()
        )]
    );
    assert_eq!(replay.turns[0].1, TurnOutcome::Succeeded);
    // A resumed session answers the same way.
    let resumed = super::transcripts::replay("p-resume", false, false);
    assert_eq!(resumed.turns[0].1, TurnOutcome::Succeeded);
}

#[test]
fn the_failure_matrix_classifies_from_the_result_line() {
    for (name, expected) in [
        ("p-missing-key", FailureReason::AuthMissing),
        ("p-http401-maxretries1", FailureReason::AuthInvalid),
        ("p-http500-maxretries1", FailureReason::ProviderError),
        ("x-http429", FailureReason::RateLimited),
        (
            "p-connection-refused-maxretries1",
            FailureReason::ProviderUnreachable,
        ),
        // No model output before the request timed out: as a first-output limit.
        (
            "p-request-timeout-api-timeout-10s",
            FailureReason::ProviderNoOutput,
        ),
        ("p-empty-output", FailureReason::ProviderNoOutput),
    ] {
        let replay = replay(name, false, false);
        assert_eq!(replay.turns.len(), 1, "{name}");
        assert_eq!(failed_with(&replay.turns[0].1), Some(expected), "{name}");
        // The CLI's synthetic error message is no assistant output.
        assert!(completed(&replay.events).is_empty(), "{name}");
        assert!(deltas(&replay.events).is_empty(), "{name}");
    }
}

#[test]
fn error_details_carry_the_cli_text_and_retries_become_diagnostics() {
    let replay = replay("p-http401-maxretries1", false, false);
    let TurnOutcome::Failed { detail, .. } = &replay.turns[0].1 else {
        panic!("a failure expected");
    };
    assert_eq!(detail, "claude: Invalid API key · Fix external API key");
    let diagnostics: Vec<_> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::Diagnostic(d) => Some((d.level, d.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(diagnostics.len(), 2, "{diagnostics:?}");
    assert_eq!(diagnostics[0].0, DiagnosticLevel::Warn);
    assert!(diagnostics[0].1.contains("HTTP 401"), "{diagnostics:?}");
    assert!(
        diagnostics[0].1.contains("attempt 1 of 1"),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics[1].1.contains("Invalid API key"),
        "{diagnostics:?}"
    );
    // No usage event for a turn that used nothing.
    assert!(
        !replay
            .events
            .iter()
            .any(|e| matches!(e, RunEventKind::Usage(_)))
    );
}

#[test]
fn statuses_without_a_transcript_map_to_their_reasons() {
    let result = |status: Option<i64>, text: &str| ResultLine {
        subtype: "success".into(),
        is_error: true,
        api_error_status: status,
        result: Some(text.into()),
        ..ResultLine::default()
    };
    let facts = TurnFacts::default();
    for (status, text, expected) in [
        (Some(403), "forbidden", FailureReason::AuthInvalid),
        (Some(429), "API Error: 429", FailureReason::RateLimited),
        (Some(529), "Overloaded", FailureReason::ProviderError),
        (Some(400), "bad request", FailureReason::ProviderError),
        (
            None,
            "API Error: Rate limit reached",
            FailureReason::RateLimited,
        ),
        (None, "something odd", FailureReason::UnknownFailure),
        (
            None,
            "API Error: Unable to connect to API (ConnectionRefused)",
            FailureReason::ProviderUnreachable,
        ),
        (None, "Request timed out", FailureReason::ProviderNoOutput),
    ] {
        assert_eq!(
            failed_with(&classify(&result(status, text), facts)),
            Some(expected),
            "{status:?} {text}"
        );
    }
    let max_turns = ResultLine {
        subtype: "error_max_turns".into(),
        is_error: true,
        ..ResultLine::default()
    };
    let outcome = classify(&max_turns, facts);
    assert_eq!(failed_with(&outcome), Some(FailureReason::ProviderError));
    let TurnOutcome::Failed { detail, .. } = outcome else {
        unreachable!()
    };
    assert_eq!(detail, "claude ended the turn with error_max_turns");
    // A request that timed out after the model had produced output is a timeout.
    assert_eq!(
        failed_with(&classify(
            &result(None, "Request timed out"),
            TurnFacts {
                model_output: true,
                ..facts
            }
        )),
        Some(FailureReason::Timeout)
    );
    // A success with assistant text but an empty result (the answer was a tool call's
    // side effect) is still a success.
    let empty = ResultLine {
        subtype: "success".into(),
        result: Some(String::new()),
        ..ResultLine::default()
    };
    assert_eq!(
        classify(
            &empty,
            TurnFacts {
                assistant_text: true,
                ..facts
            }
        ),
        TurnOutcome::Succeeded
    );
}

#[test]
fn a_resume_of_a_missing_session_is_an_error_result_before_any_init() {
    let replay = replay("x-resume-not-found", false, false);
    assert!(replay.session_ids.is_empty());
    assert_eq!(replay.turns.len(), 1);
    assert_eq!(replay.turns[0].0.subtype, "error_during_execution");
    assert_eq!(replay.turns[0].0.num_turns, Some(0));
}

#[test]
fn streamed_thinking_is_reasoning_once() {
    let replay = replay("x-thinking", false, false);
    let reasoning: Vec<_> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::ReasoningDelta(r) => Some(r.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, vec!["hmm let me think"]);
    assert_eq!(
        completed(&replay.events),
        vec![("msg_1795622310638".to_owned(), "thought answer".to_owned())]
    );
    assert_eq!(deltas(&replay.events).len(), 1);
}

#[test]
fn a_written_file_is_a_file_change_relative_to_the_workspace() {
    let replay = replay("x-write-create", false, false);
    let changes: Vec<_> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            RunEventKind::FileChanged(c) => Some((c.path.clone(), c.change)),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![("w.txt".to_owned(), FileChangeKind::Added)]);
    assert_eq!(replay.turns[0].1, TurnOutcome::Succeeded);
}

#[test]
fn edits_carry_a_diff_and_bash_failures_their_exit_code() {
    let mut translator = Translator::new();
    let assistant = |id: &str, name: &str, input: serde_json::Value| {
        json!({"type": "assistant", "message": {"id": "m1", "content": [
            {"type": "tool_use", "id": id, "name": name, "input": input}
        ]}})
        .to_string()
    };
    let user = |id: &str, content: &str, is_error: bool, result: serde_json::Value| {
        json!({"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error}
        ]}, "tool_use_result": result})
        .to_string()
    };
    let feed = |translator: &mut Translator, raw: String| match Line::parse(&raw) {
        Some(Line::Assistant(a)) => translator.assistant(&a),
        Some(Line::User(u)) => translator.user(&u),
        other => panic!("unexpected {other:?}"),
    };
    feed(
        &mut translator,
        assistant("t1", "Edit", json!({"file_path": "/elsewhere/a.txt"})),
    );
    let events = feed(
        &mut translator,
        user(
            "t1",
            "The file has been updated.",
            false,
            json!({"filePath": "/elsewhere/a.txt", "structuredPatch": [
                {"oldStart": 1, "oldLines": 1, "newStart": 1, "newLines": 1, "lines": ["-old", "+new"]}
            ]}),
        ),
    );
    let Some(RunEventKind::FileChanged(change)) = events.last() else {
        panic!("file.changed expected: {events:?}");
    };
    assert_eq!(change.path, "/elsewhere/a.txt");
    assert_eq!(change.change, FileChangeKind::Modified);
    assert_eq!(
        change.diff.as_deref(),
        Some("@@ -1,1 +1,1 @@\n-old\n+new\n")
    );

    feed(
        &mut translator,
        assistant("t2", "Bash", json!({"command": "false"})),
    );
    let events = feed(
        &mut translator,
        user("t2", "Exit code 3\nboom", true, json!("Error: Exit code 3")),
    );
    assert!(events.iter().any(|e| matches!(
        e,
        RunEventKind::ToolCompleted(done) if done.status == ToolStatus::Failed && done.exit_code == Some(3)
    )));
    // A failed edit changes nothing.
    feed(
        &mut translator,
        assistant("t3", "Write", json!({"file_path": "/x/b.txt"})),
    );
    let events = feed(&mut translator, user("t3", "nope", true, json!("Error")));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEventKind::FileChanged(_)))
    );
}

#[test]
fn unknown_lines_blocks_and_requests_are_tolerated() {
    assert_eq!(Line::parse("not json"), None);
    assert_eq!(Line::parse("[1,2]"), None);
    assert_eq!(
        Line::parse(r#"{"type":"rate_limit_event","whatever":1}"#),
        Some(Line::Other)
    );
    let Some(Line::Assistant(assistant)) = Line::parse(
        r#"{"type":"assistant","message":{"id":"m","content":[{"type":"server_tool_use","id":"x"},{"type":"text","text":"hi","citations":[]}]},"new_field":true}"#,
    ) else {
        panic!("an assistant line");
    };
    assert_eq!(assistant.message.content[0], ContentBlock::Other);
    let Some(Line::ControlRequest(request)) = Line::parse(
        r#"{"type":"control_request","request_id":"r1","request":{"subtype":"hook_callback","callback_id":"c"}}"#,
    ) else {
        panic!("a control request");
    };
    assert_eq!(request.request, ControlRequest::Other);
    let Some(Line::StreamEvent(event)) = Line::parse(
        r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}}"#,
    ) else {
        panic!("a stream event");
    };
    assert!(matches!(event.event, StreamEvent::ContentBlockDelta { .. }));
    assert!(Translator::new().stream_event(&event).is_empty());
    let Some(Line::User(user)) =
        Line::parse(r#"{"type":"user","message":{"role":"user","content":"plain prompt"}}"#)
    else {
        panic!("a user line");
    };
    assert_eq!(
        user.message.content,
        UserContent::Text("plain prompt".into())
    );
    assert!(Translator::new().user(&user).is_empty());
}

#[test]
fn the_launch_has_the_protocol_flags_the_model_resume_and_quick_failure_knobs() {
    let options = ClaudeOptions::from_provider_options(&json!({
        "apiTimeoutMs": 2000,
        "allowedTools": ["Bash(echo:*)", "Edit"],
        "timeoutMs": 1000,
        "inactivityTimeoutMs": 5
    }))
    .unwrap();
    let launch = Launch {
        options: &options,
        model: Some("fake-model"),
        resume: Some("sess-1"),
        credentials: &credentials(&[("ANTHROPIC_API_KEY", "sk-test-key")]),
        base_url: Some("http://127.0.0.1:9"),
        home: PathBuf::from("/state"),
        api_timeout: options.api_timeout(None),
    };
    let args = launch.args();
    let joined = args.join(" ");
    assert!(
        joined.starts_with(
            "-p --input-format stream-json --output-format stream-json --verbose \
             --permission-prompt-tool stdio --include-partial-messages"
        ),
        "{joined}"
    );
    // No settings file and no MCP config but ours is read.
    let sources = args.iter().position(|a| a == "--setting-sources").unwrap();
    assert_eq!(args[sources + 1], "");
    assert!(args.iter().any(|a| a == "--strict-mcp-config"), "{joined}");
    assert!(args.contains(&"--model=fake-model".to_owned()), "{joined}");
    assert!(args.contains(&"--resume=sess-1".to_owned()), "{joined}");
    assert!(
        args.contains(&"--allowedTools=Bash(echo:*),Edit".to_owned()),
        "{joined}"
    );
    assert!(!joined.contains("--permission-mode"), "{joined}");
    let env = launch.env();
    let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("HOME"), Some("/state"));
    assert_eq!(get("ANTHROPIC_API_KEY"), Some("sk-test-key"));
    assert_eq!(get("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:9"));
    assert_eq!(get("CLAUDE_CODE_MAX_RETRIES"), Some("1"));
    assert_eq!(get("API_TIMEOUT_MS"), Some("2000"));
    assert_eq!(get("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), Some("1"));
    assert_eq!(get("DISABLE_TELEMETRY"), Some("1"));
    assert_eq!(get("IS_SANDBOX"), None);

    let defaults = ClaudeOptions::from_provider_options(&serde_json::Value::Null).unwrap();
    let launch = Launch {
        options: &defaults,
        model: None,
        resume: None,
        credentials: &credentials(&[("ANTHROPIC_API_KEY", "k")]),
        base_url: None,
        home: PathBuf::from("/s"),
        api_timeout: defaults.api_timeout(None),
    };
    assert!(
        !launch
            .args()
            .iter()
            .any(|a| a.starts_with("--model") || a.starts_with("--resume"))
    );
    assert!(!launch.env().iter().any(|(k, _)| k == "ANTHROPIC_BASE_URL"));
    assert!(
        launch
            .env()
            .contains(&("API_TIMEOUT_MS".to_owned(), "30000".to_owned()))
    );
}

fn credentials(pairs: &[(&str, &str)]) -> Vec<(String, secrecy::SecretString)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).into()))
        .collect()
}

#[test]
fn credentials_go_under_the_names_claude_reads_and_the_endpoint_is_the_operators() {
    let options = ClaudeOptions::default();
    let env_of = |pairs: &[(&str, &str)], base_url: Option<&str>| {
        Launch {
            options: &options,
            model: None,
            resume: None,
            credentials: &credentials(pairs),
            base_url,
            home: PathBuf::from("/s"),
            api_timeout: options.api_timeout(None),
        }
        .env()
    };
    let get = |env: &[(String, String)], key: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    // A token claude reads itself keeps its name (it is not an API key).
    let env = env_of(&[("CLAUDE_CODE_OAUTH_TOKEN", "oauth-1")], None);
    assert_eq!(
        get(&env, "CLAUDE_CODE_OAUTH_TOKEN").as_deref(),
        Some("oauth-1")
    );
    assert_eq!(get(&env, "ANTHROPIC_API_KEY"), None);
    // An operator-allowed name of its own is the API key.
    let env = env_of(
        &[
            ("TEAM_ANTHROPIC_KEY", "team-1"),
            ("ANTHROPIC_AUTH_TOKEN", "tok-1"),
        ],
        None,
    );
    assert_eq!(get(&env, "ANTHROPIC_API_KEY").as_deref(), Some("team-1"));
    assert_eq!(get(&env, "ANTHROPIC_AUTH_TOKEN").as_deref(), Some("tok-1"));
    assert_eq!(get(&env, "TEAM_ANTHROPIC_KEY"), None);
    // A credential variable cannot override the operator's endpoint.
    let env = env_of(
        &[
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "http://elsewhere"),
        ],
        Some("http://127.0.0.1:4000"),
    );
    assert_eq!(
        get(&env, "ANTHROPIC_BASE_URL").as_deref(),
        Some("http://127.0.0.1:4000")
    );
}

#[test]
fn the_request_timeout_fits_every_attempt_in_the_liveness_bound() {
    let secs = Duration::from_secs;
    let defaults = ClaudeOptions::default();
    assert_eq!(defaults.api_timeout(None), secs(30));
    assert_eq!(defaults.api_timeout(Some(secs(120))), secs(30));
    // Two attempts (one retry) in three quarters of 30 s.
    assert_eq!(
        defaults.api_timeout(Some(secs(30))),
        Duration::from_millis(11_250)
    );
    assert_eq!(
        defaults.api_timeout(Some(Duration::from_millis(100))),
        secs(1)
    );
    let more_retries = ClaudeOptions {
        max_retries: Some(2),
        ..ClaudeOptions::default()
    };
    assert_eq!(more_retries.api_timeout(Some(secs(40))), secs(10));
    let explicit = ClaudeOptions {
        api_timeout_ms: Some(500),
        ..ClaudeOptions::default()
    };
    assert_eq!(
        explicit.api_timeout(Some(secs(30))),
        Duration::from_millis(500)
    );
}

#[test]
fn wrong_options_and_unsandboxed_bypass_are_refused() {
    assert!(matches!(
        ClaudeOptions::from_provider_options(&json!({"permissionMode": "yolo"})),
        Err(OptionsError::Invalid(_))
    ));
    assert!(matches!(
        ClaudeOptions::from_provider_options(&json!({"maxRetries": "many"})),
        Err(OptionsError::Invalid(_))
    ));
    assert_eq!(
        ClaudeOptions::from_provider_options(&json!({"permissionMode": "bypassPermissions"})),
        Err(OptionsError::BypassNeedsSandbox)
    );
    // A tool rule that is a command-line flag could hand the CLI a settings file.
    for options in [
        json!({"allowedTools": ["Edit", "--settings={}"]}),
        json!({"disallowedTools": ["-p"]}),
        json!({"allowedTools": [" "]}),
    ] {
        assert!(
            matches!(
                ClaudeOptions::from_provider_options(&options),
                Err(OptionsError::Invalid(_))
            ),
            "{options}"
        );
    }
    let sandboxed = ClaudeOptions::from_provider_options(
        &json!({"permissionMode": "bypassPermissions", "sandboxed": true}),
    )
    .unwrap();
    assert_eq!(
        sandboxed.permission_mode,
        Some(PermissionMode::BypassPermissions)
    );
    let launch = Launch {
        options: &sandboxed,
        model: None,
        resume: None,
        credentials: &[],
        base_url: None,
        home: PathBuf::from("/s"),
        api_timeout: sandboxed.api_timeout(None),
    };
    assert!(
        launch
            .args()
            .contains(&"--permission-mode=bypassPermissions".to_owned())
    );
    assert!(
        launch
            .env()
            .contains(&("IS_SANDBOX".to_owned(), "1".to_owned()))
    );
}

/// Garbage on the CLI's stdout: any line, any JSON, decodes or is kept as evidence,
/// and the translator and the classifier never panic whatever they are fed.
mod garbage {
    use super::super::outcome::{TurnFacts, classify};
    use super::super::protocol::{ControlRequest, Line};
    use super::super::translate::Translator;
    use crate::providers::arbitrary;
    use proptest::prelude::*;

    fn feed(translator: &mut Translator, raw: &str) {
        let Some(line) = Line::parse(raw) else { return };
        match line {
            Line::System(system) => drop(translator.system(&system)),
            Line::StreamEvent(event) => drop(translator.stream_event(&event)),
            Line::Assistant(assistant) => drop(translator.assistant(&assistant)),
            Line::User(user) => drop(translator.user(&user)),
            Line::ControlRequest(request) => {
                if let ControlRequest::CanUseTool(can_use) = request.request {
                    translator.mark_denied(&can_use.tool_use_id.unwrap_or_default());
                }
            }
            Line::ControlResponse(_) | Line::Other => {}
            Line::Result(result) => {
                let _ = Translator::usage(&result);
                for interrupted in [false, true] {
                    let _ = classify(
                        &result,
                        TurnFacts {
                            interrupted,
                            assistant_text: translator.turn_had_text(),
                            model_output: interrupted,
                        },
                    );
                }
                translator.start_turn();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_sequence_of_lines_never_panics(
            lines in prop::collection::vec(arbitrary::line("type"), 1..12)
        ) {
            let mut translator = Translator::new();
            translator.start_turn();
            for raw in &lines {
                feed(&mut translator, raw);
            }
        }

        #[test]
        fn real_lines_mixed_with_garbage_never_panic(
            picks in prop::collection::vec(0usize..10_000, 1..40),
            garbage in prop::collection::vec(arbitrary::line("type"), 0..10),
        ) {
            // Captured lines in a scrambled order, with garbage in between: a block
            // delta before its start, a stop without a start, a result mid-message.
            let real = super::stdout_lines("stdio-permission-allow");
            let mut translator = Translator::new();
            translator.start_turn();
            for (i, pick) in picks.iter().enumerate() {
                feed(&mut translator, &real[pick % real.len()]);
                if let Some(raw) = garbage.get(i) {
                    feed(&mut translator, raw);
                }
            }
        }
    }
}
