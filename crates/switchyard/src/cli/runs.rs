//! The run commands: `run`, `follow`, `runs list|show`, `approve`, `deny`, `stop`.

use super::client::{Client, encode_query};
use super::exit::Exit;
use super::follow::{FollowOptions, OnInterrupt, follow};
use super::output::{self, Table, or_dash};
use super::settings::ClientArgs;
use anyhow::Context as _;
use serde_json::{Map, Value, json};
use std::io::Read as _;
use switchyard_contracts::api::{
    HumanLoopReplyResponse, HumanLoopRequestList, RunList, RunView, StartRunRequest,
    StartRunResponse, StopRunResponse, WaitingReason,
};
use switchyard_contracts::event::HumanLoopDecision;
use switchyard_contracts::{AppId, HumanLoopRequestId, ProfileName, RunId};

/// The largest page `GET /api/runs` gives.
const MAX_PAGE: u32 = 500;

/// Start a run (and with --follow, watch it to the end)
#[derive(Debug, clap::Args)]
#[command(after_help = "\
With --follow: assistant text streams as it arrives, tool calls with their output, file
changes, approvals, usage, then the final status (with the failure reason and evidence).
Ctrl-C once stops the run and keeps rendering until it has ended; twice detaches (it
goes on; `switchyard follow RUN --cursor C` resumes). A human-loop request is asked
inline when standard input is a terminal; otherwise it waits for `switchyard approve` /
`deny` from anywhere, or is declined when the executor's human-loop timeout passes.
The exit code is the run's outcome: 0 succeeded, 10 failed, 11 timed out, 12 stopped,
13 detached.")]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The app whose runtime defaults the run takes
    #[arg(long, value_name = "APP")]
    pub app: Option<AppId>,
    /// Provider (scripted, codex-app-server, claude-code, opencode); default: the app's
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// Model; default: the app's or the provider's
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// One of the app's execution profiles
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<ProfileName>,
    /// A provider option KEY=VALUE (VALUE is read as JSON when it is JSON, else as a
    /// string); repeat for more. Goes on top of --options-json
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, Value)>,
    /// Provider options as a JSON object, or @FILE to read it from a file
    #[arg(long, value_name = "JSON|@FILE")]
    pub options_json: Option<String>,
    /// Continue the conversation of this run (a follow-up in the same workspace)
    #[arg(long, value_name = "RUN")]
    pub parent: Option<RunId>,
    /// Render the run live until it ends; the exit code is its outcome
    #[arg(long, short)]
    pub follow: bool,
    /// Print JSON: the start answer, or with --follow one event per line
    #[arg(long)]
    pub json: bool,
    /// What the agent is asked to do ("-" reads it from standard input)
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
}

/// Watch a run's events until it ends, from the start or after a cursor
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Rendered as `run --follow` renders it; a lost connection is resumed after the last event
received, with backoff, so nothing is lost or shown twice. Ctrl-C detaches (the run goes
on; `switchyard stop RUN` stops it). The exit code is the run's outcome: 0 succeeded,
10 failed, 11 timed out, 12 stopped, 13 detached.")]
pub struct FollowArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run
    #[arg(value_name = "RUN")]
    pub run: RunId,
    /// Start after this event (an SSE `id:` of this run's stream)
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// One event per line as JSON on stdout; nothing is asked
    #[arg(long)]
    pub json: bool,
}

/// List and show runs
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first
    List(ListArgs),
    /// Show one run: status, failure reason and evidence, pending approvals
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this app's runs
    #[arg(long, value_name = "APP")]
    pub app: Option<AppId>,
    /// Only runs with this status
    #[arg(long, value_name = "STATUS", value_parser = [
        "queued", "claimed", "dispatched", "running", "waiting_for_human",
        "succeeded", "failed", "stopped", "timed_out",
    ])]
    pub status: Option<String>,
    /// Only runs of this provider
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// At most this many runs
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run
    #[arg(value_name = "RUN")]
    pub run: RunId,
    /// Print the API's JSON (`GET /api/runs/{id}`)
    #[arg(long)]
    pub json: bool,
}

/// Answer a run's human-loop request
#[derive(Debug, clap::Args)]
pub struct ReplyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run
    #[arg(value_name = "RUN")]
    pub run: RunId,
    /// The request to answer; default: the run's oldest pending one
    #[arg(long, value_name = "ID")]
    pub request: Option<HumanLoopRequestId>,
    /// A message for the agent with the answer
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

/// Stop a run (its partial output is kept; it ends `stopped`)
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run
    #[arg(value_name = "RUN")]
    pub run: RunId,
    /// Why, for the run's record
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn parse_option(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

fn provider_options(args: &RunArgs) -> anyhow::Result<Option<Map<String, Value>>> {
    let mut options = match &args.options_json {
        None => None,
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --options-json file {path}"))?,
                None => text.clone(),
            };
            match serde_json::from_str::<Value>(&text).context("--options-json is not JSON")? {
                Value::Object(map) => Some(map),
                _ => anyhow::bail!("--options-json must be a JSON object"),
            }
        }
    };
    for (key, value) in &args.options {
        options
            .get_or_insert_with(Map::new)
            .insert(key.clone(), value.clone());
    }
    Ok(options)
}

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<Exit> {
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the prompt from standard input")?;
        text
    } else {
        args.prompt.clone()
    };
    let request = StartRunRequest {
        app_id: args.app.clone(),
        execution_profile: args.profile.clone(),
        provider: args.provider.clone(),
        model: args.model.clone(),
        prompt,
        provider_options: provider_options(&args)?,
        conversation_id: None,
        parent_run_id: args.parent,
    };
    let started: StartRunResponse = client.post("/api/runs/start", &request).await?;
    if !args.follow {
        if args.json {
            output::json(&started)?;
        } else {
            println!(
                "run {} {} ({})",
                started.run_id,
                started.status.as_str(),
                started.provider
            );
            println!("follow it: switchyard follow {}", started.run_id);
        }
        return Ok(Exit::Success);
    }
    if !args.json {
        let s = super::style::Styles::new(super::style::color_for(&std::io::stderr()));
        eprintln!(
            "{}run {} started ({}); Ctrl-C stops it, twice detaches{:#}",
            s.dim, started.run_id, started.provider, s.dim
        );
    }
    follow(
        client,
        FollowOptions {
            run_id: started.run_id,
            cursor: None,
            json: args.json,
            on_interrupt: OnInterrupt::Stop,
        },
    )
    .await
}

pub async fn follow_run(client: &Client, args: FollowArgs) -> anyhow::Result<Exit> {
    follow(
        client,
        FollowOptions {
            run_id: args.run,
            cursor: args.cursor.filter(|c| !c.trim().is_empty()),
            json: args.json,
            on_interrupt: OnInterrupt::Detach,
        },
    )
    .await
}

pub async fn list(client: &Client, args: &ListArgs) -> anyhow::Result<Exit> {
    // The API filters by app and status; the provider is filtered here, page by page,
    // until enough runs match or there are no more.
    let mut runs: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = if args.provider.is_some() {
            MAX_PAGE
        } else {
            args.limit.min(MAX_PAGE)
        };
        let mut query = vec![("limit", page.to_string())];
        if let Some(app) = &args.app {
            query.push(("appId", app.to_string()));
        }
        if let Some(status) = &args.status {
            query.push(("status", status.clone()));
        }
        if let Some(before) = &before {
            query.push(("before", before.clone()));
        }
        let path = format!("/api/runs?{}", encode_query(&query));
        let body: Value = client.get(&path).await?;
        let got = body["runs"].as_array().cloned().unwrap_or_default();
        let full = got.len() == page as usize;
        before = got
            .last()
            .and_then(|r| r["runId"].as_str())
            .map(str::to_owned);
        runs.extend(got.into_iter().filter(|r| {
            args.provider
                .as_deref()
                .is_none_or(|p| r["provider"].as_str() == Some(p))
        }));
        if runs.len() >= args.limit as usize || !full || before.is_none() {
            break;
        }
    }
    runs.truncate(args.limit as usize);
    if args.json {
        output::json(&json!({ "runs": runs }))?;
        return Ok(Exit::Success);
    }
    let list: RunList = serde_json::from_value(json!({ "runs": runs }))
        .context("the gateway's run list is not what the API describes")?;
    let mut table = Table::new(&["RUN", "STATUS", "PROVIDER", "APP", "CREATED", "REASON"]);
    for run in &list.runs {
        table.row(vec![
            run.run_id.to_string(),
            run.status.as_str().to_owned(),
            run.provider.clone(),
            or_dash(run.app_id.as_deref()),
            output::time(&run.created_at),
            run.failure_reason
                .map(|r| r.as_str().to_owned())
                .or_else(|| {
                    run.waiting_reason
                        .map(|w| format!("waiting: {}", waiting(w)))
                })
                .unwrap_or_default(),
        ]);
    }
    if table.is_empty() {
        println!("no runs");
    } else {
        table.print()?;
    }
    Ok(Exit::Success)
}

/// The wire name of a waiting reason.
pub(super) fn waiting(reason: WaitingReason) -> &'static str {
    match reason {
        WaitingReason::NoExecutor => "no_executor",
        WaitingReason::NoExecutorForProvider => "no_executor_for_provider",
        WaitingReason::AllExecutorsFull => "all_executors_full",
        WaitingReason::AllExecutorsDraining => "all_executors_draining",
    }
}

pub async fn show(client: &Client, args: &ShowArgs) -> anyhow::Result<Exit> {
    let path = format!("/api/runs/{}", args.run);
    let body: Value = client.get(&path).await?;
    if args.json {
        output::json(&body)?;
        return Ok(Exit::Success);
    }
    let run: RunView =
        serde_json::from_value(body).context("the gateway's run is not what the API describes")?;
    output::fields(&[
        ("run", Some(run.run_id.to_string())),
        ("status", Some(run.status.as_str().to_owned())),
        ("reason", run.failure_reason.map(|r| r.as_str().to_owned())),
        ("detail", run.failure_detail.clone()),
        ("status detail", run.status_detail.clone()),
        ("waiting", run.waiting_reason.map(|w| waiting(w).to_owned())),
        ("waiting detail", run.waiting_detail.clone()),
        ("provider", Some(run.provider.clone())),
        ("model", run.model.clone()),
        ("app", run.app_id.as_ref().map(ToString::to_string)),
        (
            "profile",
            run.execution_profile.as_ref().map(ToString::to_string),
        ),
        ("conversation", Some(run.conversation_id.to_string())),
        (
            "executor",
            run.executor_id.as_ref().map(ToString::to_string),
        ),
        ("created", Some(output::time(&run.created_at))),
        ("started", run.started_at.as_ref().map(output::time)),
        ("completed", run.completed_at.as_ref().map(output::time)),
        ("events", Some(run.last_event_seq.to_string())),
    ])?;
    if let Some(evidence) = run.evidence.as_ref().filter(|e| !e.is_null()) {
        println!("evidence:");
        let text = serde_json::to_string_pretty(evidence)?;
        for line in text.lines() {
            println!("  {line}");
        }
    }
    if !run.status.is_terminal() {
        let pending: HumanLoopRequestList = client
            .get(&format!(
                "/api/runs/{}/human-loop?status=pending",
                run.run_id
            ))
            .await?;
        for request in &pending.requests {
            println!(
                "pending approval {} ({}): {}",
                request.request_id, request.kind, request.prompt
            );
        }
    }
    Ok(Exit::Success)
}

pub async fn reply(
    client: &Client,
    args: &ReplyArgs,
    decision: HumanLoopDecision,
) -> anyhow::Result<Exit> {
    let mut body = json!({ "decision": decision });
    if let Some(request) = &args.request {
        body["requestId"] = json!(request);
    }
    if let Some(message) = &args.message {
        body["message"] = json!(message);
    }
    let answer: HumanLoopReplyResponse = client
        .post(&format!("/api/runs/{}/human-loop/reply", args.run), &body)
        .await?;
    if args.json {
        output::json(&answer)?;
    } else {
        let (verb, which) = match (&decision, &args.request) {
            (HumanLoopDecision::Approve, Some(id)) => ("approved", format!("request {id}")),
            (HumanLoopDecision::Deny, Some(id)) => ("denied", format!("request {id}")),
            (HumanLoopDecision::Approve, None) => ("approved", "the oldest pending request".into()),
            (HumanLoopDecision::Deny, None) => ("denied", "the oldest pending request".into()),
        };
        println!("{verb} {which} of run {}", answer.run_id);
    }
    Ok(Exit::Success)
}

pub async fn stop(client: &Client, args: &StopArgs) -> anyhow::Result<Exit> {
    let body = match &args.reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    };
    let answer: StopRunResponse = client
        .post(&format!("/api/runs/{}/stop", args.run), &body)
        .await?;
    if args.json {
        output::json(&answer)?;
    } else {
        println!("run {}: {}", answer.run_id, answer.status);
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(
            parse_option("timeoutMs=500").unwrap(),
            ("timeoutMs".into(), json!(500))
        );
        assert_eq!(
            parse_option("mode=fast").unwrap(),
            ("mode".into(), json!("fast"))
        );
        assert_eq!(
            parse_option("script=[{\"sleepMs\":1}]").unwrap().1,
            json!([{"sleepMs": 1}])
        );
        assert!(parse_option("novalue").is_err());
        assert!(parse_option("=1").is_err());
    }
}
