//! What a run asks of opencode (model, credential, permissions, retry budget), the
//! operator's model endpoint, and the `opencode.json` written for it.
//!
//! The endpoint is the operator's: with `executor.credentials.opencode.base_url` set,
//! the run gets an OpenAI-compatible (Chat Completions) provider of its own pointed
//! there, every model name is a model of that provider (a `provider/` prefix other than
//! its id is part of the model name, as on OpenRouter-style gateways) and no other
//! provider is enabled. Unset, the model's `provider/` prefix picks one of opencode's
//! built-in providers, and each reads its key from its own variable (`OPENAI_API_KEY`
//! for `openai`, …): a key only ever goes to the vendor it belongs to.
//!
//! `providerOptions` keys read here (all optional):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `providerId` | the opencode provider id of the operator's endpoint | `switchyard` |
//! | `model` | the model, `provider/model` or just `model` (the command's `model` wins) | with an endpoint: `default`; else opencode's choice |
//! | `maxRetries` | model API retries opencode may make before the run fails | 1 |
//! | `permission` | opencode's `permission` config (`"allow"`, or `{"bash": "ask", …}`) | bash, edit and webfetch ask |
//!
//! The API key never appears in the file: it says `{env:NAME}`, and the value reaches
//! opencode through the child's environment only. opencode expands `{env:…}` and
//! `{file:…}` anywhere in its config, so nothing a run gives may contain `{` or `}`.

use super::api::ModelRef;
use crate::cli::ProviderCredentials;
use serde_json::{Value, json};
use switchyard_contracts::RunCommand;

/// The provider id of the operator's endpoint.
const DEFAULT_CUSTOM_PROVIDER: &str = "switchyard";

/// The built-in provider a bare model name without an endpoint belongs to.
const DEFAULT_BUILTIN_PROVIDER: &str = "openai";

/// The model id used with an endpoint when no model is named.
const DEFAULT_CUSTOM_MODEL: &str = "default";

const DEFAULT_MAX_RETRIES: u64 = 1;

/// A run's opencode settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpencodeOptions {
    /// The operator's endpoint (`executor.credentials.opencode.base_url`).
    pub(crate) base_url: Option<String>,
    /// `None`: opencode picks its default model.
    pub(crate) model: Option<ModelRef>,
    /// The credentials to resolve and hand to opencode (the command's
    /// `credentialEnv`, or the first the operator allows); with an endpoint, the first
    /// is its API key.
    pub(crate) credential_env: Vec<String>,
    pub(crate) max_retries: u64,
    pub(crate) permission: Value,
}

impl OpencodeOptions {
    /// Reads the command and the operator's allowance; the error names the bad option.
    pub(crate) fn from_command(
        command: &RunCommand,
        policy: &ProviderCredentials,
    ) -> Result<Self, String> {
        let options = &command.provider_options;
        let text = |key: &str| -> Result<Option<String>, String> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(format!("providerOptions.{key} must be a string")),
            }
        };
        let base_url = policy.base_url.clone();
        let custom_provider = text("providerId")?;
        if let Some(id) = &custom_provider
            && (!is_plain_name(id) || id.contains('/'))
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
            (name, Some(_)) => {
                let provider_id =
                    custom_provider.unwrap_or_else(|| DEFAULT_CUSTOM_PROVIDER.to_owned());
                let model_id = match name {
                    Some(name) => match name.strip_prefix(&format!("{provider_id}/")) {
                        Some(own) if !own.is_empty() => own.to_owned(),
                        _ => name,
                    },
                    None => DEFAULT_CUSTOM_MODEL.to_owned(),
                };
                Some(ModelRef {
                    provider_id,
                    model_id,
                })
            }
            (Some(name), None) if name.contains('/') => {
                let (provider_id, model_id) = name.split_once('/').unwrap_or_default();
                if provider_id.is_empty() || model_id.is_empty() {
                    return Err(format!("the model name {name:?} is not provider/model"));
                }
                Some(ModelRef {
                    provider_id: provider_id.to_owned(),
                    model_id: model_id.to_owned(),
                })
            }
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
        if has_braces(&permission) {
            return Err(
                "providerOptions.permission must not contain `{` or `}` (opencode would expand \
                 them as `{env:…}` / `{file:…}` references)"
                    .into(),
            );
        }
        let credential_env = policy.names_for(&command.credential_env);
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

    /// The content of `$XDG_CONFIG_HOME/opencode/opencode.json` for the run.
    pub(crate) fn config_json(&self) -> Value {
        let mut config = json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "permission": self.permission,
        });
        if let (Some(base_url), Some(model)) = (&self.base_url, &self.model) {
            let mut options = json!({"baseURL": base_url});
            if let Some(key) = self.credential_env.first() {
                options["apiKey"] = json!(format!("{{env:{key}}}"));
            }
            config["provider"] = json!({
                model.provider_id.clone(): {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": format!("Switchyard ({})", model.provider_id),
                    "options": options,
                    "models": {
                        model.model_id.clone(): {
                            "name": model.model_id,
                            "tool_call": true,
                            "limit": {"context": 128_000, "output": 4096},
                        }
                    }
                }
            });
            // The operator's endpoint is the only one: no built-in provider is loaded.
            config["enabled_providers"] = json!([model.provider_id]);
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

/// Whether any key or string in `value` contains `{` or `}`.
fn has_braces(value: &Value) -> bool {
    let braces = |text: &str| text.contains(['{', '}']);
    match value {
        Value::String(text) => braces(text),
        Value::Array(items) => items.iter().any(has_braces),
        Value::Object(map) => map.iter().any(|(k, v)| braces(k) || has_braces(v)),
        _ => false,
    }
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
    use switchyard_contracts::ProviderName;

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

    fn defaults() -> ProviderCredentials {
        ProviderCredentials::defaults(ProviderName::Opencode)
    }

    fn operator(base_url: &str) -> ProviderCredentials {
        ProviderCredentials {
            env: vec!["FAKE_KEY".into(), "OTHER".into()],
            base_url: Some(base_url.into()),
        }
    }

    #[test]
    fn the_operators_endpoint_gets_a_provider_of_its_own_with_the_key_from_the_environment() {
        let options = OpencodeOptions::from_command(
            &command(Some("fake-model"), json!({}), &["FAKE_KEY", "OTHER"]),
            &operator("http://127.0.0.1:9/v1"),
        )
        .unwrap();
        assert_eq!(options.credential_env, ["FAKE_KEY", "OTHER"]);
        assert_eq!(options.max_retries, 1);
        let config = options.config_json();
        let provider = &config["provider"]["switchyard"];
        assert_eq!(provider["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(provider["options"]["baseURL"], "http://127.0.0.1:9/v1");
        assert_eq!(provider["options"]["apiKey"], "{env:FAKE_KEY}");
        assert_eq!(provider["models"]["fake-model"]["tool_call"], true);
        assert_eq!(config["enabled_providers"], json!(["switchyard"]));
        assert_eq!(config["model"], "switchyard/fake-model");
        assert_eq!(config["small_model"], "switchyard/fake-model");
        assert_eq!(config["permission"]["bash"], "ask");
        assert_eq!(config["permission"]["edit"], "ask");
    }

    #[test]
    fn with_an_endpoint_every_model_is_a_model_of_that_endpoint() {
        for (model, model_id) in [
            (Some("anthropic/claude-x"), "anthropic/claude-x"),
            (Some("switchyard/fake"), "fake"),
            (None, "default"),
        ] {
            let options = OpencodeOptions::from_command(
                &command(model, json!({}), &[]),
                &operator("https://gateway.test/v1"),
            )
            .unwrap();
            assert_eq!(
                options.model,
                Some(ModelRef {
                    provider_id: "switchyard".into(),
                    model_id: model_id.into()
                }),
                "{model:?}"
            );
            let config = options.config_json();
            assert_eq!(config["enabled_providers"], json!(["switchyard"]));
            assert_eq!(config["provider"].as_object().unwrap().len(), 1, "{config}");
            assert_eq!(options.credential_env, ["FAKE_KEY"]);
        }
        let options = OpencodeOptions::from_command(
            &command(None, json!({"model": "gpt-x", "providerId": "corp"}), &[]),
            &operator("https://gateway.test/v1"),
        )
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
    fn without_an_endpoint_built_in_providers_read_their_own_key() {
        let options =
            OpencodeOptions::from_command(&command(None, json!({}), &[]), &defaults()).unwrap();
        assert_eq!(options.credential_env, ["OPENAI_API_KEY"]);
        assert_eq!(options.model, None);
        assert!(options.config_json().get("model").is_none());

        let options = OpencodeOptions::from_command(
            &command(
                Some("anthropic/claude-x"),
                json!({"permission": "allow", "maxRetries": 0, "model": "ignored"}),
                &["OPENAI_API_KEY"],
            ),
            &defaults(),
        )
        .unwrap();
        assert_eq!(options.max_retries, 0);
        let config = options.config_json();
        assert_eq!(config["permission"], "allow");
        // No key is pointed at the chosen vendor: the OpenAI key never goes to Anthropic.
        assert!(config.get("provider").is_none(), "{config}");
        assert!(config.get("enabled_providers").is_none(), "{config}");
        assert_eq!(config["model"], "anthropic/claude-x");
    }

    #[test]
    fn unsafe_or_malformed_options_are_refused() {
        for options in [
            json!({"maxRetries": -1}),
            json!({"permission": 1}),
            json!({"permission": {"bash": "{file:/etc/passwd}"}}),
            json!({"permission": {"{env:HOME}": "allow"}}),
            json!({"permission": "{env:OPENAI_API_KEY}"}),
            json!({"model": "a/{env:HOME}"}),
            json!({"model": "/x"}),
            json!({"providerId": "a/b"}),
        ] {
            assert!(
                OpencodeOptions::from_command(&command(None, options.clone(), &[]), &defaults())
                    .is_err(),
                "{options}"
            );
        }
        assert!(
            OpencodeOptions::from_command(&command(None, json!({}), &["A}B"]), &defaults())
                .is_err()
        );
        assert!(
            OpencodeOptions::from_command(&command(None, json!({}), &["9X"]), &defaults()).is_err()
        );
    }
}
