//! `switchyard-bench`: the benchmark of docs/performance.md (what `scripts/bench.sh`
//! runs). Prints the table and writes the JSON.

use clap::Parser;
use std::path::PathBuf;
use switchyard_bench::{BenchOptions, DEFAULT_JSON_PATH, GROUPS};

/// Measures the platform's figures next to the raw baselines that bound them, against a
/// private nats-server and a fresh Postgres database (SWITCHYARD_NATS_SERVER_BIN and
/// SWITCHYARD_TEST_DATABASE_URL, as `scripts/dev-deps.sh` prints them).
#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", version)]
struct Args {
    /// A tiny load of each figure (seconds): checks the harness, judges no goal.
    #[arg(long)]
    quick: bool,
    /// Where the JSON report goes.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_JSON_PATH)]
    json: PathBuf,
    /// Measure only these groups or figures (comma-separated).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', help = only_help())]
    only: Option<Vec<String>>,
    /// The child process of the SSE client swarm (started by the benchmark itself).
    #[arg(long, hide = true)]
    sse_client_worker: bool,
    /// The child process of the reference SSE server (started by the benchmark itself).
    #[arg(long, hide = true)]
    sse_reference_worker: bool,
}

fn only_help() -> String {
    format!(
        "Measure only these groups ({}) or figure names from the JSON, comma-separated",
        GROUPS.join(", ")
    )
}

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.sse_client_worker {
        return switchyard_bench::sse_client_worker().await;
    }
    if args.sse_reference_worker {
        return switchyard_bench::sse_reference_worker().await;
    }
    let options = BenchOptions {
        quick: args.quick,
        json_path: args.json,
        only: args.only.map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        }),
        client_exe: std::env::current_exe().ok(),
    };
    let report = switchyard_bench::run(&options).await?;
    println!(
        "switchyard-bench ({} mode, {:.0} s, {} CPUs, load average at start {})\n",
        report.mode,
        report.duration_secs,
        report.machine.cpus,
        report
            .machine
            .load_average_at_start
            .as_deref()
            .unwrap_or("?")
    );
    println!("{}", report.table());
    for note in &report.notes {
        println!("note: {note}");
    }
    println!("JSON: {}", options.json_path.display());
    Ok(())
}
