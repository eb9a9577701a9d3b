//! What a stress run concludes: the class of each sample, the counts per class and per
//! transport outcome, latency percentiles, the verdict line, and `report.json` /
//! `report.md`.

use super::sample::{Sample, Transport};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchyard_contracts::event::{FailureReason, TerminalStatus};

/// Every failure reason of the platform, in the order reports list them.
pub const FAILURE_REASONS: [FailureReason; 14] = [
    FailureReason::AuthMissing,
    FailureReason::AuthInvalid,
    FailureReason::RateLimited,
    FailureReason::Timeout,
    FailureReason::ProviderNoOutput,
    FailureReason::ProviderError,
    FailureReason::ProviderUnreachable,
    FailureReason::ProviderCrashed,
    FailureReason::BinaryMissing,
    FailureReason::UnsupportedProvider,
    FailureReason::ExecutorLost,
    FailureReason::Stopped,
    FailureReason::BudgetExceeded,
    FailureReason::UnknownFailure,
];

/// The position of `reason` in [`FAILURE_REASONS`]. The match is exhaustive on purpose:
/// a new reason does not compile until it is listed there, so no reason goes uncounted.
fn reason_rank(reason: FailureReason) -> usize {
    match reason {
        FailureReason::AuthMissing => 0,
        FailureReason::AuthInvalid => 1,
        FailureReason::RateLimited => 2,
        FailureReason::Timeout => 3,
        FailureReason::ProviderNoOutput => 4,
        FailureReason::ProviderError => 5,
        FailureReason::ProviderUnreachable => 6,
        FailureReason::ProviderCrashed => 7,
        FailureReason::BinaryMissing => 8,
        FailureReason::UnsupportedProvider => 9,
        FailureReason::ExecutorLost => 10,
        FailureReason::Stopped => 11,
        FailureReason::BudgetExceeded => 12,
        FailureReason::UnknownFailure => 13,
    }
}

/// The one class a sample gets: `succeeded`, the platform's failure reason, or one of
/// three classes for samples the platform never concluded in front of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Succeeded,
    /// The run's `run.completed` reason; also `timeout` for a client-side timeout (the
    /// sample's transport outcome is then `client_timeout`).
    Failure(FailureReason),
    /// The start call was answered with an HTTP error: no run was started.
    StartRefused,
    /// The start call got no answer at all (connection refused or broken).
    GatewayUnreachable,
    /// The run started, but its stream could not be opened or broke before the run's
    /// terminal event.
    StreamFailed,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Succeeded => "succeeded",
            Class::Failure(reason) => reason.as_str(),
            Class::StartRefused => "start_refused",
            Class::GatewayUnreachable => "gateway_unreachable",
            Class::StreamFailed => "stream_failed",
        }
    }

    /// Every class, in report order.
    pub fn all() -> Vec<Class> {
        let mut all = vec![Class::Succeeded];
        all.extend(FAILURE_REASONS.iter().map(|r| Class::Failure(*r)));
        all.extend([
            Class::StartRefused,
            Class::GatewayUnreachable,
            Class::StreamFailed,
        ]);
        all
    }

    fn rank(self) -> usize {
        match self {
            Class::Succeeded => 0,
            Class::Failure(reason) => 1 + reason_rank(reason),
            Class::StartRefused => 1 + FAILURE_REASONS.len(),
            Class::GatewayUnreachable => 2 + FAILURE_REASONS.len(),
            Class::StreamFailed => 3 + FAILURE_REASONS.len(),
        }
    }

    /// The class of a sample: the run's terminal event when the stream delivered one;
    /// otherwise what the client saw.
    pub fn of(
        started: bool,
        transport: Transport,
        terminal: Option<(TerminalStatus, Option<FailureReason>)>,
    ) -> Class {
        if let Some((status, reason)) = terminal {
            return match (status, reason) {
                (TerminalStatus::Succeeded, _) => Class::Succeeded,
                (_, Some(reason)) => Class::Failure(reason),
                (TerminalStatus::Stopped, None) => Class::Failure(FailureReason::Stopped),
                (TerminalStatus::TimedOut, None) => Class::Failure(FailureReason::Timeout),
                (TerminalStatus::Failed, None) => Class::Failure(FailureReason::UnknownFailure),
            };
        }
        match transport {
            // The client's own limit: the run took too long for it, whatever the run
            // did afterwards (it is stopped).
            Transport::ClientTimeout => Class::Failure(FailureReason::Timeout),
            Transport::NotOpened => Class::StartRefused,
            Transport::ConnectFailed | Transport::Reset if !started => Class::GatewayUnreachable,
            Transport::Completed
            | Transport::ConnectFailed
            | Transport::Reset
            | Transport::HttpError => Class::StreamFailed,
        }
    }
}

impl Serialize for Class {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Nearest-rank percentiles of one latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// How many samples have this measurement.
    pub count: usize,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Percentiles {
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let at = |p: usize| {
            if values.is_empty() {
                return None;
            }
            let rank = (p * values.len()).div_ceil(100).max(1);
            values.get(rank - 1).copied()
        };
        Percentiles {
            count: values.len(),
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: values.last().copied(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// From sending the start call to its answer.
    pub start_call: Percentiles,
    /// From sending the start call to the stream's first event.
    pub first_event: Percentiles,
    /// From sending the start call to the run's terminal event.
    pub terminal: Percentiles,
}

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub gateway: String,
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub runs: usize,
    pub concurrency: usize,
    pub timeout_ms: u64,
    /// How many provider-option sets the samples cycle through.
    pub option_sets: usize,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub verdict: String,
    pub settings: Settings,
    pub started_at: String,
    pub duration_ms: u64,
    /// Samples that ran to their end (fewer than `settings.runs` when interrupted).
    pub completed: usize,
    pub interrupted: bool,
    pub succeeded: usize,
    pub failed: usize,
    /// Samples per class; every class is listed, zeros included.
    pub classes: BTreeMap<&'static str, usize>,
    /// Samples per transport outcome.
    pub transports: BTreeMap<&'static str, usize>,
    pub latency_ms: Latency,
    /// One row per sample, by sample number.
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn new(
        settings: Settings,
        started_at: String,
        duration_ms: u64,
        interrupted: bool,
        mut samples: Vec<Sample>,
    ) -> Report {
        samples.sort_by_key(|s| s.n);
        let mut classes: BTreeMap<&'static str, usize> =
            Class::all().into_iter().map(|c| (c.as_str(), 0)).collect();
        let mut transports: BTreeMap<&'static str, usize> = BTreeMap::new();
        for sample in &samples {
            *classes.entry(sample.class.as_str()).or_default() += 1;
            *transports.entry(sample.transport.as_str()).or_default() += 1;
        }
        let succeeded = samples
            .iter()
            .filter(|s| s.class == Class::Succeeded)
            .count();
        let latency_ms = Latency {
            start_call: Percentiles::of(samples.iter().filter_map(|s| s.start_ms).collect()),
            first_event: Percentiles::of(samples.iter().filter_map(|s| s.first_event_ms).collect()),
            terminal: Percentiles::of(samples.iter().filter_map(|s| s.terminal_ms).collect()),
        };
        let verdict = verdict(settings.runs, interrupted, &samples);
        Report {
            verdict,
            completed: samples.len(),
            interrupted,
            succeeded,
            failed: samples.len() - succeeded,
            settings,
            started_at,
            duration_ms,
            classes,
            transports,
            latency_ms,
            samples,
        }
    }

    pub fn passed(&self) -> bool {
        !self.interrupted && self.failed == 0 && self.completed == self.settings.runs
    }

    /// The failure classes that occurred, most frequent first (ties in report order).
    pub fn failure_counts(&self) -> Vec<(Class, usize)> {
        failure_counts(&self.samples)
    }

    /// `report.md`: the verdict, the settings, tables of classes, transport outcomes,
    /// latencies and failed samples.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let s = &self.settings;
        let _ = writeln!(md, "# Switchyard stress report\n\n{}\n", self.verdict);
        let _ = writeln!(md, "- gateway: {}", s.gateway);
        let _ = writeln!(
            md,
            "- app: {}; provider: {}; model: {}; profile: {}",
            s.app,
            s.provider.as_deref().unwrap_or("the app's"),
            s.model.as_deref().unwrap_or("the app's or the provider's"),
            s.profile.as_deref().unwrap_or("none"),
        );
        let _ = writeln!(
            md,
            "- runs: {}, concurrency: {}, client timeout: {} ms, option sets: {}",
            s.runs, s.concurrency, s.timeout_ms, s.option_sets
        );
        let _ = writeln!(
            md,
            "- started: {}; took {:.1} s; {} of {} samples ran{}",
            self.started_at,
            self.duration_ms as f64 / 1000.0,
            self.completed,
            s.runs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );

        let _ = writeln!(md, "\n## Classes\n\n| class | samples |\n|---|---:|");
        for class in Class::all() {
            let count = self.classes.get(class.as_str()).copied().unwrap_or(0);
            if count > 0 {
                let _ = writeln!(md, "| {} | {count} |", class.as_str());
            }
        }

        let _ = writeln!(
            md,
            "\n## Transport outcomes\n\n| outcome | samples |\n|---|---:|"
        );
        for (outcome, count) in &self.transports {
            let _ = writeln!(md, "| {outcome} | {count} |");
        }

        let _ = writeln!(
            md,
            "\n## Latency (ms from sending the start call)\n\n| | samples | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|"
        );
        let l = &self.latency_ms;
        for (name, p) in [
            ("start call", &l.start_call),
            ("first event", &l.first_event),
            ("terminal event", &l.terminal),
        ] {
            let cell = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                p.count,
                cell(p.p50),
                cell(p.p90),
                cell(p.p99),
                cell(p.max)
            );
        }

        let failed: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.class != Class::Succeeded)
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(
                md,
                "\n## Failed samples\n\nEach has `samples/<n>/sse.raw.txt` (the stream's bytes as received) and `run.json`.\n\n| # | class | run | start | transport | first event ms | terminal ms | detail |\n|---:|---|---|---|---|---:|---:|---|"
            );
            for sample in failed {
                let dash = || "-".to_owned();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    sample.n,
                    sample.class.as_str(),
                    sample.run_id.map_or_else(dash, |id| id.to_string()),
                    sample
                        .start_http_status
                        .map_or_else(dash, |s| s.to_string()),
                    sample.transport.as_str(),
                    sample.first_event_ms.map_or_else(dash, |v| v.to_string()),
                    sample.terminal_ms.map_or_else(dash, |v| v.to_string()),
                    table_cell(&sample.summary()),
                );
            }
        }
        md
    }
}

fn failure_counts(samples: &[Sample]) -> Vec<(Class, usize)> {
    let mut counts: BTreeMap<usize, (Class, usize)> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.class != Class::Succeeded) {
        counts
            .entry(sample.class.rank())
            .or_insert((sample.class, 0))
            .1 += 1;
    }
    let mut counts: Vec<(Class, usize)> = counts.into_values().collect();
    // Stable: equal counts keep report order.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

/// `PASS: 50/50 succeeded`, `FAIL: 3 of 50 failed (2 provider_error, 1 timeout)`, or
/// `INCOMPLETE: …` when Ctrl-C ended the run before every sample had run.
pub(super) fn verdict(runs: usize, interrupted: bool, samples: &[Sample]) -> String {
    let failures = failure_counts(samples);
    let failed: usize = failures.iter().map(|(_, n)| n).sum();
    let list = failures
        .iter()
        .map(|(class, n)| format!("{n} {}", class.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if interrupted || samples.len() < runs {
        let mut text = format!(
            "INCOMPLETE: interrupted after {} of {runs} samples; {} succeeded, {failed} failed",
            samples.len(),
            samples.len() - failed
        );
        if failed > 0 {
            let _ = write!(text, " ({list})");
        }
        text
    } else if failed == 0 {
        format!("PASS: {runs}/{runs} succeeded")
    } else {
        format!("FAIL: {failed} of {runs} failed ({list})")
    }
}

/// One line of text for a Markdown table cell.
fn table_cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut cell = one_line.replace('|', "\\|");
    if cell.chars().count() > 160 {
        cell = cell.chars().take(159).collect::<String>() + "…";
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, class: Class) -> Sample {
        let mut s = Sample::new(n, 0);
        s.class = class;
        s
    }

    #[test]
    fn every_failure_reason_is_listed_once_in_its_rank() {
        for (i, reason) in FAILURE_REASONS.iter().enumerate() {
            assert_eq!(reason_rank(*reason), i, "{reason:?}");
        }
        let all = Class::all();
        let names: std::collections::HashSet<&str> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len(), "class names are unique");
        for (i, class) in all.iter().enumerate() {
            assert_eq!(class.rank(), i, "{class:?}");
        }
    }

    #[test]
    fn a_terminal_event_decides_the_class_else_the_transport() {
        use Transport::*;
        let failed = |r| Some((TerminalStatus::Failed, Some(r)));
        assert_eq!(
            Class::of(true, Completed, Some((TerminalStatus::Succeeded, None))),
            Class::Succeeded
        );
        assert_eq!(
            Class::of(true, Completed, failed(FailureReason::AuthInvalid)),
            Class::Failure(FailureReason::AuthInvalid)
        );
        assert_eq!(
            Class::of(true, Completed, Some((TerminalStatus::Failed, None))),
            Class::Failure(FailureReason::UnknownFailure)
        );
        assert_eq!(
            Class::of(true, Completed, Some((TerminalStatus::TimedOut, None))),
            Class::Failure(FailureReason::Timeout)
        );
        // The client's timeout is `timeout`, never `unknown_failure`, before or after
        // the run started.
        assert_eq!(
            Class::of(true, ClientTimeout, None),
            Class::Failure(FailureReason::Timeout)
        );
        assert_eq!(
            Class::of(false, ClientTimeout, None),
            Class::Failure(FailureReason::Timeout)
        );
        assert_eq!(Class::of(false, NotOpened, None), Class::StartRefused);
        assert_eq!(
            Class::of(false, ConnectFailed, None),
            Class::GatewayUnreachable
        );
        assert_eq!(Class::of(false, Reset, None), Class::GatewayUnreachable);
        assert_eq!(Class::of(true, Reset, None), Class::StreamFailed);
        assert_eq!(Class::of(true, HttpError, None), Class::StreamFailed);
        assert_eq!(Class::of(true, ConnectFailed, None), Class::StreamFailed);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().collect());
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, Some(50), Some(90), Some(99), Some(100))
        );
        let p = Percentiles::of(vec![7, 3]);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (Some(3), Some(7), Some(7), Some(7))
        );
        let p = Percentiles::of(vec![]);
        assert_eq!((p.count, p.p50, p.max), (0, None, None));
    }

    #[test]
    fn the_verdict_names_each_failure_class_most_frequent_first() {
        let timeout = Class::Failure(FailureReason::Timeout);
        let error = Class::Failure(FailureReason::ProviderError);
        let samples = vec![
            sample(1, Class::Succeeded),
            sample(2, timeout),
            sample(3, error),
            sample(4, error),
            sample(5, Class::StartRefused),
        ];
        assert_eq!(
            verdict(5, false, &samples),
            "FAIL: 4 of 5 failed (2 provider_error, 1 timeout, 1 start_refused)"
        );
        assert_eq!(
            verdict(
                2,
                false,
                &samples[..1]
                    .iter()
                    .chain(&samples[..1])
                    .cloned()
                    .collect::<Vec<_>>()
            ),
            "PASS: 2/2 succeeded"
        );
        assert_eq!(
            verdict(9, true, &samples[..2]),
            "INCOMPLETE: interrupted after 2 of 9 samples; 1 succeeded, 1 failed (1 timeout)"
        );
    }

    #[test]
    fn a_detail_stays_one_table_cell() {
        assert_eq!(table_cell("a|b\nc"), "a\\|b c");
        assert_eq!(table_cell(&"x".repeat(500)).chars().count(), 160);
    }
}
