//! The provider interface: what an executor runs for a run, and the registry of the
//! providers this executor offers.
//!
//! A provider gets a [`RunContext`] — the command, a workspace directory, an
//! [`EventSink`], a [`HumanLoop`] handle and a stop token — and returns a
//! [`ProviderOutcome`]. The interface is shaped for the agent CLIs: a provider spawns
//! its child process, translates the streamed stdout into events, asks humans through
//! the handle, and on stop first interrupts over its protocol, then signals the process
//! group. The supervisor (`runs.rs`) gives it a grace period after cancelling the stop
//! token and aborts the future after that, so a provider must also make its child die
//! with it (e.g. `kill_on_drop` plus its own process group).

use crate::human_loop::HumanLoop;
use crate::sink::EventSink;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// A directory of its own (`<workspace_root>/<run_id>`), created before the run.
    pub workspace: PathBuf,
    pub events: EventSink,
    pub human_loop: HumanLoop,
    /// Cancelled on stop, timeout, shutdown or when the run's log was taken over.
    /// The provider should return promptly (with [`ProviderOutcome::Stopped`]).
    pub stop: CancellationToken,
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
    /// are ignored). Providers without an implementation yet are offered as not installed.
    pub fn from_names(names: &[String]) -> Result<Self, UnknownProvider> {
        let mut registry = Self::default();
        for name in names {
            let parsed = ProviderName::parse(name).ok_or_else(|| UnknownProvider(name.clone()))?;
            let provider: Arc<dyn Provider> = match parsed {
                ProviderName::Scripted => Arc::new(crate::scripted::ScriptedProvider),
                other => Arc::new(NotInstalled(other)),
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

    #[test]
    fn registry_resolves_aliases_and_marks_unimplemented_providers_missing() {
        let registry = ProviderRegistry::from_names(&[
            "scripted".into(),
            "codex-cli".into(),
            "scripted".into(),
        ])
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
        assert!(ProviderRegistry::from_names(&["gpt".into()]).is_err());
    }
}
