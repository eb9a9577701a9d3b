//! What a start request asks for: checking what its shape cannot express, and
//! resolving what the run runs with (request → execution profile → app defaults →
//! system default, `control_plane.default_provider`).

use super::error::StartRunError;
use crate::store;
use serde_json::{Map, Value};
use switchyard_contracts::ProviderName;
use switchyard_contracts::api::{RuntimeDefaults, StartRunRequest};
use switchyard_contracts::budget::{BUDGET_OPTION, InvalidBudget, RunBudget};
use switchyard_contracts::provider::operator_only_option;

/// Longest model name accepted.
const MAX_MODEL_LEN: usize = 256;

/// Parses a provider name (canonical or alias).
pub(crate) fn parse_provider(name: &str) -> Result<ProviderName, StartRunError> {
    ProviderName::parse(name).ok_or_else(|| StartRunError::UnknownProvider(truncate(name, 64)))
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// What a run runs with, after every level had its say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) provider: ProviderName,
    pub(crate) model: Option<String>,
    pub(crate) provider_options: Map<String, Value>,
    pub(crate) credential_env: Vec<String>,
    pub(crate) timeout_ms: Option<u64>,
}

/// Request over profile over app defaults over the system default (`system_provider`,
/// the configured `control_plane.default_provider`). Provider options
/// are merged shallowly (a key set at a higher level replaces the whole value);
/// credential names are merged (see [`merged_credential_env`]).
pub(crate) fn resolve(
    request: &StartRunRequest,
    profile: Option<&RuntimeDefaults>,
    app: Option<&RuntimeDefaults>,
    system_provider: ProviderName,
) -> Result<Resolved, StartRunError> {
    let levels = [profile, app];
    let provider = match request.provider.as_deref().or_else(|| {
        levels
            .iter()
            .flatten()
            .find_map(|defaults| defaults.provider.as_deref())
    }) {
        Some(name) => parse_provider(name)?,
        None => system_provider,
    };
    let model = request.model.clone().or_else(|| {
        levels
            .iter()
            .flatten()
            .find_map(|defaults| defaults.model.clone())
    });
    // Where credentials go is the executor operator's: refused from the request, and
    // from stored defaults too (registration refuses them, but a row may predate that).
    if let Some(key) = request
        .provider_options
        .iter()
        .flat_map(|own| own.keys())
        .find_map(|key| operator_only_option([key.as_str()]))
    {
        return Err(StartRunError::OptionNotAllowed {
            field: format!("providerOptions.{key}"),
            provider: Some(provider),
            stored: false,
        });
    }
    let mut provider_options = Map::new();
    for defaults in levels.iter().rev().flatten() {
        provider_options.extend(defaults.provider_options.clone());
    }
    if let Some(key) = operator_only_option(provider_options.keys().map(String::as_str)) {
        return Err(StartRunError::OptionNotAllowed {
            field: format!("providerOptions.{key}"),
            provider: Some(provider),
            stored: true,
        });
    }
    if let Some(own) = &request.provider_options {
        // Which existing directory a run may work in is the app's decision (and the
        // executor's `allowed_workspace_dirs`), never a caller's.
        if let Some(dir) = own.get("workspaceDir")
            && provider_options.get("workspaceDir") != Some(dir)
        {
            return Err(StartRunError::Invalid(
                "`providerOptions.workspaceDir` can only be set by the app's runtime defaults \
                 or an execution profile; a start request cannot set or change it"
                    .into(),
            ));
        }
        provider_options.extend(own.clone());
    }
    merge_budget(&mut provider_options, request, profile, app)?;
    let credential_env = merged_credential_env(&levels);
    let timeout_ms = levels
        .iter()
        .flatten()
        .find_map(|defaults| defaults.timeout_ms);
    Ok(Resolved {
        provider,
        model,
        provider_options,
        credential_env,
        timeout_ms,
    })
}

/// The credential names of every level, the most specific first (a provider takes its
/// primary credential from the first name), each name once: a profile adds to what its
/// app declares instead of replacing it.
fn merged_credential_env(levels: &[Option<&RuntimeDefaults>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in levels
        .iter()
        .flatten()
        .flat_map(|defaults| &defaults.credential_env)
    {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// `providerOptions.budget` merged field by field, request over profile over app (the
/// shallow merge above would let a request's budget drop the app's other limits).
fn merge_budget(
    provider_options: &mut Map<String, Value>,
    request: &StartRunRequest,
    profile: Option<&RuntimeDefaults>,
    app: Option<&RuntimeDefaults>,
) -> Result<(), StartRunError> {
    let invalid = |e: InvalidBudget| StartRunError::Invalid(e.to_string());
    let mut budget = match &request.provider_options {
        Some(own) => RunBudget::from_options(own, "providerOptions").map_err(invalid)?,
        None => None,
    }
    .unwrap_or_default();
    for (defaults, at) in [
        (profile, "the execution profile's providerOptions"),
        (app, "the app's runtimeDefaults.providerOptions"),
    ] {
        if let Some(defaults) = defaults
            && let Some(lower) =
                RunBudget::from_options(&defaults.provider_options, at).map_err(invalid)?
        {
            budget = budget.or(lower);
        }
    }
    if budget.is_empty() {
        provider_options.remove(BUDGET_OPTION);
    } else {
        let value = crate::json::to_value("a run budget", &budget).map_err(|source| {
            StartRunError::Encode {
                what: "the run budget",
                source,
            }
        })?;
        provider_options.insert(BUDGET_OPTION.to_owned(), value);
    }
    Ok(())
}

/// Checks what the request's shape cannot express.
pub(crate) fn validate_request(
    request: &StartRunRequest,
    max_prompt_bytes: usize,
) -> Result<(), StartRunError> {
    if request.prompt.trim().is_empty() {
        return Err(StartRunError::Invalid("`prompt` must not be empty".into()));
    }
    if request.prompt.len() > max_prompt_bytes {
        return Err(StartRunError::PromptTooLarge {
            size: request.prompt.len(),
            limit: max_prompt_bytes,
        });
    }
    if request.prompt.contains('\0') {
        return Err(StartRunError::Invalid(
            "`prompt` must not contain NUL characters".into(),
        ));
    }
    if let Some(model) = &request.model
        && (model.trim().is_empty() || model.len() > MAX_MODEL_LEN || model.contains('\0'))
    {
        return Err(StartRunError::Invalid(format!(
            "`model` must be 1-{MAX_MODEL_LEN} bytes without NUL characters"
        )));
    }
    if let Some(options) = &request.provider_options
        && options
            .iter()
            .any(|(k, v)| k.contains('\0') || store::json_contains_nul(v))
    {
        return Err(StartRunError::Invalid(
            "`providerOptions` must not contain NUL characters".into(),
        ));
    }
    if let Some(provider) = &request.provider {
        parse_provider(provider)?;
    }
    if let Some(options) = &request.provider_options {
        crate::durations::check_provider_options(options, "providerOptions")?;
        RunBudget::from_options(options, "providerOptions")
            .map_err(|e| StartRunError::Invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_contracts::provider::DEFAULT_PROVIDER;

    /// The resolution under the built-in system default.
    fn resolve(
        request: &StartRunRequest,
        profile: Option<&RuntimeDefaults>,
        app: Option<&RuntimeDefaults>,
    ) -> Result<Resolved, StartRunError> {
        super::resolve(request, profile, app, DEFAULT_PROVIDER)
    }

    fn request(provider: Option<&str>, model: Option<&str>) -> StartRunRequest {
        StartRunRequest {
            provider: provider.map(str::to_owned),
            model: model.map(str::to_owned),
            prompt: "hi".into(),
            ..Default::default()
        }
    }

    fn defaults(provider: Option<&str>, options: Value, timeout: Option<u64>) -> RuntimeDefaults {
        RuntimeDefaults {
            provider: provider.map(str::to_owned),
            model: provider.map(|p| format!("{p}-model")),
            credential_env: provider
                .map(|p| vec![format!("{}_KEY", p.replace('-', "_").to_uppercase())])
                .unwrap_or_default(),
            provider_options: options.as_object().cloned().unwrap_or_default(),
            timeout_ms: timeout,
        }
    }

    #[test]
    fn request_wins_over_profile_over_app_over_default() {
        let app = defaults(Some("claude-code"), json!({"a": 1, "b": 1}), Some(10));
        let profile = defaults(Some("opencode"), json!({"b": 2, "c": 2}), None);
        let r = resolve(&request(Some("scripted"), None), Some(&profile), Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::Scripted);
        assert_eq!(r.model.as_deref(), Some("opencode-model"));
        let r = resolve(&request(None, Some("m")), Some(&profile), Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::Opencode);
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.credential_env, vec!["OPENCODE_KEY", "CLAUDE_CODE_KEY"]);
        assert_eq!(r.timeout_ms, Some(10));
        assert_eq!(
            Value::Object(r.provider_options),
            json!({"a": 1, "b": 2, "c": 2})
        );
        let r = resolve(&request(None, None), None, Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::ClaudeCode);
        let r = resolve(&request(None, None), None, None).unwrap();
        assert_eq!(r.provider, ProviderName::CodexAppServer);
        assert_eq!(r.model, None);
    }

    #[test]
    fn the_configured_default_applies_only_when_no_level_names_a_provider() {
        let scripted = ProviderName::Scripted;
        let r = super::resolve(&request(None, None), None, None, scripted).unwrap();
        assert_eq!(r.provider, ProviderName::Scripted);
        let app = defaults(Some("claude-code"), json!({}), None);
        let r = super::resolve(&request(None, None), None, Some(&app), scripted).unwrap();
        assert_eq!(r.provider, ProviderName::ClaudeCode);
        let r = super::resolve(&request(Some("opencode"), None), None, None, scripted).unwrap();
        assert_eq!(r.provider, ProviderName::Opencode);
    }

    #[test]
    fn an_endpoint_is_refused_from_the_request_and_from_stored_defaults() {
        let mut own = request(Some("claude-code"), None);
        own.provider_options = json!({"base_url": "http://127.0.0.1:9"})
            .as_object()
            .cloned();
        let error = resolve(&own, None, None).unwrap_err();
        assert!(
            matches!(&error, StartRunError::OptionNotAllowed { field, stored: false, .. }
                if field == "providerOptions.base_url"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("executor.credentials.claude-code.base_url"),
            "{message}"
        );
        let app = defaults(
            Some("codex-app-server"),
            json!({"baseUrl": "http://127.0.0.1:9"}),
            None,
        );
        let error = resolve(&request(None, None), None, Some(&app)).unwrap_err();
        assert!(
            matches!(&error, StartRunError::OptionNotAllowed { stored: true, .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("executor.credentials.codex-app-server.base_url"),
            "{error}"
        );
    }

    #[test]
    fn request_options_replace_whole_keys() {
        let app = defaults(None, json!({"script": {"steps": [1]}, "x": true}), None);
        let mut req = request(None, None);
        req.provider_options = json!({"script": {"other": 1}}).as_object().cloned();
        let r = resolve(&req, None, Some(&app)).unwrap();
        assert_eq!(
            Value::Object(r.provider_options),
            json!({"script": {"other": 1}, "x": true})
        );
    }

    #[test]
    fn budgets_merge_field_by_field_and_bad_ones_are_refused() {
        let app = defaults(
            None,
            json!({"budget": {"maxTurns": 50, "maxEvents": 1000}}),
            None,
        );
        let profile = defaults(None, json!({"budget": {"maxEvents": 500}}), None);
        let mut req = request(None, None);
        req.provider_options = json!({"budget": {"maxOutputTokens": 9}})
            .as_object()
            .cloned();
        let r = resolve(&req, Some(&profile), Some(&app)).unwrap();
        assert_eq!(
            r.provider_options["budget"],
            json!({"maxTurns": 50, "maxOutputTokens": 9, "maxEvents": 500})
        );
        let r = resolve(&request(None, None), None, None).unwrap();
        assert!(r.provider_options.get("budget").is_none());

        req.provider_options = json!({"budget": {"maxEvents": 0}}).as_object().cloned();
        for error in [
            validate_request(&req, 10).unwrap_err(),
            resolve(&req, None, None).unwrap_err(),
        ] {
            assert!(
                matches!(&error, StartRunError::Invalid(m) if m.contains("providerOptions.budget.maxEvents")),
                "{error}"
            );
        }
    }

    #[test]
    fn codex_cli_resolves_to_codex_app_server_and_unknown_is_an_error() {
        let r = resolve(&request(Some("codex-cli"), None), None, None).unwrap();
        assert_eq!(r.provider.as_str(), "codex-app-server");
        assert!(matches!(
            resolve(&request(Some("gpt"), None), None, None),
            Err(StartRunError::UnknownProvider(_))
        ));
    }

    #[test]
    fn validation_rejects_what_the_shape_allows() {
        let mut req = request(None, None);
        req.prompt = "  ".into();
        assert!(matches!(
            validate_request(&req, 10),
            Err(StartRunError::Invalid(_))
        ));
        req.prompt = "x".repeat(11);
        assert!(matches!(
            validate_request(&req, 10),
            Err(StartRunError::PromptTooLarge {
                size: 11,
                limit: 10
            })
        ));
        req.prompt = "a\0b".into();
        assert!(validate_request(&req, 10).is_err());
        req.prompt = "ok".into();
        req.app_id = Some("good_app-1".parse().unwrap());
        validate_request(&req, 10).unwrap();
        req.provider_options = json!({"k": ["\u{0}"]}).as_object().cloned();
        assert!(validate_request(&req, 10).is_err());
    }
}
