//! `health`: the provider-runtime health check (`GET /api/health`), with an exit code
//! per readiness category so that scripts and deployment gates can act on it:
//! 0 ready, 2 environment not ready, 3 runtime unhealthy.

use super::client::{Client, encode_query};
use super::exit::Exit;
use super::output;
use anyhow::Context as _;
use serde_json::Value;
use std::time::Duration;
use switchyard_contracts::health::{HealthReport, ReadinessCategory};

/// Without a probe the report takes seconds; a probe run lasts up to the gateway's
/// `health_probe_timeout_ms` (20 s by default), which the gateway bounds itself.
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Check whether runs can work right now and, if not, whether the environment (no
/// executor, a provider's binary or credentials missing) or the runtime (NATS,
/// Postgres, migrations, a stalled consumer, a failed probe) is at fault. Exit 0 ready,
/// 2 environment not ready, 3 runtime unhealthy (admins and operators only)
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub client: super::settings::ClientArgs,
    /// Check only this provider (default: every provider a live executor offers)
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// Also start a one-turn probe run per provider checked, with a short timeout, and
    /// report how it ended
    #[arg(long)]
    pub probe: bool,
    /// Print the API's JSON report
    #[arg(long)]
    pub json: bool,
}

/// The exit of a report in `category`.
pub fn exit_of(category: ReadinessCategory) -> Exit {
    match category {
        ReadinessCategory::Ready => Exit::Success,
        ReadinessCategory::EnvironmentNotReady => Exit::EnvironmentNotReady,
        ReadinessCategory::RuntimeUnhealthy => Exit::RuntimeUnhealthy,
    }
}

pub async fn health(client: &Client, args: &HealthArgs) -> anyhow::Result<Exit> {
    let mut query = Vec::new();
    if let Some(provider) = &args.provider {
        query.push(("provider", provider.clone()));
    }
    if args.probe {
        query.push(("probe", "true".to_owned()));
    }
    let path = if query.is_empty() {
        "/api/health".to_owned()
    } else {
        format!("/api/health?{}", encode_query(&query))
    };
    let body: Value = client
        .get_with_timeout(&path, PROBE_REQUEST_TIMEOUT)
        .await?;
    let report: HealthReport = serde_json::from_value(body.clone())
        .context("the gateway's health report is not what the API describes")?;
    if args.json {
        output::json(&body)?;
    } else {
        print(&report);
    }
    Ok(exit_of(report.readiness_category))
}

fn print(report: &HealthReport) {
    let s = output::styles();
    for check in &report.checks {
        let (mark, style) = if check.ok {
            ("ok  ", s.good)
        } else if check.blocking_reason.is_some() {
            ("FAIL", s.bad)
        } else {
            ("skip", s.dim)
        };
        println!(
            "{style}{mark}{style:#} {}  {}{}{:#}",
            check.name, s.dim, check.detail, s.dim
        );
    }
    let category = report.readiness_category.as_str();
    match &report.blocking_reason {
        None => println!("{}{category}{:#}", s.good, s.good),
        Some(reason) => println!("{}{category}{:#}: {reason}", s.bad, s.bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_category_has_its_exit_code() {
        assert_eq!(exit_of(ReadinessCategory::Ready).code(), 0);
        assert_eq!(exit_of(ReadinessCategory::EnvironmentNotReady).code(), 2);
        assert_eq!(exit_of(ReadinessCategory::RuntimeUnhealthy).code(), 3);
    }
}
