//! The provider interface: what an executor runs for a run, and the registry of the
//! providers this executor offers.
//!
//! A provider gets a [`RunContext`] — the command, its directories (workspace and CLI
//! state), the conversation it continues, an [`EventSink`], a [`HumanLoop`] handle and a
//! stop token — and returns a [`ProviderOutcome`]. The interface is shaped for the agent CLIs: a provider spawns
//! its child process, translates the streamed stdout into events, asks humans through
//! the handle, and on stop first interrupts over its protocol, then signals the process
//! group. The supervisor (`runs.rs`) gives it a grace period after cancelling the stop
//! token and aborts the future after that, so a provider must also make its child die
//! with it (e.g. `kill_on_drop` plus its own process group).

use crate::cli::{CliEnv, ConversationState, WorkDirs};
use crate::human_loop::HumanLoop;
use crate::sink::EventSink;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use switchyard_contracts::event::Evidence;
use switchyard_contracts::presence::ProviderAvailability;
use switchyard_contracts::{FailureReason, ProviderName, RunCommand};
use tokio_util::sync::CancellationToken;

/// Everything a provider needs for one run.
pub struct RunContext {
    pub command: RunCommand,
    /// The run's timeout on active time (`None`: no limit). The supervisor enforces it;
    /// providers may use it to size their own internal limits.
    pub timeout: Option<Duration>,
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
    pub fn set_session_id(&self, id: impl Into<String>) {
        self.session_id.set(id.into());
    }

    /// Leaves the evidence the provider has (stderr tail, last protocol lines, exit
    /// code) when it winds down after a stop: a run the supervisor ended for its timeout
    /// is a failure and carries it, like one a liveness limit ended. The last call wins.
    pub fn report_evidence(&self, evidence: Evidence) {
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
pub enum ProviderOutcome {
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
    pub fn failed(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self::Failed {
            reason,
            detail: detail.into(),
            evidence: Evidence::default(),
        }
    }
}

/// A kind of agent the executor can run.
pub trait Provider: Send + Sync + 'static {
    fn name(&self) -> ProviderName;

    /// Whether it can run here (its CLI is installed) and which version.
    fn availability(&self) -> ProviderAvailability;

    /// Runs one run to its end. The future must be `'static` because the supervisor
    /// spawns it as its own task (to abort it after the stop grace).
    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome>;
}

/// A provider this build knows by name but does not implement yet: listed in presence
/// as not installed, so that dispatch answers `unsupported_provider`.
struct NotInstalled(ProviderName);

impl Provider for NotInstalled {
    fn name(&self) -> ProviderName {
        self.0
    }

    fn availability(&self) -> ProviderAvailability {
        ProviderAvailability {
            name: self.0.as_str().to_owned(),
            installed: false,
            version: None,
            problem: Some("this build has no implementation of it".to_owned()),
            credentials_configured: None,
        }
    }

    fn run(&self, _ctx: RunContext) -> BoxFuture<'static, ProviderOutcome> {
        let name = self.0;
        Box::pin(async move {
            ProviderOutcome::failed(
                FailureReason::BinaryMissing,
                format!("provider {name} is not available on this executor"),
            )
        })
    }
}

/// The adapter of a CLI provider.
fn cli_provider(name: ProviderName, cli: &Arc<CliEnv>) -> Arc<dyn Provider> {
    match name {
        ProviderName::CodexAppServer => {
            Arc::new(crate::providers::codex::CodexProvider::new(cli.clone()))
        }
        ProviderName::ClaudeCode => {
            Arc::new(crate::providers::claude::ClaudeProvider::new(cli.clone()))
        }
        ProviderName::Opencode => Arc::new(crate::providers::opencode::OpencodeProvider::new(
            cli.clone(),
        )),
        other => Arc::new(NotInstalled(other)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown provider {0:?}")]
pub struct UnknownProvider(pub String);

/// The providers this executor offers, by canonical name.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: Vec<Arc<dyn Provider>>,
}

impl ProviderRegistry {
    /// The built-in implementation of each named provider (names or aliases; duplicates
    /// are ignored). The CLI providers share `cli` and report themselves not installed
    /// when their binary is not found; providers without an implementation in this
    /// build are offered as not installed.
    pub fn from_names(names: &[String], cli: &Arc<CliEnv>) -> Result<Self, UnknownProvider> {
        let mut registry = Self::default();
        for name in names {
            let parsed = ProviderName::parse(name).ok_or_else(|| UnknownProvider(name.clone()))?;
            let provider: Arc<dyn Provider> = match parsed {
                ProviderName::Scripted => Arc::new(crate::scripted::ScriptedProvider),
                other => cli_provider(other, cli),
            };
            registry.insert(provider);
        }
        Ok(registry)
    }

    /// Adds a provider, replacing one of the same name.
    pub fn insert(&mut self, provider: Arc<dyn Provider>) {
        self.providers.retain(|p| p.name() != provider.name());
        self.providers.push(provider);
    }

    /// The provider for a canonical name or alias, if offered here.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        let name = ProviderName::parse(name)?;
        self.providers.iter().find(|p| p.name() == name).cloned()
    }

    pub fn availability(&self) -> Vec<ProviderAvailability> {
        self.providers.iter().map(|p| p.availability()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CLI providers whose binaries are nowhere to be found.
    fn no_clis() -> Arc<CliEnv> {
        let empty = tempfile::tempdir().unwrap();
        Arc::new(CliEnv::for_tests(
            crate::cli::CliLocator::new(vec![empty.path().to_path_buf()], None),
            crate::cli::Credentials::from_pairs(Vec::<(String, String)>::new()),
        ))
    }

    #[test]
    fn registry_resolves_aliases_and_marks_unimplemented_providers_missing() {
        let registry = ProviderRegistry::from_names(
            &["scripted".into(), "codex-cli".into(), "scripted".into()],
            &no_clis(),
        )
        .unwrap();
        let availability = registry.availability();
        assert_eq!(availability.len(), 2);
        assert!(
            availability
                .iter()
                .any(|p| p.name == "scripted" && p.installed)
        );
        assert!(
            availability
                .iter()
                .any(|p| p.name == "codex-app-server" && !p.installed)
        );
        assert!(registry.get("codex-app-server").is_some());
        assert!(registry.get("claude-code").is_none());
        assert!(ProviderRegistry::from_names(&["gpt".into()], &no_clis()).is_err());
    }

    /// Each CLI adapter checks for its binary when a run starts (it may have vanished
    /// since start-up) and ends the run `binary_missing`, naming where it looked.
    #[tokio::test]
    async fn a_cli_provider_without_its_binary_ends_the_run_binary_missing() {
        use crate::clock::ActiveClock;
        use crate::human_loop::PendingRequests;
        use switchyard_contracts::dispatch::EventPosition;
        use switchyard_platform::nats::{self, Resources};

        let server = switchyard_test_support::NatsServer::start().await.unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let what = Resources {
            run_events: true,
            ..Default::default()
        };
        nats::provision(&js, what).await.unwrap();
        let log = switchyard_platform::events::EventLog::open(js)
            .await
            .unwrap();
        let empty = tempfile::tempdir().unwrap();
        let searched = empty.path().join("no-clis-here");
        let cli = Arc::new(CliEnv::for_tests(
            crate::cli::CliLocator::new(vec![searched.clone()], None),
            crate::cli::Credentials::from_pairs([
                ("OPENAI_API_KEY", "sk-test-binary-missing-1"),
                ("ANTHROPIC_API_KEY", "sk-test-binary-missing-2"),
            ]),
        ));
        let names: Vec<String> = ProviderName::ALL
            .iter()
            .filter(|p| **p != ProviderName::Scripted)
            .map(|p| p.as_str().to_owned())
            .collect();
        let registry = ProviderRegistry::from_names(&names, &cli).unwrap();
        for name in &names {
            let provider = registry.get(name).unwrap();
            assert!(!provider.availability().installed, "{name}");
            let command: RunCommand = serde_json::from_value(serde_json::json!({
                "runId": switchyard_contracts::RunId::now_v7(),
                "provider": name,
                "prompt": "hi",
                "createdAt": chrono::Utc::now(),
            }))
            .unwrap();
            let dirs = WorkDirs::under(&empty.path().join(name));
            dirs.create().await.unwrap();
            let sink = EventSink::new(log.clone(), command.run_id, EventPosition::EMPTY);
            let stop = CancellationToken::new();
            let ctx = RunContext {
                command,
                timeout: None,
                workspace: dirs.workspace.clone(),
                dirs,
                conversation: None,
                human_loop: HumanLoop::new(
                    Arc::new(PendingRequests::default()),
                    Arc::new(ActiveClock::start()),
                    sink.clone(),
                    stop.clone(),
                ),
                events: sink,
                stop,
                session_id: SessionReport::default(),
                evidence: EvidenceReport::default(),
            };
            let outcome = tokio::time::timeout(Duration::from_secs(30), provider.run(ctx))
                .await
                .unwrap();
            match outcome {
                ProviderOutcome::Failed { reason, detail, .. } => {
                    assert_eq!(reason, FailureReason::BinaryMissing, "{name}: {detail}");
                    assert!(
                        detail.contains(&searched.display().to_string()),
                        "{name}: the detail names the search path: {detail}"
                    );
                }
                other => panic!("{name}: expected binary_missing, got {other:?}"),
            }
        }
    }
}
