//! Per-run and per-conversation directories. A run works in
//! `<workspace_root>/<key>/workspace` and its CLI keeps its state (CODEX_HOME, HOME for
//! claude, XDG dirs for opencode) in `<workspace_root>/<key>/state`, where `<key>` is
//! the run's conversation id, or its own run id when it has none — so the first run of
//! a conversation whose id is that run's id, and every follow-up, share one directory.
//! `<workspace_root>/<key>/session.json` remembers the provider session the last run
//! used, so that the next run of the conversation can resume it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use switchyard_contracts::RunId;

/// The directories of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkDirs {
    /// The agent's working directory (== `RunContext.workspace`).
    pub workspace: PathBuf,
    /// The CLI's home: CODEX_HOME / HOME / XDG dirs go under it. Shared by the runs of
    /// a conversation, never by unrelated runs.
    pub state: PathBuf,
}

impl WorkDirs {
    /// `<base>/workspace` and `<base>/state`.
    pub(crate) fn under(base: &Path) -> Self {
        Self {
            workspace: base.join("workspace"),
            state: base.join("state"),
        }
    }

    /// Creates both directories (and their parents).
    pub(crate) async fn create(&self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.workspace).await?;
        tokio::fs::create_dir_all(&self.state).await
    }
}

/// The `providerOptions` key naming an existing directory to work in instead of
/// `<workspace_root>/<key>/workspace`. The control plane only lets an app's runtime
/// defaults or execution profile set it; the executor only honours it inside
/// `executor.allowed_workspace_dirs`.
pub(crate) const WORKSPACE_DIR_OPTION: &str = "workspaceDir";

/// The run's given workspace directory, if its `providerOptions` name one: the option
/// canonicalized (symlinks and `..` resolved, so it cannot escape), which must be an
/// existing directory inside one of the (canonicalized) `allowed` directories and
/// outside `workspace_root` (whose directories the cleanup policy deletes). The error
/// says exactly why the directory is refused.
pub(crate) async fn given_workspace(
    provider_options: &serde_json::Value,
    allowed: &[PathBuf],
    workspace_root: &Path,
) -> Result<Option<PathBuf>, String> {
    let Some(value) = provider_options.get(WORKSPACE_DIR_OPTION) else {
        return Ok(None);
    };
    let option = format!("providerOptions.{WORKSPACE_DIR_OPTION}");
    let Some(requested) = value.as_str().map(Path::new) else {
        return Err(format!("{option} must be a string (an absolute path)"));
    };
    if !requested.is_absolute() {
        return Err(format!("{option} {requested:?} must be an absolute path"));
    }
    if allowed.is_empty() {
        return Err(format!(
            "{option} {requested:?} is not allowed: this executor's executor.allowed_workspace_dirs is empty"
        ));
    }
    let given = match tokio::fs::canonicalize(requested).await {
        Ok(path) => path,
        Err(error) => {
            return Err(format!(
                "{option} {requested:?} is not an existing directory ({error})"
            ));
        }
    };
    if !tokio::fs::metadata(&given).await.is_ok_and(|m| m.is_dir()) {
        return Err(format!("{option} {requested:?} is not a directory"));
    }
    let mut inside = false;
    for dir in allowed {
        if let Ok(dir) = tokio::fs::canonicalize(dir).await
            && given.starts_with(&dir)
        {
            inside = true;
            break;
        }
    }
    if !inside {
        return Err(format!(
            "{option} {requested:?} is not allowed: it is not inside any of executor.allowed_workspace_dirs"
        ));
    }
    let root = tokio::fs::canonicalize(workspace_root)
        .await
        .unwrap_or_else(|_| workspace_root.to_path_buf());
    if given.starts_with(&root) || root.starts_with(&given) {
        return Err(format!(
            "{option} {requested:?} is not allowed: it overlaps executor.workspace_root (the runs' own directories and CLI state, which the cleanup policy deletes)"
        ));
    }
    Ok(Some(given))
}

/// What the executor knows about the conversation a run continues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConversationState {
    /// The provider session to resume (codex thread id, claude session id, opencode
    /// session id), if a previous run of this conversation on this executor reported
    /// one with `RunContext::set_session_id`. When resuming it fails (the session is
    /// poisoned or gone), the adapter starts a fresh session in the same workspace and
    /// reports the new id.
    pub session_id: Option<String>,
}

/// `session.json`: the provider session a conversation's last run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionRecord {
    /// Canonical provider name: another provider cannot resume this session.
    pub(crate) provider: String,
    pub(crate) session_id: String,
    pub(crate) run_id: RunId,
}

/// The directory shared by the runs of one conversation (or owned by a lone run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConversationDir {
    pub(crate) base: PathBuf,
}

impl ConversationDir {
    /// `<root>/<conversation_id or run_id>`. Both are UUIDs: safe as a path component.
    pub(crate) fn for_run(root: &Path, conversation_id: Option<RunId>, run_id: RunId) -> Self {
        Self {
            base: root.join(conversation_id.unwrap_or(run_id).to_string()),
        }
    }

    pub(crate) fn dirs(&self) -> WorkDirs {
        WorkDirs::under(&self.base)
    }

    fn session_file(&self) -> PathBuf {
        self.base.join("session.json")
    }

    /// The session of `provider` recorded by an earlier run, if any. An unreadable or
    /// garbled record is treated as absent (the run starts a fresh session).
    pub(crate) async fn load_session(&self, provider: &str) -> Option<String> {
        let bytes = tokio::fs::read(self.session_file()).await.ok()?;
        match serde_json::from_slice::<SessionRecord>(&bytes) {
            Ok(record) if record.provider == provider => Some(record.session_id),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(path = %self.session_file().display(), %error, "ignoring an unreadable session record");
                None
            }
        }
    }

    /// Records the session a run used (written to a temporary file, then renamed, so a
    /// crash never leaves half a record).
    pub(crate) async fn save_session(&self, record: &SessionRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let temporary = self.base.join(".session.json.tmp");
        tokio::fs::write(&temporary, bytes).await?;
        tokio::fs::rename(&temporary, self.session_file()).await
    }

    /// Removes the whole directory (cleanup policy).
    pub(crate) async fn remove(&self) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(&self.base).await {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_of_a_conversation_share_a_directory_and_its_session() {
        let root = tempfile::tempdir().unwrap();
        let first = RunId::now_v7();
        let follow_up = RunId::now_v7();
        let lone = ConversationDir::for_run(root.path(), None, first);
        let continued = ConversationDir::for_run(root.path(), Some(first), follow_up);
        assert_eq!(
            lone, continued,
            "a conversation keyed by its first run's id"
        );
        let dirs = continued.dirs();
        assert_eq!(
            dirs.workspace,
            root.path().join(first.to_string()).join("workspace")
        );
        assert_eq!(
            dirs.state,
            root.path().join(first.to_string()).join("state")
        );
        dirs.create().await.unwrap();
        assert!(dirs.workspace.is_dir() && dirs.state.is_dir());

        assert_eq!(continued.load_session("claude-code").await, None);
        continued
            .save_session(&SessionRecord {
                provider: "claude-code".into(),
                session_id: "sess-1".into(),
                run_id: first,
            })
            .await
            .unwrap();
        assert_eq!(
            continued.load_session("claude-code").await.as_deref(),
            Some("sess-1")
        );
        assert_eq!(
            continued.load_session("opencode").await,
            None,
            "another provider's session"
        );

        tokio::fs::write(continued.base.join("session.json"), b"{garbage")
            .await
            .unwrap();
        assert_eq!(continued.load_session("claude-code").await, None);

        continued.remove().await.unwrap();
        assert!(!continued.base.exists());
        continued.remove().await.unwrap();
    }
}
