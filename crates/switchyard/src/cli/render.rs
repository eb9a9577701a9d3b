//! A run's events as a person reads them: assistant text as it arrives, reasoning
//! dimmed, tool calls with their output, file changes, approvals, usage, and the final
//! status with its failure reason and evidence.

use super::style::Styles;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use switchyard_contracts::RunId;
use switchyard_contracts::api::RunView;
use switchyard_contracts::event::{
    DiagnosticLevel, Evidence, FileChangeKind, HumanLoopDecision, HumanLoopRequested,
    HumanLoopResolver, RunCompleted, RunEvent, RunEventKind, TerminalStatus, ToolStatus,
};

/// Lines of a diff, a tool's input or the evidence shown before "… N more".
const MAX_LINES: usize = 40;

/// What is being written on the current line, so that the next event starts a new one.
#[derive(Debug, PartialEq)]
enum Inline {
    Nothing,
    Message(String),
    Reasoning,
}

pub struct Renderer<W: Write> {
    out: W,
    s: Styles,
    inline: Inline,
    /// Messages some delta of which was printed: their `message.completed` adds nothing.
    streamed: HashSet<String>,
    tools: HashMap<String, String>,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, styles: Styles) -> Self {
        Self {
            out,
            s: styles,
            inline: Inline::Nothing,
            streamed: HashSet::new(),
            tools: HashMap::new(),
        }
    }

    /// Ends the line being written, if any.
    pub fn end_line(&mut self) -> io::Result<()> {
        if self.inline != Inline::Nothing {
            self.inline = Inline::Nothing;
            writeln!(self.out)?;
        }
        self.out.flush()
    }

    fn line(&mut self, style: anstyle::Style, text: &str) -> io::Result<()> {
        self.end_line()?;
        writeln!(self.out, "{style}{text}{style:#}")
    }

    pub fn event(&mut self, event: &RunEvent) -> io::Result<()> {
        let s = self.s;
        match &event.kind {
            RunEventKind::MessageDelta(delta) => {
                if self.inline != Inline::Message(delta.message_id.clone()) {
                    self.end_line()?;
                    self.inline = Inline::Message(delta.message_id.clone());
                }
                self.streamed.insert(delta.message_id.clone());
                write!(self.out, "{}", delta.text)?;
            }
            RunEventKind::MessageCompleted(message) => {
                if !self.streamed.remove(&message.message_id) {
                    self.end_line()?;
                    write!(self.out, "{}", message.text)?;
                    self.inline = Inline::Message(message.message_id.clone());
                }
                self.end_line()?;
            }
            RunEventKind::ReasoningDelta(reasoning) => {
                if self.inline != Inline::Reasoning {
                    self.end_line()?;
                    self.inline = Inline::Reasoning;
                    write!(self.out, "{}thinking: {:#}", s.reasoning, s.reasoning)?;
                }
                write!(
                    self.out,
                    "{}{}{:#}",
                    s.reasoning, reasoning.text, s.reasoning
                )?;
            }
            RunEventKind::ToolStarted(tool) => {
                self.tools.insert(tool.call_id.clone(), tool.name.clone());
                self.line(
                    s.tool,
                    &format!("▶ {} {}", tool.name, input_summary(&tool.input)),
                )?;
            }
            RunEventKind::ToolOutput(output) => {
                self.end_line()?;
                for line in output.output.trim_end_matches('\n').lines() {
                    writeln!(self.out, "{}  │ {line}{:#}", s.dim, s.dim)?;
                }
            }
            RunEventKind::ToolCompleted(done) => {
                let name = self
                    .tools
                    .remove(&done.call_id)
                    .unwrap_or_else(|| done.call_id.clone());
                let exit = done
                    .exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default();
                match done.status {
                    ToolStatus::Succeeded => self.line(s.dim, &format!("  ✓ {name}{exit}"))?,
                    ToolStatus::Failed => {
                        self.line(s.bad, &format!("  ✗ {name} failed{exit}"))?;
                    }
                    ToolStatus::Declined => self.line(s.warn, &format!("  ⊘ {name} declined"))?,
                }
            }
            RunEventKind::FileChanged(change) => {
                let (mark, style) = match change.change {
                    FileChangeKind::Added => ("+", s.added),
                    FileChangeKind::Modified => ("~", s.modified),
                    FileChangeKind::Deleted => ("-", s.deleted),
                };
                let kind = serde_json::to_value(change.change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.line(style, &format!("{mark} {} ({kind})", change.path))?;
                if let Some(diff) = &change.diff {
                    self.lines_capped(s.dim, "    ", diff)?;
                }
            }
            RunEventKind::HumanLoopRequested(request) => self.request(request)?,
            RunEventKind::HumanLoopResolved(resolved) => {
                let by = match resolved.resolved_by {
                    HumanLoopResolver::Human => "by a human",
                    HumanLoopResolver::Timeout => "nobody answered in time",
                    HumanLoopResolver::RunEnded => "the run ended",
                };
                let message = resolved
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                match resolved.decision {
                    HumanLoopDecision::Approve => {
                        self.line(s.good, &format!("✓ approved ({by}){message}"))?;
                    }
                    HumanLoopDecision::Deny => {
                        self.line(s.warn, &format!("✗ denied ({by}){message}"))?;
                    }
                }
            }
            RunEventKind::Usage(usage) => {
                let cached = usage
                    .cached_input_tokens
                    .map(|c| format!(" ({c} cached)"))
                    .unwrap_or_default();
                self.line(
                    s.dim,
                    &format!(
                        "· usage: {} input tokens{cached}, {} output tokens",
                        usage.input_tokens, usage.output_tokens
                    ),
                )?;
            }
            RunEventKind::Diagnostic(d) => match d.level {
                DiagnosticLevel::Info => self.line(s.dim, &format!("· {}", d.message))?,
                DiagnosticLevel::Warn => self.line(s.warn, &format!("! warning: {}", d.message))?,
                DiagnosticLevel::Error => self.line(s.bad, &format!("! error: {}", d.message))?,
            },
            RunEventKind::RunQueued(q) => {
                let mut text = format!("· queued for {}", q.provider);
                if let Some(model) = &q.model {
                    text.push_str(&format!(" (model {model})"));
                }
                if let Some(app) = &q.app_id {
                    text.push_str(&format!(", app {app}"));
                }
                self.line(s.dim, &text)?;
            }
            RunEventKind::RunClaimed(c) if c.attempt > 1 => {
                self.line(s.dim, &format!("· claimed again (attempt {})", c.attempt))?;
            }
            RunEventKind::RunClaimed(_) => {}
            RunEventKind::RunDispatched(d) => {
                self.line(s.dim, &format!("· dispatched to {}", d.executor_id))?;
            }
            RunEventKind::RunStarted(started) => {
                let model = started
                    .model
                    .as_deref()
                    .map(|m| format!(", model {m}"))
                    .unwrap_or_default();
                self.line(s.dim, &format!("· started ({}{model})", started.provider))?;
            }
            RunEventKind::RunCompleted(done) => self.completed(event.run_id, done)?,
        }
        self.out.flush()
    }

    fn request(&mut self, request: &HumanLoopRequested) -> io::Result<()> {
        let s = self.s;
        let kind = serde_json::to_value(request.kind)
            .ok()
            .and_then(|v| v.as_str().map(|k| k.replace('_', " ")))
            .unwrap_or_default();
        self.line(
            s.ask,
            &format!("? approval needed ({kind}): {}", request.prompt),
        )?;
        if let Some(details) = request.details.as_object() {
            for (key, value) in details {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                if text.contains('\n') {
                    writeln!(self.out, "{}    {key}:{:#}", s.dim, s.dim)?;
                    self.lines_capped(s.dim, "      ", &text)?;
                } else {
                    writeln!(self.out, "{}    {key}: {text}{:#}", s.dim, s.dim)?;
                }
            }
        } else if !request.details.is_null() {
            writeln!(self.out, "{}    {}{:#}", s.dim, request.details, s.dim)?;
        }
        writeln!(
            self.out,
            "{}    request {}{:#}",
            s.dim, request.request_id, s.dim
        )
    }

    fn completed(&mut self, run_id: RunId, done: &RunCompleted) -> io::Result<()> {
        self.outcome(
            run_id,
            done.status,
            done.reason.map(|r| r.as_str()),
            done.detail.as_deref(),
            &done.evidence,
        )
    }

    /// The final status of a run as `GET /api/runs/{id}` shows it (after a stream that
    /// had already ended).
    pub fn outcome_of_view(&mut self, view: &RunView, status: TerminalStatus) -> io::Result<()> {
        let evidence = view
            .evidence
            .clone()
            .and_then(|e| serde_json::from_value::<Evidence>(e).ok())
            .unwrap_or_default();
        self.outcome(
            view.run_id,
            status,
            view.failure_reason.map(|r| r.as_str()),
            view.failure_detail.as_deref(),
            &evidence,
        )
    }

    fn outcome(
        &mut self,
        run_id: RunId,
        status: TerminalStatus,
        reason: Option<&str>,
        detail: Option<&str>,
        evidence: &Evidence,
    ) -> io::Result<()> {
        let s = self.s;
        if status == TerminalStatus::Succeeded {
            return self.line(s.good, &format!("✔ run {run_id} succeeded"));
        }
        let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
        self.line(
            s.bad,
            &format!("✘ run {run_id} {}{reason}", status.as_str()),
        )?;
        if let Some(detail) = detail {
            writeln!(self.out, "  {detail}")?;
        }
        if let Some(code) = evidence.exit_code {
            writeln!(self.out, "  exit code: {code}")?;
        }
        for (title, lines) in [
            ("stderr", &evidence.stderr_tail),
            ("last output", &evidence.raw_lines),
        ] {
            if lines.is_empty() {
                continue;
            }
            writeln!(self.out, "  {title}:")?;
            let skip = lines.len().saturating_sub(MAX_LINES);
            if skip > 0 {
                writeln!(self.out, "{}    … {skip} earlier lines{:#}", s.dim, s.dim)?;
            }
            for line in &lines[skip..] {
                writeln!(self.out, "{}    {line}{:#}", s.dim, s.dim)?;
            }
        }
        self.out.flush()
    }

    /// The `stream.reset` notice: retention removed events this stream should have had.
    pub fn reset(&mut self, data: &Value) -> io::Result<()> {
        let expected = data["expectedSeq"].as_u64().unwrap_or(0);
        let first = data["firstAvailableSeq"].as_u64().unwrap_or(0);
        self.line(
            self.s.warn,
            &format!(
                "! events {expected}–{} of this run are gone (the stream's retention removed them); going on from event {first}",
                first.saturating_sub(1)
            ),
        )
    }

    /// An event of a type this build does not know: its type and data, dimmed.
    pub fn unknown(&mut self, event: &Value) -> io::Result<()> {
        let text = format!(
            "· {} {}",
            event["type"].as_str().unwrap_or("?"),
            event["data"]
        );
        self.line(self.s.dim, &text)
    }

    fn lines_capped(&mut self, style: anstyle::Style, indent: &str, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().take(MAX_LINES) {
            writeln!(self.out, "{style}{indent}{line}{style:#}")?;
        }
        if lines.len() > MAX_LINES {
            writeln!(
                self.out,
                "{style}{indent}… {} more lines{style:#}",
                lines.len() - MAX_LINES
            )?;
        }
        Ok(())
    }
}

/// A tool's input in one line: its command when it has one, else compact JSON.
fn input_summary(input: &Value) -> String {
    let text = match input.get("command") {
        Some(Value::String(command)) => command.clone(),
        Some(Value::Array(parts)) if parts.iter().all(Value::is_string) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ if input.is_null() => String::new(),
        _ => input.to_string(),
    };
    let text = text.replace('\n', "⏎");
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(events: &[Value], color: bool) -> String {
        let mut out = Vec::new();
        let mut renderer = Renderer::new(&mut out, Styles::new(color));
        for event in events {
            let event: RunEvent = serde_json::from_value(event.clone()).unwrap();
            renderer.event(&event).unwrap();
        }
        renderer.end_line().unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ev(seq: u64, kind: &str, data: Value) -> Value {
        json!({"runId": uuid::Uuid::nil(), "seq": seq, "time": "2026-01-01T00:00:00Z", "type": kind, "data": data})
    }

    #[test]
    fn deltas_stream_on_one_line_and_the_completed_message_adds_nothing() {
        let text = render(
            &[
                ev(1, "message.delta", json!({"messageId": "m", "text": "Hel"})),
                ev(2, "message.delta", json!({"messageId": "m", "text": "lo"})),
                ev(
                    3,
                    "message.completed",
                    json!({"messageId": "m", "text": "Hello"}),
                ),
                ev(
                    4,
                    "message.completed",
                    json!({"messageId": "n", "text": "Whole"}),
                ),
                ev(
                    5,
                    "tool.started",
                    json!({"callId": "c", "name": "shell", "input": {"command": "ls"}}),
                ),
                ev(6, "tool.output", json!({"callId": "c", "output": "a\nb\n"})),
                ev(
                    7,
                    "tool.completed",
                    json!({"callId": "c", "status": "succeeded", "exitCode": 0}),
                ),
                ev(
                    8,
                    "run.completed",
                    json!({"status": "failed", "reason": "auth_invalid", "detail": "401 from the model", "evidence": {"exitCode": 1, "stderrTail": ["bad key"]}}),
                ),
            ],
            false,
        );
        let run = uuid::Uuid::nil();
        assert_eq!(
            text,
            format!(
                "Hello\nWhole\n▶ shell ls\n  │ a\n  │ b\n  ✓ shell (exit 0)\n✘ run {run} failed: auth_invalid\n  401 from the model\n  exit code: 1\n  stderr:\n    bad key\n"
            )
        );
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn reasoning_is_dimmed_when_colour_is_on() {
        let text = render(
            &[ev(1, "reasoning.delta", json!({"text": "pondering"}))],
            true,
        );
        assert!(text.contains("\u{1b}["), "{text:?}");
        assert!(text.contains("pondering"));
    }
}
