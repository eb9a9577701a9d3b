//! A run host, the process side: one detached run, run by the same supervisor as an
//! in-process run, in a process that outlives the executor that started it (see
//! [`crate::hosting`] for the hand-over).
//!
//! The host reads its run on stdin, connects to NATS with the executor's configuration,
//! subscribes to the run's control subject and prints `ready`. The next line is the
//! position after `run.dispatched`; end of input instead means the executor refused
//! the dispatch (or died first), and the host exits without touching the run. While it
//! runs the run it leaves a record in `<workspace_root>/.run-hosts/` for a restarted
//! executor to adopt. SIGTERM or SIGINT stops the run as a shutdown; nothing else the
//! executor does — exiting, crashing — reaches it.
//!
//! The host keeps the run's processes together so that none outlives it: it moves
//! itself into a cgroup of the run's own before the CLI starts (named in its record),
//! notes the CLI's process group next to the record, and starts the CLI with a
//! parent-death signal. At the end of the run it kills whatever is left in the cgroup;
//! when it dies instead, the executor does (see [`crate::hosting`]).

use crate::cli;
use crate::config::Config;
use crate::control;
use crate::executor::Executor;
use crate::hosting::{self, Go, HostRecord, HostSpec, READY};
use crate::providers::ProviderRegistry;
use crate::runs::{Admission, Runs, Shutdown};
use crate::sink::EventSink;
use crate::supervisor::{self, Supervised};
use anyhow::Context as _;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::{RunId, subjects};
use switchyard_platform::events::EventLog;
use switchyard_platform::nats;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// Runs the run handed over on stdin to its end.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    cli::isolation::harden_this_process();
    config.validate()?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await
        .context("read the run from stdin")?
        .context("no run on stdin: a run host is started by an executor")?;
    let spec: HostSpec = serde_json::from_str(&line).context("decode the run on stdin")?;
    let run_id = spec.command.run_id;
    let span = tracing::info_span!("run_host", run_id = %run_id, executor_id = %spec.executor_id);
    async move {
        let executor = connect(config, &spec).await?;
        host(executor, spec, &mut stdin).await
    }
    .instrument(span)
    .await
}

/// An executor of one slot, without dispatch, presence or HTTP: just what the
/// supervisor and the control loop use.
async fn connect(config: Config, spec: &HostSpec) -> anyhow::Result<Arc<Executor>> {
    let mut settings = config.executor;
    settings.executor_id = Some(spec.executor_id.clone());
    let mut cli = {
        let setup = settings.cli_setup()?;
        tokio::task::spawn_blocking(move || cli::CliEnv::unprobed(setup))
            .await
            .context("prepare the CLI environment")??
    };
    cli.process_groups = Some(hosting::groups_path(
        &hosting::records_dir(&settings),
        spec.command.run_id,
    ));
    let providers =
        ProviderRegistry::from_names(std::slice::from_ref(&spec.command.provider), &Arc::new(cli))?;
    let run_id = spec.command.run_id;
    let client = nats::connect(&config.nats, &format!("switchyard-run-host-{run_id}")).await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(config.nats.request_timeout());
    let log = EventLog::open(js).await?;
    Ok(Arc::new(Executor {
        id: spec.executor_id.clone(),
        runs: Runs::new(1),
        settings,
        client,
        log,
        providers,
        tasks: TaskTracker::new(),
        http_stop: CancellationToken::new(),
        started_at: Utc::now(),
        hosts: None,
    }))
}

async fn host(
    executor: Arc<Executor>,
    spec: HostSpec,
    stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<()> {
    let run_id = spec.command.run_id;
    let provider = executor
        .providers
        .get(&spec.command.provider)
        .with_context(|| format!("unknown provider {:?}", spec.command.provider))?;
    let Admission::Admitted(ticket) = executor.runs.admit(run_id, spec.admitted_at) else {
        anyhow::bail!("the run host's only slot is taken");
    };
    // Before `ready`: once the executor appends `run.dispatched`, we are the owner.
    let control = executor
        .client
        .subscribe(subjects::run_control(&run_id))
        .await
        .context("subscribe to the run's control subject")?;
    executor
        .client
        .flush()
        .await
        .context("flush the control subscription")?;
    executor.tasks.spawn(control::serve(
        executor.client.clone(),
        ticket.run().clone(),
        control,
    ));
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{READY}\n").as_bytes()).await?;
    stdout.flush().await?;

    let go = match stdin.next_line().await {
        Ok(Some(line)) => serde_json::from_str::<Go>(&line).ok(),
        _ => None,
    };
    let Some(Go { position }) = go else {
        tracing::info!(%run_id, "the executor did not dispatch the run here; nothing to run");
        ticket.reject(DispatchOutcome::Conflict);
        executor.tasks.close();
        executor.tasks.wait().await;
        return Ok(());
    };
    // Before the CLI starts, so that everything it starts is in the run's cgroup.
    let cgroup = match tokio::task::spawn_blocking(move || cli::cgroup::RunCgroup::enter(run_id))
        .await
    {
        Ok(Ok(cgroup)) => Some(cgroup),
        Ok(Err(problem)) => {
            tracing::info!(%run_id, %problem, "no cgroup for the run; its processes are reaped by process group");
            None
        }
        Err(error) => {
            tracing::warn!(%run_id, %error, "could not set up the run's cgroup");
            None
        }
    };
    let record = write_record(&executor, &spec, cgroup.as_ref()).await;
    let run = ticket.run().clone();
    ticket.accept();
    executor.tasks.spawn(supervisor::supervise(
        executor.clone(),
        Supervised {
            run,
            provider,
            command: spec.command,
            timeout_ms: spec.timeout_ms,
            sink: EventSink::new(executor.log.clone(), run_id, position),
            // The hosting executor's log carries the trace; the host logs the run id.
            trace_id: None,
        },
    ));
    executor.tasks.close();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        () = executor.tasks.wait() => {}
        _ = terminate.recv() => stop(&executor, run_id).await,
        _ = interrupt.recv() => stop(&executor, run_id).await,
    }
    // Whatever escaped the CLI's process group (the supervisor has killed that) dies
    // with the cgroup; only then may the record, which names it, go.
    if let Some(cgroup) = cgroup {
        let _ = tokio::task::spawn_blocking(move || cgroup.leave()).await;
    }
    if let Some(record) = record {
        let _ = tokio::fs::remove_file(record).await;
    }
    let groups = hosting::groups_path(&hosting::records_dir(&executor.settings), run_id);
    let _ = tokio::fs::remove_file(groups).await;
    if let Err(error) = executor.client.flush().await {
        tracing::warn!(%run_id, %error, "could not flush NATS at the end of the run");
    }
    tracing::info!(%run_id, "run host done");
    Ok(())
}

async fn stop(executor: &Executor, run_id: RunId) {
    tracing::warn!(%run_id, "run host signalled: stopping the run");
    executor.runs.stop_all(Shutdown::HostSignal);
    executor.tasks.wait().await;
}

/// Leaves the record a restarted executor adopts this host by; `None` if it could not
/// be written (the run goes on; only an adoption would miss it).
async fn write_record(
    executor: &Executor,
    spec: &HostSpec,
    cgroup: Option<&cli::cgroup::RunCgroup>,
) -> Option<PathBuf> {
    let run_id = spec.command.run_id;
    let record = HostRecord {
        pid: std::process::id(),
        run_id,
        executor_id: spec.executor_id.clone(),
        admitted_at: spec.admitted_at,
        cgroup: cgroup.map(|c| c.path().to_path_buf()),
    };
    let dir = hosting::records_dir(&executor.settings);
    let path = hosting::record_path(&dir, run_id);
    let written = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&path, serde_json::to_vec(&record)?).await
    };
    match written.await {
        Ok(()) => Some(path),
        Err(error) => {
            tracing::warn!(%run_id, path = %path.display(), %error, "cannot write the run host record; a restarted executor will not adopt this run");
            None
        }
    }
}
