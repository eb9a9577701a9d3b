//! Whether an agent CLI can really start here: `<program> --version`, run the way a run
//! starts the CLI (a clean environment, as the provider user, in a workspace under
//! `executor.workspace_root` with its state directory beside it), within a timeout. A
//! CLI that is there but cannot start — codex without `node` exits 127 — is not
//! installed, and the check says why. The presence record, and with it the providers
//! list and the executor-managers' choice of executor, and the executor's own dispatch
//! and HTTP API all go by it.
//!
//! Checks run for every known CLI at start-up and are cached; a result older than
//! [`REFRESH`] is served while a fresh check runs in the background, so an installed or
//! repaired CLI is noticed without a restart.

use super::binaries::CliLocator;
use super::isolation::Isolation;
use super::process::base_environment;
use crate::workdirs::WorkDirs;
use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long `--version` may take (node CLIs take a moment to start on a busy machine).
const TIMEOUT: Duration = Duration::from_secs(20);
/// How old a result may be before it is checked again.
pub(crate) const REFRESH: Duration = Duration::from_secs(60);
/// The most of a CLI's output looked at.
const OUTPUT_LIMIT: u64 = 64 * 1024;
/// The most of its stderr quoted in a problem.
const PROBLEM_CHARS: usize = 300;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartCheck {
    pub installed: bool,
    /// The first line `--version` printed.
    pub version: Option<String>,
    /// Why the CLI is not installed (not found, cannot start, failed its check).
    pub problem: Option<String>,
}

impl StartCheck {
    fn failed(problem: String) -> Self {
        Self {
            installed: false,
            version: None,
            problem: Some(problem),
        }
    }
}

#[derive(Debug)]
struct Entry {
    check: StartCheck,
    at: Instant,
    refreshing: bool,
}

/// The cached checks of this executor's CLIs. Cheap to clone (the cache is shared).
#[derive(Debug, Clone)]
pub(crate) struct StartChecks {
    binaries: CliLocator,
    isolation: Isolation,
    /// Where the checks run: `<program>/workspace` and `<program>/state` below it.
    scratch: PathBuf,
    cache: Arc<Mutex<HashMap<String, Entry>>>,
}

impl StartChecks {
    pub(crate) fn new(binaries: CliLocator, isolation: Isolation, scratch: PathBuf) -> Self {
        Self {
            binaries,
            isolation,
            scratch,
            cache: Arc::default(),
        }
    }

    /// Checks `programs` now, in parallel, and caches the results (start-up).
    pub(crate) fn check_all(&self, programs: &[&str]) {
        let running: Vec<(String, std::thread::JoinHandle<StartCheck>)> = programs
            .iter()
            .map(|program| {
                let this = self.clone();
                let name = (*program).to_owned();
                let handle = std::thread::spawn(move || this.check(&name));
                ((*program).to_owned(), handle)
            })
            .collect();
        for (program, handle) in running {
            let check = handle.join().unwrap_or_else(|_| {
                StartCheck::failed(format!("the start check of {program} panicked"))
            });
            self.store(&program, check);
        }
    }

    /// The latest result for `program`. A stale one is returned as is while a fresh
    /// check runs in the background; the first call for a program not checked at
    /// start-up checks it now (blocking, bounded by the timeout).
    pub(crate) fn get(&self, program: &str) -> StartCheck {
        let stale = {
            let mut cache = self.cache();
            match cache.get_mut(program) {
                Some(entry) => {
                    let stale = entry.at.elapsed() >= REFRESH && !entry.refreshing;
                    entry.refreshing |= stale;
                    if !stale {
                        return entry.check.clone();
                    }
                    Some(entry.check.clone())
                }
                None => None,
            }
        };
        match stale {
            Some(check) => {
                let this = self.clone();
                let name = program.to_owned();
                std::thread::spawn(move || {
                    let fresh = this.check(&name);
                    this.store(&name, fresh);
                });
                check
            }
            None => {
                let check = self.check(program);
                self.store(program, check.clone());
                check
            }
        }
    }

    fn store(&self, program: &str, check: StartCheck) {
        if check.installed != self.cache().get(program).is_some_and(|e| e.check.installed) {
            match &check.problem {
                Some(problem) => tracing::warn!(program, %problem, "agent CLI cannot start"),
                None => {
                    tracing::info!(
                        program,
                        version = check.version.as_deref(),
                        "agent CLI can start"
                    )
                }
            }
        }
        self.cache().insert(
            program.to_owned(),
            Entry {
                check,
                at: Instant::now(),
                refreshing: false,
            },
        );
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the check of `program` (blocking).
    fn check(&self, program: &str) -> StartCheck {
        let Some(path) = self.binaries.find(program) else {
            return StartCheck::failed(self.binaries.describe_search(program));
        };
        let dirs = WorkDirs::under(&self.scratch.join(program));
        if let Err(error) = self.prepare(&dirs) {
            return StartCheck::failed(format!(
                "cannot prepare {} to check {program}: {error}",
                dirs.workspace.display()
            ));
        }
        if let Some(user) = self.isolation.user {
            for (place, target) in [
                ("the CLI", path.parent().unwrap_or(Path::new("/"))),
                ("executor.workspace_root", dirs.workspace.as_path()),
            ] {
                if let Some(blocked) = user.blocked_on_the_way_to(target) {
                    return StartCheck::failed(format!(
                        "the provider user {user} (executor.provider_user) cannot enter {} on the way to {place} ({})",
                        blocked.display(),
                        target.display()
                    ));
                }
            }
        }
        run_version(program, &path, &dirs, &self.isolation)
    }

    fn prepare(&self, dirs: &WorkDirs) -> std::io::Result<()> {
        std::fs::create_dir_all(&dirs.workspace)?;
        std::fs::create_dir_all(&dirs.state)?;
        if let Some(user) = self.isolation.user {
            user.hand_over(&dirs.workspace, false)?;
            user.hand_over(&dirs.state, false)?;
        }
        Ok(())
    }
}

/// `<path> --version` in `dirs`, as `isolation` says.
fn run_version(program: &str, path: &Path, dirs: &WorkDirs, isolation: &Isolation) -> StartCheck {
    let mut command = Command::new(path);
    command
        .arg("--version")
        .current_dir(&dirs.workspace)
        .env_clear()
        .envs(base_environment(path, &dirs.workspace))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    isolation.apply_user_std(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return StartCheck::failed(format!("cannot start {program}: {error}")),
    };
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(OUTPUT_LIMIT).read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    if status.is_none()
        && let Ok(pid) = i32::try_from(child.id())
    {
        // Its group: a CLI's wrapper may have started the real program as a child.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        return StartCheck::failed(format!(
            "`{program} --version` did not finish within {} s",
            TIMEOUT.as_secs()
        ));
    };
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let said: String = stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" / ")
            .chars()
            .take(PROBLEM_CHARS)
            .collect();
        return StartCheck::failed(if said.is_empty() {
            format!("`{program} --version` {how}")
        } else {
            format!("`{program} --version` {how}: {said}")
        });
    }
    StartCheck {
        installed: true,
        version: parse_version(&stdout),
        problem: None,
    }
}

/// The first non-empty line, trimmed (`codex-cli 0.169.0`, `2.1.197 (Claude Code)`, `1.18.33`).
fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write_program(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_cli_that_cannot_start_is_not_installed_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let counter = dir.path().join("count");
        write_program(
            &bin,
            "tool",
            &format!(
                "echo x >> {}\necho\necho '  tool 1.2.3  '",
                counter.display()
            ),
        );
        write_program(&bin, "broken", "echo 'no interpreter here' >&2; exit 127");
        // What codex is without node: a script whose interpreter is missing.
        let path = bin.join("nodeless");
        std::fs::write(&path, "#!/usr/bin/env no-such-interpreter-x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();

        let checks = StartChecks::new(
            CliLocator::new(vec![bin.clone()], None),
            Isolation::default(),
            dir.path().join("scratch"),
        );
        checks.check_all(&["tool", "broken", "nodeless", "absent"]);
        let tool = checks.get("tool");
        assert_eq!(
            tool,
            StartCheck {
                installed: true,
                version: Some("tool 1.2.3".into()),
                problem: None
            }
        );
        assert_eq!(checks.get("tool"), tool, "cached");
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap().lines().count(),
            1
        );

        let broken = checks.get("broken");
        assert!(!broken.installed);
        assert_eq!(
            broken.problem.as_deref(),
            Some("`broken --version` exited with code 127: no interpreter here")
        );
        let nodeless = checks.get("nodeless");
        assert!(!nodeless.installed);
        let problem = nodeless.problem.unwrap();
        assert!(
            problem.contains("exited with code 127") && problem.contains("no-such-interpreter-x"),
            "{problem}"
        );
        let absent = checks.get("absent");
        assert!(!absent.installed);
        assert!(absent.problem.unwrap().contains("was not found"));
        assert!(
            dir.path().join("scratch/tool/state").is_dir(),
            "checked where a run would run"
        );
    }

    #[test]
    fn versions_are_the_first_non_empty_line() {
        assert_eq!(
            parse_version("\n  codex-cli 0.169.0 \nmore").as_deref(),
            Some("codex-cli 0.169.0")
        );
        assert_eq!(parse_version(" \n"), None);
    }
}
