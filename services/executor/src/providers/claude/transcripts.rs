//! Captured Claude Code transcripts (claude 2.1.197 against a local fake model; see
//! `shared/protocol-samples/claude/README` and PROTOCOLS.md §2) replayed through the
//! translator and the classifier, the way the driver feeds them.
//!
//! `stdio-*` files are driver transcripts (`{"dir": "recv", "msg": …}` per line), `p-*`
//! files the raw stdout of `claude -p`, `x-*` files raw stdout captured for this
//! adapter (control responses dropped, long lists cut).

use super::outcome::{self, TurnFacts, TurnOutcome};
use super::protocol::{ControlRequest, Line, ResultLine};
use super::translate::Translator;
use switchyard_contracts::RunEventKind;

fn transcript(name: &str) -> &'static str {
    match name {
        "p-connection-refused-maxretries1" => {
            include_str!("testdata/p-connection-refused-maxretries1.jsonl")
        }
        "p-default-permission-denied" => include_str!("testdata/p-default-permission-denied.jsonl"),
        "p-empty-output" => include_str!("testdata/p-empty-output.jsonl"),
        "p-http401-maxretries1" => include_str!("testdata/p-http401-maxretries1.jsonl"),
        "p-http500-maxretries1" => include_str!("testdata/p-http500-maxretries1.jsonl"),
        "p-missing-key" => include_str!("testdata/p-missing-key.jsonl"),
        "p-request-timeout-api-timeout-10s" => {
            include_str!("testdata/p-request-timeout-api-timeout-10s.jsonl")
        }
        "p-resume" => include_str!("testdata/p-resume.jsonl"),
        "p-sigint" => include_str!("testdata/p-sigint.jsonl"),
        "p-stream-json-text-only" => include_str!("testdata/p-stream-json-text-only.jsonl"),
        "stdio-interrupt-partial-messages" => {
            include_str!("testdata/stdio-interrupt-partial-messages.jsonl")
        }
        "stdio-permission-allow" => include_str!("testdata/stdio-permission-allow.jsonl"),
        "stdio-permission-deny" => include_str!("testdata/stdio-permission-deny.jsonl"),
        "stdio-two-turns" => include_str!("testdata/stdio-two-turns.jsonl"),
        "x-http429" => include_str!("testdata/x-http429.jsonl"),
        "x-resume-not-found" => include_str!("testdata/x-resume-not-found.jsonl"),
        "x-thinking" => include_str!("testdata/x-thinking.jsonl"),
        "x-write-create" => include_str!("testdata/x-write-create.jsonl"),
        other => panic!("no transcript {other}"),
    }
}

/// The stdout lines of a transcript, as the CLI printed them.
pub(super) fn stdout_lines(name: &str) -> Vec<String> {
    transcript(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let value: serde_json::Value = serde_json::from_str(l).expect("transcript line");
            match value.get("dir").and_then(|d| d.as_str()) {
                Some("recv") => Some(value["msg"].to_string()),
                Some(_) => None,
                None => Some(l.to_owned()),
            }
        })
        .collect()
}

/// What replaying a transcript produced, turn by turn.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// Events of every turn, in order (usage included).
    pub(super) events: Vec<RunEventKind>,
    /// Per turn: its result and classification.
    pub(super) turns: Vec<(ResultLine, TurnOutcome)>,
    /// `can_use_tool` requests seen (their tool_use ids).
    pub(super) permission_requests: Vec<String>,
    pub(super) session_ids: Vec<String>,
}

/// Feeds a transcript through the translator like the driver does. `deny` answers
/// every permission prompt with a denial; `interrupted` says we interrupted the turns.
pub(super) fn replay(name: &str, deny: bool, interrupted: bool) -> Replay {
    let mut translator = Translator::new();
    let mut replay = Replay::default();
    let mut model_output = false;
    translator.start_turn();
    for raw in stdout_lines(name) {
        let line = Line::parse(&raw).unwrap_or_else(|| panic!("{name}: unparsed line {raw}"));
        let events = match line {
            Line::System(system) => {
                if system.subtype == "init"
                    && let Some(id) = &system.session_id
                {
                    replay.session_ids.push(id.clone());
                }
                translator.system(&system)
            }
            Line::StreamEvent(event) => {
                model_output = true;
                translator.stream_event(&event)
            }
            Line::Assistant(assistant) => {
                model_output |= !assistant.is_synthetic();
                translator.assistant(&assistant)
            }
            Line::User(user) => translator.user(&user),
            Line::ControlRequest(request) => {
                if let ControlRequest::CanUseTool(can_use) = request.request {
                    let id = can_use.tool_use_id.unwrap_or_default();
                    if deny {
                        translator.mark_denied(&id);
                    }
                    replay.permission_requests.push(id);
                }
                Vec::new()
            }
            Line::ControlResponse(_) | Line::Other => Vec::new(),
            Line::Result(result) => {
                replay.events.extend(Translator::usage(&result));
                let facts = TurnFacts {
                    interrupted,
                    assistant_text: translator.turn_had_text(),
                    model_output,
                };
                let outcome = outcome::classify(&result, facts);
                replay.turns.push((result, outcome));
                translator.start_turn();
                Vec::new()
            }
        };
        replay.events.extend(events);
    }
    replay
}
