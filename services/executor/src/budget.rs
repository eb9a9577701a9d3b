//! The per-run budget every provider gets: model turns, output tokens, events and bytes
//! of events. The event sink meters every event it writes for the run; a run that goes
//! over a limit is stopped and ends `failed` with reason `budget_exceeded`, evidence
//! naming the limit and what the run had used.
//!
//! What counts, provider-neutrally: a *turn* is each `message.completed` and each
//! `tool.started` (one thing the model produced: an answer or a tool call); output
//! tokens are the sum of the `usage` events' `outputTokens` (codex reports them at the
//! end of its turn, claude at the end of each turn, opencode after each model call, so
//! the limit is checked when the provider reports); events and bytes are the events the
//! executor writes, from `run.started` on, as stored (their JSON). The closing events
//! (`run.completed` and the resolutions of pending approvals) are not metered, so a run
//! over its budget can always be concluded.
//!
//! The event and byte limits protect the event stream: the event that would cross one
//! is not written. The turn and token limits measure work already done: the event that
//! crosses one is written (it is the evidence), and nothing after it.

use serde::Deserialize;
use switchyard_contracts::budget::{BudgetLimit, InvalidBudget, RunBudget};
use switchyard_contracts::event::{Evidence, RunCompleted};
use switchyard_contracts::{FailureReason, RunEventKind};

/// `[executor.budget]`: the limits of a run whose `providerOptions.budget` leaves them
/// out. 0 = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    pub max_turns: u64,
    pub max_output_tokens: u64,
    pub max_events: u64,
    pub max_event_bytes: u64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            max_turns: 2_000,
            max_output_tokens: 2_000_000,
            max_events: 200_000,
            max_event_bytes: 128 * 1024 * 1024,
        }
    }
}

impl BudgetSettings {
    fn get(&self, limit: BudgetLimit) -> u64 {
        match limit {
            BudgetLimit::Turns => self.max_turns,
            BudgetLimit::OutputTokens => self.max_output_tokens,
            BudgetLimit::Events => self.max_events,
            BudgetLimit::EventBytes => self.max_event_bytes,
        }
    }

    /// The limits of a run with these `providerOptions`: its budget's fields, the
    /// defaults for the rest. A budget that does not parse is an error naming the field.
    pub(crate) fn limits(
        &self,
        provider_options: &serde_json::Value,
    ) -> Result<Limits, InvalidBudget> {
        let budget = match provider_options.as_object() {
            Some(options) => RunBudget::from_options(options, "providerOptions")?,
            None => None,
        }
        .unwrap_or_default();
        let mut limits = Limits::default();
        for limit in BudgetLimit::ALL {
            let max = budget.get(limit).unwrap_or_else(|| self.get(limit));
            limits.max[index(limit)] = max;
        }
        Ok(limits)
    }
}

fn index(limit: BudgetLimit) -> usize {
    match limit {
        BudgetLimit::Turns => 0,
        BudgetLimit::OutputTokens => 1,
        BudgetLimit::Events => 2,
        BudgetLimit::EventBytes => 3,
    }
}

/// One run's limits (0 = none), in [`BudgetLimit::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    max: [u64; 4],
}

impl Limits {
    /// No limits at all (runs whose supervisor sets none, tests).
    pub(crate) const NONE: Limits = Limits { max: [0; 4] };

    pub(crate) fn max(&self, limit: BudgetLimit) -> u64 {
        self.max[index(limit)]
    }
}

/// What a run went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub(crate) limit: BudgetLimit,
    pub(crate) max: u64,
    /// Everything the run had used when it was stopped, in [`BudgetLimit::ALL`] order.
    used: [u64; 4],
    limits: Limits,
}

impl Exceeded {
    /// The run's `run.completed`, with the provider's own evidence (if any) kept.
    pub(crate) fn completed(&self, provider_evidence: Evidence) -> RunCompleted {
        let limit = self.limit;
        let detail = format!(
            "the run exceeded its budget of {} {} (providerOptions.budget.{}); it was stopped",
            self.max,
            limit.unit(),
            limit.field()
        );
        let mut raw_lines = vec![format!("budget exceeded: {} = {}", limit.field(), self.max)];
        for each in BudgetLimit::ALL {
            let max = self.limits.max(each);
            let max = if max == 0 {
                "no limit".to_owned()
            } else {
                max.to_string()
            };
            raw_lines.push(format!(
                "used {} {} (limit {max})",
                self.used[index(each)],
                each.unit()
            ));
        }
        raw_lines.extend(provider_evidence.raw_lines);
        RunCompleted {
            evidence: Evidence {
                raw_lines,
                ..provider_evidence
            },
            ..RunCompleted::failed(FailureReason::BudgetExceeded, detail)
        }
    }
}

/// What the sink does with the next event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Write,
    /// Write it, then nothing more: the run went over a turn or token limit.
    WriteThenStop(Exceeded),
    /// Do not write it (nor anything after it): it would cross an event or byte limit.
    Refuse(Exceeded),
}

/// Counts what a run has written against its limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    limits: Limits,
    used: [u64; 4],
}

impl Meter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            used: [0; 4],
        }
    }

    fn over(&self, limit: BudgetLimit, value: u64) -> Option<Exceeded> {
        let max = self.limits.max(limit);
        (max > 0 && value > max).then_some(Exceeded {
            limit,
            max,
            used: self.used,
            limits: self.limits,
        })
    }

    /// Accounts one event of `size` stored bytes, unless it is refused.
    pub(crate) fn admit(&mut self, kind: &RunEventKind, size: usize) -> Verdict {
        let events = self.used[index(BudgetLimit::Events)] + 1;
        let bytes = self.used[index(BudgetLimit::EventBytes)].saturating_add(size as u64);
        if let Some(exceeded) = self
            .over(BudgetLimit::Events, events)
            .or_else(|| self.over(BudgetLimit::EventBytes, bytes))
        {
            return Verdict::Refuse(exceeded);
        }
        self.used[index(BudgetLimit::Events)] = events;
        self.used[index(BudgetLimit::EventBytes)] = bytes;
        let (limit, added) = match kind {
            RunEventKind::MessageCompleted(_) | RunEventKind::ToolStarted(_) => {
                (BudgetLimit::Turns, 1)
            }
            RunEventKind::Usage(usage) => (BudgetLimit::OutputTokens, usage.output_tokens),
            _ => return Verdict::Write,
        };
        let used = &mut self.used[index(limit)];
        *used = used.saturating_add(added);
        let value = *used;
        match self.over(limit, value) {
            Some(exceeded) => Verdict::WriteThenStop(exceeded),
            None => Verdict::Write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_contracts::event::{MessageCompleted, MessageDelta, Usage};

    fn delta() -> RunEventKind {
        RunEventKind::MessageDelta(MessageDelta {
            message_id: "m".into(),
            text: "x".into(),
        })
    }

    fn message() -> RunEventKind {
        RunEventKind::MessageCompleted(MessageCompleted {
            message_id: "m".into(),
            text: "x".into(),
        })
    }

    fn usage(output_tokens: u64) -> RunEventKind {
        RunEventKind::Usage(Usage {
            output_tokens,
            ..Usage::default()
        })
    }

    #[test]
    fn a_run_budget_overrides_the_defaults_field_by_field() {
        let settings = BudgetSettings::default();
        let limits = settings
            .limits(&json!({"budget": {"maxEvents": 10, "maxOutputTokens": 7}}))
            .unwrap();
        assert_eq!(limits.max(BudgetLimit::Events), 10);
        assert_eq!(limits.max(BudgetLimit::OutputTokens), 7);
        assert_eq!(limits.max(BudgetLimit::Turns), settings.max_turns);
        assert_eq!(
            limits.max(BudgetLimit::EventBytes),
            settings.max_event_bytes
        );
        assert_eq!(
            settings.limits(&json!({})).unwrap().max(BudgetLimit::Turns),
            2_000
        );
        let error = settings
            .limits(&json!({"budget": {"maxTurns": -1}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("providerOptions.budget.maxTurns"), "{error}");
    }

    #[test]
    fn event_and_byte_limits_refuse_the_event_that_would_cross_them() {
        let limits = BudgetSettings {
            max_events: 3,
            ..BudgetSettings::default()
        }
        .limits(&json!({}))
        .unwrap();
        let mut meter = Meter::new(limits);
        for _ in 0..3 {
            assert_eq!(meter.admit(&delta(), 10), Verdict::Write);
        }
        let Verdict::Refuse(exceeded) = meter.admit(&delta(), 10) else {
            panic!("the fourth event is refused");
        };
        assert_eq!((exceeded.limit, exceeded.max), (BudgetLimit::Events, 3));

        let limits = BudgetSettings::default()
            .limits(&json!({"budget": {"maxEventBytes": 100}}))
            .unwrap();
        let mut meter = Meter::new(limits);
        assert_eq!(meter.admit(&delta(), 60), Verdict::Write);
        assert!(matches!(
            meter.admit(&delta(), 41),
            Verdict::Refuse(Exceeded {
                limit: BudgetLimit::EventBytes,
                max: 100,
                ..
            })
        ));
        assert_eq!(
            meter.admit(&delta(), 40),
            Verdict::Write,
            "exactly at the limit"
        );
    }

    #[test]
    fn turn_and_token_limits_stop_after_the_event_that_crosses_them() {
        let limits = BudgetSettings::default()
            .limits(&json!({"budget": {"maxTurns": 2, "maxOutputTokens": 100}}))
            .unwrap();
        let mut meter = Meter::new(limits);
        assert_eq!(meter.admit(&message(), 10), Verdict::Write);
        assert_eq!(meter.admit(&usage(100), 10), Verdict::Write);
        assert_eq!(meter.admit(&message(), 10), Verdict::Write);
        let Verdict::WriteThenStop(exceeded) = meter.admit(&message(), 10) else {
            panic!("the third turn is over the limit");
        };
        assert_eq!((exceeded.limit, exceeded.max), (BudgetLimit::Turns, 2));
        let completed = exceeded.completed(Evidence {
            stderr_tail: vec!["warn".into()],
            ..Evidence::default()
        });
        assert_eq!(completed.reason, Some(FailureReason::BudgetExceeded));
        let detail = completed.detail.unwrap();
        assert!(
            detail.contains("2 model turns") && detail.contains("maxTurns"),
            "{detail}"
        );
        assert_eq!(
            completed.evidence.raw_lines[0],
            "budget exceeded: maxTurns = 2"
        );
        assert!(
            completed
                .evidence
                .raw_lines
                .contains(&"used 100 output tokens (limit 100)".to_owned()),
            "{:?}",
            completed.evidence.raw_lines
        );
        assert_eq!(completed.evidence.stderr_tail, ["warn"]);

        let mut meter = Meter::new(limits);
        assert!(matches!(
            meter.admit(&usage(101), 10),
            Verdict::WriteThenStop(Exceeded {
                limit: BudgetLimit::OutputTokens,
                ..
            })
        ));
        let mut unlimited = Meter::new(Limits::NONE);
        for _ in 0..10 {
            assert_eq!(
                unlimited.admit(&usage(u64::MAX), usize::MAX),
                Verdict::Write
            );
        }
    }
}
