//! How a Claude Code turn ended, from its `result` line (PROTOCOLS.md §2, failure
//! matrix). `subtype` is `success` even for API errors, so the classification rests on
//! `is_error`, `api_error_status` and, when there is no status (connection errors,
//! timeouts, a missing login), the `result` text. A request that never answered is
//! `provider_no_output` before any model output (as the first-output limit would say)
//! and `timeout` after; one that could not connect is `provider_unreachable`.

use super::protocol::ResultLine;
use crate::cli::names_connection_failure;
use switchyard_contracts::FailureReason;

/// Longest failure detail taken from the CLI's text.
const MAX_DETAIL_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TurnOutcome {
    Succeeded,
    /// The turn ended because we interrupted it (a stop).
    Interrupted,
    Failed {
        reason: FailureReason,
        detail: String,
    },
}

/// What the driver knows about the turn besides its result line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TurnFacts {
    /// We sent an `interrupt` control request during the turn.
    pub(crate) interrupted: bool,
    /// The turn produced assistant text (streamed or complete, not synthetic).
    pub(crate) assistant_text: bool,
    /// The model produced anything in this run (a stream event, text, a tool call).
    pub(crate) model_output: bool,
}

pub(crate) fn classify(result: &ResultLine, facts: TurnFacts) -> TurnOutcome {
    if facts.interrupted {
        // Whatever the result says (usually `error_during_execution` with
        // `terminal_reason: aborted_streaming`), the turn ended because we asked.
        return TurnOutcome::Interrupted;
    }
    let text = result_text(result);
    if !result.is_error && result.subtype == "success" {
        if text.trim().is_empty() && !facts.assistant_text {
            return TurnOutcome::Failed {
                reason: FailureReason::ProviderNoOutput,
                detail: "the turn completed without any assistant output".to_owned(),
            };
        }
        return TurnOutcome::Succeeded;
    }
    let reason = match result.api_error_status {
        Some(401 | 403) => FailureReason::AuthInvalid,
        Some(429) => FailureReason::RateLimited,
        Some(408) => FailureReason::Timeout,
        Some(_) => FailureReason::ProviderError,
        None => match reason_from_text(&result.subtype, &text) {
            // A model request that never answered, before the model produced anything:
            // the same fault as a first-output limit, whichever ended it.
            FailureReason::Timeout if !facts.model_output => FailureReason::ProviderNoOutput,
            reason => reason,
        },
    };
    let detail = match (result.api_error_status, text.trim().is_empty()) {
        (_, false) => format!("claude: {}", truncate(text.trim())),
        (Some(status), true) => format!("claude: the model API answered HTTP {status}"),
        (None, true) => format!("claude ended the turn with {}", result.subtype),
    };
    TurnOutcome::Failed { reason, detail }
}

/// The `result` text, or the `errors` list when there is none.
fn result_text(result: &ResultLine) -> String {
    match &result.result {
        Some(text) if !text.is_empty() => text.clone(),
        _ => result
            .errors
            .iter()
            .map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Errors without an HTTP status: the texts the CLI prints for them (2.1.197).
fn reason_from_text(subtype: &str, text: &str) -> FailureReason {
    let lower = text.to_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("not logged in") || has("/login") {
        FailureReason::AuthMissing
    } else if has("invalid api key") || has("authentication") || has("unauthorized") {
        FailureReason::AuthInvalid
    } else if has("rate limit") || has("rate_limit") || has("too many requests") {
        FailureReason::RateLimited
    } else if has("timed out") || has("timeout") {
        FailureReason::Timeout
    } else if names_connection_failure(text) {
        FailureReason::ProviderUnreachable
    } else if has("api error") || has("connection") || has("overloaded") {
        FailureReason::ProviderError
    } else if subtype.starts_with("error_max") {
        // error_max_turns, error_max_budget_usd …: the agent hit a limit it was given.
        FailureReason::ProviderError
    } else {
        // Includes `error_during_execution` we did not cause: the evidence tells more.
        FailureReason::UnknownFailure
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_DETAIL_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    cut.push('…');
    cut
}
