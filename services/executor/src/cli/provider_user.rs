//! The user the agent CLIs run as (`executor.provider_user`). An agent runs whatever
//! shell commands its model asks for, so it must not run as the executor: a process of
//! the executor's user can read the executor's config file, the credentials env file and
//! — unless the executor forbids it, see [`super::isolation::harden_this_process`] —
//! its `/proc/<pid>/environ` with the NATS password, tokens and database URL. An executor
//! running as root therefore starts every CLI as an unprivileged user, which owns the
//! run's workspace and CLI state directory and nothing else of the executor's.
//!
//! Root writing into a directory such a user owns must not follow a symbolic link the
//! agent planted there (it would make the executor write, as root, wherever the link
//! points): [`StateFiles`] and [`ProviderUser::hand_over`] open every path component
//! relative to its parent with `O_NOFOLLOW`.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, User, fchown, fchownat, unlinkat};
use std::ffi::{CString, OsStr};
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

/// `executor.provider_user` value: as root, [`DEDICATED_USER`] when it exists, else
/// `nobody` (65534:65534); otherwise the executor's own user.
pub(crate) const AUTO: &str = "auto";
/// `executor.provider_user` value: the executor's own user, even as root.
pub(crate) const NONE: &str = "none";
/// The user `auto` picks when the system has it (create it to give the agents a user of
/// their own rather than the shared `nobody`).
pub(crate) const DEDICATED_USER: &str = "switchyard-provider";
/// `nobody:nogroup` on Debian and most Linux distributions.
const NOBODY: ProviderUser = ProviderUser {
    uid: 65534,
    gid: 65534,
};
/// How deep [`ProviderUser::hand_over`] descends (a bound on open descriptors and
/// recursion, far beyond what a CLI's state holds).
const MAX_DEPTH: usize = 64;

/// An unprivileged user (and its group) the CLIs run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProviderUser {
    pub uid: u32,
    pub gid: u32,
}

/// `executor.provider_user` names no usable user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProviderUserError {
    #[error("executor.provider_user {0:?}: no such user on this system")]
    Unknown(String),
    #[error(
        "executor.provider_user {0:?}: expected `auto`, `none`, a user name, `<uid>` or `<uid>:<gid>`"
    )]
    Invalid(String),
    #[error(
        "executor.provider_user {0:?}: only an executor running as root can start the agent CLIs as another user"
    )]
    NotRoot(String),
}

impl std::fmt::Display for ProviderUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl ProviderUser {
    /// The user an `executor.provider_user` value names, or `None` when the CLIs run as
    /// the executor's own user (`none`, `auto` when not root, or the executor's uid).
    pub(crate) fn resolve(setting: &str) -> Result<Option<ProviderUser>, ProviderUserError> {
        let root = Uid::effective().is_root();
        let user = match setting.trim() {
            "" | AUTO => {
                if !root {
                    return Ok(None);
                }
                match User::from_name(DEDICATED_USER) {
                    Ok(Some(user)) => ProviderUser {
                        uid: user.uid.as_raw(),
                        gid: user.gid.as_raw(),
                    },
                    _ => NOBODY,
                }
            }
            NONE => return Ok(None),
            value => Self::parse(value)?,
        };
        if user.uid == Uid::effective().as_raw() {
            return Ok(None);
        }
        if !root {
            return Err(ProviderUserError::NotRoot(setting.to_owned()));
        }
        Ok(Some(user))
    }

    /// A user name, `<uid>` (its primary group, else the same number) or `<uid>:<gid>`.
    fn parse(value: &str) -> Result<ProviderUser, ProviderUserError> {
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| ProviderUserError::Invalid(value.to_owned()))
        };
        if let Some((uid, gid)) = value.split_once(':') {
            return Ok(ProviderUser {
                uid: number(uid)?,
                gid: number(gid)?,
            });
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            let uid = number(value)?;
            let gid = User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or(uid, |user| user.gid.as_raw());
            return Ok(ProviderUser { uid, gid });
        }
        match User::from_name(value) {
            Ok(Some(user)) => Ok(ProviderUser {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }),
            _ => Err(ProviderUserError::Unknown(value.to_owned())),
        }
    }

    /// Whether the permission bits `bits` (4 read, 2 write, 1 search) of a file with this
    /// metadata are granted to this user. The CLIs run without supplementary groups
    /// (dropping to a uid as root clears them), and ACLs are not looked at.
    fn granted(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        let mode = meta.mode();
        let granted = if meta.uid() == self.uid {
            mode >> 6
        } else if meta.gid() == self.gid {
            mode >> 3
        } else {
            mode
        };
        granted & bits == bits
    }

    /// The first directory on the way to `path` (`path` itself included when it is a
    /// directory) that this user may not enter, or `None` when it gets there.
    pub(crate) fn blocked_on_the_way_to(&self, path: &Path) -> Option<PathBuf> {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut ancestors: Vec<&Path> = path.ancestors().collect();
        ancestors.reverse();
        ancestors.into_iter().find_map(|dir| {
            let meta = std::fs::metadata(dir).ok()?;
            (meta.is_dir() && !self.granted(&meta, 0o1)).then(|| dir.to_path_buf())
        })
    }

    /// Whether this user can read the file at `path`.
    pub(crate) fn can_read(&self, path: &Path) -> bool {
        let Some(parent) = path.parent() else {
            return false;
        };
        self.blocked_on_the_way_to(parent).is_none()
            && std::fs::metadata(path).is_ok_and(|meta| self.granted(&meta, 0o4))
    }

    /// Makes this user the owner of `dir` and, when `recursive`, of everything below it,
    /// never following a symbolic link (a link itself changes owner, not its target).
    pub(crate) fn hand_over(&self, dir: &Path, recursive: bool) -> std::io::Result<()> {
        let fd = open(dir, directory_flags(), Mode::empty())?;
        let stat = fstat(&fd)?;
        if stat.st_uid != self.uid || stat.st_gid != self.gid {
            fchown(&fd, Some(self.uid()), Some(self.gid()))?;
        }
        if recursive {
            self.hand_over_below(fd, 0)?;
        }
        Ok(())
    }

    fn hand_over_below(&self, dir: OwnedFd, depth: usize) -> std::io::Result<()> {
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        let mut dir = Dir::from_fd(dir)?;
        let names: Vec<CString> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
            .collect();
        for name in names {
            // Anything may vanish or change under us: the agent of an earlier run may
            // have left processes behind (they are reaped, but not necessarily yet).
            let stat = match fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => continue,
                Err(error) => return Err(error.into()),
            };
            if stat.st_uid != self.uid || stat.st_gid != self.gid {
                match fchownat(
                    &dir,
                    name.as_c_str(),
                    Some(self.uid()),
                    Some(self.gid()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                match openat(&dir, name.as_c_str(), directory_flags(), Mode::empty()) {
                    Ok(child) => self.hand_over_below(child, depth + 1)?,
                    // Replaced by a link or a file since the stat: not ours to follow.
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }

    fn uid(&self) -> Uid {
        Uid::from_raw(self.uid)
    }

    fn gid(&self) -> Gid {
        Gid::from_raw(self.gid)
    }
}

fn directory_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// A run's CLI state directory as the executor writes into it (the CLI's config files):
/// below the directory itself no symbolic link is followed, and what is created belongs
/// to the provider user (the CLI keeps its own state next to it).
#[derive(Debug, Clone)]
pub(crate) struct StateFiles {
    root: PathBuf,
    owner: Option<ProviderUser>,
}

impl StateFiles {
    /// The state directory `root` (it exists, and its parent is the executor's), whose
    /// new entries go to `owner`.
    pub(crate) fn new(root: impl Into<PathBuf>, owner: Option<ProviderUser>) -> Self {
        Self {
            root: root.into(),
            owner,
        }
    }

    /// The directory itself.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `relative` and the directories above it, like `mkdir -p`.
    pub(crate) async fn create_dir(&self, relative: impl AsRef<Path>) -> std::io::Result<()> {
        let this = self.clone();
        let relative = relative.as_ref().to_path_buf();
        blocking(move || this.open_dir(&relative).map(drop)).await
    }

    /// Replaces the file `relative` (creating its directories) with `contents`.
    pub(crate) async fn write(
        &self,
        relative: impl AsRef<Path>,
        contents: impl Into<Vec<u8>>,
    ) -> std::io::Result<()> {
        let this = self.clone();
        let relative = relative.as_ref().to_path_buf();
        let contents = contents.into();
        blocking(move || this.write_now(&relative, &contents)).await
    }

    /// Removes the file `relative` if it is there (a symbolic link is removed, not
    /// followed).
    pub(crate) async fn remove(&self, relative: impl AsRef<Path>) -> std::io::Result<()> {
        let this = self.clone();
        let relative = relative.as_ref().to_path_buf();
        blocking(move || {
            let name = relative
                .file_name()
                .ok_or_else(|| invalid(&relative, "names no file"))?;
            let dir = this.open_dir(relative.parent().unwrap_or(Path::new("")))?;
            match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    fn write_now(&self, relative: &Path, contents: &[u8]) -> std::io::Result<()> {
        let name = relative
            .file_name()
            .ok_or_else(|| invalid(relative, "names no file"))?;
        let dir = self.open_dir(relative.parent().unwrap_or(Path::new("")))?;
        // A fresh file every time: whatever the agent made of the old one (a hard link
        // to a file of root's, say) is only unlinked.
        match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(error) => return Err(error.into()),
        }
        let fd = openat(
            &dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?;
        if let Some(owner) = self.owner {
            fchown(&fd, Some(owner.uid()), Some(owner.gid()))?;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(contents)?;
        file.flush()
    }

    /// Opens (creating what is missing) the directory `relative` below the root.
    fn open_dir(&self, relative: &Path) -> std::io::Result<OwnedFd> {
        let mut dir = open(self.root.as_path(), directory_flags(), Mode::empty())?;
        for component in relative.components() {
            let name: &OsStr = match component {
                Component::Normal(name) => name,
                Component::CurDir => continue,
                _ => return Err(invalid(relative, "must stay below the state directory")),
            };
            let created = match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(error) => return Err(error.into()),
            };
            let next = openat(&dir, name, directory_flags(), Mode::empty())?;
            if created && let Some(owner) = self.owner {
                fchown(&next, Some(owner.uid()), Some(owner.gid()))?;
            }
            dir = next;
        }
        Ok(dir)
    }
}

fn invalid(path: &Path, problem: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{}: {problem}", path.display()),
    )
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    fn running_as_root() -> bool {
        Uid::effective().is_root()
    }

    #[test]
    fn settings_name_a_user_or_the_executor_itself() {
        assert_eq!(ProviderUser::resolve(NONE), Ok(None));
        assert_eq!(
            ProviderUser::parse("1234:5678"),
            Ok(ProviderUser {
                uid: 1234,
                gid: 5678
            })
        );
        assert_eq!(
            ProviderUser::parse("root"),
            Ok(ProviderUser { uid: 0, gid: 0 })
        );
        assert!(matches!(
            ProviderUser::parse("no-such-user-here"),
            Err(ProviderUserError::Unknown(_))
        ));
        assert!(matches!(
            ProviderUser::parse("12:x"),
            Err(ProviderUserError::Invalid(_))
        ));
        let own = Uid::effective().as_raw().to_string();
        assert_eq!(
            ProviderUser::resolve(&own),
            Ok(None),
            "the executor's own uid"
        );
        if running_as_root() {
            let auto = ProviderUser::resolve(AUTO)
                .unwrap()
                .expect("a user as root");
            assert_ne!(auto.uid, 0);
            assert_eq!(ProviderUser::resolve("65534:65534"), Ok(Some(NOBODY)));
        } else {
            assert_eq!(ProviderUser::resolve(AUTO), Ok(None));
            assert!(matches!(
                ProviderUser::resolve("65534:65534"),
                Err(ProviderUserError::NotRoot(_))
            ));
        }
    }

    #[test]
    fn reachability_follows_the_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let file = inner.join("secret");
        std::fs::write(&file, "x").unwrap();
        let stranger = ProviderUser {
            uid: 4_000_000,
            gid: 4_000_000,
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            stranger.blocked_on_the_way_to(&inner),
            Some(dir.path().canonicalize().unwrap())
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(stranger.blocked_on_the_way_to(&inner), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!stranger.can_read(&file));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(stranger.can_read(&file));
    }

    /// An agent that replaced a directory of its state with a link to somewhere else
    /// does not get the executor to write there, nor to hand that place over.
    #[tokio::test]
    async fn planted_links_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let files = StateFiles::new(&state, None);

        files.write("home/config.toml", "a = 1\n").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(state.join("home/config.toml")).unwrap(),
            "a = 1\n"
        );
        // A link in place of the file: replaced, its target untouched.
        let target = elsewhere.join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(state.join("home/config.toml")).unwrap();
        symlink(&target, state.join("home/config.toml")).unwrap();
        files.write("home/config.toml", "a = 2\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!state.join("home/config.toml").is_symlink());
        // A link in place of a directory: refused.
        std::fs::remove_dir_all(state.join("home")).unwrap();
        symlink(&elsewhere, state.join("home")).unwrap();
        assert!(files.write("home/config.toml", "a = 3\n").await.is_err());
        assert!(!elsewhere.join("config.toml").exists());
        assert!(files.create_dir("../outside").await.is_err());

        if running_as_root() {
            let user = NOBODY;
            std::fs::create_dir_all(state.join("deep/er")).unwrap();
            std::fs::write(state.join("deep/er/file"), "x").unwrap();
            user.hand_over(&state, true).unwrap();
            for path in ["", "deep", "deep/er", "deep/er/file"] {
                assert_eq!(
                    std::fs::symlink_metadata(state.join(path)).unwrap().uid(),
                    user.uid,
                    "{path}"
                );
            }
            assert_eq!(
                std::fs::metadata(&elsewhere).unwrap().uid(),
                0,
                "the link's target keeps its owner"
            );
            let owned = StateFiles::new(&state, Some(user));
            owned.write("new/dir/file", "y").await.unwrap();
            for path in ["new", "new/dir", "new/dir/file"] {
                assert_eq!(std::fs::metadata(state.join(path)).unwrap().uid(), user.uid);
            }
        }
    }
}
