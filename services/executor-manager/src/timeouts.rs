//! Run timeout policy: which of the places a timeout can come from wins.
//!
//! First match wins: `providerOptions.timeoutMs` or `runTimeoutMs` (the caller asked
//! for it on this run) → the command's `timeoutMs` (app or profile default) → the first
//! configured template for the provider and model → the first template for the
//! provider alone → `default_run_timeout_ms`. Pure, so the precedence is unit-tested.

use crate::config::TimeoutTemplate;
use switchyard_contracts::{ProviderName, RunCommand};

/// Where a resolved timeout came from (logged, so an operator can tell why a run got
/// the timeout it got).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutSource {
    ProviderOptions,
    Command,
    ModelTemplate,
    ProviderTemplate,
    Default,
}

impl TimeoutSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TimeoutSource::ProviderOptions => "provider_options",
            TimeoutSource::Command => "command",
            TimeoutSource::ModelTemplate => "model_template",
            TimeoutSource::ProviderTemplate => "provider_template",
            TimeoutSource::Default => "default",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResolvedTimeout {
    pub timeout_ms: u64,
    pub source: TimeoutSource,
}

/// The option keys a caller may set in `providerOptions`, in order of preference.
const OPTION_KEYS: [&str; 2] = ["timeoutMs", "runTimeoutMs"];

/// Resolves the run timeout of `command`.
pub(crate) fn resolve(
    command: &RunCommand,
    templates: &[TimeoutTemplate],
    default_ms: u64,
) -> ResolvedTimeout {
    let found = |timeout_ms, source| ResolvedTimeout { timeout_ms, source };
    // Only positive integers count: a zero, negative, fractional or string value is a
    // caller mistake, and falling through beats running without any limit.
    let from_options = OPTION_KEYS.iter().find_map(|key| {
        command
            .provider_options
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .filter(|ms| *ms > 0)
    });
    if let Some(ms) = from_options {
        return found(ms, TimeoutSource::ProviderOptions);
    }
    if let Some(ms) = command.timeout_ms.filter(|ms| *ms > 0) {
        return found(ms, TimeoutSource::Command);
    }
    let provider = canonical(&command.provider);
    let for_provider = || {
        templates
            .iter()
            .filter(move |t| canonical(&t.provider) == provider)
    };
    if let Some(model) = &command.model
        && let Some(t) = for_provider().find(|t| t.model.as_ref() == Some(model))
    {
        return found(t.timeout_ms, TimeoutSource::ModelTemplate);
    }
    if let Some(t) = for_provider().find(|t| t.model.is_none()) {
        return found(t.timeout_ms, TimeoutSource::ProviderTemplate);
    }
    found(default_ms, TimeoutSource::Default)
}

/// Aliases (`codex-cli`) and canonical names must match the same template.
fn canonical(provider: &str) -> &str {
    match ProviderName::parse(provider) {
        Some(name) => name.as_str(),
        None => provider,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULT: u64 = 600_000;

    fn command(provider: &str, model: Option<&str>) -> RunCommand {
        RunCommand {
            run_id: uuid::Uuid::nil(),
            provider: provider.into(),
            model: model.map(Into::into),
            prompt: "p".into(),
            app_id: None,
            execution_profile: None,
            provider_options: json!({}),
            credential_env: Vec::new(),
            timeout_ms: None,
            conversation_id: None,
            preferred_executor: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn template(provider: &str, model: Option<&str>, timeout_ms: u64) -> TimeoutTemplate {
        TimeoutTemplate {
            provider: provider.into(),
            model: model.map(Into::into),
            timeout_ms,
        }
    }

    fn templates() -> Vec<TimeoutTemplate> {
        vec![
            template("claude-code", None, 2_000),
            template("claude-code", Some("opus"), 3_000),
            template("claude-code", Some("opus"), 4_000),
            template("codex-app-server", None, 5_000),
        ]
    }

    #[test]
    fn provider_options_win_over_everything() {
        let mut c = command("claude-code", Some("opus"));
        c.timeout_ms = Some(9);
        c.provider_options = json!({"timeoutMs": 11, "runTimeoutMs": 12});
        let r = resolve(&c, &templates(), DEFAULT);
        assert_eq!(
            (r.timeout_ms, r.source),
            (11, TimeoutSource::ProviderOptions)
        );

        c.provider_options = json!({"runTimeoutMs": 12});
        let r = resolve(&c, &templates(), DEFAULT);
        assert_eq!(
            (r.timeout_ms, r.source),
            (12, TimeoutSource::ProviderOptions)
        );
    }

    #[test]
    fn invalid_option_values_fall_through() {
        let mut c = command("claude-code", Some("opus"));
        c.timeout_ms = Some(9);
        for bad in [json!(0), json!(-5), json!(1.5), json!("100"), json!(null)] {
            c.provider_options = json!({"timeoutMs": bad, "runTimeoutMs": bad});
            let r = resolve(&c, &templates(), DEFAULT);
            assert_eq!(
                (r.timeout_ms, r.source),
                (9, TimeoutSource::Command),
                "{bad}"
            );
        }
        // A bad `timeoutMs` does not hide a good `runTimeoutMs`.
        c.provider_options = json!({"timeoutMs": 0, "runTimeoutMs": 7});
        assert_eq!(resolve(&c, &templates(), DEFAULT).timeout_ms, 7);
        // Non-object options (a script array, say) are simply not a source.
        c.provider_options = json!(["step"]);
        assert_eq!(resolve(&c, &templates(), DEFAULT).timeout_ms, 9);
    }

    #[test]
    fn command_timeout_wins_over_templates() {
        let mut c = command("claude-code", Some("opus"));
        c.timeout_ms = Some(42);
        let r = resolve(&c, &templates(), DEFAULT);
        assert_eq!((r.timeout_ms, r.source), (42, TimeoutSource::Command));
        c.timeout_ms = Some(0);
        assert_eq!(
            resolve(&c, &templates(), DEFAULT).source,
            TimeoutSource::ModelTemplate
        );
    }

    #[test]
    fn model_template_wins_over_provider_template_and_first_match_wins() {
        let r = resolve(&command("claude-code", Some("opus")), &templates(), DEFAULT);
        assert_eq!(
            (r.timeout_ms, r.source),
            (3_000, TimeoutSource::ModelTemplate)
        );
    }

    #[test]
    fn provider_template_applies_to_other_models_and_no_model() {
        for model in [Some("sonnet"), None] {
            let r = resolve(&command("claude-code", model), &templates(), DEFAULT);
            assert_eq!(
                (r.timeout_ms, r.source),
                (2_000, TimeoutSource::ProviderTemplate)
            );
        }
    }

    #[test]
    fn aliases_match_templates_of_the_canonical_name() {
        let r = resolve(&command("codex-cli", None), &templates(), DEFAULT);
        assert_eq!(r.timeout_ms, 5_000);
        let aliased = vec![template("codex-cli", None, 6_000)];
        let r = resolve(&command("codex-app-server", None), &aliased, DEFAULT);
        assert_eq!(r.timeout_ms, 6_000);
    }

    #[test]
    fn default_applies_when_nothing_matches() {
        let r = resolve(&command("scripted", Some("opus")), &templates(), DEFAULT);
        assert_eq!((r.timeout_ms, r.source), (DEFAULT, TimeoutSource::Default));
        let r = resolve(&command("scripted", None), &[], 77);
        assert_eq!((r.timeout_ms, r.source), (77, TimeoutSource::Default));
    }
}
