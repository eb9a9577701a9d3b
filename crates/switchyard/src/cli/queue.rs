//! `queue` and `providers`: what waits for an executor, and which providers the live
//! executors offer.

use super::client::Client;
use super::exit::Exit;
use super::output::{self, Table, or_dash};
use super::runs::waiting;
use super::settings::ClientArgs;
use anyhow::Context as _;
use serde_json::Value;
use switchyard_contracts::api::{ProviderList, RunQueueView};

/// Show the run queue: commands pending and in flight, and the runs waiting for an
/// executor with the reason they wait
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

/// List the providers: installed where and in which version, credentials resolvable
#[derive(Debug, clap::Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn queue(client: &Client, args: &QueueArgs) -> anyhow::Result<Exit> {
    let body: Value = client.get("/api/run-queue").await?;
    if args.json {
        output::json(&body)?;
        return Ok(Exit::Success);
    }
    let queue: RunQueueView = serde_json::from_value(body)
        .context("the gateway's run queue is not what the API describes")?;
    println!(
        "{} command(s) pending, {} in flight",
        queue.pending, queue.in_flight
    );
    let mut table = Table::new(&["RUN", "STATUS", "PROVIDER", "APP", "CREATED", "WAITING"]);
    for run in &queue.runs {
        table.row(vec![
            run.run_id.to_string(),
            run.status.as_str().to_owned(),
            run.provider.clone(),
            or_dash(run.app_id.as_deref()),
            output::time(&run.created_at),
            match (&run.waiting_reason, &run.waiting_detail) {
                (Some(reason), Some(detail)) => format!("{}: {detail}", waiting(*reason)),
                (Some(reason), None) => waiting(*reason).to_owned(),
                _ => String::new(),
            },
        ]);
    }
    if !table.is_empty() {
        table.print()?;
    }
    Ok(Exit::Success)
}

pub async fn providers(client: &Client, args: &ProvidersArgs) -> anyhow::Result<Exit> {
    let body: Value = client.get("/api/providers").await?;
    if args.json {
        output::json(&body)?;
        return Ok(Exit::Success);
    }
    let list: ProviderList = serde_json::from_value(body)
        .context("the gateway's provider list is not what the API describes")?;
    let mut table = Table::new(&["PROVIDER", "INSTALLED", "CREDENTIALS", "EXECUTORS"]);
    for provider in &list.providers {
        let mut name = provider.name.clone();
        if !provider.aliases.is_empty() {
            name.push_str(&format!(" ({})", provider.aliases.join(", ")));
        }
        table.row(vec![
            name,
            if provider.installed { "yes" } else { "no" }.to_owned(),
            match provider.credentials_configured {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            }
            .to_owned(),
            provider
                .executors
                .iter()
                .map(|e| match &e.version {
                    Some(version) => format!("{} ({version})", e.executor_id),
                    None => e.executor_id.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    table.print()?;
    Ok(Exit::Success)
}
