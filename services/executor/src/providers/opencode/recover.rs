//! What the driver needs when opencode's event stream broke mid-turn while the server
//! lives on (a dropped connection, a proxy's timeout): the bounds of re-subscribing, and
//! the turn's state read back from the REST API.
//!
//! `GET /event` is not replayable: what the server emitted while nobody listened is
//! gone. So once the new stream is live (`server.connected`), the driver reads the
//! session's status, the pending permission requests and questions, and the turn's
//! messages, and [`events`] rebuilds them as the events that would have said the same.
//! The translator passes on only what it has not passed on yet
//! ([`Translator::recover`](super::translate::Translator::recover)).
//!
//! The snapshot is read after the new stream is live, so nothing falls between the
//! two; what falls into both (an event the new stream brings that the snapshot already
//! shows) is deduplicated by the translator.

use super::api::{ApiError, ServerApi};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Re-subscriptions tried after one break before the run fails.
pub(crate) const ATTEMPTS: u32 = 5;
/// Breaks followed by a re-subscription within one turn: a server whose stream breaks
/// again at once would otherwise keep the run in a loop of re-subscribing.
pub(crate) const MAX_BREAKS: u32 = 10;
/// Bound on one attempt: the subscription up to `server.connected`, and the snapshot.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause before re-subscription `attempt` (1-based): none before the first (a
/// dropped connection is usually fine to reopen at once), then 250 ms doubling, 3.75 s
/// over all five.
pub(crate) fn backoff(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250) * 2u32.saturating_pow(n.saturating_sub(2).min(8)),
    }
}

/// Milliseconds since the epoch, the clock opencode stamps its messages with.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The session's state as the REST API shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// The session's `session.status` object (`{"type": "idle"}` when the server does
    /// not list it: it lists only sessions that are not idle).
    pub(crate) status: Value,
    pub(crate) permissions: Vec<Value>,
    pub(crate) questions: Vec<Value>,
    /// The turn's messages, `[{info, parts}]`, oldest first.
    pub(crate) messages: Vec<Value>,
    /// The turn had an assistant message before the status was read: the session
    /// worked on the turn, so an idle status means the turn is over (the user message
    /// alone comes before the session turns busy).
    pub(crate) started: bool,
}

/// Reads the snapshot of the turn that started at `since_ms`.
///
/// Messages, status, and if idle the messages again: a turn seen started before an
/// idle status is over, and only messages read after that idle are final.
pub(crate) async fn fetch(
    api: &ServerApi,
    session_id: &str,
    since_ms: u64,
) -> Result<Snapshot, ApiError> {
    let mut messages = turn_messages(api.messages(session_id).await?, since_ms);
    let started = messages.iter().any(is_assistant);
    let status = api
        .session_statuses()
        .await?
        .remove(session_id)
        .unwrap_or_else(|| json!({"type": "idle"}));
    if status.get("type").and_then(Value::as_str) == Some("idle") {
        messages = turn_messages(api.messages(session_id).await?, since_ms);
    }
    Ok(Snapshot {
        status,
        permissions: api.pending_permissions().await?,
        questions: api.pending_questions().await?,
        messages,
        started,
    })
}

/// The messages of the turn that started at `since_ms` (when the prompt was sent:
/// older messages are earlier turns', whose output is not this run's).
pub(crate) fn turn_messages(messages: Vec<Value>, since_ms: u64) -> Vec<Value> {
    messages
        .into_iter()
        .filter(|message| {
            message
                .pointer("/info/time/created")
                .and_then(Value::as_u64)
                .is_some_and(|created| created >= since_ms)
        })
        .collect()
}

fn is_assistant(message: &Value) -> bool {
    message.pointer("/info/role").and_then(Value::as_str) == Some("assistant")
}

/// The events that say what the snapshot shows.
///
/// In order: the session busy (if the turn started: it ran, even if it ended while
/// nobody listened), each message and its parts, the pending permission requests and
/// questions, and the session's status last (an idle ends the turn, so everything else
/// must be in before it).
pub(crate) fn events(snapshot: &Snapshot, session_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    if snapshot.started {
        events.push(event(
            "session.status",
            json!({"sessionID": session_id, "status": {"type": "busy"}}),
        ));
    }
    for message in &snapshot.messages {
        events.push(event(
            "message.updated",
            json!({"sessionID": session_id, "info": message.get("info")}),
        ));
        let parts = message.get("parts").and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            events.push(event(
                "message.part.updated",
                json!({"sessionID": session_id, "part": part}),
            ));
        }
    }
    for permission in &snapshot.permissions {
        events.push(event("permission.asked", permission.clone()));
    }
    for question in &snapshot.questions {
        events.push(event("question.asked", question.clone()));
    }
    events.push(event(
        "session.status",
        json!({"sessionID": session_id, "status": snapshot.status}),
    ));
    events
}

fn event(kind: &str, properties: Value) -> Value {
    json!({"type": kind, "properties": properties})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::opencode::translate::{Step, Translator, Verdict};
    use switchyard_contracts::RunEventKind;

    fn message(id: &str, role: &str, created: u64, parts: Value) -> Value {
        json!({"info": {"id": id, "sessionID": "ses_1", "role": role, "time": {"created": created}}, "parts": parts})
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect()
    }

    #[test]
    fn only_the_turn_since_the_prompt_counts() {
        let messages = vec![
            message(
                "msg_old",
                "assistant",
                100,
                json!([{"id": "prt_old", "type": "text", "text": "earlier turn"}]),
            ),
            message(
                "msg_user",
                "user",
                200,
                json!([{"id": "prt_u", "type": "text", "text": "prompt"}]),
            ),
            message("msg_a", "assistant", 201, json!([])),
            json!({"info": {"id": "msg_odd", "role": "assistant"}, "parts": []}),
        ];
        let turn = turn_messages(messages, 200);
        let ids: Vec<&str> = turn
            .iter()
            .map(|m| m["info"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["msg_user", "msg_a"]);
        assert!(is_assistant(&turn[1]) && !is_assistant(&turn[0]));
    }

    #[test]
    fn a_started_turn_is_rebuilt_busy_first_and_its_status_last() {
        let snapshot = Snapshot {
            status: json!({"type": "idle"}),
            permissions: vec![json!({"id": "per_1", "sessionID": "ses_1", "permission": "bash"})],
            questions: vec![json!({"id": "que_1", "sessionID": "ses_1"})],
            messages: vec![
                message(
                    "msg_user",
                    "user",
                    200,
                    json!([{"id": "prt_u", "type": "text", "text": "prompt"}]),
                ),
                message(
                    "msg_a",
                    "assistant",
                    201,
                    json!([{"id": "prt_a", "type": "text", "text": "answer"}]),
                ),
            ],
            started: true,
        };
        let events = events(&snapshot, "ses_1");
        assert_eq!(
            types(&events),
            [
                "session.status",
                "message.updated",
                "message.part.updated",
                "message.updated",
                "message.part.updated",
                "permission.asked",
                "question.asked",
                "session.status",
            ]
        );
        assert_eq!(events[0]["properties"]["status"]["type"], "busy");
        assert_eq!(events[1]["properties"]["info"]["id"], "msg_user");
        assert_eq!(events[4]["properties"]["part"]["id"], "prt_a");
        assert_eq!(events[4]["properties"]["sessionID"], "ses_1");
        assert_eq!(events[7]["properties"]["status"]["type"], "idle");
    }

    #[test]
    fn a_turn_not_started_is_not_made_busy() {
        let snapshot = Snapshot {
            status: json!({"type": "idle"}),
            messages: vec![message("msg_user", "user", 200, json!([]))],
            ..Snapshot::default()
        };
        let events = events(&snapshot, "ses_1");
        assert_eq!(types(&events), ["message.updated", "session.status"]);
        assert_eq!(events[1]["properties"]["status"]["type"], "idle");
    }

    /// The SSE events of the captured tool turn (`serve-sse-permission-once.jsonl`: a
    /// permission, the bash tool, two model calls, a streamed final answer).
    fn captured_turn() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/providers/opencode/testdata/serve-sse-permission-once.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["dir"] == "sse")
            .map(|line| line["event"].clone())
            .collect()
    }

    fn position(events: &[Value], kind: &str) -> usize {
        events.iter().position(|e| e["type"] == kind).unwrap()
    }

    /// What the REST API would show once the server emitted `events`: each message's
    /// last info and each part's last update, pending permissions, the status. With
    /// `deltas`, streamed text is stored as it comes; without, only at the part's
    /// updates (when opencode stores it is not something to rely on).
    fn snapshot_after(events: &[Value], deltas: bool) -> Snapshot {
        let mut infos: Vec<(String, Value)> = Vec::new();
        let mut parts: Vec<(String, Value)> = Vec::new();
        let mut snapshot = Snapshot {
            status: json!({"type": "idle"}),
            ..Snapshot::default()
        };
        let upsert = |list: &mut Vec<(String, Value)>, id: &str, value: &Value| match list
            .iter_mut()
            .find(|(known, _)| known == id)
        {
            Some((_, old)) => *old = value.clone(),
            None => list.push((id.to_owned(), value.clone())),
        };
        for event in events {
            let props = &event["properties"];
            match event["type"].as_str().unwrap_or("") {
                "message.updated" => upsert(
                    &mut infos,
                    props["info"]["id"].as_str().unwrap(),
                    &props["info"],
                ),
                "message.part.updated" => upsert(
                    &mut parts,
                    props["part"]["id"].as_str().unwrap(),
                    &props["part"],
                ),
                "message.part.delta" if deltas => {
                    let id = props["partID"].as_str().unwrap();
                    if let Some((_, part)) = parts.iter_mut().find(|(known, _)| known == id) {
                        let text = format!(
                            "{}{}",
                            part["text"].as_str().unwrap_or(""),
                            props["delta"].as_str().unwrap()
                        );
                        part["text"] = json!(text);
                    }
                }
                "permission.asked" => snapshot.permissions.push(props.clone()),
                "permission.replied" => snapshot
                    .permissions
                    .retain(|p| p["id"] != props["requestID"]),
                "session.status" => snapshot.status = props["status"].clone(),
                _ => {}
            }
        }
        snapshot.started = infos.iter().any(|(_, info)| info["role"] == "assistant");
        snapshot.messages = infos
            .into_iter()
            .map(|(id, info)| {
                let parts: Vec<&Value> = parts
                    .iter()
                    .filter(|(_, p)| p["messageID"] == id.as_str())
                    .map(|(_, p)| p)
                    .collect();
                json!({"info": info, "parts": parts})
            })
            .collect();
        snapshot
    }

    /// The stream broke after `seen` events; the new one is live from event
    /// `subscribed` on, and the snapshot shows the server after `snapshot` events
    /// (seen ≤ subscribed ≤ snapshot: events in between are lost, or in both).
    fn replay(
        events: &[Value],
        seen: usize,
        subscribed: usize,
        snapshot: usize,
        deltas: bool,
    ) -> (Translator, Vec<Step>) {
        let session = events
            .iter()
            .find_map(|e| e["properties"]["sessionID"].as_str())
            .unwrap();
        let mut translator = Translator::new(session, None);
        let mut steps: Vec<Step> = events[..seen]
            .iter()
            .flat_map(|e| translator.handle(e))
            .collect();
        let rebuilt = super::events(&snapshot_after(&events[..snapshot], deltas), session);
        steps.extend(translator.recover(&rebuilt));
        for event in &events[subscribed..] {
            if steps.contains(&Step::Idle) {
                break;
            }
            steps.extend(translator.handle(event));
        }
        steps.extend(translator.finish());
        (translator, steps)
    }

    #[test]
    fn a_turn_recovered_at_any_point_passes_everything_on_once() {
        let events = captured_turn();
        let asked = position(&events, "permission.asked");
        let replied = position(&events, "permission.replied");
        let idle = position(&events, "session.idle");
        let final_text = "Done. I ran the command and created hello.txt. FINAL_ANSWER_OK";
        let mut cases = 0;
        for seen in 0..=idle {
            for subscribed in seen..(seen + 4).min(idle + 1) {
                for snapshot in subscribed..(subscribed + 4).min(events.len() + 1) {
                    for deltas in [false, true] {
                        cases += 1;
                        let at = format!(
                            "seen {seen}, subscribed {subscribed}, snapshot {snapshot}, deltas {deltas}"
                        );
                        let (translator, steps) =
                            replay(&events, seen, subscribed, snapshot, deltas);
                        assert!(steps.contains(&Step::Idle), "{at}: no idle");
                        assert_eq!(translator.verdict(), Verdict::Succeeded, "{at}");
                        let emitted: Vec<&RunEventKind> = steps
                            .iter()
                            .filter_map(|s| match s {
                                Step::Emit(kind) => Some(kind),
                                _ => None,
                            })
                            .collect();
                        let count =
                            |name: &str| emitted.iter().filter(|k| k.type_name() == name).count();
                        let completed: Vec<&str> = emitted
                            .iter()
                            .filter_map(|k| match k {
                                RunEventKind::MessageCompleted(m) => Some(m.text.as_str()),
                                _ => None,
                            })
                            .collect();
                        assert_eq!(completed, [final_text], "{at}");
                        let deltas_text: String = emitted
                            .iter()
                            .filter_map(|k| match k {
                                RunEventKind::MessageDelta(d) => Some(d.text.as_str()),
                                _ => None,
                            })
                            .collect();
                        assert_eq!(deltas_text, final_text, "{at}");
                        assert_eq!(count("tool.started"), 1, "{at}");
                        assert_eq!(count("tool.completed"), 1, "{at}");
                        assert_eq!(count("usage"), 2, "{at}");
                        let asks = steps.iter().filter(|s| matches!(s, Step::Ask(_))).count();
                        // Asked on the old stream, on the new one, or pending in the
                        // snapshot; else it came and went while nobody listened.
                        let reachable = asked < seen
                            || asked >= subscribed
                            || (asked < snapshot && replied >= snapshot);
                        assert_eq!(asks, usize::from(reachable), "{at}");
                    }
                }
            }
        }
        assert!(cases > 500, "{cases}");
    }

    #[test]
    fn the_backoff_is_short_and_bounded() {
        let delays: Vec<u128> = (1..=ATTEMPTS).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [0, 250, 500, 1000, 2000]);
        assert_eq!(backoff(u32::MAX), Duration::from_millis(250 * 256));
        assert!(now_ms() > 1_700_000_000_000);
    }
}
