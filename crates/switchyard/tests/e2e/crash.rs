//! An executor crash: an executor process is killed with SIGKILL
//! while its run waits for a human. The run lives in a run host that outlives the
//! executor, so the approval stays answerable through the gateway; the executor,
//! restarted under its id, adopts the host, and the reconciler leaves the run alone
//! because the host answers for it.
//!
//! A run host killed with SIGKILL takes its agent CLI's whole process tree along: the
//! CLI by its parent-death signal, the rest (the CLI's shell and tool commands, also
//! those that left its process group) by the executor, at once or after its restart.

use crate::harness::{DEADLINE, Harness, events};
use crate::provider_support::{self, completed, workspace_of};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::subjects;
use switchyard_control_plane::test_support::{ReconcileSettings, Reconciler};
use switchyard_test_support::fake_model::{TOOL_FILE, run_marker};
use switchyard_test_support::service_command;
use tokio::process::Child;

const EXECUTOR_ID: &str = "crash-exec";

/// `switchyard serve executor` as a process of its own, so it can be killed -9.
pub(crate) struct ExecutorProcess {
    child: Child,
}

impl ExecutorProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Starts `switchyard serve executor`, as `user` (uid, gid) when given.
    fn start(env: &HashMap<String, String>, log: &Path, user: Option<(u32, u32)>) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut command = service_command(env!("CARGO_BIN_EXE_switchyard"), env);
        command
            .args(["serve", "executor"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        Self {
            child: command.spawn().unwrap(),
        }
    }

    pub(crate) async fn kill_9(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Polls the executor's presence record until `wanted` holds for it.
async fn presence_where(
    kv: &async_nats::jetstream::kv::Store,
    wanted: impl Fn(&ExecutorPresence) -> bool,
) -> ExecutorPresence {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        if let Ok(Some(bytes)) = kv.get(EXECUTOR_ID).await
            && let Ok(record) = serde_json::from_slice::<ExecutorPresence>(&bytes)
        {
            if wanted(&record) {
                return record;
            }
            last = Some(record);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the presence record never matched; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `pid` runs (and is not a zombie: the test process is not its parent).
fn alive(pid: u32) -> bool {
    switchyard_executor::test_support::process_alive(pid)
}

/// The pid in the run host's record, once the host has written it.
pub(crate) async fn host_pid(workspace_root: &Path, run_id: &str) -> u32 {
    let record = workspace_root
        .join(".run-hosts")
        .join(format!("{run_id}.json"));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(bytes) = std::fs::read(&record)
            && let Ok(record) = serde_json::from_slice::<Value>(&bytes)
            && let Some(pid) = record["pid"].as_u64()
        {
            return u32::try_from(pid).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run host record at {}",
            record.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One pass of a reconciler that judges at once (no settling time for the bucket).
async fn reconcile_once(harness: &Harness) -> switchyard_control_plane::test_support::PassReport {
    let client = async_nats::connect(harness.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let pool = sqlx::PgPool::connect(&harness.db.url).await.unwrap();
    let settings = ReconcileSettings {
        interval: Duration::from_secs(3600),
        presence_ttl: Duration::from_secs(15),
        presence_settle: Duration::ZERO,
        stuck_after: Duration::from_secs(3600),
    };
    Reconciler::open(client, js, pool, settings)
        .await
        .unwrap()
        .pass()
        .await
}

/// The platform without an executor, an executor process under [`EXECUTOR_ID`], and
/// what the crash needs to look at.
pub(crate) struct Crash {
    pub(crate) harness: Harness,
    env: HashMap<String, String>,
    dir: tempfile::TempDir,
    kv: async_nats::jetstream::kv::Store,
    pub(crate) executor: Option<ExecutorProcess>,
    /// The user the executor process runs as; `None`: the test's own.
    user: Option<(u32, u32)>,
}

impl Crash {
    pub(crate) async fn start(extra: &[(&str, String)]) -> Self {
        Self::start_as(extra, None).await
    }

    /// The same with the executor running as `user` (uid, gid), who owns its workspace
    /// root.
    pub(crate) async fn start_as(extra: &[(&str, String)], user: Option<(u32, u32)>) -> Self {
        let harness = Harness::start(0, 1).await;
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = user {
            let runs = dir.path().join("runs");
            std::fs::create_dir(&runs).unwrap();
            std::os::unix::fs::chown(&runs, Some(uid), Some(gid)).unwrap();
        }
        let mut settings = vec![
            ("SWITCHYARD_EXECUTOR__EXECUTOR_ID", EXECUTOR_ID.to_owned()),
            ("SWITCHYARD_EXECUTOR__CAPACITY", "4".to_owned()),
            (
                "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
                dir.path().join("runs").display().to_string(),
            ),
        ];
        settings.extend(extra.iter().cloned());
        let env = harness.service_env(&settings);
        let kv = harness
            .jetstream()
            .await
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap();
        let mut crash = Self {
            harness,
            env,
            dir,
            kv,
            executor: None,
            user,
        };
        crash.executor = Some(ExecutorProcess::start(&crash.env, &crash.log(), user));
        crash
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.dir.path().join("executor.log")
    }

    /// Starts the executor again (after a kill) under the same id and configuration.
    pub(crate) fn restart_executor(&mut self) {
        assert!(self.executor.is_none(), "the executor still runs");
        self.executor = Some(ExecutorProcess::start(&self.env, &self.log(), self.user));
    }

    pub(crate) fn workspace_root(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    /// Kills the executor with SIGKILL while `runs` wait for a human, checks that
    /// their run hosts live on, and starts the executor again under the same id;
    /// returns the restarted executor's presence once it has adopted the hosts.
    async fn kill_and_restart(&mut self, runs: &[String]) -> ExecutorPresence {
        let before = presence_where(&self.kv, |p| p.active as usize == runs.len()).await;
        let mut hosts = Vec::new();
        for run_id in runs {
            hosts.push(host_pid(&self.workspace_root(), run_id).await);
        }
        self.executor.take().unwrap().kill_9().await;
        assert!(
            hosts.iter().all(|pid| alive(*pid)),
            "a run host died with the executor"
        );
        self.executor = Some(ExecutorProcess::start(&self.env, &self.log(), self.user));
        let adopted = presence_where(&self.kv, |p| p.started_at > before.started_at).await;
        assert_eq!(
            adopted.active as usize,
            runs.len(),
            "the restarted executor adopted the run hosts; log:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        // The runs' owner is an earlier process under the id: the reconciler probes
        // each run's control subject, and its host answers for it.
        let report = reconcile_once(&self.harness).await;
        assert!(report.concluded.is_empty(), "{report:?}");
        assert!(report.redispatched.is_empty(), "{report:?}");
        for run_id in runs {
            let (_, run) = self.harness.get(&format!("/api/runs/{run_id}")).await;
            assert_eq!(run["status"], "waiting_for_human", "{run}");
        }
        adopted
    }

    /// The adopted slot is freed once the host has ended its run.
    async fn slot_freed(&self) {
        presence_where(&self.kv, |p| p.active == 0).await;
    }

    pub(crate) async fn stop(mut self) {
        if let Some(executor) = self.executor.take() {
            executor.kill_9().await;
        }
        self.harness.shutdown().await;
    }
}

fn count(events: &[Value], event_type: &str) -> usize {
    events.iter().filter(|e| e["type"] == event_type).count()
}

#[tokio::test]
async fn a_pending_approval_survives_an_executor_crash() {
    let mut crash = Crash::start(&[("SWITCHYARD_EXECUTOR__DETACH_RUNS", "all".to_owned())]).await;
    let run_id = crash
        .harness
        .start_scripted(json!([
            {"humanLoop": {"prompt": "Deploy to prod?", "kind": "command",
                           "details": {"command": "deploy --prod"}}},
            {"message": {"text": "deployed"}}
        ]))
        .await;
    let request_id = crash.harness.pending_request(&run_id).await;
    crash.kill_and_restart(std::slice::from_ref(&run_id)).await;

    let (status, body) = crash
        .harness
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = crash
        .harness
        .wait_run(&run_id, |r| {
            r["status"] != "waiting_for_human" && r["status"] != "running"
        })
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["executorId"], EXECUTOR_ID, "{run}");
    let events = events(&crash.harness.read_stream(&run_id, None).await);
    assert_eq!(count(&events, "run.dispatched"), 1, "{events:?}");
    assert_eq!(count(&events, "diagnostic"), 0, "{events:?}");
    let resolved = events
        .iter()
        .find(|e| e["type"] == "human_loop.resolved")
        .expect("the request was resolved");
    assert_eq!(resolved["data"]["decision"], "approve", "{resolved}");
    assert_eq!(resolved["data"]["requestId"], request_id.as_str());
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message.completed" && e["data"]["text"] == "deployed"),
        "{events:?}"
    );
    crash.slot_freed().await;
    crash.stop().await;
}

/// The same with the real claude CLI (runs of the agent CLIs are detached by default):
/// the CLI's pipes end in the host, so it never notices the executor died.
#[tokio::test]
async fn a_real_cli_run_survives_an_executor_crash_while_asking_for_approval() {
    let (_fake, _config_dir, toml) = provider_support::cli_executor_config().await;
    let mut crash = Crash::start(&[("SWITCHYARD_CONFIG", toml.display().to_string())]).await;
    let app_id = provider_support::register(&crash.harness, "claude-code").await;
    let run_id = provider_support::start(
        &crash.harness,
        json!({"appId": app_id, "prompt": "Create hello.txt please"}),
    )
    .await;
    crash.harness.pending_request(&run_id).await;
    crash.kill_and_restart(std::slice::from_ref(&run_id)).await;

    let events = provider_support::follow(&crash.harness, &run_id, "approve").await;
    assert_eq!(completed(&events)["status"], "succeeded", "{events:?}");
    assert_eq!(count(&events, "run.dispatched"), 1, "{events:?}");
    assert!(
        workspace_of(&events).join(TOOL_FILE).is_file(),
        "the approved tool ran"
    );
    crash.slot_freed().await;
    crash.stop().await;
}

/// A run host killed with its run in flight: the executor that watches it concludes the
/// run `executor_lost` instead of leaving it to hang.
#[tokio::test]
async fn a_run_whose_host_dies_is_concluded_by_its_executor() {
    let crash = Crash::start(&[("SWITCHYARD_EXECUTOR__DETACH_RUNS", "all".to_owned())]).await;
    let run_id = crash
        .harness
        .start_scripted(json!([{"humanLoop": {"prompt": "Anyone?"}}]))
        .await;
    crash.harness.pending_request(&run_id).await;
    let host = host_pid(&crash.workspace_root(), &run_id).await;
    nix_kill(host);
    let run = crash
        .harness
        .wait_run(&run_id, |r| r["status"] == "failed")
        .await;
    assert_eq!(run["failureReason"], "executor_lost", "{run}");
    let detail = run["failureDetail"].as_str().unwrap_or_default();
    assert!(detail.contains("host process"), "{detail}");
    crash.slot_freed().await;
    let events = events(&crash.harness.read_stream(&run_id, None).await);
    assert_eq!(
        events.last().unwrap()["type"],
        "run.completed",
        "{events:?}"
    );
    assert_eq!(count(&events, "run.completed"), 1, "{events:?}");
    crash.stop().await;
}

fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Many runs at once: every host outlives the executor, all are adopted, and every
/// approval answered after the crash completes its run.
#[tokio::test]
async fn every_waiting_run_survives_an_executor_crash() {
    const RUNS: usize = 12;
    let mut crash = Crash::start(&[
        ("SWITCHYARD_EXECUTOR__DETACH_RUNS", "all".to_owned()),
        ("SWITCHYARD_EXECUTOR__CAPACITY", RUNS.to_string()),
    ])
    .await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let run_id = crash
            .harness
            .start_scripted(json!([
                {"humanLoop": {"prompt": format!("Deploy #{i}?")}},
                {"message": {"text": format!("deployed #{i}")}}
            ]))
            .await;
        runs.push(run_id);
    }
    let mut requests = Vec::new();
    for run_id in &runs {
        requests.push(crash.harness.pending_request(run_id).await);
    }
    crash.kill_and_restart(&runs).await;

    let harness = &crash.harness;
    let answers = runs
        .iter()
        .zip(&requests)
        .map(|(run_id, request_id)| async move {
            let path = format!("/api/runs/{run_id}/human-loop/reply");
            harness
                .post(
                    &path,
                    json!({"requestId": request_id, "decision": "approve"}),
                )
                .await
        });
    for (status, body) in futures::future::join_all(answers).await {
        assert_eq!(status, 200, "{body}");
    }
    for run_id in &runs {
        let run = crash
            .harness
            .wait_run(run_id, |r| {
                r["status"] != "waiting_for_human" && r["status"] != "running"
            })
            .await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    crash.slot_freed().await;
    crash.stop().await;
}

/// A process as it was seen: its pid and start time (clock ticks after boot), so that a
/// pid the kernel gave to someone else later is not mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) pid: u32,
    start: u64,
    pub(crate) cmdline: String,
}

/// `(ppid, start time, state)` from `/proc/<pid>/stat`.
fn stat_of(pid: u32) -> Option<(u32, u64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`, comm may hold spaces and parentheses; start time is
    // the 22nd field, the 20th after comm.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.get(1)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
        (*fields.first()?).to_owned(),
    ))
}

fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// `root` and every process below it, as of now.
pub(crate) fn process_tree(root: u32) -> Vec<Seen> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>()
            && let Some((ppid, start, _)) = stat_of(pid)
        {
            parents.push((pid, ppid, start));
        }
    }
    let mut tree: Vec<Seen> = parents
        .iter()
        .filter(|(pid, _, _)| *pid == root)
        .map(|(pid, _, start)| Seen {
            pid: *pid,
            start: *start,
            cmdline: cmdline_of(*pid),
        })
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].pid;
        for (pid, ppid, start) in &parents {
            if *ppid == parent && tree.iter().all(|s| s.pid != *pid) {
                tree.push(Seen {
                    pid: *pid,
                    start: *start,
                    cmdline: cmdline_of(*pid),
                });
            }
        }
        i += 1;
    }
    tree
}

/// Whether the process seen earlier still runs (not a zombie, not a reused pid).
pub(crate) fn still_running(seen: &Seen) -> bool {
    matches!(stat_of(seen.pid), Some((_, start, state)) if start == seen.start && state != "Z" && state != "X")
}

/// Polls until every process of `tree` is gone; fails naming the survivors.
pub(crate) async fn all_gone(tree: &[Seen], why: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left: Vec<&Seen> = tree.iter().filter(|s| still_running(s)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: these processes of the run survived: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether this test process runs as root (it can then give runs a cgroup, which holds
/// even the processes that left the CLI's process group).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Starts a real CLI run whose approved shell command keeps running (one sleep in the
/// foreground and, when the run can have a cgroup, one in a session of its own, out of
/// the CLI's process group), and returns the run and the tree under its host once both
/// sleeps run.
async fn run_with_a_process_tree(crash: &Crash, provider: &str) -> (String, u32, Vec<Seen>) {
    let app_id = provider_support::register(&crash.harness, provider).await;
    let escaped = running_as_root();
    let command = if escaped {
        "setsid sleep 1001 </dev/null >/dev/null 2>&1 & sleep 1002"
    } else {
        "sleep 1002"
    };
    let run_id = provider_support::start(
        &crash.harness,
        json!({"appId": app_id, "prompt": format!("Please {}", run_marker(command))}),
    )
    .await;
    let request_id = crash.harness.pending_request(&run_id).await;
    let (status, body) = crash
        .harness
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let host = host_pid(&crash.workspace_root(), &run_id).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let tree = process_tree(host);
        let running = |name: &str| tree.iter().any(|s| s.cmdline == name);
        if running("sleep 1002") && (!escaped || running("sleep 1001")) {
            return (run_id, host, tree);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approved command never ran; the host's tree: {tree:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_killed_host_takes_the_cli_tree_along(provider: &str) {
    let (_fake, _config_dir, toml) = provider_support::cli_executor_config().await;
    let crash = Crash::start(&[("SWITCHYARD_CONFIG", toml.display().to_string())]).await;
    let (run_id, host, tree) = run_with_a_process_tree(&crash, provider).await;
    nix_kill(host);
    all_gone(&tree, "the host was killed while its executor lived").await;
    let run = crash
        .harness
        .wait_run(&run_id, |r| r["status"] == "failed")
        .await;
    assert_eq!(run["failureReason"], "executor_lost", "{run}");
    crash.slot_freed().await;
    crash.stop().await;
}

/// `opencode serve` outlived its killed host by minutes before; now nothing of the run's
/// tree is left once the executor has seen the host die.
#[tokio::test]
async fn a_killed_run_host_takes_opencode_and_its_commands_along() {
    a_killed_host_takes_the_cli_tree_along("opencode").await;
}

#[tokio::test]
async fn a_killed_run_host_takes_claude_and_its_commands_along() {
    a_killed_host_takes_the_cli_tree_along("claude-code").await;
}

/// The executor is killed first, then the host: the CLI dies at once with its host (its
/// parent-death signal); what it started waits for the executor, whose successor under
/// the same id reaps it from the host's record and concludes the run.
#[tokio::test]
async fn a_run_host_killed_with_its_executor_is_reaped_by_the_next_executor() {
    let (_fake, _config_dir, toml) = provider_support::cli_executor_config().await;
    let mut crash = Crash::start(&[("SWITCHYARD_CONFIG", toml.display().to_string())]).await;
    let (run_id, host, tree) = run_with_a_process_tree(&crash, "claude-code").await;
    let cli: Vec<Seen> = tree
        .iter()
        .filter(|s| s.pid != host && stat_of(s.pid).is_some_and(|(ppid, _, _)| ppid == host))
        .cloned()
        .collect();
    assert!(!cli.is_empty(), "the host runs the CLI: {tree:#?}");
    let commands: Vec<Seen> = tree
        .iter()
        .filter(|s| s.cmdline.starts_with("sleep "))
        .cloned()
        .collect();
    crash.executor.take().unwrap().kill_9().await;
    nix_kill(host);
    all_gone(&cli, "the CLI outlived its host").await;
    assert!(
        commands.iter().all(still_running),
        "nothing but the executor reaps the CLI's commands, and it is down: {commands:#?}"
    );
    crash.restart_executor();
    all_gone(
        &tree,
        "the restarted executor did not reap the dead host's run",
    )
    .await;
    let run = crash
        .harness
        .wait_run(&run_id, |r| r["status"] == "failed")
        .await;
    assert_eq!(run["failureReason"], "executor_lost", "{run}");
    crash.slot_freed().await;
    crash.stop().await;
}
