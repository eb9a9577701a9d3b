//! `switchyard stress`: starts N runs, C at a time, reads each run's stream, and turns
//! the outcomes into a report whose classes say what to look at, with the raw stream and
//! the run's record of every failed sample.
//!
//! Design choices a reader of the report needs (also in `--help` and the README):
//! * One connection per stream, never resumed: a stream that breaks is what a stress
//!   run is for finding, so it is the class `stream_failed` (transport `reset`) even
//!   when the run itself went on to succeed.
//! * A client-side timeout (`--timeout-ms`, counted from sending the start call, or a
//!   stream silent past the client's read timeout) is the class `timeout` with the
//!   transport outcome `client_timeout`, and the run is stopped.
//! * A start call answered with an HTTP error is `start_refused`; one with no answer at
//!   all is `gateway_unreachable`.

mod report;
mod sample;

pub use report::{Class, FAILURE_REASONS, Percentiles, Report};
pub use sample::{Sample, Transport};

use super::client::Client;
use super::exit::Exit;
use super::output::Table;
use super::runs::parse_option;
use super::settings::ClientArgs;
use super::style::{Styles, color_for};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sample::{Outcome, Plan, raw_file};
use serde_json::{Map, Value};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::api::StartRunRequest;
use switchyard_contracts::{AppId, ProfileName};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often a plain progress line is printed when standard error is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const DEFAULT_PROMPT: &str = "Reply with the single word OK.";

/// Start many runs and report how they ended, class by class
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each sample starts a run, reads its stream on one connection (never resumed) and
records the start call's HTTP status, the stream's transport outcome (completed, reset,
client_timeout, connect_failed, http_error, not_opened), the time to the first event
and to the terminal event (ms from sending the start call), and the run's terminal
status and failure reason. Each sample gets exactly one class: succeeded, the platform's
failure reason (auth_missing, auth_invalid, rate_limited, timeout, provider_no_output,
provider_error, provider_unreachable, provider_crashed, binary_missing,
unsupported_provider, executor_lost, stopped, budget_exceeded, unknown_failure), or
start_refused (the start call answered an HTTP error), gateway_unreachable (it got no
answer), stream_failed (the run started but its stream failed or broke before the
terminal event). A client-side timeout is `timeout` with the transport client_timeout;
that run is stopped.

Written to DIR: report.json (counts per class and transport outcome, p50/p90/p99/max
latencies, one row per sample), report.md (tables and the verdict line), and for each
failed sample samples/<n>/sse.raw.txt (the stream's bytes as received; one `:` comment
line when none arrived) and samples/<n>/run.json (GET /api/runs/{id}, or the start
call's answer when no run started). DIR must not hold a report already.

--options-json takes a JSON object or an array of objects; with an array, sample n uses
element (n-1) mod its length, so one batch can mix scripts. --option goes on top of each.

Ctrl-C once: no new samples start, the running ones finish, the report covers the
samples that ran. Twice: stop waiting for them (their runs go on).
Exit code: 0 every sample succeeded, 20 at least one failed, 21 interrupted by Ctrl-C,
1 error (bad arguments for the API, DIR not writable).")]
pub struct StressArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The app whose runtime defaults the runs take
    #[arg(long, value_name = "APP")]
    pub app: AppId,
    /// Provider (scripted, codex-app-server, claude-code, opencode); default: the app's
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// Model; default: the app's or the provider's
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// One of the app's execution profiles
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<ProfileName>,
    /// How many runs to start
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: u32,
    /// How many runs at a time
    #[arg(long, value_name = "C", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// The client's limit on one sample, from sending the start call to the terminal
    /// event; past it the sample is `timeout` (transport client_timeout) and its run is
    /// stopped
    #[arg(long, value_name = "MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Every run's prompt
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_PROMPT)]
    pub prompt: String,
    /// A provider option KEY=VALUE (VALUE is read as JSON when it is JSON, else as a
    /// string); repeat for more. Goes on top of each --options-json set
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, Value)>,
    /// Provider options: a JSON object, or an array of objects cycled per sample; or
    /// @FILE to read it from a file
    #[arg(long, value_name = "JSON|@FILE")]
    pub options_json: Option<String>,
    /// Where the report and the failed samples' evidence go (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The provider-option sets the samples cycle through.
fn option_sets(args: &StressArgs) -> anyhow::Result<Vec<Option<Map<String, Value>>>> {
    let mut sets: Vec<Option<Map<String, Value>>> = match &args.options_json {
        None => vec![None],
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --options-json file {path}"))?,
                None => text.clone(),
            };
            match serde_json::from_str::<Value>(&text).context("--options-json is not JSON")? {
                Value::Object(map) => vec![Some(map)],
                Value::Array(items) if !items.is_empty() => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::Object(map) => Ok(Some(map)),
                        _ => anyhow::bail!("--options-json[{i}] must be a JSON object"),
                    })
                    .collect::<anyhow::Result<_>>()?,
                Value::Array(_) => anyhow::bail!("--options-json is an empty array"),
                _ => anyhow::bail!("--options-json must be a JSON object or an array of objects"),
            }
        }
    };
    if !args.options.is_empty() {
        for set in &mut sets {
            let set = set.get_or_insert_with(Map::new);
            for (key, value) in &args.options {
                set.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(sets)
}

/// Creates DIR and `DIR/samples`; refuses a DIR that holds a report already, whose
/// evidence would mix with this run's.
fn prepare_out(dir: &Path) -> anyhow::Result<()> {
    for name in ["report.json", "report.md", "samples"] {
        if dir.join(name).exists() {
            anyhow::bail!(
                "{} already holds a stress report ({name}); choose another --out or remove it",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir.join("samples"))
        .with_context(|| format!("cannot create --out directory {}", dir.display()))
}

/// Writes a failed sample's evidence; its row.
fn keep(out: &Path, outcome: Outcome) -> anyhow::Result<Sample> {
    let Outcome {
        mut sample,
        raw,
        run_json,
    } = outcome;
    if sample.class == Class::Succeeded {
        return Ok(sample);
    }
    let relative = format!("samples/{}", sample.n);
    let dir = out.join(&relative);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("sse.raw.txt");
    std::fs::write(&path, raw_file(&sample, &raw))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let path = dir.join("run.json");
    let mut text = serde_json::to_string_pretty(&run_json.unwrap_or(Value::Null))?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    sample.evidence = Some(relative);
    Ok(sample)
}

pub async fn stress(client: &Client, args: StressArgs) -> anyhow::Result<Exit> {
    let option_sets = option_sets(&args)?;
    prepare_out(&args.out)?;
    let runs = args.runs as usize;
    let concurrency = args.concurrency as usize;
    let settings = report::Settings {
        gateway: without_userinfo(client.base()),
        app: args.app.to_string(),
        provider: args.provider.clone(),
        model: args.model.clone(),
        profile: args.profile.as_ref().map(ToString::to_string),
        runs,
        concurrency,
        timeout_ms: args.timeout_ms,
        option_sets: option_sets.len(),
    };
    let plan = Arc::new(Plan {
        client: client.clone(),
        request: StartRunRequest {
            app_id: Some(args.app.clone()),
            execution_profile: args.profile.clone(),
            provider: args.provider.clone(),
            model: args.model.clone(),
            prompt: args.prompt.clone(),
            ..StartRunRequest::default()
        },
        option_sets,
        timeout: Duration::from_millis(args.timeout_ms),
    });

    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let mut progress = Progress::new(runs);
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let mut ticker = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut tasks = JoinSet::new();
    let mut next = 1;
    let mut interrupted = false;
    let mut samples = Vec::with_capacity(runs);
    loop {
        while !interrupted && tasks.len() < concurrency && next <= runs {
            let plan = plan.clone();
            let n = next;
            tasks.spawn(async move { plan.sample(n).await });
            next += 1;
        }
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let outcome = joined.context("a sample's task failed")?;
                    let sample = keep(&args.out, outcome)?;
                    progress.finished(&sample, tasks.len());
                    samples.push(sample);
                }
                None => break,
            },
            _ = sigint.recv() => {
                if interrupted {
                    progress.note(&format!(
                        "Ctrl-C again: not waiting for the {} running samples (their runs go on)",
                        tasks.len()
                    ));
                    break;
                }
                interrupted = true;
                progress.note("Ctrl-C: no new samples start; waiting for the running ones (Ctrl-C again to stop waiting)");
            }
            _ = ticker.tick() => progress.tick(tasks.len()),
        }
    }
    // Dropping the set aborts samples still running after a second Ctrl-C.
    drop(tasks);
    progress.finish();
    // A Ctrl-C after the last sample had started interrupted nothing.
    let interrupted = samples.len() < runs;

    let report = Report::new(
        settings,
        started_at.to_rfc3339(),
        u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        interrupted,
        samples,
    );
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    let path = args.out.join("report.json");
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    let path = args.out.join("report.md");
    std::fs::write(&path, report.markdown())
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_summary(&report, &args.out)?;
    Ok(if report.passed() {
        Exit::Success
    } else if report.interrupted {
        Exit::StressInterrupted
    } else {
        Exit::StressFailed
    })
}

/// The gateway URL for the report, without a user name or password it may carry.
fn without_userinfo(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn print_summary(report: &Report, out: &Path) -> anyhow::Result<()> {
    let mut table = Table::new(&["CLASS", "SAMPLES"]);
    for class in Class::all() {
        let count = report.classes.get(class.as_str()).copied().unwrap_or(0);
        if count > 0 {
            table.row(vec![class.as_str().to_owned(), count.to_string()]);
        }
    }
    if !table.is_empty() {
        table.print()?;
    }
    let s = Styles::new(color_for(&std::io::stdout()));
    let style = if report.passed() { s.good } else { s.bad };
    println!("{style}{}{style:#}", report.verdict);
    println!(
        "report: {} and report.json{}",
        out.join("report.md").display(),
        if report.failed > 0 {
            format!(
                "; each failed sample's stream and record: {}/<n>/",
                out.join("samples").display()
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Progress on standard error: a bar on a terminal, else a plain line every few seconds;
/// each failed sample as one line either way.
struct Progress {
    bar: Option<ProgressBar>,
    runs: usize,
    done: usize,
    failed: usize,
    running: usize,
}

impl Progress {
    fn new(runs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(runs as u64);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            runs,
            done: 0,
            failed: 0,
            running: 0,
        }
    }

    fn counts(&self) -> String {
        format!(
            "{} succeeded, {} failed, {} running",
            self.done - self.failed,
            self.failed,
            self.running
        )
    }

    fn finished(&mut self, sample: &Sample, running: usize) {
        self.done += 1;
        self.running = running;
        if sample.class != Class::Succeeded {
            self.failed += 1;
            let run = sample
                .run_id
                .map(|id| format!(" run {id}"))
                .unwrap_or_default();
            self.note(&format!(
                "sample {}{run}: {} ({}) {}",
                sample.n,
                sample.class.as_str(),
                sample.transport.as_str(),
                sample.summary()
            ));
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done as u64);
                bar.set_message(self.counts());
            }
            None if self.done == self.runs => self.tick(running),
            None => {}
        }
    }

    fn tick(&mut self, running: usize) {
        self.running = running;
        match &self.bar {
            Some(bar) => bar.set_message(self.counts()),
            None => eprintln!(
                "stress: {}/{} done; {}",
                self.done,
                self.runs,
                self.counts()
            ),
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("stress: {text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_gateway_without_credentials() {
        assert_eq!(
            without_userinfo("http://user:secret@gw.example:8080"),
            "http://gw.example:8080/"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
    }
}
