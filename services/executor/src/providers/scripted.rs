//! The `scripted` provider: plays a deterministic script of events from
//! `providerOptions.script`. Tests, benchmarks and rollbacks use it; it exercises every
//! part of the run machinery (deltas, tools, file changes, human-loop asks, sleeps,
//! failures) without an agent CLI.
//!
//! A script is a JSON array of steps, each an object with one key:
//!
//! | step | events |
//! |---|---|
//! | `{"message": {"text": "hi there", "chunks": 2}}` | `chunks` × `message.delta` (the text split evenly), `message.completed` |
//! | `{"reasoning": {"text": "..."}}` | `reasoning.delta` |
//! | `{"toolCall": {"name": "shell", "input": {}, "output": "ok", "exitCode": 0}}` | `tool.started`, `tool.output` (when output is not empty), `tool.completed` |
//! | `{"fileChange": {"path": "a.txt", "change": "added", "diff": "..."}}` | `file.changed` |
//! | `{"humanLoop": {"prompt": "Run rm?", "kind": "command", "details": {}}}` | `human_loop.requested`, `human_loop.resolved`; on a denial also a `diagnostic` noting it. The script goes on either way |
//! | `{"sleepMs": 200}` | none; ends early on stop |
//! | `{"fail": {"reason": "auth_invalid", "detail": "..."}}` | none; the run ends failed with that reason |
//! | `{"filler": {"count": 100}}` | `count` × `message.delta` (for load tests); `count` is at most [`MAX_FILLER`] |
//! | `{"usage": {"inputTokens": 1, "outputTokens": 2}}` | `usage` |
//! | `{"session": {"id": "s-1"}}` | `diagnostic` (info) whose `raw` is `{"conversation": bool, "resumed": <session id or null>}`; reports the session `id` (default `scripted-<run id>`) for the conversation's next run |
//!
//! Without a script the provider plays one message, "Hello from the scripted
//! provider.", in 2 chunks. A script that does not decode is not rejected at dispatch:
//! the run starts and then ends failed with reason `provider_error` and a detail naming
//! the problem, the same way a real provider that rejects its input fails.

use crate::provider::{Provider, ProviderOutcome, RunContext};
use crate::sink::EmitError;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, FileChangeKind, FileChanged, HumanLoopKind, HumanLoopResolver,
    MessageCompleted, MessageDelta, ReasoningDelta, ToolCompleted, ToolOutput, ToolStarted,
    ToolStatus, Usage,
};
use switchyard_contracts::presence::ProviderAvailability;
use switchyard_contracts::{FailureReason, ProviderName, RunEventKind};

/// The most `message.delta` events one `filler` step may ask for. A run's budget
/// (`providerOptions.budget`) bounds the whole script on top of it.
pub(crate) const MAX_FILLER: usize = 100_000;

/// The text of the default script's only message.
pub const DEFAULT_MESSAGE: &str = "Hello from the scripted provider.";

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub(crate) enum Step {
    Message {
        text: String,
        #[serde(default = "one")]
        chunks: usize,
    },
    Reasoning {
        text: String,
    },
    ToolCall {
        name: String,
        #[serde(default)]
        input: serde_json::Value,
        #[serde(default)]
        output: String,
        #[serde(default)]
        exit_code: i32,
    },
    FileChange {
        path: String,
        change: FileChangeKind,
        #[serde(default)]
        diff: Option<String>,
    },
    HumanLoop {
        prompt: String,
        #[serde(default = "command_kind")]
        kind: HumanLoopKind,
        #[serde(default)]
        details: serde_json::Value,
    },
    SleepMs(u64),
    Fail {
        reason: FailureReason,
        #[serde(default)]
        detail: Option<String>,
    },
    Filler {
        count: usize,
    },
    Usage(Usage),
    Session {
        #[serde(default)]
        id: Option<String>,
    },
}

fn one() -> usize {
    1
}

fn command_kind() -> HumanLoopKind {
    HumanLoopKind::Command
}

/// The script a run's provider options ask for.
pub(crate) fn script_of(provider_options: &serde_json::Value) -> Result<Vec<Step>, String> {
    match provider_options.get("script") {
        None | Some(serde_json::Value::Null) => Ok(vec![Step::Message {
            text: DEFAULT_MESSAGE.to_owned(),
            chunks: 2,
        }]),
        Some(script) => {
            let steps: Vec<Step> = serde_json::from_value(script.clone())
                .map_err(|e| format!("invalid providerOptions.script: {e}"))?;
            for (i, step) in steps.iter().enumerate() {
                if let Step::Filler { count } = step
                    && *count > MAX_FILLER
                {
                    return Err(format!(
                        "invalid providerOptions.script[{i}]: filler.count is {count}; at most \
                         {MAX_FILLER} events per filler step"
                    ));
                }
            }
            Ok(steps)
        }
    }
}

/// Splits `text` into `chunks` pieces of nearly equal length (in characters); fewer
/// when the text has fewer characters, and one (possibly empty) at least.
pub(crate) fn split_chunks(text: &str, chunks: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let count = chunks.clamp(1, chars.len().max(1));
    let base = chars.len() / count;
    let extra = chars.len() % count;
    let mut pieces = Vec::with_capacity(count);
    let mut start = 0;
    for i in 0..count {
        let len = base + usize::from(i < extra);
        pieces.push(chars[start..start + len].iter().collect());
        start += len;
    }
    pieces
}

pub(crate) struct ScriptedProvider;

impl Provider for ScriptedProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Scripted
    }

    fn availability(&self) -> ProviderAvailability {
        ProviderAvailability {
            name: ProviderName::Scripted.as_str().to_owned(),
            installed: true,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            problem: None,
            // Needs no credentials.
            credentials_configured: Some(true),
            credential_variables: Vec::new(),
        }
    }

    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome> {
        Box::pin(play(ctx))
    }
}

/// Why playing stopped before the end of the script.
enum Halt {
    Outcome(ProviderOutcome),
    /// The sink refused an event (fenced, log unavailable, run ending).
    Refused,
}

impl From<EmitError> for Halt {
    fn from(_: EmitError) -> Self {
        Halt::Refused
    }
}

async fn play(ctx: RunContext) -> ProviderOutcome {
    let steps = match script_of(&ctx.command.provider_options) {
        Ok(steps) => steps,
        Err(detail) => return ProviderOutcome::failed(FailureReason::ProviderError, detail),
    };
    let mut ids = Ids::default();
    for step in steps {
        if ctx.stop.is_cancelled() {
            return ProviderOutcome::Stopped;
        }
        match play_step(&ctx, &mut ids, step).await {
            Ok(()) => {}
            Err(Halt::Outcome(outcome)) => return outcome,
            // The supervisor knows why the sink refused (it watches the same sink), so
            // the outcome reported here is only a formality.
            Err(Halt::Refused) => return ProviderOutcome::Stopped,
        }
    }
    ProviderOutcome::Succeeded
}

#[derive(Default)]
struct Ids {
    messages: usize,
    calls: usize,
}

impl Ids {
    fn message(&mut self) -> String {
        self.messages += 1;
        format!("msg-{}", self.messages)
    }

    fn call(&mut self) -> String {
        self.calls += 1;
        format!("call-{}", self.calls)
    }
}

async fn play_step(ctx: &RunContext, ids: &mut Ids, step: Step) -> Result<(), Halt> {
    let events = &ctx.events;
    match step {
        Step::Message { text, chunks } => {
            let message_id = ids.message();
            for piece in split_chunks(&text, chunks) {
                events
                    .emit(RunEventKind::MessageDelta(MessageDelta {
                        message_id: message_id.clone(),
                        text: piece,
                    }))
                    .await?;
            }
            events
                .emit(RunEventKind::MessageCompleted(MessageCompleted {
                    message_id,
                    text,
                }))
                .await?;
        }
        Step::Reasoning { text } => {
            events
                .emit(RunEventKind::ReasoningDelta(ReasoningDelta { text }))
                .await?;
        }
        Step::ToolCall {
            name,
            input,
            output,
            exit_code,
        } => {
            let call_id = ids.call();
            events
                .emit(RunEventKind::ToolStarted(ToolStarted {
                    call_id: call_id.clone(),
                    name,
                    input,
                }))
                .await?;
            if !output.is_empty() {
                events
                    .emit(RunEventKind::ToolOutput(ToolOutput {
                        call_id: call_id.clone(),
                        output,
                    }))
                    .await?;
            }
            let status = if exit_code == 0 {
                ToolStatus::Succeeded
            } else {
                ToolStatus::Failed
            };
            events
                .emit(RunEventKind::ToolCompleted(ToolCompleted {
                    call_id,
                    status,
                    exit_code: Some(exit_code),
                }))
                .await?;
        }
        Step::FileChange { path, change, diff } => {
            events
                .emit(RunEventKind::FileChanged(FileChanged {
                    path,
                    change,
                    diff,
                }))
                .await?;
        }
        Step::HumanLoop {
            prompt,
            kind,
            details,
        } => {
            let answer = ctx.human_loop.ask(kind, prompt.clone(), details).await;
            if ctx.stop.is_cancelled() {
                return Err(Halt::Outcome(ProviderOutcome::Stopped));
            }
            if !answer.approved() {
                let mut message = match answer.resolved_by {
                    HumanLoopResolver::Timeout => {
                        format!("declined, nobody answered in time: {prompt}")
                    }
                    _ => format!("declined by a human: {prompt}"),
                };
                if let Some(reason) = &answer.message {
                    message.push_str(&format!(" ({reason})"));
                }
                events
                    .emit(RunEventKind::Diagnostic(Diagnostic {
                        level: DiagnosticLevel::Info,
                        message,
                        raw: None,
                    }))
                    .await?;
            }
        }
        Step::SleepMs(ms) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = ctx.stop.cancelled() => return Err(Halt::Outcome(ProviderOutcome::Stopped)),
            }
        }
        Step::Fail { reason, detail } => {
            let detail = detail.unwrap_or_else(|| format!("scripted failure: {}", reason.as_str()));
            return Err(Halt::Outcome(ProviderOutcome::failed(reason, detail)));
        }
        Step::Filler { count } => {
            let message_id = ids.message();
            for i in 0..count {
                if ctx.stop.is_cancelled() {
                    return Err(Halt::Outcome(ProviderOutcome::Stopped));
                }
                events
                    .emit(RunEventKind::MessageDelta(MessageDelta {
                        message_id: message_id.clone(),
                        text: format!("filler {i} "),
                    }))
                    .await?;
            }
        }
        Step::Usage(usage) => {
            events.emit(RunEventKind::Usage(usage)).await?;
        }
        Step::Session { id } => {
            let resumed = ctx.conversation.as_ref().and_then(|c| c.session_id.clone());
            let raw = serde_json::json!({
                "conversation": ctx.conversation.is_some(),
                "resumed": resumed,
            });
            events
                .emit(RunEventKind::Diagnostic(Diagnostic {
                    level: DiagnosticLevel::Info,
                    message: match &resumed {
                        Some(session) => format!("resumed session {session}"),
                        None => "started a fresh session".to_owned(),
                    },
                    raw: Some(raw.to_string()),
                }))
                .await?;
            ctx.set_session_id(id.unwrap_or_else(|| format!("scripted-{}", ctx.command.run_id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_decode_from_the_documented_shapes() {
        let script = script_of(&json!({"script": [
            {"message": {"text": "hello world", "chunks": 3}},
            {"reasoning": {"text": "thinking"}},
            {"toolCall": {"name": "shell", "input": {"cmd": "ls"}, "output": "a.txt", "exitCode": 0}},
            {"fileChange": {"path": "a.txt", "change": "added"}},
            {"humanLoop": {"prompt": "Run rm?", "kind": "command"}},
            {"sleepMs": 200},
            {"fail": {"reason": "auth_invalid", "detail": "bad key"}},
            {"filler": {"count": 100}},
            {"usage": {"inputTokens": 1, "outputTokens": 2}},
            {"session": {}}
        ]}))
        .unwrap();
        assert_eq!(script.len(), 10);
        assert_eq!(script[9], Step::Session { id: None });
        assert_eq!(script[5], Step::SleepMs(200));
        assert_eq!(
            script[6],
            Step::Fail {
                reason: FailureReason::AuthInvalid,
                detail: Some("bad key".into())
            }
        );
    }

    #[test]
    fn no_script_means_the_default_message() {
        let script = script_of(&json!({})).unwrap();
        assert_eq!(
            script,
            vec![Step::Message {
                text: DEFAULT_MESSAGE.into(),
                chunks: 2
            }]
        );
        assert!(script_of(&serde_json::Value::Null).is_ok());
    }

    #[test]
    fn invalid_scripts_are_described() {
        for bad in [
            json!({"script": "play"}),
            json!({"script": [{"dance": {}}]}),
            json!({"script": [{"message": {"txt": "x"}}]}),
            json!({"script": [{"fail": {"reason": "bored"}}]}),
        ] {
            let err = script_of(&bad).unwrap_err();
            assert!(err.starts_with("invalid providerOptions.script"), "{err}");
        }
    }

    #[test]
    fn filler_above_the_cap_is_refused() {
        assert!(script_of(&json!({"script": [{"filler": {"count": MAX_FILLER}}]})).is_ok());
        let err = script_of(&json!({"script": [
            {"message": {"text": "x"}},
            {"filler": {"count": 100_000_000}}
        ]}))
        .unwrap_err();
        assert_eq!(
            err,
            "invalid providerOptions.script[1]: filler.count is 100000000; at most 100000 events per filler step"
        );
    }

    #[test]
    fn chunks_split_text_without_losing_characters() {
        assert_eq!(split_chunks("hello world", 3), vec!["hell", "o wo", "rld"]);
        assert_eq!(split_chunks("héllo", 2).concat(), "héllo");
        assert_eq!(split_chunks("ab", 5), vec!["a", "b"]);
        assert_eq!(split_chunks("", 3), vec![""]);
        assert_eq!(split_chunks("abc", 0), vec!["abc"]);
    }
}
