//! The per-run budget every provider gets, driven with the scripted provider: a run
//! over its events, bytes, turns or output tokens ends `failed` with reason
//! `budget_exceeded` and evidence naming the limit; scripts are bounded too.

use crate::common::*;
use serde_json::{Value, json};
use switchyard_contracts::RunEvent;
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{FailureReason, RunCompleted, TerminalStatus};

/// Runs a scripted run with `budget` (when given) to its end.
async fn run(harness: &Harness, script: Value, budget: Option<Value>) -> Vec<RunEvent> {
    let mut request = fresh_dispatch(script);
    if let Some(budget) = budget {
        request.command.provider_options["budget"] = budget;
    }
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(request.command.run_id).await;
    assert_contiguous(&events);
    events
}

fn over_budget(events: &[RunEvent], field: &str, max: u64) -> RunCompleted {
    let completed = completion(events);
    assert_eq!(completed.status, TerminalStatus::Failed, "{completed:?}");
    assert_eq!(completed.reason, Some(FailureReason::BudgetExceeded));
    let detail = completed.detail.clone().unwrap();
    assert!(
        detail.contains(field) && detail.contains(&max.to_string()),
        "{detail}"
    );
    assert_eq!(
        completed.evidence.raw_lines[0],
        format!("budget exceeded: {field} = {max}")
    );
    completed
}

/// The events the budget meters: from `run.started` up to, not including, the closing
/// `run.completed`.
fn metered(events: &[RunEvent]) -> &[RunEvent] {
    &events[1..events.len() - 1]
}

#[tokio::test]
async fn a_run_over_its_event_budget_is_stopped_before_the_event_that_crosses_it() {
    let harness = Harness::start().await;
    let events = run(
        &harness,
        json!([{"filler": {"count": 1000}}, {"message": {"text": "never"}}]),
        Some(json!({"maxEvents": 20})),
    )
    .await;
    over_budget(&events, "maxEvents", 20);
    assert_eq!(metered(&events).len(), 20, "{:?}", types(&events));
    assert_eq!(types(&events)[1], "run.started");
    assert!(!types(&events).contains(&"message.completed"));
}

#[tokio::test]
async fn a_run_over_its_byte_budget_stores_at_most_that_many_bytes() {
    let harness = Harness::start().await;
    let events = run(
        &harness,
        json!([{"filler": {"count": 1000}}]),
        Some(json!({"maxEventBytes": 4096})),
    )
    .await;
    let completed = over_budget(&events, "maxEventBytes", 4096);
    let bytes: usize = metered(&events)
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len())
        .sum();
    assert!(bytes <= 4096, "{bytes} bytes stored");
    assert!(
        bytes > 4096 - 300,
        "stopped at the limit, not long before: {bytes}"
    );
    assert!(
        completed
            .evidence
            .raw_lines
            .contains(&format!("used {bytes} bytes of events (limit 4096)")),
        "{:?}",
        completed.evidence.raw_lines
    );
}

#[tokio::test]
async fn a_run_over_its_turn_budget_keeps_the_turn_that_crossed_it_and_nothing_after() {
    let harness = Harness::start().await;
    let message = |text: &str| json!({"message": {"text": text}});
    let events = run(
        &harness,
        json!([
            message("one"),
            {"toolCall": {"name": "shell", "output": "ok"}},
            message("three"),
            message("four"),
            message("five")
        ]),
        Some(json!({"maxTurns": 3})),
    )
    .await;
    over_budget(&events, "maxTurns", 3);
    let kinds = types(&events);
    let turns = kinds
        .iter()
        .filter(|t| matches!(**t, "message.completed" | "tool.started"))
        .count();
    assert_eq!(turns, 4, "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 2], "message.completed", "{kinds:?}");
}

#[tokio::test]
async fn a_run_over_its_output_token_budget_fails_even_when_the_usage_was_its_last_event() {
    let harness = Harness::start().await;
    let usage = |tokens: u64| json!({"usage": {"inputTokens": 1, "outputTokens": tokens}});
    let events = run(
        &harness,
        json!([usage(600), {"message": {"text": "hi"}}, usage(600)]),
        Some(json!({"maxOutputTokens": 1000})),
    )
    .await;
    let completed = over_budget(&events, "maxOutputTokens", 1000);
    assert_eq!(types(&events).iter().filter(|t| **t == "usage").count(), 2);
    assert!(
        completed
            .evidence
            .raw_lines
            .contains(&"used 1200 output tokens (limit 1000)".to_owned()),
        "{:?}",
        completed.evidence.raw_lines
    );

    // Within the budget: the same script succeeds.
    let events = run(
        &harness,
        json!([usage(600), {"message": {"text": "hi"}}, usage(600)]),
        Some(json!({"maxOutputTokens": 1200})),
    )
    .await;
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn the_executor_default_applies_when_the_run_sets_no_budget() {
    let harness = Harness::start_with(|settings| settings.budget.max_events = 10).await;
    let events = run(&harness, json!([{"filler": {"count": 50}}]), None).await;
    over_budget(&events, "maxEvents", 10);
    assert_eq!(metered(&events).len(), 10);
    // A run's own budget overrides it.
    let events = run(
        &harness,
        json!([{"filler": {"count": 50}}]),
        Some(json!({"maxEvents": 100})),
    )
    .await;
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn a_bad_budget_or_an_oversized_filler_fails_the_run_before_it_writes_anything() {
    let harness = Harness::start().await;
    let events = run(
        &harness,
        json!([{"filler": {"count": 5}}]),
        Some(json!({"maxEvents": "lots"})),
    )
    .await;
    let completed = completion(&events);
    assert_eq!(completed.reason, Some(FailureReason::ProviderError));
    assert!(
        completed
            .detail
            .unwrap()
            .contains("`providerOptions.budget.maxEvents` must be an integer from 1 to"),
    );
    assert_eq!(types(&events), ["run.dispatched", "run.completed"]);

    let started = std::time::Instant::now();
    let events = run(&harness, json!([{"filler": {"count": 100_000_000}}]), None).await;
    let completed = completion(&events);
    assert_eq!(completed.reason, Some(FailureReason::ProviderError));
    assert!(
        completed
            .detail
            .unwrap()
            .contains("filler.count is 100000000; at most 100000"),
    );
    assert_eq!(
        types(&events),
        ["run.dispatched", "run.started", "run.completed"]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
