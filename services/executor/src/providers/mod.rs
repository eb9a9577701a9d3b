//! The providers this build implements — `scripted`, and one adapter per agent CLI
//! (built on [`crate::cli`]) — and the registry of those an executor offers.

pub(crate) mod claude;
pub(crate) mod codex;
pub(crate) mod opencode;
pub(crate) mod scripted;

#[cfg(test)]
pub(crate) mod arbitrary;

use crate::cli::CliEnv;
use crate::provider::{Provider, ProviderOutcome, RunContext};
use futures::future::BoxFuture;
use std::sync::Arc;
use switchyard_contracts::presence::ProviderAvailability;
use switchyard_contracts::{FailureReason, ProviderName};

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
            credential_variables: Vec::new(),
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
        ProviderName::CodexAppServer => Arc::new(codex::CodexProvider::new(cli.clone())),
        ProviderName::ClaudeCode => Arc::new(claude::ClaudeProvider::new(cli.clone())),
        ProviderName::Opencode => Arc::new(opencode::OpencodeProvider::new(cli.clone())),
        other => Arc::new(NotInstalled(other)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown provider {0:?}")]
pub(crate) struct UnknownProvider(pub String);

/// The providers this executor offers, by canonical name.
#[derive(Clone, Default)]
pub(crate) struct ProviderRegistry {
    providers: Vec<Arc<dyn Provider>>,
}

impl ProviderRegistry {
    /// The built-in implementation of each named provider (names or aliases; duplicates
    /// are ignored). The CLI providers share `cli` and report themselves not installed
    /// when their binary is not found; providers without an implementation in this
    /// build are offered as not installed.
    pub(crate) fn from_names(names: &[String], cli: &Arc<CliEnv>) -> Result<Self, UnknownProvider> {
        let mut registry = Self::default();
        for name in names {
            let parsed = ProviderName::parse(name).ok_or_else(|| UnknownProvider(name.clone()))?;
            let provider: Arc<dyn Provider> = match parsed {
                ProviderName::Scripted => Arc::new(scripted::ScriptedProvider),
                other => cli_provider(other, cli),
            };
            registry.insert(provider);
        }
        Ok(registry)
    }

    /// Adds a provider, replacing one of the same name.
    pub(crate) fn insert(&mut self, provider: Arc<dyn Provider>) {
        self.providers.retain(|p| p.name() != provider.name());
        self.providers.push(provider);
    }

    /// The provider for a canonical name or alias, if offered here.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        let name = ProviderName::parse(name)?;
        self.providers.iter().find(|p| p.name() == name).cloned()
    }

    pub(crate) fn availability(&self) -> Vec<ProviderAvailability> {
        self.providers.iter().map(|p| p.availability()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::human_loop::HumanLoop;
    use crate::provider::{EvidenceReport, SessionReport};
    use crate::sink::EventSink;
    use crate::workdirs::WorkDirs;
    use std::time::Duration;
    use switchyard_contracts::RunCommand;
    use tokio_util::sync::CancellationToken;

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

    /// Presence says which allowed credential variables have a value — by name, for
    /// the health check — and never carries a value.
    #[test]
    fn presence_lists_credential_variables_by_name_only() {
        const SECRET: &str = "sk-ant-presence-test-7d1e";
        let empty = tempfile::tempdir().unwrap();
        let cli = Arc::new(CliEnv::for_tests(
            crate::cli::CliLocator::new(vec![empty.path().to_path_buf()], None),
            crate::cli::Credentials::from_pairs([("ANTHROPIC_AUTH_TOKEN", SECRET)]),
        ));
        let registry = ProviderRegistry::from_names(&["claude-code".into()], &cli).unwrap();
        let claude = registry.availability().pop().unwrap();
        let variables: Vec<(&str, bool)> = claude
            .credential_variables
            .iter()
            .map(|v| (v.name.as_str(), v.present))
            .collect();
        assert_eq!(
            variables,
            [
                ("ANTHROPIC_API_KEY", false),
                ("ANTHROPIC_AUTH_TOKEN", true),
                ("CLAUDE_CODE_OAUTH_TOKEN", false),
            ]
        );
        // The default (first) variable has no value: a run naming none would lack it.
        assert_eq!(claude.credentials_configured, Some(false));
        let json = serde_json::to_string(&claude).unwrap();
        assert!(!json.contains(SECRET), "{json}");
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
