//! Run hosts, the executor's side: a detached run runs in a process of its own (the
//! executor binary started as `run-host`, see [`crate::host`]) in its own process group,
//! so that the executor can crash or restart while its runs go on — an approval pending
//! when the executor is killed stays answerable, because the host, not the executor,
//! holds the agent CLI and answers the run's control subject.
//!
//! This module starts hosts and hands them their run, and knows the records they
//! leave; [`crate::supervisor::hosted`] watches the runs they run and adopts the hosts
//! a predecessor left.
//!
//! The hand-over keeps dispatch's ordering: the host subscribes to the run's control
//! subject and says `ready` before the executor appends `run.dispatched`, then gets the
//! position to go on from (or end of input: the dispatch was refused, nothing to run).
//! Each host leaves a record in `<workspace_root>/.run-hosts/`, so an executor
//! restarted under the same id adopts the hosts still running: their slots count
//! against its capacity and its drain waits for them.
//!
//! A host that died leaves its run's processes behind: the CLI itself dies with it (its
//! parent-death signal), but not what the CLI started. The executor that sees a host
//! die — or finds, at start-up, a record whose host is gone — kills them ([`reap`]):
//! everything in the run's cgroup named in the record, or without one every process
//! group noted beside it.

use crate::cli::process::process_alive;
use crate::provider::Provider;
use crate::settings::{DetachRuns, ExecutorSettings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::{ExecutorId, ProviderName, RunCommand, RunId};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The first argument that makes an executor binary a run host.
pub const RUN_HOST_COMMAND: &str = "run-host";
/// What a host prints on stdout once it answers the run's control subject.
pub(crate) const READY: &str = "ready";
/// How long a host may take to start, connect to NATS and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an adopted host (not our child: no exit notification) is looked at.
const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// Where the host records live, under the workspace root.
const RECORDS_DIR: &str = ".run-hosts";

/// The first line a host reads on stdin: the run to run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostSpec {
    pub(crate) executor_id: ExecutorId,
    pub(crate) command: RunCommand,
    pub(crate) timeout_ms: u64,
    /// The position the run was admitted at (the dispatch's `next_seq`).
    pub(crate) admitted_at: u64,
}

/// The second line: where the run's log stands after its `run.dispatched`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Go {
    pub(crate) position: EventPosition,
}

/// What a live host leaves in the records directory, for a restarted executor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostRecord {
    pub(crate) pid: u32,
    pub(crate) run_id: RunId,
    pub(crate) executor_id: ExecutorId,
    pub(crate) admitted_at: u64,
    /// The cgroup the host moved itself (and so the run's processes) into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cgroup: Option<PathBuf>,
}

/// The directory of the host records of an executor with these settings.
pub(crate) fn records_dir(settings: &ExecutorSettings) -> PathBuf {
    settings.workspace_root.join(RECORDS_DIR)
}

pub(crate) fn record_path(dir: &Path, run_id: RunId) -> PathBuf {
    dir.join(format!("{run_id}.json"))
}

/// Where a host notes the process group of each CLI it starts, one per line.
pub(crate) fn groups_path(dir: &Path, run_id: RunId) -> PathBuf {
    dir.join(format!("{run_id}.groups"))
}

/// How this executor starts run hosts, when it does.
#[derive(Debug, Clone)]
pub(crate) struct RunHosts {
    program: PathBuf,
    policy: DetachRuns,
}

impl RunHosts {
    pub(crate) fn from_settings(settings: &ExecutorSettings) -> Option<Self> {
        let program = settings.run_host_program.clone()?;
        (settings.detach_runs != DetachRuns::None).then_some(Self {
            program,
            policy: settings.detach_runs,
        })
    }

    pub(crate) fn detaches(&self, provider: &dyn Provider) -> bool {
        match self.policy {
            DetachRuns::All => true,
            DetachRuns::Cli => provider.name() != ProviderName::Scripted,
            DetachRuns::None => false,
        }
    }

    /// Starts a host for the run and waits until it answers the run's control subject.
    pub(crate) async fn start(&self, spec: &HostSpec) -> Result<StartedHost, String> {
        let run_id = spec.command.run_id;
        let mut child = Command::new(&self.program)
            .arg(RUN_HOST_COMMAND)
            // Only for whoever reads the process list; the run comes on stdin.
            .arg(run_id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A signal meant for the executor's group (a terminal's ^C) must not reach it.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        match handshake(&mut child, spec).await {
            Ok(stdin) => Ok(StartedHost { child, stdin }),
            Err(problem) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(problem)
            }
        }
    }
}

async fn handshake(child: &mut Child, spec: &HostSpec) -> Result<ChildStdin, String> {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the run host has no stdin or stdout".to_owned());
    };
    let mut line = serde_json::to_vec(spec).map_err(|e| {
        switchyard_platform::metrics::serialization_failed();
        e.to_string()
    })?;
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .map_err(|e| format!("cannot hand the run to its host: {e}"))?;
    let mut ready = String::new();
    let mut stdout = BufReader::new(stdout);
    let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut ready));
    match read.await {
        Ok(Ok(_)) if ready.trim_end() == READY => Ok(stdin),
        Ok(Ok(_)) => Err("the run host exited before it was ready (see its log)".to_owned()),
        Ok(Err(e)) => Err(format!("cannot read from the run host: {e}")),
        Err(_) => Err(format!(
            "the run host was not ready within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// A host that answers the run's control subject and waits to be told to go.
pub(crate) struct StartedHost {
    child: Child,
    stdin: ChildStdin,
}

impl StartedHost {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The run is dispatched: the host runs it from `position`. A host that cannot be
    /// told is killed, and returned all the same: its watcher concludes the run.
    pub(crate) async fn go(mut self, position: EventPosition) -> HostProcess {
        let sent = match serde_json::to_vec(&Go { position }) {
            Ok(mut line) => {
                line.push(b'\n');
                self.stdin.write_all(&line).await.map_err(|e| e.to_string())
            }
            Err(e) => {
                switchyard_platform::metrics::serialization_failed();
                Err(e.to_string())
            }
        };
        drop(self.stdin);
        if let Err(problem) = sent {
            tracing::error!(%problem, "cannot start the run in its host");
            let _ = self.child.start_kill();
        }
        HostProcess::Child(self.child)
    }

    /// The dispatch was refused: the host sees the end of its input and exits.
    pub(crate) async fn abandon(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(READY_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// A host running a run: our child, or one adopted from an earlier process.
pub(crate) enum HostProcess {
    Child(Child),
    Adopted(u32),
}

impl HostProcess {
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            HostProcess::Child(child) => child.id(),
            HostProcess::Adopted(pid) => Some(*pid),
        }
    }

    pub(crate) async fn exited(&mut self) {
        match self {
            HostProcess::Child(child) => {
                let _ = child.wait().await;
            }
            HostProcess::Adopted(pid) => {
                while process_alive(*pid) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
            }
        }
    }
}

/// Kills what a dead host of `run_id` left running — its run's cgroup, or when it had
/// none the process groups of its CLIs — and removes its record and its groups file.
pub(crate) async fn reap(settings: &ExecutorSettings, run_id: RunId) {
    let dir = records_dir(settings);
    let record_file = record_path(&dir, run_id);
    let groups_file = groups_path(&dir, run_id);
    let cgroup = match tokio::fs::read(&record_file).await {
        Ok(bytes) => serde_json::from_slice::<HostRecord>(&bytes)
            .ok()
            .and_then(|record| record.cgroup),
        Err(_) => None,
    };
    let groups: Vec<i32> = tokio::fs::read_to_string(&groups_file)
        .await
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .filter(|group| *group > 1)
        .collect();
    let reaped = tokio::task::spawn_blocking(move || match cgroup {
        // It holds every process of the run, the groups' included.
        Some(cgroup) => {
            if let Err(problem) = crate::cli::cgroup::kill_and_remove(&cgroup) {
                tracing::warn!(%run_id, %problem, "cannot kill the cgroup its dead host left");
            }
        }
        // Without a cgroup only the groups are known. A group id is only ever reused
        // once the whole group is gone, and the executor reaps as soon as it notices.
        None => {
            for group in &groups {
                let group = nix::unistd::Pid::from_raw(*group);
                match nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
                    Ok(()) => {
                        tracing::warn!(%run_id, %group, "killed a process group its dead host left")
                    }
                    Err(nix::errno::Errno::ESRCH) => {}
                    Err(errno) => {
                        tracing::warn!(%run_id, %group, %errno, "cannot kill a process group its dead host left")
                    }
                }
            }
        }
    });
    if let Err(error) = reaped.await {
        tracing::warn!(%run_id, %error, "reaping a dead host's processes failed");
    }
    let _ = tokio::fs::remove_file(record_file).await;
    let _ = tokio::fs::remove_file(groups_file).await;
}

/// Whether `pid` is alive and is the host of `run_id` (pids are reused).
pub(crate) fn is_run_host(pid: u32, run_id: RunId) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let run = run_id.to_string();
    args.windows(2)
        .any(|pair| pair[0] == RUN_HOST_COMMAND.as_bytes() && pair[1] == run.as_bytes())
}
