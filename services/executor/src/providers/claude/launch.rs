//! What to spawn for a run: the `claude` arguments and environment, from the run
//! command, its `providerOptions` and the operator's allowance
//! (`executor.credentials.claude-code`: its `base_url` becomes `ANTHROPIC_BASE_URL`;
//! unset leaves the CLI's default API).
//!
//! | providerOptions key | effect | default |
//! |---|---|---|
//! | `permissionMode` | `--permission-mode` (`default`, `acceptEdits`, `plan`, `dontAsk`, `bypassPermissions`) | `default`: every tool use that needs a permission becomes a human-loop request |
//! | `allowedTools` / `disallowedTools` | `--allowedTools` / `--disallowedTools` (array of rules, e.g. `["Bash(git:*)", "Edit"]`) | none |
//! | `sandboxed` | `IS_SANDBOX=1`: required for `bypassPermissions`, which the CLI refuses as root otherwise; only set it when the executor itself runs in a sandbox | `false` |
//! | `maxRetries` | `CLAUDE_CODE_MAX_RETRIES` | `1` (the CLI's own default, 10, takes minutes to fail) |
//! | `apiTimeoutMs` | `API_TIMEOUT_MS`: how long the CLI waits for a model response to start (the stream itself is not bounded by it) | `30000`, less when the run's liveness limits are shorter (see [`ClaudeOptions::api_timeout`]) |
//!
//! The model key goes only into the child's environment. A credential the CLI reads
//! itself (`ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`, `CLAUDE_CODE_OAUTH_TOKEN`) is
//! passed under its own name; the first the run names, when it is another name the
//! operator allowed (a team's key, say), is passed as `ANTHROPIC_API_KEY`.
//!
//! No settings file is read (`--setting-sources` empty) and no MCP configuration but
//! ours (none): a `.claude/settings.json` in the workspace, or in the CLI's home, could
//! otherwise set `ANTHROPIC_BASE_URL` or a proxy and send the key elsewhere — and an
//! earlier turn's agent can write either.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The variables claude reads its credential from by itself.
const OWN_CREDENTIAL_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

const DEFAULT_MAX_RETRIES: u32 = 1;
const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_API_TIMEOUT: Duration = Duration::from_secs(1);

/// The `providerOptions` this adapter reads; other keys (timeouts, liveness limits) are
/// for the executor and are ignored here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ClaudeOptions {
    pub(crate) permission_mode: Option<PermissionMode>,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) disallowed_tools: Vec<String>,
    pub(crate) sandboxed: bool,
    pub(crate) max_retries: Option<u32>,
    pub(crate) api_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PermissionMode {
    Default,
    AcceptEdits,
    Plan,
    DontAsk,
    BypassPermissions,
}

impl PermissionMode {
    fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

/// Wrong `providerOptions`; the run fails `provider_error` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OptionsError {
    #[error("invalid providerOptions for claude-code: {0}")]
    Invalid(String),
    #[error(
        "providerOptions.permissionMode bypassPermissions needs providerOptions.sandboxed: true \
         (claude refuses it as root outside a sandbox)"
    )]
    BypassNeedsSandbox,
}

impl ClaudeOptions {
    pub(crate) fn from_provider_options(
        options: &serde_json::Value,
    ) -> Result<ClaudeOptions, OptionsError> {
        if options.is_null() {
            return Ok(ClaudeOptions::default());
        }
        let parsed: ClaudeOptions = serde_json::from_value(options.clone())
            .map_err(|e| OptionsError::Invalid(e.to_string()))?;
        if parsed.permission_mode == Some(PermissionMode::BypassPermissions) && !parsed.sandboxed {
            return Err(OptionsError::BypassNeedsSandbox);
        }
        for (key, rules) in [
            ("allowedTools", &parsed.allowed_tools),
            ("disallowedTools", &parsed.disallowed_tools),
        ] {
            if let Some(rule) = rules
                .iter()
                .find(|rule| rule.trim().is_empty() || rule.starts_with('-'))
            {
                return Err(OptionsError::Invalid(format!(
                    "providerOptions.{key}: {rule:?} is not a tool rule (like `Bash(git:*)` or \
                     `Edit`)"
                )));
            }
        }
        Ok(parsed)
    }

    fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// `API_TIMEOUT_MS`: `apiTimeoutMs` when given. Otherwise 30 s, or less so that
    /// every attempt of a request that never answers (1 + `maxRetries`) fits in three
    /// quarters of `liveness_bound` (the shortest liveness limit a model request must
    /// fit in): then the CLI itself reports "Request timed out" (→ `provider_no_output`
    /// before any model output, `timeout` after) before the executor's liveness limit
    /// cuts it off with less to say.
    pub(crate) fn api_timeout(&self, liveness_bound: Option<Duration>) -> Duration {
        if let Some(ms) = self.api_timeout_ms {
            return Duration::from_millis(ms);
        }
        let Some(bound) = liveness_bound.filter(|b| !b.is_zero()) else {
            return DEFAULT_API_TIMEOUT;
        };
        let per_attempt = bound * 3 / 4 / (self.max_retries().saturating_add(1));
        per_attempt.clamp(MIN_API_TIMEOUT, DEFAULT_API_TIMEOUT)
    }
}

/// The parts of a launch that vary per run.
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    pub(crate) options: &'a ClaudeOptions,
    pub(crate) model: Option<&'a str>,
    /// The session to continue (`--resume`), if any.
    pub(crate) resume: Option<&'a str>,
    /// The resolved credentials, in the order the run named them (the values go only
    /// into the child's environment).
    pub(crate) credentials: &'a [(String, SecretString)],
    /// The operator's model endpoint (`executor.credentials.claude-code.base_url`).
    pub(crate) base_url: Option<&'a str>,
    /// The CLI's home: its state (`.claude.json`, `.claude/projects/…`) lives here.
    pub(crate) home: PathBuf,
    /// See [`ClaudeOptions::api_timeout`].
    pub(crate) api_timeout: Duration,
}

impl Launch<'_> {
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-prompt-tool",
            "stdio",
            "--include-partial-messages",
            // Where requests go and what the CLI holds is ours alone to say: no
            // settings file (user, project or local) and no MCP config is read.
            "--setting-sources",
            "",
            "--strict-mcp-config",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        // Values a run chooses are attached with `=`: as a separate argument, a value
        // that starts with `-` would be parsed as a flag of its own (`--settings=…`).
        if let Some(model) = self.model {
            args.push(format!("--model={model}"));
        }
        if let Some(session) = self.resume {
            args.push(format!("--resume={session}"));
        }
        if let Some(mode) = self.options.permission_mode {
            args.push(format!("--permission-mode={}", mode.as_str()));
        }
        // One comma-separated value: the flags are variadic and would swallow what follows.
        if !self.options.allowed_tools.is_empty() {
            args.push(format!(
                "--allowedTools={}",
                self.options.allowed_tools.join(",")
            ));
        }
        if !self.options.disallowed_tools.is_empty() {
            args.push(format!(
                "--disallowedTools={}",
                self.options.disallowed_tools.join(",")
            ));
        }
        args
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), self.home.display().to_string()),
            // No telemetry, update checks or error reports: nothing but the model API.
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("DISABLE_TELEMETRY".into(), "1".into()),
            ("DISABLE_AUTOUPDATER".into(), "1".into()),
            ("DISABLE_ERROR_REPORTING".into(), "1".into()),
            // Fail in seconds, not after ten exponential retries.
            (
                "CLAUDE_CODE_MAX_RETRIES".into(),
                self.options.max_retries().to_string(),
            ),
            (
                "API_TIMEOUT_MS".into(),
                self.api_timeout.as_millis().to_string(),
            ),
        ];
        for (index, (name, value)) in self.credentials.iter().enumerate() {
            let name = if index == 0 && !OWN_CREDENTIAL_VARS.contains(&name.as_str()) {
                "ANTHROPIC_API_KEY"
            } else {
                name.as_str()
            };
            env.push((name.to_owned(), value.expose_secret().to_owned()));
        }
        // Last, so that no credential variable can override the operator's endpoint.
        if let Some(base_url) = self.base_url {
            env.push(("ANTHROPIC_BASE_URL".into(), base_url.to_owned()));
        }
        if self.options.sandboxed {
            env.push(("IS_SANDBOX".into(), "1".into()));
        }
        env
    }
}
