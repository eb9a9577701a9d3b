//! Finding the agent CLIs: first in the configured search path (by default the
//! project-local install of `scripts/install-providers.sh`), then on `PATH`. Versions
//! are probed once at start-up (`<program> --version`) and cached, since presence
//! advertises them every heartbeat.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a `--version` probe may take (node CLIs take a moment to start).
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds CLI programs. Cheap to clone (the version cache is shared).
#[derive(Debug, Clone)]
pub struct CliLocator {
    /// The configured directories, then the directories of `PATH`, in search order.
    dirs: Vec<PathBuf>,
    configured: usize,
    versions: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl CliLocator {
    /// Searches `search_path` first, then the directories of `path_var` (a `PATH` value).
    pub fn new(search_path: Vec<PathBuf>, path_var: Option<&str>) -> Self {
        let configured = search_path.len();
        let mut dirs = search_path;
        if let Some(path_var) = path_var {
            dirs.extend(std::env::split_paths(path_var).filter(|d| !d.as_os_str().is_empty()));
        }
        Self {
            dirs,
            configured,
            versions: Arc::default(),
        }
    }

    /// The directories searched, in order (for `binary_missing` details and the child's
    /// `PATH`).
    pub fn search_dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The configured directories only (without `PATH`).
    pub fn configured_dirs(&self) -> &[PathBuf] {
        &self.dirs[..self.configured]
    }

    /// The first executable file named `program` in the search path, then `PATH`.
    /// A `program` containing a `/` is taken as a path and returned if executable.
    pub fn find(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let path = PathBuf::from(program);
            return is_executable(&path).then_some(path);
        }
        self.dirs
            .iter()
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }

    /// A human-readable description of where `program` was looked for, for the detail
    /// of a `binary_missing` failure.
    pub fn describe_search(&self, program: &str) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!(
            "{program} was not found in the CLI search path or PATH ({})",
            dirs.join(":")
        )
    }

    /// The version `<program> --version` printed (first non-empty line, trimmed), or
    /// `None` when the program is not found or the probe failed. Probed once per program
    /// and cached; the first call for a program that [`probe_versions`](Self::probe_versions)
    /// did not cover runs the probe (blocking, bounded by a timeout).
    pub fn version(&self, program: &str) -> Option<String> {
        if let Some(cached) = self.cache().get(program) {
            return cached.clone();
        }
        let version = self.find(program).and_then(|path| probe_version(&path));
        self.cache().insert(program.to_owned(), version.clone());
        version
    }

    /// Probes and caches the versions of `programs` (done once at start-up; the probes
    /// run in parallel).
    pub fn probe_versions(&self, programs: &[&str]) {
        let probes: Vec<(String, std::thread::JoinHandle<Option<String>>)> = programs
            .iter()
            .map(|program| {
                let found = self.find(program);
                let handle = std::thread::spawn(move || found.as_deref().and_then(probe_version));
                ((*program).to_owned(), handle)
            })
            .collect();
        for (program, handle) in probes {
            let version = handle.join().unwrap_or(None);
            self.cache().insert(program, version);
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `<path> --version` with a bounded wait; the child is killed if it overruns.
fn probe_version(path: &Path) -> Option<String> {
    let mut command = std::process::Command::new(path);
    command
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // The program's own directory first: node CLIs installed under node_modules/.bin
    // sometimes expect their siblings on PATH.
    if let Some(dir) = path.parent() {
        let mut dirs = vec![dir.to_path_buf()];
        if let Some(existing) = switchyard_platform::config::process_env().get("PATH") {
            dirs.extend(std::env::split_paths(existing));
        }
        if let Ok(joined) = std::env::join_paths(dirs) {
            command.env("PATH", joined);
        }
    }
    let mut child = command.spawn().ok()?;
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        // A version is one short line; bound what a misbehaving program can make us read.
        let _ =
            std::io::Read::read_to_string(&mut std::io::Read::take(stdout, 64 * 1024), &mut text);
        text
    });
    let deadline = std::time::Instant::now() + VERSION_PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status?.success() {
        return None;
    }
    parse_version(&text)
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
    fn the_search_path_wins_over_path_and_non_executables_are_skipped() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let on_path = write_program(second.path(), "tool", "echo path 2.0");
        std::fs::write(first.path().join("tool"), "not executable").unwrap();
        let locator = CliLocator::new(
            vec![first.path().to_path_buf()],
            Some(&second.path().display().to_string()),
        );
        assert_eq!(locator.find("tool"), Some(on_path));
        let preferred = write_program(first.path(), "tool", "echo local 1.0");
        assert_eq!(locator.find("tool"), Some(preferred));
        assert_eq!(locator.find("absent"), None);
        assert!(
            locator
                .describe_search("absent")
                .contains(&first.path().display().to_string())
        );
        assert_eq!(locator.configured_dirs(), &[first.path().to_path_buf()]);
    }

    #[test]
    fn versions_are_probed_once_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        write_program(
            dir.path(),
            "tool",
            &format!(
                "echo x >> {}\necho\necho '  tool 1.2.3  '",
                counter.display()
            ),
        );
        write_program(dir.path(), "broken", "exit 3");
        let locator = CliLocator::new(vec![dir.path().to_path_buf()], None);
        locator.probe_versions(&["tool", "broken", "absent"]);
        assert_eq!(locator.version("tool").as_deref(), Some("tool 1.2.3"));
        assert_eq!(locator.version("tool").as_deref(), Some("tool 1.2.3"));
        assert_eq!(locator.version("broken"), None);
        assert_eq!(locator.version("absent"), None);
        let probes = std::fs::read_to_string(&counter).unwrap();
        assert_eq!(probes.lines().count(), 1, "probed once");
    }
}
