//! How an agent CLI is started apart from the executor: as the provider user (see
//! [`ProviderUser`]) and with a parent-death signal, so that the CLI dies with the
//! process that started it — a run host killed with SIGKILL included — instead of
//! running on under init. The signal is set by `setpriv --pdeathsig KILL` (util-linux)
//! between the fork and the CLI; std offers no safe way to set it in the child itself.
//!
//! The kernel ties the parent-death signal to the *thread* that forked the child, not to
//! the process, so every CLI is forked by one thread that lives as long as the process
//! ([`spawn`]): a runtime worker thread that happens to exit would otherwise kill the
//! CLIs it started.
//!
//! [`harden_this_process`] is the other half: the executor and its run hosts hold the
//! secrets, and a process of the same user could read them from `/proc/<pid>/environ`
//! unless the process is marked not dumpable.

use super::provider_user::ProviderUser;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use tokio::process::{Child, Command};

/// Where `setpriv` is looked for when `PATH` has none.
const SETPRIV_FALLBACKS: &[&str] = &["/usr/bin/setpriv", "/bin/setpriv"];

/// How this executor starts its CLIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Isolation {
    /// The user the CLIs run as; `None`: the executor's own.
    pub user: Option<ProviderUser>,
    /// `setpriv`, when it can set a parent-death signal; `None`: the CLIs outlive a
    /// killed parent until the executor reaps them.
    pub parent_death: Option<PathBuf>,
}

impl Isolation {
    /// Runs the CLIs as `user`, with a parent-death signal when `setpriv` (found on
    /// `path_var`, else in /usr/bin or /bin) supports one.
    pub(crate) fn new(user: Option<ProviderUser>, path_var: Option<&str>) -> Self {
        let parent_death = find_setpriv(path_var);
        if parent_death.is_none() {
            tracing::warn!(
                "setpriv (util-linux) with --pdeathsig not found: an agent CLI outlives a killed run host until the executor reaps it"
            );
        }
        Self { user, parent_death }
    }

    /// The program and the arguments to start for `program args…`.
    pub(crate) fn argv(&self, program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
        match &self.parent_death {
            Some(setpriv) => {
                let mut wrapped = vec![
                    "--pdeathsig".to_owned(),
                    "KILL".to_owned(),
                    "--".to_owned(),
                    program.display().to_string(),
                ];
                wrapped.extend(args.iter().cloned());
                (setpriv.clone(), wrapped)
            }
            None => (program.to_path_buf(), args.to_vec()),
        }
    }

    /// Makes `command` run as the provider user. As root, std also drops the
    /// supplementary groups before it switches.
    pub(crate) fn apply_user(&self, command: &mut Command) {
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
    }

    /// The same for a blocking command (the start check).
    pub(crate) fn apply_user_std(&self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt as _;
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
    }
}

/// The first `setpriv` that knows `--pdeathsig`.
fn find_setpriv(path_var: Option<&str>) -> Option<PathBuf> {
    let on_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("setpriv"));
    on_path
        .chain(SETPRIV_FALLBACKS.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file() && supports_pdeathsig(candidate))
}

fn supports_pdeathsig(setpriv: &Path) -> bool {
    std::process::Command::new(setpriv)
        .arg("--help")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--pdeathsig"))
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks every CLI; it never exits.
fn keeper() -> &'static mpsc::Sender<Job> {
    static KEEPER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("cli-spawner".to_owned())
            .spawn(move || {
                for job in queue {
                    job();
                }
                // Every sender is gone only when the process exits; stay anyway, since
                // the children this thread forked die when it ends.
                loop {
                    std::thread::park();
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the CLI spawner thread; CLIs are started from the runtime");
        }
        jobs
    })
}

/// Spawns `command` from the spawner thread (in the current runtime, so that the child
/// is awaited like any other), or from here when that thread is not available.
pub(crate) async fn spawn(mut command: Command) -> std::io::Result<Child> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return command.spawn();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _entered = runtime.enter();
        let _ = reply.send(command.spawn());
    });
    if let Err(mpsc::SendError(job)) = keeper().send(job) {
        // No spawner thread: run the job here (the child then lives with this thread).
        job();
    }
    answer
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the CLI spawner thread is gone")))
}

/// Marks this process not dumpable: no core dumps, and its `/proc/<pid>` files
/// (`environ`, `mem`, …) readable only with `CAP_SYS_PTRACE` — not by an agent running
/// as the same user. Called by the executor and by each run host at start-up (the flag
/// does not survive `exec`).
pub(crate) fn harden_this_process() {
    if let Err(errno) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%errno, "cannot mark the process not dumpable; an agent running as this user could read its environment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_wrapped_when_setpriv_is_there() {
        let isolation = Isolation::new(None, Some("/usr/bin:/bin"));
        let (program, args) =
            isolation.argv(Path::new("/opt/cli/codex"), &["app-server".to_owned()]);
        match &isolation.parent_death {
            Some(setpriv) => {
                assert_eq!(&program, setpriv);
                assert_eq!(
                    args,
                    ["--pdeathsig", "KILL", "--", "/opt/cli/codex", "app-server"]
                );
            }
            None => {
                assert_eq!(program, Path::new("/opt/cli/codex"));
                assert_eq!(args, ["app-server"]);
            }
        }
    }

    #[test]
    fn hardening_makes_the_process_not_dumpable() {
        harden_this_process();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
