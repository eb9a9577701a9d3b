//! A CLI provider whose binary is not found is advertised as not installed, and a run
//! dispatched to it is refused (the executor-manager turns "no executor has it" into
//! `binary_missing`). The adapters' own run-time check (binary gone after start-up →
//! `binary_missing` with the search path in the detail) is unit-tested in
//! `src/providers/mod.rs`.

use crate::common::{ProviderHarness, RunSpec};
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::{ProviderName, RunId};
use switchyard_executor::test_support::CliLocator;

#[tokio::test]
async fn a_missing_binary_is_not_installed_and_its_runs_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    let search_path = vec![empty.path().to_path_buf()];
    let harness = ProviderHarness::start_with(|settings| {
        settings.cli_search_path = search_path.clone();
    })
    .await;
    // Which CLIs the machine's PATH lacks too (on CI: all of them).
    let path = switchyard_platform::config::process_env()
        .get("PATH")
        .cloned();
    let locator = CliLocator::new(search_path.clone(), path.as_deref());
    let missing: Vec<(ProviderName, &str)> = [
        (ProviderName::CodexAppServer, "codex"),
        (ProviderName::ClaudeCode, "claude"),
        (ProviderName::Opencode, "opencode"),
    ]
    .into_iter()
    .filter(|(_, program)| locator.find(program).is_none())
    .collect();
    assert!(
        !missing.is_empty(),
        "every CLI is on this machine's PATH; this test needs one that is not"
    );

    let presence = harness.presence().await;
    assert!(
        presence
            .providers
            .iter()
            .any(|p| p.name == "scripted" && p.installed)
    );
    for (provider, program) in &missing {
        let listed = presence
            .providers
            .iter()
            .find(|p| p.name == provider.as_str())
            .unwrap_or_else(|| panic!("{provider} is listed in presence"));
        assert!(!listed.installed, "{program} is not installed: {listed:?}");
        assert_eq!(listed.version, None);

        let reply = harness
            .dispatch_reply(&RunSpec::new(provider.as_str(), "hi"), RunId::now_v7())
            .await;
        assert_eq!(
            reply.outcome,
            DispatchOutcome::UnsupportedProvider,
            "{reply:?}"
        );
    }
}
