//! The run's codex settings: the command's model and credential names, the model
//! endpoint the operator configured (`executor.credentials.codex-app-server.base_url`,
//! default `https://api.openai.com/v1`; codex POSTs to `{base_url}/responses`), plus the
//! codex keys of `providerOptions` (camelCase; unknown keys belong to others and are
//! ignored; `baseUrl` is refused before the run gets here):
//!
//! | key | default | |
//! |---|---|---|
//! | `model` | the command's `model`, else codex's own default | model slug sent to the API |
//! | `approvalPolicy` | `on-request` | `untrusted` (ask before anything not known-safe), `on-request` (the agent asks when it wants to leave the sandbox), `never` |
//! | `sandbox` | `workspace-write` | `read-only`, `workspace-write`, `danger-full-access` |
//! | `requestMaxRetries` | 1 | codex's HTTP retries per request |
//! | `streamMaxRetries` | 1 | codex's reconnects of a dropped or idle stream |
//! | `streamIdleTimeoutMs` | 60000, less when the run's liveness limits are shorter (see [`CodexOptions::fit_stream_idle_timeout`]) | an SSE stream silent this long is dropped (then retried) |
//!
//! `on-request` is the default because a platform run is unattended unless someone
//! watches it: the agent works freely inside its workspace sandbox and only escalations
//! reach a human. `untrusted` makes codex ask before every command that is not a known
//! read-only one. The retry defaults are small so that a failing model API ends the
//! run in seconds (codex's own defaults retry for minutes).

use crate::cli::ProviderCredentials;
use serde_json::Value;
use std::time::Duration;
use switchyard_contracts::RunCommand;

/// The credential the API key is read from when neither the command nor the operator's
/// allowance names one.
pub(crate) const DEFAULT_CREDENTIAL_ENV: &str = "OPENAI_API_KEY";
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub(crate) const DEFAULT_APPROVAL_POLICY: &str = "on-request";
pub(crate) const DEFAULT_SANDBOX: &str = "workspace-write";
const APPROVAL_POLICIES: &[&str] = &["untrusted", "on-request", "never"];
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
const SANDBOXES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodexOptions {
    pub(crate) model: Option<String>,
    pub(crate) base_url: String,
    /// Every credential the command names; the first carries the API key (`env_key`).
    pub(crate) credential_env: Vec<String>,
    pub(crate) approval_policy: String,
    pub(crate) sandbox: String,
    pub(crate) request_max_retries: u64,
    pub(crate) stream_max_retries: u64,
    pub(crate) stream_idle_timeout_ms: u64,
}

/// A `providerOptions` value codex cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("providerOptions.{key}: {problem}")]
pub(crate) struct InvalidOption {
    pub(crate) key: &'static str,
    pub(crate) problem: String,
}

impl CodexOptions {
    /// `policy` is the operator's allowance for codex: the endpoint, and the credential
    /// a command naming none gets.
    pub(crate) fn from_command(
        command: &RunCommand,
        policy: &ProviderCredentials,
    ) -> Result<Self, InvalidOption> {
        let options = &command.provider_options;
        let text = |key: &'static str| -> Result<Option<String>, InvalidOption> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(InvalidOption {
                    key,
                    problem: "must be a non-empty string".to_owned(),
                }),
            }
        };
        let number = |key: &'static str, default: u64| -> Result<u64, InvalidOption> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(value) => value.as_u64().ok_or_else(|| InvalidOption {
                    key,
                    problem: "must be a non-negative integer".to_owned(),
                }),
            }
        };
        let one_of = |key: &'static str, allowed: &[&str], default: &str| {
            let value = text(key)?.unwrap_or_else(|| default.to_owned());
            if allowed.contains(&value.as_str()) {
                Ok(value)
            } else {
                Err(InvalidOption {
                    key,
                    problem: format!("{value:?} is not one of {}", allowed.join(", ")),
                })
            }
        };
        let credential_env = policy.names_for(&command.credential_env);
        Ok(Self {
            model: text("model")?.or_else(|| command.model.clone()),
            base_url: policy
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            credential_env,
            approval_policy: one_of("approvalPolicy", APPROVAL_POLICIES, DEFAULT_APPROVAL_POLICY)?,
            sandbox: one_of("sandbox", SANDBOXES, DEFAULT_SANDBOX)?,
            request_max_retries: number("requestMaxRetries", 1)?,
            stream_max_retries: number("streamMaxRetries", 1)?,
            stream_idle_timeout_ms: number(
                "streamIdleTimeoutMs",
                DEFAULT_STREAM_IDLE_TIMEOUT.as_millis() as u64,
            )?,
        })
    }

    /// Unless the run sets `streamIdleTimeoutMs`: at most 60 s, and short enough that
    /// every attempt at a stalled stream (1 + `streamMaxRetries`) fits in three quarters
    /// of `liveness_bound` (the shortest liveness limit a model stream must fit in).
    /// Then codex reports the stall itself ("idle timeout waiting for SSE", a
    /// `timeout`) before a liveness limit ends the run knowing less: codex shows no sign
    /// of a stream that started and went silent.
    pub(crate) fn fit_stream_idle_timeout(
        &mut self,
        provider_options: &Value,
        liveness_bound: Option<Duration>,
    ) {
        if provider_options.get("streamIdleTimeoutMs").is_some() {
            return;
        }
        let Some(bound) = liveness_bound.filter(|b| !b.is_zero()) else {
            return;
        };
        let attempts = u32::try_from(self.stream_max_retries.saturating_add(1)).unwrap_or(u32::MAX);
        let per_attempt =
            (bound * 3 / 4 / attempts).clamp(MIN_STREAM_IDLE_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT);
        self.stream_idle_timeout_ms = u64::try_from(per_attempt.as_millis()).unwrap_or(u64::MAX);
    }

    /// The env var holding the API key (codex's `env_key`).
    pub(crate) fn api_key_env(&self) -> &str {
        self.credential_env
            .first()
            .map_or(DEFAULT_CREDENTIAL_ENV, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_contracts::ProviderName;

    fn defaults() -> ProviderCredentials {
        ProviderCredentials::defaults(ProviderName::CodexAppServer)
    }

    fn command(model: Option<&str>, credential_env: &[&str], options: Value) -> RunCommand {
        serde_json::from_value(json!({
            "runId": "0190a0e0-0000-7000-8000-000000000001",
            "provider": "codex-app-server",
            "model": model,
            "prompt": "hi",
            "providerOptions": options,
            "credentialEnv": credential_env,
            "createdAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_defaults() {
        let options =
            CodexOptions::from_command(&command(None, &[], json!(null)), &defaults()).unwrap();
        assert_eq!(options.model, None);
        assert_eq!(options.base_url, DEFAULT_BASE_URL);
        assert_eq!(options.api_key_env(), "OPENAI_API_KEY");
        assert_eq!(options.approval_policy, "on-request");
        assert_eq!(options.sandbox, "workspace-write");
        assert_eq!(options.request_max_retries, 1);
        assert_eq!(options.stream_idle_timeout_ms, 60_000);
    }

    #[test]
    fn provider_options_win_over_the_command_and_the_endpoint_is_the_operators() {
        let operator = ProviderCredentials {
            env: vec!["FAKE_KEY".into(), "OTHER".into()],
            base_url: Some("http://127.0.0.1:4000/v1".into()),
        };
        let options = CodexOptions::from_command(
            &command(
                Some("gpt-a"),
                &["FAKE_KEY", "OTHER"],
                json!({"model": "gpt-b", "approvalPolicy": "untrusted",
                       "sandbox": "read-only", "streamIdleTimeoutMs": 2000, "timeoutMs": 5}),
            ),
            &operator,
        )
        .unwrap();
        assert_eq!(options.model.as_deref(), Some("gpt-b"));
        assert_eq!(options.base_url, "http://127.0.0.1:4000/v1");
        assert_eq!(options.api_key_env(), "FAKE_KEY");
        assert_eq!(options.credential_env.len(), 2);
        assert_eq!(options.approval_policy, "untrusted");
        assert_eq!(options.sandbox, "read-only");
        assert_eq!(options.stream_idle_timeout_ms, 2000);
        let from_command =
            CodexOptions::from_command(&command(Some("gpt-a"), &[], json!({})), &operator).unwrap();
        assert_eq!(from_command.model.as_deref(), Some("gpt-a"));
        assert_eq!(from_command.api_key_env(), "FAKE_KEY");
    }

    #[test]
    fn the_stream_idle_timeout_fits_in_the_liveness_limits_unless_given() {
        let mut options =
            CodexOptions::from_command(&command(None, &[], json!({})), &defaults()).unwrap();
        options.fit_stream_idle_timeout(&json!({}), Some(Duration::from_secs(8)));
        // 8 s × 3/4 over two attempts (one retry).
        assert_eq!(options.stream_idle_timeout_ms, 3_000);
        options.fit_stream_idle_timeout(&json!({}), Some(Duration::from_secs(3600)));
        assert_eq!(options.stream_idle_timeout_ms, 60_000);
        options.fit_stream_idle_timeout(&json!({}), Some(Duration::from_millis(100)));
        assert_eq!(options.stream_idle_timeout_ms, 1_000);
        let given = json!({"streamIdleTimeoutMs": 9_000});
        let mut options =
            CodexOptions::from_command(&command(None, &[], given.clone()), &defaults()).unwrap();
        options.fit_stream_idle_timeout(&given, Some(Duration::from_secs(8)));
        assert_eq!(options.stream_idle_timeout_ms, 9_000);
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = CodexOptions::from_command(
            &command(None, &[], json!({"approvalPolicy": "yolo"})),
            &defaults(),
        )
        .unwrap_err();
        assert_eq!(error.key, "approvalPolicy");
        let error = CodexOptions::from_command(
            &command(None, &[], json!({"requestMaxRetries": -1})),
            &defaults(),
        )
        .unwrap_err();
        assert_eq!(error.key, "requestMaxRetries");
    }
}
