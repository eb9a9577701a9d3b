//! `file.changed` for every change in a run's workspace, whoever made it.
//!
//! The agents' edit tools report their own changes (and the adapters turn them into
//! `file.changed`), but a file written by a shell command (`echo … > hello.txt`, a code
//! generator, `git checkout`) is reported by nobody. So the supervisor snapshots the
//! workspace before the provider starts and scans it again after tool calls: every
//! file created, modified or deleted since the last scan gets a `file.changed` (no
//! diff), unless the provider reported that path itself since then.
//!
//! When: the event sink tells the watcher about every `tool.started`,
//! `tool.completed` and `file.changed` it queues. Once a tool call completes and no
//! other is in flight, the watcher scans at the next event that is not a
//! `file.changed` (the adapters emit a tool's own file changes right next to its
//! `tool.completed`, before or after it), or after [`SETTLE`] without any; and once
//! more when the run ends, if a tool ran since the last scan. It does not scan while a
//! tool call is in flight, and a scan during which a tool call started reports nothing
//! (the next one compares with the same snapshot), so an edit tool's change is never
//! reported by the scan before the tool reports it. A file created and deleted again
//! between two scans is not seen.
//!
//! What: regular files and symlinks (not followed) under the workspace, compared by
//! size, modification time, inode and mode. Directories named in [`SKIPPED_DIRS`]
//! (version control, dependency and build caches) are not entered. A scan is bounded
//! by [`MAX_ENTRIES`] and [`MAX_SCAN_TIME`]; a workspace over either bound is not
//! scanned for the rest of the run, and a `diagnostic` says so.

use crate::sink::{self, EventSink};
use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_contracts::RunEventKind;
use switchyard_contracts::event::{Diagnostic, DiagnosticLevel, FileChangeKind, FileChanged};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Directories never entered: their contents change wholesale (installs, builds,
/// version control) and would bury the agent's own changes.
pub(crate) const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
    ".cache",
];
/// Most files and directories one scan looks at.
pub(crate) const MAX_ENTRIES: usize = 20_000;
/// Longest one scan may take.
pub(crate) const MAX_SCAN_TIME: Duration = Duration::from_secs(2);
/// How long after a tool call completed, with nothing else happening, the watcher
/// scans anyway.
pub(crate) const SETTLE: Duration = Duration::from_millis(250);

/// What the sink tells the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    ToolStarted(String),
    ToolCompleted(String),
    /// A `file.changed` of the provider's, with the path as it gave it.
    Reported(String),
    /// Any other event, sent only while the watcher waits for one.
    Other,
}

/// The sink's side: classifies queued events for the watcher.
#[derive(Debug, Clone)]
struct Feed {
    tx: mpsc::UnboundedSender<Seen>,
    /// Set while the watcher waits for the next event that is not a `file.changed`.
    awaiting: Arc<AtomicBool>,
}

impl sink::Observer for Feed {
    fn see(&self, kind: &RunEventKind) {
        let seen = match kind {
            RunEventKind::ToolStarted(started) => Seen::ToolStarted(started.call_id.clone()),
            RunEventKind::ToolCompleted(completed) => {
                Seen::ToolCompleted(completed.call_id.clone())
            }
            RunEventKind::FileChanged(changed) => Seen::Reported(changed.path.clone()),
            _ if self.awaiting.swap(false, Ordering::AcqRel) => Seen::Other,
            _ => return,
        };
        let _ = self.tx.send(seen);
    }
}

/// Size, modification time, inode and mode: any write, replacement or chmod moves one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
    mode: u32,
}

/// Workspace-relative path (`/`-separated) → fingerprint.
type Snapshot = BTreeMap<String, Fingerprint>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScanError {
    TooManyEntries,
    TooSlow,
}

/// Walks `root` (blocking). A directory that cannot be read is skipped: it holds
/// nothing the agent could have written either.
fn scan(root: &Path, max_entries: usize, max_time: Duration) -> Result<Snapshot, ScanError> {
    use std::os::unix::fs::MetadataExt as _;
    let started = Instant::now();
    let mut snapshot = Snapshot::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            !(entry.file_type().is_dir()
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| SKIPPED_DIRS.contains(&name)))
        });
    for (seen, entry) in walk.enumerate() {
        if seen >= max_entries {
            return Err(ScanError::TooManyEntries);
        }
        if started.elapsed() > max_time {
            return Err(ScanError::TooSlow);
        }
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        snapshot.insert(
            relative.to_string_lossy().into_owned(),
            Fingerprint {
                size: metadata.size(),
                mtime: metadata.mtime(),
                mtime_nsec: metadata.mtime_nsec(),
                ino: metadata.ino(),
                mode: metadata.mode(),
            },
        );
    }
    Ok(snapshot)
}

/// What changed from `before` to `after`, in path order, leaving out `reported`.
fn diff(
    before: &Snapshot,
    after: &Snapshot,
    reported: &HashSet<String>,
) -> Vec<(String, FileChangeKind)> {
    let mut changes = Vec::new();
    for (path, now) in after {
        let change = match before.get(path) {
            None => FileChangeKind::Added,
            Some(then) if then != now => FileChangeKind::Modified,
            Some(_) => continue,
        };
        changes.push((path.clone(), change));
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        changes.push((path.clone(), FileChangeKind::Deleted));
    }
    changes.retain(|(path, _)| !reported.contains(path));
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    changes
}

/// A path as a provider reported it, in the scan's form: relative to the workspace,
/// `/`-separated, without `.` components. `None` for a path outside the workspace.
fn normalize(reported: &str, roots: &[PathBuf]) -> Option<String> {
    let path = Path::new(reported);
    let relative = if path.is_absolute() {
        roots.iter().find_map(|root| path.strip_prefix(root).ok())?
    } else {
        path
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            // `..` or a root inside a relative path: not something a scan names.
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Bounds of one scan.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_entries: usize,
    max_time: Duration,
}

const BOUNDS: Bounds = Bounds {
    max_entries: MAX_ENTRIES,
    max_time: MAX_SCAN_TIME,
};

/// The watcher of one run's workspace. Started before the provider, finished after it.
pub(crate) struct FileChanges {
    finish: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FileChanges {
    /// Takes the first snapshot of `workspace` and starts watching the events `sink`
    /// queues. A workspace too large to scan is reported in a `diagnostic` and not
    /// watched.
    pub(crate) async fn start(workspace: PathBuf, sink: &EventSink) -> FileChanges {
        FileChanges::start_with(workspace, sink, BOUNDS).await
    }

    async fn start_with(workspace: PathBuf, sink: &EventSink, bounds: Bounds) -> FileChanges {
        let finish = CancellationToken::new();
        let mut watcher = Watcher {
            roots: vec![workspace.clone()],
            workspace,
            sink: sink.clone(),
            bounds,
            snapshot: Snapshot::new(),
            in_flight: HashSet::new(),
            reported: HashSet::new(),
            armed: None,
            dirty: false,
            awaiting: Arc::new(AtomicBool::new(false)),
        };
        let Some(first) = watcher.take_snapshot().await else {
            return FileChanges { finish, task: None };
        };
        watcher.snapshot = first;
        let (tx, rx) = mpsc::unbounded_channel();
        sink.observe(Feed {
            tx,
            awaiting: watcher.awaiting.clone(),
        });
        let task = tokio::spawn(watcher.run(rx, finish.clone()));
        FileChanges {
            finish,
            task: Some(task),
        }
    }

    /// Scans once more if a tool ran since the last scan, and stops watching.
    pub(crate) async fn finish(mut self) {
        self.finish.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FileChanges {
    fn drop(&mut self) {
        // Dropped without `finish` (the supervisor's future was dropped): stop at once.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Watcher {
    workspace: PathBuf,
    /// The workspace as given and as resolved (symlinks), for absolute reported paths.
    roots: Vec<PathBuf>,
    sink: EventSink,
    bounds: Bounds,
    snapshot: Snapshot,
    in_flight: HashSet<String>,
    /// Paths the provider reported since the last scan.
    reported: HashSet<String>,
    /// When to scan at the latest: a tool call completed and none is in flight.
    armed: Option<tokio::time::Instant>,
    /// A tool call started since the last scan.
    dirty: bool,
    awaiting: Arc<AtomicBool>,
}

impl Watcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Seen>, finish: CancellationToken) {
        // Absolute paths in reports may name the workspace through its resolved form.
        if let Ok(resolved) = tokio::fs::canonicalize(&self.workspace).await
            && resolved != self.workspace
        {
            self.roots.push(resolved);
        }
        loop {
            let settle = async {
                match self.armed {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                seen = rx.recv() => match seen {
                    Some(seen) => {
                        if self.apply(seen) && !self.scan_and_report(&mut rx).await {
                            return;
                        }
                    }
                    None => return,
                },
                () = settle => {
                    if !self.scan_and_report(&mut rx).await {
                        return;
                    }
                }
                () = finish.cancelled() => {
                    // What the provider emitted last is queued by now: take it in first.
                    while let Ok(seen) = rx.try_recv() {
                        self.apply(seen);
                    }
                    if self.dirty || self.armed.is_some() {
                        self.scan_and_report(&mut rx).await;
                    }
                    return;
                }
            }
        }
    }

    /// Takes in one observation; `true` when it is time to scan.
    fn apply(&mut self, seen: Seen) -> bool {
        match seen {
            Seen::ToolStarted(call_id) => {
                self.in_flight.insert(call_id);
                self.dirty = true;
                self.disarm();
                false
            }
            Seen::ToolCompleted(call_id) => {
                self.in_flight.remove(&call_id);
                self.dirty = true;
                if self.in_flight.is_empty() {
                    self.armed = Some(tokio::time::Instant::now() + SETTLE);
                    self.awaiting.store(true, Ordering::Release);
                }
                false
            }
            Seen::Reported(path) => {
                if let Some(path) = normalize(&path, &self.roots) {
                    self.reported.insert(path);
                }
                false
            }
            Seen::Other => self.armed.is_some(),
        }
    }

    fn disarm(&mut self) {
        self.armed = None;
        self.awaiting.store(false, Ordering::Release);
    }

    /// The workspace's snapshot now, or `None` (and a `diagnostic`) when it is over the
    /// bounds.
    async fn take_snapshot(&self) -> Option<Snapshot> {
        let root = self.workspace.clone();
        let bounds = self.bounds;
        let scanned =
            tokio::task::spawn_blocking(move || scan(&root, bounds.max_entries, bounds.max_time))
                .await;
        let problem = match scanned {
            Ok(Ok(snapshot)) => return Some(snapshot),
            Ok(Err(ScanError::TooManyEntries)) => format!(
                "the workspace holds more than {} files and directories",
                bounds.max_entries
            ),
            Ok(Err(ScanError::TooSlow)) => format!(
                "scanning the workspace took longer than {} ms",
                bounds.max_time.as_millis()
            ),
            Err(_) => "the workspace scan failed".to_owned(),
        };
        tracing::info!(run_id = %self.sink.run_id(), %problem, "not watching the workspace for changes");
        let _ = self
            .sink
            .emit(RunEventKind::Diagnostic(Diagnostic {
                level: DiagnosticLevel::Warn,
                message: format!(
                    "{problem} (not counting {}), so only the provider's own file edits are \
                     reported as file.changed in this run, not files written by commands",
                    SKIPPED_DIRS.join(", ")
                ),
                raw: None,
            }))
            .await;
        None
    }

    /// Scans and emits what changed; `false` when the watching is over (the workspace
    /// went over the bounds).
    async fn scan_and_report(&mut self, rx: &mut mpsc::UnboundedReceiver<Seen>) -> bool {
        self.disarm();
        let Some(now) = self.take_snapshot().await else {
            return false;
        };
        // What was queued while the scan ran: reports describe changes the scan may
        // have seen, so they count now and in the next round too (a change made after
        // the walk is seen by the next scan).
        let mut late_reports = HashSet::new();
        let mut tools_ran = false;
        while let Ok(seen) = rx.try_recv() {
            match &seen {
                Seen::Reported(path) => late_reports.extend(normalize(path, &self.roots)),
                Seen::ToolStarted(_) | Seen::ToolCompleted(_) => tools_ran = true,
                Seen::Other => {}
            }
            self.apply(seen);
        }
        if tools_ran {
            // A tool call started while the scan walked: what the scan saw may be that
            // call's work, which it may still report itself. The next scan, once no
            // call is in flight, compares with the same snapshot.
            self.dirty = true;
            return true;
        }
        let changes = diff(&self.snapshot, &now, &self.reported);
        self.snapshot = now;
        self.reported = late_reports;
        self.dirty = !self.in_flight.is_empty();
        for (path, change) in changes {
            let event = RunEventKind::FileChanged(FileChanged {
                path,
                change,
                diff: None,
            });
            if self.sink.emit_unobserved(event).await.is_err() {
                // The sink refuses events (run lost, over budget, ending): nothing more
                // can be reported.
                break;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn snap(dir: &Path) -> Snapshot {
        scan(dir, MAX_ENTRIES, MAX_SCAN_TIME).unwrap()
    }

    #[test]
    fn a_scan_sees_files_not_skipped_dirs_and_diffs_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "keep.txt", "same");
        write(root, "edit.txt", "before");
        write(root, "gone.txt", "x");
        write(root, ".git/HEAD", "ref");
        write(root, "web/node_modules/pkg/index.js", "x");
        let before = snap(root);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            ["edit.txt", "gone.txt", "keep.txt"]
        );

        write(root, "edit.txt", "after, longer");
        write(root, "src/new.rs", "fn main() {}");
        std::fs::remove_file(root.join("gone.txt")).unwrap();
        write(root, ".git/index", "changed");
        let after = snap(root);
        assert_eq!(
            diff(&before, &after, &HashSet::new()),
            [
                ("edit.txt".to_owned(), FileChangeKind::Modified),
                ("gone.txt".to_owned(), FileChangeKind::Deleted),
                ("src/new.rs".to_owned(), FileChangeKind::Added),
            ]
        );
        let reported = HashSet::from(["src/new.rs".to_owned()]);
        assert_eq!(diff(&before, &after, &reported).len(), 2);
        assert!(diff(&after, &snap(root), &HashSet::new()).is_empty());
    }

    #[test]
    fn a_same_size_rewrite_or_a_chmod_is_a_modification() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "one");
        let before = snap(dir.path());
        // Replaced by another file of the same size (a new inode), as editors do.
        write(dir.path(), "b.tmp", "two");
        std::fs::rename(dir.path().join("b.tmp"), dir.path().join("a.txt")).unwrap();
        let after = snap(dir.path());
        assert_eq!(
            diff(&before, &after, &HashSet::new()),
            [("a.txt".to_owned(), FileChangeKind::Modified)]
        );
        std::fs::set_permissions(
            dir.path().join("a.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(diff(&after, &snap(dir.path()), &HashSet::new()).len(), 1);
    }

    #[test]
    fn scans_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            write(dir.path(), &format!("f{i}"), "x");
        }
        assert_eq!(
            scan(dir.path(), 10, MAX_SCAN_TIME),
            Err(ScanError::TooManyEntries)
        );
        assert!(scan(dir.path(), 21, MAX_SCAN_TIME).is_ok());
    }

    /// A workspace over the bounds is said so in a diagnostic and not watched: no
    /// `file.changed` from scans, the provider's own still pass.
    #[tokio::test]
    async fn a_workspace_over_the_bounds_is_not_watched_and_says_so() {
        use switchyard_contracts::dispatch::EventPosition;
        use switchyard_contracts::event::{RunCompleted, ToolCompleted, ToolStarted, ToolStatus};
        use switchyard_platform::config::NatsConfig;
        use switchyard_platform::nats::{self, Resources};

        let server = switchyard_test_support::NatsServer::start().await.unwrap();
        let config = NatsConfig {
            url: server.url(),
            ..Default::default()
        };
        let js = async_nats::jetstream::new(nats::connect(&config, "test").await.unwrap());
        let events_only = Resources {
            run_events: true,
            ..Default::default()
        };
        nats::provision(&js, events_only).await.unwrap();
        let log = switchyard_platform::events::EventLog::open(js)
            .await
            .unwrap();
        let run_id = switchyard_contracts::RunId::now_v7();
        let sink = EventSink::new(log.clone(), run_id, EventPosition::EMPTY);

        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            write(dir.path(), &format!("f{i}"), "x");
        }
        let bounds = Bounds {
            max_entries: 3,
            max_time: MAX_SCAN_TIME,
        };
        let changes = FileChanges::start_with(dir.path().to_path_buf(), &sink, bounds).await;
        sink.emit(RunEventKind::ToolStarted(ToolStarted {
            call_id: "c".into(),
            name: "shell".into(),
            input: serde_json::Value::Null,
        }))
        .await
        .unwrap();
        write(dir.path(), "new.txt", "x");
        sink.emit(RunEventKind::ToolCompleted(ToolCompleted {
            call_id: "c".into(),
            status: ToolStatus::Succeeded,
            exit_code: Some(0),
        }))
        .await
        .unwrap();
        changes.finish().await;
        let mut sealed = sink.seal().await;
        sealed
            .append(RunEventKind::RunCompleted(RunCompleted::succeeded()))
            .await
            .unwrap();
        drop(sealed);

        let mut tail = Box::pin(log.tail(run_id, 0).await.unwrap());
        let mut kinds = Vec::new();
        while let Some(stored) = futures::StreamExt::next(&mut tail).await {
            let event = stored.unwrap().decode().unwrap();
            let done = event.is_terminal();
            kinds.push(event.kind);
            if done {
                break;
            }
        }
        let RunEventKind::Diagnostic(diagnostic) = &kinds[0] else {
            panic!("a diagnostic first: {kinds:?}");
        };
        assert!(
            diagnostic.message.contains("more than 3 files")
                && diagnostic.message.contains("not files written by commands"),
            "{}",
            diagnostic.message
        );
        assert!(
            !kinds
                .iter()
                .any(|k| matches!(k, RunEventKind::FileChanged(_))),
            "{kinds:?}"
        );
    }

    #[test]
    fn reported_paths_are_normalized_to_the_scans_form() {
        let roots = [PathBuf::from("/w/run/workspace")];
        assert_eq!(normalize("a.txt", &roots).as_deref(), Some("a.txt"));
        assert_eq!(
            normalize("./src//b.rs", &roots).as_deref(),
            Some("src/b.rs")
        );
        assert_eq!(
            normalize("/w/run/workspace/src/c.rs", &roots).as_deref(),
            Some("src/c.rs")
        );
        assert_eq!(normalize("/etc/passwd", &roots), None);
        assert_eq!(normalize("../x", &roots), None);
        assert_eq!(normalize("", &roots), None);
    }
}
