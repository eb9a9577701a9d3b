//! The provider interface: what an executor runs for a run (the providers themselves,
//! and the registry of those this executor offers, are in [`crate::providers`]).
//!
//! A provider gets a [`RunContext`] — the command, its directories (workspace and CLI
//! state), the conversation it continues, an [`EventSink`], a [`HumanLoop`] handle and a
//! stop token — and returns a [`ProviderOutcome`]. The interface is shaped for the agent CLIs: a provider spawns
//! its child process, translates the streamed stdout into events, asks humans through
//! the handle, and on stop first interrupts over its protocol, then signals the process
//! group. The supervisor ([`crate::supervisor`]) gives it a grace period after cancelling the stop
//! token and aborts the future after that, so a provider must also make its child die
//! with it (e.g. `kill_on_drop` plus its own process group).

use crate::human_loop::HumanLoop;
use crate::sink::EventSink;
use crate::workdirs::{ConversationState, WorkDirs};
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use switchyard_contracts::event::Evidence;
use switchyard_contracts::presence::ProviderAvailability;
use switchyard_contracts::{FailureReason, ProviderName, RunCommand};
use tokio_util::sync::CancellationToken;

/// Everything a provider needs for one run.
pub(crate) struct RunContext {
    pub command: RunCommand,
    /// The agent's working directory, created before the run (== `dirs.workspace`).
    pub workspace: PathBuf,
    /// The workspace and the CLI's state directory (its HOME / CODEX_HOME / XDG dirs):
    /// `<workspace_root>/<conversation id or run id>/{workspace,state}`, both created.
    pub dirs: WorkDirs,
    /// Set when the run belongs to a conversation (the command has a
    /// `conversation_id`): the provider session to resume, if this executor has one.
    pub conversation: Option<ConversationState>,
    pub events: EventSink,
    pub human_loop: HumanLoop,
    /// Cancelled on stop, timeout, shutdown or when the run's log was taken over.
    /// The provider should return promptly (with [`ProviderOutcome::Stopped`]).
    pub stop: CancellationToken,
    /// What `set_session_id` reported; read by the supervisor after the run.
    pub(crate) session_id: SessionReport,
    /// What `report_evidence` left; read by the supervisor when it ended the run.
    pub(crate) evidence: EvidenceReport,
}

impl RunContext {
    /// Reports the provider session this run used (a fresh one, or the resumed one), so
    /// that the next run of the conversation can resume it. Call it as soon as the id
    /// is known (a run stopped mid-turn keeps its session too); the last call wins.
    pub(crate) fn set_session_id(&self, id: impl Into<String>) {
        self.session_id.set(id.into());
    }

    /// Leaves the evidence the provider has (stderr tail, last protocol lines, exit
    /// code) when it winds down after a stop: a run the supervisor ended for its timeout
    /// is a failure and carries it, like one a liveness limit ended. The last call wins.
    pub(crate) fn report_evidence(&self, evidence: Evidence) {
        self.evidence.set(evidence);
    }
}

/// The evidence a stopped provider left, shared between its [`RunContext`] and the
/// supervisor.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvidenceReport(Arc<Mutex<Option<Evidence>>>);

impl EvidenceReport {
    pub(crate) fn set(&self, evidence: Evidence) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(evidence);
    }

    pub(crate) fn take(&self) -> Option<Evidence> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The session id a provider reported, shared between its [`RunContext`] and the
/// supervisor.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionReport(Arc<Mutex<Option<String>>>);

impl SessionReport {
    fn set(&self, id: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(id);
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How a provider's run ended, as the provider sees it. The supervisor turns it into
/// `run.completed`; a stop or timeout the supervisor initiated overrides it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProviderOutcome {
    Succeeded,
    Failed {
        reason: FailureReason,
        detail: String,
        evidence: Evidence,
    },
    /// The provider noticed the stop token and wound down.
    Stopped,
}

impl ProviderOutcome {
    pub(crate) fn failed(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self::Failed {
            reason,
            detail: detail.into(),
            evidence: Evidence::default(),
        }
    }
}

/// A kind of agent the executor can run.
pub(crate) trait Provider: Send + Sync + 'static {
    fn name(&self) -> ProviderName;

    /// Whether it can run here (its CLI is installed) and which version.
    fn availability(&self) -> ProviderAvailability;

    /// Runs one run to its end. The future must be `'static` because the supervisor
    /// spawns it as its own task (to abort it after the stop grace).
    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome>;
}
