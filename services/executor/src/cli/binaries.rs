//! Finding the agent CLIs: first in the configured search path (by default the
//! project-local install of `scripts/install-providers.sh`), then on `PATH`. Whether a
//! CLI found here can also start is [`super::start_check`]'s question.

use std::path::{Path, PathBuf};

/// Finds CLI programs.
#[derive(Debug, Clone)]
pub struct CliLocator {
    /// The configured directories, then the directories of `PATH`, in search order.
    dirs: Vec<PathBuf>,
}

impl CliLocator {
    /// Searches `search_path` first, then the directories of `path_var` (a `PATH` value).
    pub fn new(search_path: Vec<PathBuf>, path_var: Option<&str>) -> Self {
        let mut dirs = search_path;
        if let Some(path_var) = path_var {
            dirs.extend(std::env::split_paths(path_var).filter(|d| !d.as_os_str().is_empty()));
        }
        Self { dirs }
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
    pub(crate) fn describe_search(&self, program: &str) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!(
            "{program} was not found in the CLI search path or PATH ({})",
            dirs.join(":")
        )
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
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
    }
}
