//! The benchmark's results: every figure with the baseline that bounds it, the ratio
//! and the goal set for it, printed as a table and written as JSON.
//!
//! A figure either has a measured value or says why it was not measured; nothing in
//! here is estimated. Ratios are the only arithmetic: value ÷ baseline, both measured in
//! the same run.

use super::machine::MachineInfo;
use serde::Serialize;
use std::fmt::Write as _;

/// A raw measurement of a part Switchyard stands on (JetStream, Postgres, a bare axum
/// SSE server), taken in the same run as the figures it bounds.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub name: &'static str,
    pub title: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
    pub details: serde_json::Value,
}

impl Baseline {
    pub fn measured(
        name: &'static str,
        title: &'static str,
        value: f64,
        unit: &'static str,
        details: serde_json::Value,
    ) -> Self {
        Self {
            name,
            title,
            value: Some(value),
            unit,
            not_measured: None,
            details,
        }
    }

    pub fn not_measured(
        name: &'static str,
        title: &'static str,
        unit: &'static str,
        reason: String,
    ) -> Self {
        Self {
            name,
            title,
            value: None,
            unit,
            not_measured: Some(reason),
            details: serde_json::Value::Null,
        }
    }
}

/// What a figure should reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Reported and explained, no target.
    Report,
}

impl Goal {
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(goal) => Some(value >= goal),
            Goal::AtMost(goal) => Some(value <= goal),
            Goal::Report => None,
        }
    }
}

/// Whether `value`, at `ratio` of its baseline, reaches `goal` and `ratio_goal`.
fn judge(goal: Goal, ratio_goal: Option<f64>, value: f64, ratio: Option<f64>) -> Option<bool> {
    match (goal.met(value), ratio_goal) {
        (met, None) => met,
        (met, Some(ratio_goal)) => match (met, ratio.map(|r| r >= ratio_goal)) {
            (Some(a), Some(b)) => Some(a && b),
            (Some(false), None) => Some(false),
            _ => None,
        },
    }
}

/// The raw path that bounds a figure: the design's own work for it with nothing of
/// Switchyard, measured in the same run (a ceiling for rates, a floor for latencies).
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// Whether the bound itself reaches the figure's goal (and ratio goal, against the
    /// figure's baseline). When it does not, a figure missing the goal is explained by
    /// it; `None` where no goal is judged.
    pub meets_goal: Option<bool>,
}

/// The baseline a figure is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineRef {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key (JSON consumers, `--only`).
    pub name: &'static str,
    /// The `--only` group that measures it.
    pub group: &'static str,
    pub title: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub baseline: Option<BaselineRef>,
    /// value ÷ baseline.
    pub ratio: Option<f64>,
    pub goal: Goal,
    /// A second goal on the ratio (events/s must be ≥ 0.7× raw publish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_goal: Option<f64>,
    pub goal_text: &'static str,
    pub goal_met: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
    pub details: serde_json::Value,
}

impl Figure {
    /// Records the raw path that bounds this figure and whether it reaches the goal.
    /// A bound that was not measured is left out.
    pub fn bind(&mut self, bound: &Baseline) {
        let Some(value) = bound.value else {
            return;
        };
        let ratio = self
            .baseline
            .as_ref()
            .filter(|b| b.value > 0.0)
            .map(|b| value / b.value);
        self.bound = Some(Bound {
            name: bound.name,
            value,
            unit: bound.unit,
            meets_goal: judge(self.goal, self.ratio_goal, value, ratio),
        });
    }

    /// No goal is judged (quick mode): neither the figure's nor its bound's.
    pub fn unjudged(&mut self) {
        self.goal_met = None;
        if let Some(bound) = &mut self.bound {
            bound.meets_goal = None;
        }
    }

    /// The table's last column: met or not, and for a goal not met what its bound says.
    fn verdict(&self) -> String {
        match (self.goal_met, &self.bound) {
            (Some(true), _) => "yes".to_owned(),
            (Some(false), Some(bound)) if bound.meets_goal.is_some() => {
                let says = if bound.meets_goal == Some(false) {
                    "the bound misses it too"
                } else {
                    "its bound reaches it"
                };
                format!(
                    "no — {says}: {} {} (`{}`)",
                    number(bound.value),
                    bound.unit,
                    bound.name
                )
            }
            (Some(false), _) => "no".to_owned(),
            (None, _) => "—".to_owned(),
        }
    }
}

/// The static description of a figure; [`Spec::measured`] and [`Spec::not_measured`]
/// turn it into a result.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub group: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub goal: Goal,
    pub ratio_goal: Option<f64>,
    pub goal_text: &'static str,
}

impl Spec {
    pub fn measured(
        &self,
        value: f64,
        baseline: Option<&Baseline>,
        details: serde_json::Value,
    ) -> Figure {
        let baseline = baseline.and_then(|b| {
            b.value.map(|value| BaselineRef {
                name: b.name,
                value,
                unit: b.unit,
            })
        });
        self.measured_against(value, baseline, details)
    }

    pub fn measured_against(
        &self,
        value: f64,
        baseline: Option<BaselineRef>,
        details: serde_json::Value,
    ) -> Figure {
        let ratio = baseline
            .as_ref()
            .filter(|b| b.value > 0.0)
            .map(|b| value / b.value);
        let goal_met = judge(self.goal, self.ratio_goal, value, ratio);
        Figure {
            name: self.name,
            group: self.group,
            title: self.title,
            value: Some(value),
            unit: self.unit,
            baseline,
            ratio,
            goal: self.goal,
            ratio_goal: self.ratio_goal,
            goal_text: self.goal_text,
            goal_met,
            bound: None,
            not_measured: None,
            details,
        }
    }

    pub fn not_measured(&self, reason: impl Into<String>) -> Figure {
        Figure {
            name: self.name,
            group: self.group,
            title: self.title,
            value: None,
            unit: self.unit,
            baseline: None,
            ratio: None,
            goal: self.goal,
            ratio_goal: self.ratio_goal,
            goal_text: self.goal_text,
            goal_met: None,
            bound: None,
            not_measured: Some(reason.into()),
            details: serde_json::Value::Null,
        }
    }
}

/// Everything one benchmark run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub started_at: String,
    pub duration_secs: f64,
    pub machine: MachineInfo,
    pub software: serde_json::Value,
    pub load_average_at_end: Option<String>,
    pub baselines: Vec<Baseline>,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    /// Markdown tables: figures, then baselines, then the reasons for what was not
    /// measured.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut reasons = Vec::new();
        out.push_str("| figure | value | baseline | ratio | goal | met |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for figure in &self.figures {
            let value = match (figure.value, &figure.not_measured) {
                (Some(v), _) => format!("{} {}", number(v), figure.unit),
                (None, reason) => {
                    reasons.push((figure.title, reason.clone().unwrap_or_default()));
                    format!("not measured [{}]", reasons.len())
                }
            };
            let baseline = figure.baseline.as_ref().map_or_else(
                || "—".to_owned(),
                |b| format!("{} {} ({})", number(b.value), b.unit, b.name),
            );
            let ratio = figure
                .ratio
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
            let _ = writeln!(
                out,
                "| {} | {value} | {baseline} | {ratio} | {} | {} |",
                figure.title,
                figure.goal_text,
                figure.verdict()
            );
        }
        out.push_str("\n| baseline | value |\n|---|---|\n");
        for baseline in &self.baselines {
            let value = match (baseline.value, &baseline.not_measured) {
                (Some(v), _) => format!("{} {}", number(v), baseline.unit),
                (None, reason) => {
                    reasons.push((baseline.title, reason.clone().unwrap_or_default()));
                    format!("not measured [{}]", reasons.len())
                }
            };
            let _ = writeln!(
                out,
                "| {} (`{}`) | {value} |",
                baseline.title, baseline.name
            );
        }
        if !reasons.is_empty() {
            out.push('\n');
            for (i, (title, reason)) in reasons.iter().enumerate() {
                let _ = writeln!(out, "[{}] {title}: {reason}", i + 1);
            }
        }
        out
    }
}

/// Thousands separators above 100, three significant decimals below.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() >= 100.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const SPEC: Spec = Spec {
        name: "x",
        group: "g",
        title: "X",
        unit: "ops/s",
        goal: Goal::AtLeast(100.0),
        ratio_goal: Some(0.5),
        goal_text: "≥ 100 and ≥ 0.5× raw",
    };

    #[test]
    fn numbers_are_readable() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(123.6), "124");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.2345), "0.234");
    }

    #[test]
    fn both_goals_must_hold() {
        let raw = Baseline::measured("raw", "Raw", 400.0, "ops/s", serde_json::Value::Null);
        let met = SPEC.measured(300.0, Some(&raw), serde_json::Value::Null);
        assert_eq!(met.ratio, Some(0.75));
        assert_eq!(met.goal_met, Some(true));
        let slow_ratio = SPEC.measured(150.0, Some(&raw), serde_json::Value::Null);
        assert_eq!(slow_ratio.goal_met, Some(false));
        let too_few = SPEC.measured(50.0, None, serde_json::Value::Null);
        assert_eq!(too_few.goal_met, Some(false));
        let unknown = SPEC.measured(150.0, None, serde_json::Value::Null);
        assert_eq!(unknown.goal_met, None);
    }

    #[test]
    fn a_goal_not_met_says_whether_its_bound_misses_it_too() {
        let raw = Baseline::measured("raw", "Raw", 400.0, "ops/s", Value::Null);
        let mut figure = SPEC.measured(150.0, Some(&raw), Value::Null);
        let slow_path = Baseline::measured("path", "Path", 180.0, "ops/s", Value::Null);
        figure.bind(&slow_path);
        assert_eq!(figure.bound.as_ref().unwrap().meets_goal, Some(false));
        assert_eq!(
            figure.verdict(),
            "no — the bound misses it too: 180 ops/s (`path`)"
        );
        // 250 ops/s reaches 100 but is 0.625× the raw 400: both goals hold.
        figure.bind(&Baseline::measured(
            "path",
            "Path",
            250.0,
            "ops/s",
            Value::Null,
        ));
        assert_eq!(figure.bound.as_ref().unwrap().meets_goal, Some(true));
        assert!(figure.verdict().starts_with("no — its bound reaches it"));
        figure.unjudged();
        assert_eq!(figure.verdict(), "—");
        assert_eq!(figure.bound.as_ref().unwrap().meets_goal, None);

        let mut unmeasured = SPEC.measured(150.0, Some(&raw), Value::Null);
        unmeasured.bind(&Baseline::not_measured("path", "Path", "ops/s", "x".into()));
        assert!(unmeasured.bound.is_none());
        assert_eq!(unmeasured.verdict(), "no");
    }

    #[test]
    fn the_table_lists_reasons_for_what_was_not_measured() {
        let report = Report {
            mode: "quick",
            started_at: String::new(),
            duration_secs: 0.0,
            machine: MachineInfo::read(),
            software: serde_json::Value::Null,
            load_average_at_end: None,
            baselines: vec![],
            figures: vec![SPEC.not_measured("no reason to")],
            notes: vec![],
        };
        let table = report.table();
        assert!(table.contains("| X | not measured [1] |"), "{table}");
        assert!(table.contains("[1] X: no reason to"), "{table}");
    }
}
