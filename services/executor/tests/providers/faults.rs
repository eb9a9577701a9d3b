//! One fault, one reason, whichever provider: every model API fault the fake model can
//! play, driven through each real CLI (`codex-app-server`, `claude-code`, `opencode`)
//! at once. A run must end with the fault's reason (the table in
//! `docs/reliability.md`, "Faults and reasons"), with evidence, within a bound, and
//! leave no process behind.
//!
//! Only the faults no CLI ends by itself get short liveness limits (hang, stall,
//! unreachable); the others must end on the CLI's own account, so their runs keep the
//! harness's generous limits and a limit firing early shows up as a wrong reason.

use crate::common::{Finished, ProviderHarness, RunSpec, require_cli, wait_no_process_mentioning};
use futures::StreamExt as _;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use switchyard_contracts::FailureReason;
use switchyard_contracts::event::TerminalStatus;
use switchyard_test_support::fake_model::Unreachable;

/// Longest a faulty run may take from dispatch to `run.completed`, with
/// [`CONCURRENT_RUNS`] runs sharing two loaded cores.
const FAULT_BOUND: Duration = Duration::from_secs(110);

/// How many runs of the matrix are under way at once: all 21 at once start seven
/// opencode servers together, which a loaded 2-core machine does not start in time.
const CONCURRENT_RUNS: usize = 9;

const PROVIDERS: [&str; 3] = ["codex-app-server", "claude-code", "opencode"];

/// A misbehaving model API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The request gets no response headers at all.
    Hang,
    /// Headers and the stream's first event, then silence.
    Stall,
    /// A text answer whose stream closes before its finish (no finish reason, no
    /// `[DONE]`, no `response.completed`, no `message_stop`).
    Cut,
    /// Connection refused.
    Unreachable,
    E401,
    E429,
    E500,
}

const FAULTS: [Fault; 7] = [
    Fault::Hang,
    Fault::Stall,
    Fault::Cut,
    Fault::Unreachable,
    Fault::E401,
    Fault::E429,
    Fault::E500,
];

impl Fault {
    /// The reason every provider must end the run with.
    fn reason(self) -> FailureReason {
        match self {
            Fault::Hang => FailureReason::ProviderNoOutput,
            Fault::Stall => FailureReason::Timeout,
            Fault::Cut | Fault::E500 => FailureReason::ProviderError,
            Fault::Unreachable => FailureReason::ProviderUnreachable,
            Fault::E401 => FailureReason::AuthInvalid,
            Fault::E429 => FailureReason::RateLimited,
        }
    }

    /// The fake model's marker (an unreachable API never sees the prompt).
    fn prompt(self) -> &'static str {
        match self {
            Fault::Hang => "SCN_HANG hi",
            Fault::Stall => "SCN_STALL hi",
            Fault::Cut => "SCN_CUT hi",
            Fault::Unreachable => "hi",
            Fault::E401 => "SCN_E401 hi",
            Fault::E429 => "SCN_E429 hi",
            Fault::E500 => "SCN_E500 hi",
        }
    }

    /// The liveness limits (ms): short ones end the faults no CLI ends by itself, and
    /// the first-output limit is long for every other fault, because opencode can take
    /// half a minute from the prompt to its first model call when several of them start
    /// on two loaded cores, and that limit must not decide those runs.
    fn limits(self) -> &'static [(&'static str, u64)] {
        const PATIENT: (&str, u64) = ("firstOutputTimeoutMs", 90_000);
        match self {
            Fault::Hang => &[("firstOutputTimeoutMs", 10_000)],
            Fault::Stall => &[PATIENT, ("inactivityTimeoutMs", 8_000)],
            Fault::Unreachable => &[PATIENT, ("unreachableTimeoutMs", 4_000)],
            _ => &[PATIENT],
        }
    }
}

/// The run of `fault` on `provider` (its executor points the CLI at the model API).
fn spec(provider: &str, fault: Fault) -> RunSpec {
    let (program, credential) = match provider {
        "codex-app-server" => ("codex", "OPENAI_API_KEY"),
        "claude-code" => ("claude", "ANTHROPIC_API_KEY"),
        _ => ("opencode", "OPENAI_API_KEY"),
    };
    require_cli(program);
    let mut spec = RunSpec::new(provider, fault.prompt())
        .model("fake-model")
        .credential(credential)
        .timeout_ms(150_000);
    for (key, ms) in fault.limits() {
        spec = spec.option(key, *ms);
    }
    spec
}

/// How one run of the matrix ended.
struct Outcome {
    provider: &'static str,
    fault: Fault,
    finished: Finished,
    took: Duration,
}

impl Outcome {
    /// What is wrong with it, if anything.
    fn problems(&self, harnesses: &[&ProviderHarness]) -> Vec<String> {
        let completed = self.finished.completed();
        let mut problems = Vec::new();
        if completed.reason != Some(self.fault.reason()) {
            problems.push(format!(
                "reason {:?}, expected {}",
                completed.reason.map(FailureReason::as_str),
                self.fault.reason().as_str()
            ));
        }
        let status = match self.fault.reason() {
            FailureReason::Timeout => TerminalStatus::TimedOut,
            _ => TerminalStatus::Failed,
        };
        if completed.status != status {
            problems.push(format!("status {:?}", completed.status));
        }
        if completed.detail.as_deref().is_none_or(str::is_empty) {
            problems.push("no detail".to_owned());
        }
        if completed.evidence.raw_lines.is_empty() {
            problems.push("no raw lines in the evidence".to_owned());
        }
        if self.took > FAULT_BOUND {
            problems.push(format!("took {:?}", self.took));
        }
        let json = self.finished.json();
        let leaked = harnesses
            .iter()
            .flat_map(|harness| &harness.secrets)
            .any(|(_, value)| json.contains(value.as_str()));
        if leaked {
            problems.push("a credential value is in the run's events".to_owned());
        }
        problems
    }
}

#[tokio::test]
async fn each_fault_ends_with_the_same_reason_on_every_provider() {
    let harness = ProviderHarness::start_with(|settings| settings.capacity = 32).await;
    // The unreachable runs get an executor of their own: where a provider's model API
    // is, is the executor's configuration.
    let refusing = Unreachable::new().expect("reserve a port that refuses connections");
    let refusing_harness = ProviderHarness::start_with(|settings| {
        for (provider, table) in &mut settings.credentials {
            // Claude takes the Anthropic base (it adds `/v1/messages`), the others an
            // OpenAI one.
            table.base_url = Some(match provider.as_str() {
                "claude-code" => refusing.url(),
                _ => refusing.openai_url(),
            });
        }
    })
    .await;
    let started = Instant::now();
    let harness = &harness;
    let refusing_harness = &refusing_harness;
    let harnesses = [harness, refusing_harness];
    let mut runs = Vec::new();
    // Fault by fault, so that the (heavy) opencode servers are spread over the waves.
    for fault in FAULTS {
        for provider in PROVIDERS {
            let harness = match fault {
                Fault::Unreachable => refusing_harness,
                _ => harness,
            };
            let spec = spec(provider, fault);
            runs.push(async move {
                let dispatched = Instant::now();
                let finished = harness.run_simple(&spec).await;
                Outcome {
                    provider,
                    fault,
                    took: dispatched.elapsed(),
                    finished,
                }
            });
        }
    }
    let mut outcomes: Vec<Outcome> = futures::stream::iter(runs)
        .buffer_unordered(CONCURRENT_RUNS)
        .collect()
        .await;
    outcomes.sort_by_key(|o| {
        (
            PROVIDERS.iter().position(|p| *p == o.provider),
            FAULTS.iter().position(|f| *f == o.fault),
        )
    });
    eprintln!(
        "fault matrix: {} runs in {:?}",
        outcomes.len(),
        started.elapsed()
    );

    let mut table = String::new();
    let mut failures = 0;
    for outcome in &outcomes {
        let completed = outcome.finished.completed();
        let problems = outcome.problems(&harnesses);
        failures += usize::from(!problems.is_empty());
        let _ = writeln!(
            table,
            "{:<16} {:<12} {:<22} {:>6.1}s {} | {}",
            outcome.provider,
            format!("{:?}", outcome.fault),
            completed.reason.map_or("-", FailureReason::as_str),
            outcome.took.as_secs_f64(),
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                problems.join("; ")
            },
            completed.detail.unwrap_or_default(),
        );
    }
    eprintln!("{table}");
    for outcome in &outcomes {
        if !outcome.problems(&harnesses).is_empty() {
            let evidence = outcome.finished.completed().evidence;
            eprintln!(
                "{} {:?}: evidence {}",
                outcome.provider,
                outcome.fault,
                serde_json::to_string_pretty(&evidence).unwrap_or_default()
            );
        }
    }
    assert_eq!(
        failures, 0,
        "runs that did not end as the fault requires:\n{table}"
    );

    // Every CLI process of every run is gone.
    for outcome in &outcomes {
        let workspace = outcome.finished.workspace().display().to_string();
        let left = wait_no_process_mentioning(&workspace, Duration::from_secs(10)).await;
        assert!(
            left.is_empty(),
            "{} {:?}: processes left in {workspace}: {left:?}",
            outcome.provider,
            outcome.fault
        );
    }
}

/// A hang the run timeout ends (the liveness limits are longer) is a failure like one a
/// liveness limit ends, and carries the evidence the CLI left: its last protocol lines.
#[tokio::test]
async fn a_run_ended_by_its_timeout_carries_the_clis_evidence() {
    let harness = ProviderHarness::start().await;
    let runs = PROVIDERS.map(|provider| {
        let spec = spec(provider, Fault::Hang)
            .option("firstOutputTimeoutMs", 120_000)
            .option("inactivityTimeoutMs", 120_000)
            .timeout_ms(25_000);
        let harness = &harness;
        async move { (provider, harness.run_simple(&spec).await) }
    });
    for (provider, finished) in futures::future::join_all(runs).await {
        let completed = finished.completed();
        assert_eq!(
            completed.reason,
            Some(FailureReason::Timeout),
            "{provider}: {completed:?}"
        );
        assert_eq!(completed.status, TerminalStatus::TimedOut, "{provider}");
        assert!(
            completed
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("25000 ms")),
            "{provider}: {completed:?}"
        );
        assert!(
            !completed.evidence.raw_lines.is_empty(),
            "{provider}: no evidence: {completed:?}"
        );
        harness.assert_no_secret_in("the run's events", &finished.json());
    }
}
