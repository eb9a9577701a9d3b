//! The CLI child process. It runs in a process group of its own (so that a stop reaches
//! every process it started), with a clean environment (so that nothing of the
//! executor's environment leaks into it but what the adapter passes), stdout read as
//! lines (bounded in length: an over-long line is truncated, never fatal) and the last
//! stderr lines kept, redacted, as evidence.

use crate::cli::credentials::Credentials;
use crate::cli::isolation::Isolation;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// Longest stdout line passed on whole; the rest of a longer line is dropped. Protocol
/// lines carrying a whole file diff or command output can be large, hence generous.
pub(crate) const MAX_STDOUT_LINE_BYTES: usize = 8 * 1024 * 1024;
/// Longest stderr line kept.
pub(crate) const MAX_STDERR_LINE_BYTES: usize = 8 * 1024;
/// How many stderr lines are kept as evidence.
pub(crate) const STDERR_TAIL_LINES: usize = 50;
/// Appended to a truncated line.
pub(crate) const TRUNCATED_MARKER: &str = "…[truncated]";
/// How long `terminate` waits for the group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often `terminate` checks whether the group is gone (processes that are not our
/// children cannot be awaited).
const GROUP_POLL: Duration = Duration::from_millis(20);
/// How long `wait` waits for the stderr reader to reach EOF after the exit.
const STDERR_DRAIN: Duration = Duration::from_secs(1);
/// Stdout lines buffered ahead of the adapter (backpressure beyond that).
const LINE_BUFFER: usize = 256;

/// Agent CLI processes this process holds (started and not yet dropped), for the
/// `switchyard_provider_processes` gauge. Process-wide: an executor process holds one
/// executor (run hosts count their own).
static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How many agent CLI processes this process holds.
pub(crate) fn live_processes() -> i64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliCommand {
    /// The executable (from `CliLocator::find`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the clean environment (and overriding it): the CLI's config variables
    /// and the resolved credentials (`expose_secret` them only here).
    pub env: Vec<(String, String)>,
    /// The working directory (the run's workspace).
    pub cwd: PathBuf,
    /// Whether stdin is a pipe ([`CliProcess::send_line`]) rather than `/dev/null`.
    pub stdin_piped: bool,
}

/// The child could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The program does not exist (→ the run ends `binary_missing`).
    #[error("{} not found", program.display())]
    NotFound { program: PathBuf },
    /// The working directory does not exist.
    #[error("working directory {} does not exist", cwd.display())]
    NoWorkingDirectory { cwd: PathBuf },
    /// The provider user cannot reach the run's directories.
    #[error(
        "the provider user {user} (executor.provider_user) cannot enter {}: make every directory on the way to executor.workspace_root searchable by it",
        dir.display()
    )]
    Unreachable {
        user: crate::cli::provider_user::ProviderUser,
        dir: PathBuf,
    },
    /// The run's directories could not be handed to the provider user.
    #[error("cannot hand {} to the provider user: {source}", dir.display())]
    HandOver {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", program.display())]
    Io {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running CLI child in its own process group.
///
/// Dropping it SIGKILLs the whole group (so an aborted adapter leaves nothing behind)
/// and stops its stdout and stderr readers.
pub(crate) struct CliProcess {
    child: Child,
    /// The process group (== the child's pid), `None` once the group is known gone.
    group: Option<Pid>,
    pid: Option<u32>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout_reader: Option<tokio::task::JoinHandle<()>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    exit: Option<Option<i32>>,
}

impl std::fmt::Debug for CliProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliProcess")
            .field("pid", &self.pid)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl CliProcess {
    /// Like [`start`](Self::start), but as the current user and without a parent-death
    /// signal.
    #[cfg(test)]
    fn spawn(cmd: CliCommand, credentials: &Credentials) -> Result<CliProcess, SpawnError> {
        Self::spawn_with(cmd, credentials, MAX_STDOUT_LINE_BYTES)
    }

    #[cfg(test)]
    fn spawn_with(
        cmd: CliCommand,
        credentials: &Credentials,
        max_line: usize,
    ) -> Result<CliProcess, SpawnError> {
        let mut command = command_for(&cmd, &Isolation::default())?;
        let child = command
            .spawn()
            .map_err(|source| spawn_error(&cmd, source))?;
        Ok(Self::attach(child, &cmd, credentials, max_line))
    }

    /// Starts the child, isolated: as the provider user and with a parent-death signal
    /// when `isolation` has them (see [`super::isolation`]). Its environment is clean:
    /// `PATH` (the program's own directory, then the executor's `PATH`), `HOME`, `LANG`,
    /// `TMPDIR`, then `cmd.env` on top. `HOME` is the run's state directory when
    /// `cmd.cwd` is a run workspace (`…/workspace` with `…/state` beside it), else the
    /// executor's own — unless `cmd.env` sets it; `TMPDIR` is `…/state/tmp` when that
    /// exists, else the executor's own. Stderr lines are redacted with
    /// `credentials` as they arrive.
    pub(crate) async fn start(
        cmd: CliCommand,
        credentials: &Credentials,
        isolation: &Isolation,
    ) -> Result<CliProcess, SpawnError> {
        let command = command_for(&cmd, isolation)?;
        let child = if isolation.parent_death.is_some() {
            super::isolation::spawn(command).await
        } else {
            let mut command = command;
            command.spawn()
        }
        .map_err(|source| spawn_error(&cmd, source))?;
        Ok(Self::attach(
            child,
            &cmd,
            credentials,
            MAX_STDOUT_LINE_BYTES,
        ))
    }

    /// Wires up a started child: its stdout lines, its stderr tail.
    fn attach(
        mut child: Child,
        cmd: &CliCommand,
        credentials: &Credentials,
        max_line: usize,
    ) -> CliProcess {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = child.id();
        let group = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        let stdin = child.stdin.take();
        let span = tracing::Span::current();

        let (line_tx, lines) = mpsc::channel(LINE_BUFFER);
        let stdout_reader = child.stdout.take().map(|stdout| {
            tokio::spawn(
                async move {
                    let mut reader = BufReader::new(stdout);
                    while let Ok(Some(line)) = read_bounded_line(&mut reader, max_line).await {
                        if line_tx.send(line).await.is_err() {
                            break;
                        }
                    }
                }
                .instrument(span.clone()),
            )
        });
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let mut stderr_reader = None;
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            let credentials = credentials.clone();
            stderr_reader = Some(tokio::spawn(
                async move {
                    let mut reader = BufReader::new(pipe);
                    while let Ok(Some(line)) =
                        read_bounded_line(&mut reader, MAX_STDERR_LINE_BYTES).await
                    {
                        let line = credentials.redact(&line);
                        tracing::debug!(stderr = %line, "cli stderr");
                        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                        if tail.len() == STDERR_TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
                .instrument(span),
            ));
        }
        tracing::debug!(program = %cmd.program.display(), pid, "cli process started");
        CliProcess {
            child,
            group,
            pid,
            stdin,
            lines,
            stdout_reader,
            stderr,
            stderr_reader,
            exit: None,
        }
    }

    /// The child's pid, which is also its process group id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The next stdout line (without the line break; invalid UTF-8 replaced; an
    /// over-long line truncated and marked with [`TRUNCATED_MARKER`]), or `None` at EOF.
    /// Cancel-safe.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        self.lines.recv().await
    }

    /// Writes `line` and a line break to the child's stdin. Fails when stdin is not
    /// piped or was closed.
    pub(crate) async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the child's stdin is closed",
            )
        })?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// Closes the child's stdin (EOF for CLIs that read their input until the end).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The last stderr lines (at most [`STDERR_TAIL_LINES`]), redacted.
    pub(crate) fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Waits for the child to exit: its exit code, or `None` when a signal ended it.
    /// Once it returns, the stderr tail is complete (unless a leftover grandchild keeps
    /// stderr open: that wait is bounded by a second). Stdin stays open (close it with
    /// [`close_stdin`](Self::close_stdin) if the CLI waits for EOF). Cancel-safe.
    pub(crate) async fn wait(&mut self) -> Option<i32> {
        let exit = match self.exit {
            Some(exit) => exit,
            None => {
                let exit = match self.child.wait().await {
                    Ok(status) => status.code(),
                    Err(error) => {
                        tracing::warn!(%error, "could not wait for the cli process");
                        None
                    }
                };
                self.exit = Some(exit);
                exit
            }
        };
        if let Some(reader) = self.stderr_reader.as_mut()
            && tokio::time::timeout(STDERR_DRAIN, reader).await.is_ok()
        {
            self.stderr_reader = None;
        }
        exit
    }

    /// The exit code if the child has exited (`Some(None)`: ended by a signal).
    pub(crate) fn try_wait(&mut self) -> Option<Option<i32>> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status.code());
        }
        self.exit
    }

    /// SIGINT → grace → SIGTERM → grace → SIGKILL to the whole process group; returns
    /// once nothing of the group is left (zombies nobody reaps do not count), or after a
    /// further 5 s if even SIGKILL left something (logged).
    pub(crate) async fn terminate(&mut self, grace: Duration) {
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            if self.group_gone() {
                return;
            }
            self.signal_group(signal);
            if self.wait_group_gone(grace).await {
                return;
            }
        }
        if self.group_gone() {
            return;
        }
        self.signal_group(Signal::SIGKILL);
        if !self.wait_group_gone(KILL_WAIT).await {
            tracing::warn!(
                pid = self.pid,
                "processes of the cli's group survived SIGKILL"
            );
        }
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(group) = self.group {
            tracing::debug!(pid = self.pid, %signal, "signalling the cli process group");
            if let Err(errno) = killpg(group, signal)
                && errno != Errno::ESRCH
            {
                tracing::warn!(pid = self.pid, %signal, %errno, "cannot signal the cli process group");
            }
        }
    }

    /// Reaps the leader if it exited, then checks whether anything of the group is left.
    /// Once gone, the group is forgotten (its id may be reused).
    fn group_gone(&mut self) -> bool {
        self.try_wait();
        match self.group {
            None => true,
            Some(group) if !group_alive(group) => {
                self.group = None;
                true
            }
            Some(_) => false,
        }
    }

    async fn wait_group_gone(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.group_gone() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Only the leader can be awaited; the rest of the group is polled.
            let _ = tokio::time::timeout(GROUP_POLL, self.child.wait()).await;
        }
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(group) = self.group
            && group_alive(group)
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
        // Nobody reads what they would read any more; a process that escaped the group
        // and holds a pipe open must not keep them alive.
        for reader in [self.stdout_reader.take(), self.stderr_reader.take()]
            .into_iter()
            .flatten()
        {
            reader.abort();
        }
    }
}

/// The command that starts `cmd`: in a process group of its own, with a clean
/// environment, as `isolation` says.
fn command_for(
    cmd: &CliCommand,
    isolation: &Isolation,
) -> Result<tokio::process::Command, SpawnError> {
    if !cmd.program.is_file() {
        return Err(SpawnError::NotFound {
            program: cmd.program.clone(),
        });
    }
    if !cmd.cwd.is_dir() {
        return Err(SpawnError::NoWorkingDirectory {
            cwd: cmd.cwd.clone(),
        });
    }
    let (program, args) = isolation.argv(&cmd.program, &cmd.args);
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(base_environment(&cmd.program, &cmd.cwd))
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if cmd.stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    isolation.apply_user(&mut command);
    Ok(command)
}

fn spawn_error(cmd: &CliCommand, source: std::io::Error) -> SpawnError {
    match source.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound {
            program: cmd.program.clone(),
        },
        _ => SpawnError::Io {
            program: cmd.program.clone(),
            source,
        },
    }
}

/// The executor-side environment every CLI child gets, before the adapter's `env`.
/// The run's temporary directory, below its state directory (see [`base_environment`]).
pub(crate) const RUN_TMP_DIR: &str = "tmp";

pub(crate) fn base_environment(program: &Path, cwd: &Path) -> Vec<(String, String)> {
    let process = switchyard_platform::config::process_env();
    let mut path_dirs: Vec<PathBuf> = program
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Some(existing) = process.get("PATH") {
        path_dirs.extend(std::env::split_paths(existing));
    } else {
        path_dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    }
    let path = std::env::join_paths(path_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let state = (cwd.file_name().is_some_and(|n| n == "workspace"))
        .then(|| cwd.with_file_name("state"))
        .filter(|state| state.is_dir());
    let home = state
        .as_ref()
        .map(|s| s.display().to_string())
        .or_else(|| process.get("HOME").cloned())
        .unwrap_or_else(|| "/tmp".to_owned());
    let lang = process
        .get("LANG")
        .cloned()
        .unwrap_or_else(|| "C.UTF-8".to_owned());
    // The run's own temporary directory when it has one: CLIs leave files behind in
    // TMPDIR (opencode's runtime unpacks a few MB of shared objects on every start), and
    // there they go with the run's directory instead of piling up in the machine's /tmp.
    let tmpdir = state
        .as_ref()
        .map(|s| s.join(RUN_TMP_DIR))
        .filter(|tmp| tmp.is_dir())
        .map(|tmp| tmp.display().to_string())
        .or_else(|| process.get("TMPDIR").cloned())
        .unwrap_or_else(|| "/tmp".to_owned());
    vec![
        ("PATH".to_owned(), path),
        ("HOME".to_owned(), home),
        ("LANG".to_owned(), lang),
        ("TMPDIR".to_owned(), tmpdir),
    ]
}

/// Whether the process `pid` still runs: it exists and is not a zombie. (A plain
/// `kill(pid, 0)` is not enough on machines whose init does not reap orphans: the
/// killed grandchildren of a CLI linger there as zombies.) For tests that check that a
/// stop left nothing behind.
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => false,
        Err(_) => true,
        Ok(()) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(stat_state(&stat), Some("Z" | "X")),
            // Gone between the two checks, or no /proc: trust the signal check.
            Err(error) => error.kind() != std::io::ErrorKind::NotFound,
        },
    }
}

/// The state field of a `/proc/<pid>/stat` line (`pid (comm) state …`; comm may hold
/// spaces and parentheses).
fn stat_state(stat: &str) -> Option<&str> {
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
}

/// Whether any process of the group is left that is not a zombie. `killpg(0)` alone
/// would count zombies, which linger when the machine's init does not reap orphans.
fn group_alive(group: Pid) -> bool {
    match killpg(group, None) {
        Err(Errno::ESRCH) => false,
        Err(_) => true,
        Ok(()) => match live_members(group) {
            Some(members) => members > 0,
            // No /proc to look into: trust the signal check.
            None => true,
        },
    }
}

/// Members of the group that are not zombies, from `/proc/<pid>/stat`.
fn live_members(group: Pid) -> Option<usize> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut live = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`
        let state = stat_state(&stat);
        let pgrp = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(2))
            .and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(group.as_raw()) && !matches!(state, Some("Z" | "X")) {
            live += 1;
        }
    }
    Some(live)
}

/// Reads one line of at most `max` bytes (the rest of a longer line is skipped and the
/// kept part marked). `None` at EOF.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut truncated = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if !any {
                return Ok(None);
            }
            break;
        }
        any = true;
        let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], end + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(&line).into_owned();
    if truncated {
        text.push_str(TRUNCATED_MARKER);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::kill;

    fn sh(script: &str, cwd: &Path) -> CliCommand {
        CliCommand {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            cwd: cwd.to_path_buf(),
            stdin_piped: false,
        }
    }

    fn no_credentials() -> Credentials {
        Credentials::from_pairs(Vec::<(String, String)>::new())
    }

    /// Whether a process is still there (and not merely an unreaped zombie).
    fn alive(pid: i32) -> bool {
        match kill(Pid::from_raw(pid), None) {
            Err(Errno::ESRCH) => false,
            _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| {
                    let state = stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .next();
                    !matches!(state, Some("Z" | "X"))
                })
                .unwrap_or(false),
        }
    }

    #[tokio::test]
    async fn terminate_leaves_no_process_of_the_group() {
        let dir = tempfile::tempdir().unwrap();
        // Background jobs of a non-interactive shell ignore SIGINT, and the trap makes
        // the shell itself ignore SIGTERM: only the escalation ends everything.
        let script = "trap '' TERM; sleep 1000 & echo $!; (sleep 1000; sleep 1000) & echo $!; echo ready; wait";
        let mut process = CliProcess::spawn(sh(script, dir.path()), &no_credentials()).unwrap();
        let leader = process.pid().unwrap() as i32;
        let first: i32 = process.next_line().await.unwrap().parse().unwrap();
        let second: i32 = process.next_line().await.unwrap().parse().unwrap();
        assert_eq!(process.next_line().await.as_deref(), Some("ready"));
        for pid in [leader, first, second] {
            assert!(alive(pid), "{pid} should run before terminate");
        }
        process.terminate(Duration::from_millis(200)).await;
        for pid in [leader, first, second] {
            assert!(!alive(pid), "{pid} survived terminate");
        }
        assert!(!group_alive(Pid::from_raw(leader)));
        assert_eq!(process.wait().await, None, "killed by a signal");
    }

    #[tokio::test]
    async fn a_child_that_obeys_sigint_ends_at_the_first_signal() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = CliProcess::spawn(
            sh("echo up; exec sleep 1000", dir.path()),
            &no_credentials(),
        )
        .unwrap();
        assert_eq!(process.next_line().await.as_deref(), Some("up"));
        let started = tokio::time::Instant::now();
        process.terminate(Duration::from_secs(20)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no escalation needed"
        );
        assert_eq!(process.wait().await, None);
    }

    #[tokio::test]
    async fn dropping_the_process_kills_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = CliProcess::spawn(
            sh("sleep 1000 & echo $!; wait", dir.path()),
            &no_credentials(),
        )
        .unwrap();
        let grandchild: i32 = process.next_line().await.unwrap().parse().unwrap();
        let leader = process.pid().unwrap() as i32;
        drop(process);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (alive(grandchild) || alive(leader)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(grandchild) && !alive(leader));
    }

    #[tokio::test]
    async fn stdout_lines_stdin_exit_code_and_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = sh(
            "printf 'a\\r\\nb\\n'; read x; echo \"got $x\"; echo \"home=$HOME extra=$EXTRA leak=${LEAKED_SECRET:-none}\"; printf 'no newline'; exit 3",
            dir.path(),
        );
        cmd.stdin_piped = true;
        cmd.env.push(("EXTRA".into(), "yes".into()));
        let mut process = CliProcess::spawn(cmd, &no_credentials()).unwrap();
        assert_eq!(process.next_line().await.as_deref(), Some("a"));
        assert_eq!(process.next_line().await.as_deref(), Some("b"));
        process.send_line("ping").await.unwrap();
        assert_eq!(process.next_line().await.as_deref(), Some("got ping"));
        let env_line = process.next_line().await.unwrap();
        assert!(env_line.contains("extra=yes leak=none"), "{env_line}");
        assert_eq!(process.next_line().await.as_deref(), Some("no newline"));
        assert_eq!(process.next_line().await, None);
        assert_eq!(process.wait().await, Some(3));
        assert_eq!(process.try_wait(), Some(Some(3)));
    }

    #[tokio::test]
    async fn home_is_the_state_directory_beside_a_run_workspace() {
        let root = tempfile::tempdir().unwrap();
        let dirs = crate::workdirs::WorkDirs::under(root.path());
        dirs.create().await.unwrap();
        let mut process =
            CliProcess::spawn(sh("echo $HOME; pwd", &dirs.workspace), &no_credentials()).unwrap();
        assert_eq!(
            process.next_line().await.unwrap(),
            dirs.state.display().to_string()
        );
        assert_eq!(
            PathBuf::from(process.next_line().await.unwrap())
                .canonicalize()
                .unwrap(),
            dirs.workspace.canonicalize().unwrap()
        );
    }

    #[tokio::test]
    async fn tmpdir_is_the_runs_own_when_it_has_one() {
        let root = tempfile::tempdir().unwrap();
        let dirs = crate::workdirs::WorkDirs::under(root.path());
        dirs.create().await.unwrap();
        let env = base_environment(Path::new("/bin/sh"), &dirs.workspace);
        let tmpdir = |env: &[(String, String)]| {
            env.iter()
                .find(|(name, _)| name == "TMPDIR")
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_ne!(
            tmpdir(&env),
            dirs.state.join(RUN_TMP_DIR).display().to_string()
        );
        std::fs::create_dir(dirs.state.join(RUN_TMP_DIR)).unwrap();
        let mut process =
            CliProcess::spawn(sh("echo $TMPDIR", &dirs.workspace), &no_credentials()).unwrap();
        assert_eq!(
            process.next_line().await.unwrap(),
            dirs.state.join(RUN_TMP_DIR).display().to_string()
        );
    }

    #[tokio::test]
    async fn long_lines_are_truncated_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = CliProcess::spawn_with(
            sh(
                "head -c 100000 /dev/zero | tr '\\0' x; echo; echo after",
                dir.path(),
            ),
            &no_credentials(),
            1000,
        )
        .unwrap();
        let long = process.next_line().await.unwrap();
        assert_eq!(long, format!("{}{TRUNCATED_MARKER}", "x".repeat(1000)));
        assert_eq!(process.next_line().await.as_deref(), Some("after"));
        assert_eq!(process.next_line().await, None);
        assert_eq!(process.wait().await, Some(0));
    }

    #[tokio::test]
    async fn the_stderr_tail_is_bounded_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Credentials::from_pairs([("OPENAI_API_KEY", "sk-test-secret-123")]);
        let mut cmd = sh(
            "i=0; while [ $i -lt 60 ]; do echo \"line $i key=$OPENAI_API_KEY\" >&2; i=$((i+1)); done",
            dir.path(),
        );
        cmd.env
            .push(("OPENAI_API_KEY".into(), "sk-test-secret-123".into()));
        let mut process = CliProcess::spawn(cmd, &credentials).unwrap();
        assert_eq!(process.next_line().await, None);
        assert_eq!(process.wait().await, Some(0));
        let tail = process.stderr_tail();
        assert_eq!(tail.len(), STDERR_TAIL_LINES);
        assert_eq!(tail[0], "line 10 key=[redacted]");
        assert_eq!(tail[49], "line 59 key=[redacted]");
        assert!(tail.iter().all(|l| !l.contains("sk-test")));
    }

    /// As root, an isolated CLI runs as the provider user with no other group; either
    /// way it is the child itself (setpriv execs it), so its pid is its process group.
    #[tokio::test]
    async fn an_isolated_cli_runs_as_the_provider_user_and_leads_its_group() {
        let root = nix::unistd::Uid::effective().is_root();
        let user = root.then_some(crate::cli::provider_user::ProviderUser {
            uid: 65534,
            gid: 65534,
        });
        let isolation = Isolation::new(user, Some("/usr/bin:/bin"));
        let dir = tempfile::tempdir().unwrap();
        let mut process = CliProcess::start(
            sh("id -u; id -G; cut -d' ' -f5 /proc/$$/stat", dir.path()),
            &no_credentials(),
            &isolation,
        )
        .await
        .unwrap();
        let uid = process.next_line().await.unwrap();
        let groups = process.next_line().await.unwrap();
        let group = process.next_line().await.unwrap();
        if root {
            assert_eq!((uid.as_str(), groups.as_str()), ("65534", "65534"));
        } else {
            assert_eq!(uid, nix::unistd::Uid::effective().to_string());
        }
        assert_eq!(group, process.pid().unwrap().to_string());
        assert_eq!(process.wait().await, Some(0));
    }

    #[tokio::test]
    async fn a_missing_program_or_directory_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = sh("true", dir.path());
        cmd.program = dir.path().join("no-such-cli");
        assert!(matches!(
            CliProcess::spawn(cmd, &no_credentials()),
            Err(SpawnError::NotFound { .. })
        ));
        let cmd = sh("true", &dir.path().join("missing"));
        assert!(matches!(
            CliProcess::spawn(cmd, &no_credentials()),
            Err(SpawnError::NoWorkingDirectory { .. })
        ));
    }
}
