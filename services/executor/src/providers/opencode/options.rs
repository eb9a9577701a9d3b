//! What a run asks of opencode (model, model API, credential, permissions, retry
//! budget) and the `opencode.json` written for it.
//!
//! `providerOptions` keys read here (all optional):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `baseUrl` | an OpenAI-compatible (Chat Completions) base URL, e.g. `http://host/v1`; the run then uses a provider of its own | none: one of opencode's built-in providers |
//! | `providerId` | the opencode provider id for `baseUrl` | `switchyard` |
//! | `model` | the model, `provider/model` or just `model` (the command's `model` wins) | with `baseUrl`: `default`; else opencode's choice |
//! | `maxRetries` | model API retries opencode may make before the run fails | 1 |
//! | `permission` | opencode's `permission` config (`"allow"`, or `{"bash": "ask", …}`) | bash, edit and webfetch ask |
//!
//! The API key never appears in the file: it says `{env:NAME}`, and the value reaches
//! opencode through the child's environment only.

use super::api::ModelRef;
use serde_json::{Value, json};
use switchyard_contracts::RunCommand;

/// The credential used when the command names none.
pub(crate) const DEFAULT_CREDENTIAL_ENV: &str = "OPENAI_API_KEY";

/// The provider id of a run's own `baseUrl` provider.
const DEFAULT_CUSTOM_PROVIDER: &str = "switchyard";

/// The built-in provider a bare model name without `baseUrl` belongs to.
const DEFAULT_BUILTIN_PROVIDER: &str = "openai";

/// The model id used with a `baseUrl` when no model is named.
const DEFAULT_CUSTOM_MODEL: &str = "default";

const DEFAULT_MAX_RETRIES: u64 = 1;

/// A run's opencode settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpencodeOptions {
    pub(crate) base_url: Option<String>,
    /// `None`: opencode picks its default model.
    pub(crate) model: Option<ModelRef>,
    /// The credentials to resolve and hand to opencode (the command's
    /// `credentialEnv`, or [`DEFAULT_CREDENTIAL_ENV`]); the first is the API key.
    pub(crate) credential_env: Vec<String>,
    pub(crate) max_retries: u64,
    pub(crate) permission: Value,
}

impl OpencodeOptions {
    /// Reads the command; the error names the bad option.
    pub(crate) fn from_command(command: &RunCommand) -> Result<Self, String> {
        let options = &command.provider_options;
        let text = |key: &str| -> Result<Option<String>, String> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(format!("providerOptions.{key} must be a string")),
            }
        };
        let base_url = text("baseUrl")?;
        if let Some(url) = &base_url
            && !is_plain_url(url)
        {
            return Err(
                "providerOptions.baseUrl must be an http(s) URL without `{`, `}` or spaces"
                    .to_owned(),
            );
        }
        let custom_provider = text("providerId")?;
        if let Some(id) = &custom_provider
            && !is_plain_name(id)
        {
            return Err("providerOptions.providerId has characters opencode ids do not".into());
        }
        let model_name = match command.model.as_deref().map(str::trim) {
            Some(model) if !model.is_empty() => Some(model.to_owned()),
            _ => text("model")?,
        };
        if let Some(model) = &model_name
            && !is_plain_name(model)
        {
            return Err(format!(
                "the model name {model:?} has unsupported characters"
            ));
        }
        let model = match (model_name, &base_url) {
            (Some(name), _) if name.contains('/') => {
                let (provider_id, model_id) = name.split_once('/').unwrap_or_default();
                if provider_id.is_empty() || model_id.is_empty() {
                    return Err(format!("the model name {name:?} is not provider/model"));
                }
                Some(ModelRef {
                    provider_id: provider_id.to_owned(),
                    model_id: model_id.to_owned(),
                })
            }
            (name, Some(_)) => Some(ModelRef {
                provider_id: custom_provider
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CUSTOM_PROVIDER.to_owned()),
                model_id: name.unwrap_or_else(|| DEFAULT_CUSTOM_MODEL.to_owned()),
            }),
            (Some(name), None) => Some(ModelRef {
                provider_id: DEFAULT_BUILTIN_PROVIDER.to_owned(),
                model_id: name,
            }),
            (None, None) => None,
        };
        let max_retries = match options.get("maxRetries") {
            None | Some(Value::Null) => DEFAULT_MAX_RETRIES,
            Some(value) => value
                .as_u64()
                .ok_or("providerOptions.maxRetries must be a non-negative integer")?,
        };
        let permission = match options.get("permission") {
            None | Some(Value::Null) => default_permission(),
            Some(value @ (Value::String(_) | Value::Object(_))) => value.clone(),
            Some(_) => {
                return Err("providerOptions.permission must be a string or an object".into());
            }
        };
        let credential_env = if command.credential_env.is_empty() {
            vec![DEFAULT_CREDENTIAL_ENV.to_owned()]
        } else {
            command.credential_env.clone()
        };
        if let Some(bad) = credential_env.iter().find(|name| !is_env_name(name)) {
            return Err(format!(
                "the credential name {bad:?} is not an environment variable name"
            ));
        }
        Ok(Self {
            base_url,
            model,
            credential_env,
            max_retries,
            permission,
        })
    }

    /// The variable holding the model API key.
    pub(crate) fn api_key_env(&self) -> &str {
        self.credential_env
            .first()
            .map_or(DEFAULT_CREDENTIAL_ENV, String::as_str)
    }

    /// The content of `$XDG_CONFIG_HOME/opencode/opencode.json` for the run.
    pub(crate) fn config_json(&self) -> Value {
        let api_key = format!("{{env:{}}}", self.api_key_env());
        let mut config = json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "permission": self.permission,
        });
        match (&self.base_url, &self.model) {
            (Some(base_url), Some(model)) => {
                config["provider"] = json!({
                    model.provider_id.clone(): {
                        "npm": "@ai-sdk/openai-compatible",
                        "name": format!("Switchyard ({})", model.provider_id),
                        "options": {"baseURL": base_url, "apiKey": api_key},
                        "models": {
                            model.model_id.clone(): {
                                "name": model.model_id,
                                "tool_call": true,
                                "limit": {"context": 128_000, "output": 4096},
                            }
                        }
                    }
                });
            }
            (_, Some(model)) => {
                config["provider"] =
                    json!({model.provider_id.clone(): {"options": {"apiKey": api_key}}});
            }
            (_, None) => {}
        }
        if let Some(model) = &self.model {
            let name = format!("{}/{}", model.provider_id, model.model_id);
            // The small model writes session titles: the same model keeps the run on
            // the one configured API.
            config["model"] = json!(name);
            config["small_model"] = json!(name);
        }
        config
    }
}

/// Approvals reach the platform: commands, file edits and fetches ask.
fn default_permission() -> Value {
    json!({"bash": "ask", "edit": "ask", "webfetch": "ask"})
}

/// A URL opencode will not run its `{env:…}` / `{file:…}` substitution on.
fn is_plain_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && !url
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
}

fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(model: Option<&str>, options: Value, credentials: &[&str]) -> RunCommand {
        serde_json::from_value(json!({
            "runId": "0190a0e0-0000-7000-8000-000000000001",
            "provider": "opencode",
            "model": model,
            "prompt": "hi",
            "providerOptions": options,
            "credentialEnv": credentials,
            "createdAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_base_url_gets_a_provider_of_its_own_with_the_key_from_the_environment() {
        let options = OpencodeOptions::from_command(&command(
            Some("fake-model"),
            json!({"baseUrl": "http://127.0.0.1:9/v1"}),
            &["FAKE_KEY", "OTHER"],
        ))
        .unwrap();
        assert_eq!(options.credential_env, ["FAKE_KEY", "OTHER"]);
        assert_eq!(options.api_key_env(), "FAKE_KEY");
        assert_eq!(options.max_retries, 1);
        let config = options.config_json();
        let provider = &config["provider"]["switchyard"];
        assert_eq!(provider["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(provider["options"]["baseURL"], "http://127.0.0.1:9/v1");
        assert_eq!(provider["options"]["apiKey"], "{env:FAKE_KEY}");
        assert_eq!(provider["models"]["fake-model"]["tool_call"], true);
        assert_eq!(config["model"], "switchyard/fake-model");
        assert_eq!(config["small_model"], "switchyard/fake-model");
        assert_eq!(config["permission"]["bash"], "ask");
        assert_eq!(config["permission"]["edit"], "ask");
    }

    #[test]
    fn defaults_and_overrides() {
        let options = OpencodeOptions::from_command(&command(None, json!({}), &[])).unwrap();
        assert_eq!(options.credential_env, [DEFAULT_CREDENTIAL_ENV]);
        assert_eq!(options.model, None);
        assert!(options.config_json().get("model").is_none());

        let options = OpencodeOptions::from_command(&command(
            Some("anthropic/claude-x"),
            json!({"permission": "allow", "maxRetries": 0, "model": "ignored"}),
            &[],
        ))
        .unwrap();
        assert_eq!(options.max_retries, 0);
        assert_eq!(options.config_json()["permission"], "allow");
        assert_eq!(
            options.config_json()["provider"]["anthropic"]["options"]["apiKey"],
            "{env:OPENAI_API_KEY}"
        );
        assert_eq!(options.config_json()["model"], "anthropic/claude-x");

        let options = OpencodeOptions::from_command(&command(
            None,
            json!({"model": "gpt-x", "baseUrl": "https://example.test/v1", "providerId": "corp"}),
            &[],
        ))
        .unwrap();
        assert_eq!(
            options.model,
            Some(ModelRef {
                provider_id: "corp".into(),
                model_id: "gpt-x".into()
            })
        );
    }

    #[test]
    fn unsafe_or_malformed_options_are_refused() {
        for options in [
            json!({"baseUrl": "http://x/{file:/etc/passwd}"}),
            json!({"baseUrl": "ftp://x"}),
            json!({"baseUrl": 3}),
            json!({"maxRetries": -1}),
            json!({"permission": 1}),
            json!({"model": "a/{env:HOME}"}),
            json!({"model": "/x"}),
        ] {
            assert!(
                OpencodeOptions::from_command(&command(None, options.clone(), &[])).is_err(),
                "{options}"
            );
        }
        assert!(OpencodeOptions::from_command(&command(None, json!({}), &["A}B"])).is_err());
        assert!(OpencodeOptions::from_command(&command(None, json!({}), &["9X"])).is_err());
    }
}
