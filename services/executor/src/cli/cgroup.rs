//! A cgroup per detached run: the run host moves itself into a fresh cgroup before it
//! starts the agent CLI, so every process of the run — the CLI, its shells, tool
//! commands that left the CLI's process group or session — is in it from birth and can
//! be killed as one, by the host at the end of the run or by the executor once the host
//! is dead. Process groups alone miss whatever calls `setsid`.
//!
//! The cgroup is `switchyard-run-<run id>` below the host's own cgroup, in the cgroup v2
//! hierarchy when there is one (killed through `cgroup.kill`), else in the v1 `pids`
//! hierarchy (killed process by process). Creating it needs root or a delegated
//! subtree; without one the run goes on, reaped by its process group only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard_contracts::RunId;

/// The name of a run's cgroup starts with this (the executor only ever kills cgroups
/// named so).
const PREFIX: &str = "switchyard-run-";
/// How long killing a cgroup's processes and removing it may take.
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The cgroup this process moved itself into for its run.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
    parent: PathBuf,
}

impl RunCgroup {
    /// Creates the run's cgroup below this process's and moves this process into it.
    pub(crate) fn enter(run_id: RunId) -> Result<RunCgroup, String> {
        let parent = own_cgroup()?;
        let dir = parent.join(format!("{PREFIX}{run_id}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(format!("cannot create {}: {error}", dir.display())),
        }
        if let Err(error) = std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("cannot move into {}: {error}", dir.display()));
        }
        Ok(RunCgroup { dir, parent })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves this process back out, kills whatever of the run is left in the cgroup (a
    /// process that escaped the CLI's process group) and removes it.
    pub(crate) fn leave(self) {
        if let Err(error) = std::fs::write(
            self.parent.join("cgroup.procs"),
            std::process::id().to_string(),
        ) {
            tracing::warn!(cgroup = %self.dir.display(), %error, "cannot leave the run's cgroup; the executor removes it after this host");
            return;
        }
        if let Err(problem) = kill_and_remove(&self.dir) {
            tracing::warn!(cgroup = %self.dir.display(), %problem, "cannot clean up the run's cgroup");
        }
    }
}

/// Kills every process in the run cgroup `dir` and removes it. A missing cgroup is
/// fine (already removed); a path that is not a run cgroup is refused.
pub(crate) fn kill_and_remove(dir: &Path) -> Result<(), String> {
    let is_run_cgroup = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(PREFIX));
    if !is_run_cgroup {
        return Err(format!("{} is not a run's cgroup", dir.display()));
    }
    if !dir.is_dir() {
        return Ok(());
    }
    let deadline = Instant::now() + KILL_WAIT;
    let kill_file = dir.join("cgroup.kill");
    let killed_at_once = kill_file.is_file() && std::fs::write(&kill_file, "1").is_ok();
    loop {
        let procs = members(dir);
        if procs.is_empty() {
            break;
        }
        if !killed_at_once {
            for pid in &procs {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} still holds processes {procs:?} after SIGKILL",
                dir.display()
            ));
        }
        std::thread::sleep(POLL);
    }
    // The last exits may still be in progress: removal waits for them.
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("cannot remove {}: {error}", dir.display()));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// This process's cgroup directory: in the v2 hierarchy if mounted, else in v1 `pids`.
fn own_cgroup() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let membership = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let has_pids = |list: &str| list.split(',').any(|item| item == "pids");
    let mounts = cgroup_mounts(&mountinfo);
    let in_hierarchy =
        |kind: &str, mount_ok: &dyn Fn(&Mount) -> bool, listed: &dyn Fn(&str) -> bool| {
            let mount = mounts.iter().find(|m| m.kind == kind && mount_ok(m))?;
            let path = membership_of(&membership, listed)?;
            Some(mount.point.join(path.trim_start_matches('/')))
        };
    in_hierarchy("cgroup2", &|_| true, &str::is_empty)
        .or_else(|| in_hierarchy("cgroup", &|m| has_pids(&m.options), &has_pids))
        .ok_or_else(|| "no cgroup v2 or v1 pids hierarchy is mounted".to_owned())
}

/// A cgroup filesystem mount.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `cgroup2` or `cgroup`.
    kind: String,
    /// Its super options (for v1, the controllers).
    options: String,
    point: PathBuf,
}

/// Every cgroup mount in `/proc/self/mountinfo`
/// (`id parent dev root point opts … - type source super-options`).
fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split_whitespace().nth(4)?;
            let mut fields = after.split_whitespace();
            let kind = fields.next()?;
            let _source = fields.next()?;
            let options = fields.next().unwrap_or("");
            kind.starts_with("cgroup").then(|| Mount {
                kind: kind.to_owned(),
                options: options.to_owned(),
                point: PathBuf::from(point),
            })
        })
        .collect()
}

/// The path of this process in the hierarchy whose `/proc/self/cgroup` controller list
/// satisfies `wanted` (`0::/path` is v2, with an empty list).
fn membership_of(membership: &str, wanted: impl Fn(&str) -> bool) -> Option<String> {
    membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        wanted(controllers).then(|| path.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mounts_and_membership_are_read_from_proc() {
        let mounts = cgroup_mounts(MOUNTINFO);
        assert_eq!(
            mounts,
            [
                Mount {
                    kind: "cgroup".to_owned(),
                    options: "rw,pids".to_owned(),
                    point: PathBuf::from("/sys/fs/cgroup/pids"),
                },
                Mount {
                    kind: "cgroup2".to_owned(),
                    options: "rw".to_owned(),
                    point: PathBuf::from("/sys/fs/cgroup/unified"),
                },
            ]
        );
        let membership = "8:pids:/a/b\n0::/system.slice/x.service\n";
        assert_eq!(
            membership_of(membership, str::is_empty).as_deref(),
            Some("/system.slice/x.service")
        );
        assert_eq!(
            membership_of(membership, |c| c.split(',').any(|c| c == "pids")).as_deref(),
            Some("/a/b")
        );
    }

    #[test]
    fn only_run_cgroups_are_killed() {
        assert!(kill_and_remove(Path::new("/sys/fs/cgroup/unified")).is_err());
        assert_eq!(
            kill_and_remove(Path::new("/nonexistent/switchyard-run-x")),
            Ok(())
        );
    }
}
