//! A run's budget: `providerOptions.budget`, the limits that end a runaway run
//! `failed` with reason `budget_exceeded` whatever its provider.
//!
//! Every field is optional; a field left out takes the executor's default
//! (`[executor.budget]`). An app's runtime defaults, an execution profile and a start
//! request may each set `providerOptions.budget`; the control-plane merges them field by
//! field (request over profile over app) into the command, so the executor reads one
//! object. Values are checked here, once, for everyone: an integer from 1 up to the
//! ceiling of its field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `providerOptions` key holding the budget.
pub const BUDGET_OPTION: &str = "budget";

/// Per-run limits. `None` = the executor's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunBudget {
    /// Model turns: each completed assistant message and each tool call counts as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u64>,
    /// Output tokens, summed over the run's `usage` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Events the executor writes for the run (`run.started` on; the closing events do
    /// not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u64>,
    /// Bytes of those events (their JSON as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<u64>,
}

/// One of the budget's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetLimit {
    Turns,
    OutputTokens,
    Events,
    EventBytes,
}

impl BudgetLimit {
    pub const ALL: [BudgetLimit; 4] = [
        BudgetLimit::Turns,
        BudgetLimit::OutputTokens,
        BudgetLimit::Events,
        BudgetLimit::EventBytes,
    ];

    /// The field's wire name.
    pub fn field(self) -> &'static str {
        match self {
            BudgetLimit::Turns => "maxTurns",
            BudgetLimit::OutputTokens => "maxOutputTokens",
            BudgetLimit::Events => "maxEvents",
            BudgetLimit::EventBytes => "maxEventBytes",
        }
    }

    /// What it counts, for messages ("200000 events").
    pub fn unit(self) -> &'static str {
        match self {
            BudgetLimit::Turns => "model turns",
            BudgetLimit::OutputTokens => "output tokens",
            BudgetLimit::Events => "events",
            BudgetLimit::EventBytes => "bytes of events",
        }
    }

    /// The highest value an app or a request may set. The event limits keep one run
    /// well below the `RUN_EVENTS` stream's size (4 GiB), so that no single run can
    /// push every other run's history out of it.
    pub fn ceiling(self) -> u64 {
        match self {
            BudgetLimit::Turns => 100_000,
            BudgetLimit::OutputTokens => 100_000_000,
            BudgetLimit::Events => 5_000_000,
            BudgetLimit::EventBytes => 1024 * 1024 * 1024,
        }
    }
}

/// Why a budget was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBudget(pub String);

impl std::fmt::Display for InvalidBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidBudget {}

impl RunBudget {
    pub fn get(&self, limit: BudgetLimit) -> Option<u64> {
        match limit {
            BudgetLimit::Turns => self.max_turns,
            BudgetLimit::OutputTokens => self.max_output_tokens,
            BudgetLimit::Events => self.max_events,
            BudgetLimit::EventBytes => self.max_event_bytes,
        }
    }

    fn slot(&mut self, limit: BudgetLimit) -> &mut Option<u64> {
        match limit {
            BudgetLimit::Turns => &mut self.max_turns,
            BudgetLimit::OutputTokens => &mut self.max_output_tokens,
            BudgetLimit::Events => &mut self.max_events,
            BudgetLimit::EventBytes => &mut self.max_event_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        BudgetLimit::ALL.iter().all(|l| self.get(*l).is_none())
    }

    /// Fields this budget leaves out, taken from `lower` (a lower level's budget).
    pub fn or(mut self, lower: RunBudget) -> RunBudget {
        for limit in BudgetLimit::ALL {
            let slot = self.slot(limit);
            if slot.is_none() {
                *slot = lower.get(limit);
            }
        }
        self
    }

    /// The budget in a `providerOptions` object (`None` when it sets none). `at` names
    /// the options in messages, e.g. `providerOptions` or
    /// `runtimeDefaults.providerOptions`.
    pub fn from_options(
        options: &Map<String, Value>,
        at: &str,
    ) -> Result<Option<RunBudget>, InvalidBudget> {
        match options.get(BUDGET_OPTION) {
            None => Ok(None),
            Some(value) => RunBudget::parse(value, &format!("{at}.{BUDGET_OPTION}")).map(Some),
        }
    }

    /// Parses and checks a budget object; `at` names it in messages.
    pub fn parse(value: &Value, at: &str) -> Result<RunBudget, InvalidBudget> {
        let Value::Object(fields) = value else {
            return Err(InvalidBudget(format!(
                "`{at}` must be an object with any of maxTurns, maxOutputTokens, maxEvents, \
                 maxEventBytes"
            )));
        };
        let mut budget = RunBudget::default();
        for (key, value) in fields {
            let Some(limit) = BudgetLimit::ALL.into_iter().find(|l| l.field() == key) else {
                return Err(InvalidBudget(format!(
                    "`{at}` has no field `{}` (known: maxTurns, maxOutputTokens, maxEvents, \
                     maxEventBytes)",
                    key.chars().take(64).collect::<String>()
                )));
            };
            let ceiling = limit.ceiling();
            match value.as_u64() {
                Some(n) if (1..=ceiling).contains(&n) => *budget.slot(limit) = Some(n),
                _ => {
                    return Err(InvalidBudget(format!(
                        "`{at}.{key}` must be an integer from 1 to {ceiling}"
                    )));
                }
            }
        }
        Ok(budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn budgets_parse_and_merge_field_by_field() {
        let request = RunBudget::from_options(
            &options(json!({"budget": {"maxEvents": 10, "maxTurns": 3}})),
            "providerOptions",
        )
        .unwrap()
        .unwrap();
        let app = RunBudget {
            max_turns: Some(100),
            max_event_bytes: Some(4096),
            ..RunBudget::default()
        };
        let merged = request.or(app);
        assert_eq!(
            merged,
            RunBudget {
                max_turns: Some(3),
                max_output_tokens: None,
                max_events: Some(10),
                max_event_bytes: Some(4096),
            }
        );
        assert_eq!(
            serde_json::to_value(merged).unwrap(),
            json!({"maxTurns": 3, "maxEvents": 10, "maxEventBytes": 4096})
        );
        assert_eq!(
            RunBudget::from_options(&options(json!({})), "providerOptions"),
            Ok(None)
        );
        assert!(RunBudget::default().is_empty());
    }

    #[test]
    fn bad_budgets_name_the_field() {
        let cases = [
            (json!("lots"), "`providerOptions.budget` must be an object"),
            (json!({"maxEvnts": 1}), "has no field `maxEvnts`"),
            (
                json!({"maxEvents": 0}),
                "`providerOptions.budget.maxEvents` must be",
            ),
            (
                json!({"maxEvents": -5}),
                "`providerOptions.budget.maxEvents` must be",
            ),
            (
                json!({"maxTurns": "soon"}),
                "`providerOptions.budget.maxTurns` must be",
            ),
            (
                json!({"maxTurns": 1.5}),
                "`providerOptions.budget.maxTurns` must be",
            ),
            (
                json!({"maxEventBytes": 1024u64 * 1024 * 1024 + 1}),
                "from 1 to 1073741824",
            ),
            (
                json!({"maxOutputTokens": u64::MAX}),
                "`providerOptions.budget.maxOutputTokens` must be",
            ),
        ];
        for (budget, expected) in cases {
            let error =
                RunBudget::from_options(&options(json!({ "budget": budget })), "providerOptions")
                    .unwrap_err()
                    .to_string();
            assert!(error.contains(expected), "{budget}: {error}");
        }
    }
}
