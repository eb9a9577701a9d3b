//! The `executor` config section: what this executor offers (capacity, providers), the
//! timings it runs runs with, and where the agent CLIs, their credentials and the runs'
//! directories are.

use crate::budget::BudgetSettings;
use crate::cli::credentials::{
    CredentialPolicies, PLATFORM_ENV_PREFIX, ProviderCredentials, is_name,
};
use crate::cli::{CliSetup, LivenessLimits, START_CHECK_DIR};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_contracts::{ExecutorId, ProviderName};
use switchyard_platform::config::{ConfigError, check_token};

/// `[executor]` section. Every key has a default, so an empty section is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Address of the standalone provider-run API and health endpoints (port 0 = any).
    pub listen: SocketAddr,
    /// The bearer token the provider-run API (`/provider-runs/*`) requires. Unset, the
    /// API is off (its routes answer 403 `api_disabled`); `/healthz` and `/readyz` are
    /// served either way. Never logged, and never in a provider's environment.
    pub api_token: Option<SecretString>,
    /// Identity in subjects (`executors.<id>.dispatch`) and the presence bucket.
    /// Default: `exec-` and 8 hex digits of a random UUID, fresh at every start.
    pub executor_id: Option<ExecutorId>,
    /// Runs owned at once.
    pub capacity: u32,
    /// Presence heartbeat period; must stay well below the `EXECUTORS` bucket's max age.
    pub heartbeat_ms: u64,
    /// Parent directory of the runs' directories (`<workspace_root>/<conversation or run
    /// id>/{workspace,state}`, see `workdirs`) and of `.run-hosts/` and `.start-check/`.
    /// Default: `<current dir>/.local/workspaces` (a data directory: codex refuses to set
    /// up its helpers under the system's temporary directory).
    pub workspace_root: PathBuf,
    /// The user the agent CLIs run as: `auto` (the default: when the executor runs as
    /// root, the user `switchyard-provider` if it exists, else `nobody` 65534:65534;
    /// otherwise the executor's own user), `none` (the executor's own user), a user name,
    /// `<uid>` or `<uid>:<gid>`. Another user than its own needs an executor running as
    /// root.
    pub provider_user: String,
    /// How long a provider gets to wind down after a stop or a timeout before it is aborted.
    pub stop_grace_ms: u64,
    /// Graceful shutdown: how long the runs still active may go on (answering human-loop
    /// replies and stop requests) before the rest are stopped; 0 stops them at once.
    pub drain_timeout_ms: u64,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub keep_alive_secs: u64,
    /// Providers this executor offers (canonical names or aliases).
    pub providers: Vec<String>,
    /// Run timeout for standalone provider runs that name none (dispatched runs always
    /// carry the timeout the executor-manager resolved).
    pub default_timeout_ms: u64,
    /// Directories searched for the agent CLIs before `PATH` (which is always searched
    /// after them). Default: `<current dir>/.local/providers/node_modules/.bin`, where
    /// `scripts/install-providers.sh` installs the pinned CLIs.
    pub cli_search_path: Vec<PathBuf>,
    /// `KEY=value` file with provider credentials (see
    /// `scripts/bootstrap-local-provider-env.sh`). Default: `<current dir>/.local/provider-env`
    /// if that file exists at start-up.
    pub credentials_env_file: Option<PathBuf>,
    /// Whether credentials are also looked up in the executor's own environment (before
    /// the env file) — only ever for the names some provider is allowed in
    /// `credentials`. Off makes the env file the only source (hermetic tests).
    pub credentials_from_environment: bool,
    /// `[executor.credentials.<provider>]`: which variables each provider may be given
    /// and the model endpoint its CLI is pointed at. Keys are provider names (canonical
    /// or alias; `_` may stand for `-`, as environment variable names need); a provider
    /// without a table gets [`ProviderCredentials::defaults`].
    pub credentials: BTreeMap<String, ProviderCredentialSettings>,
    /// `[executor.liveness]`: limits that end a CLI run that hangs.
    pub liveness: LivenessSettings,
    /// `[executor.budget]`: the per-run budget of runs whose `providerOptions.budget`
    /// leaves a limit out.
    pub budget: BudgetSettings,
    /// How long a human-loop request waits for an answer before it is declined
    /// (`deny`, resolved by `timeout`) and the run goes on; 0 waits as long as the run
    /// lives. A run's `providerOptions.humanLoopTimeoutMs` overrides it.
    pub human_loop_timeout_ms: u64,
    /// What happens to a run's directory when the run ends.
    pub workspace_cleanup: WorkspaceCleanup,
    /// Absolute directories inside which a run may work in an existing directory given
    /// by `providerOptions.workspaceDir` instead of its own under `workspace_root`.
    /// Empty (the default) refuses every given directory. A given directory is never
    /// deleted by the cleanup policy.
    pub allowed_workspace_dirs: Vec<PathBuf>,
    /// Which runs get a process of their own (a run host) that outlives the executor,
    /// so that a crash or restart of the executor does not end them: `cli` (the
    /// default: runs of the agent CLIs), `all`, or `none`. Only the executor binaries
    /// can start run hosts; an executor embedded as a library runs every run in-process.
    pub detach_runs: DetachRuns,
    /// The program started (with the argument `run-host`) as a run host; set by the
    /// binaries to themselves, never read from the configuration.
    #[serde(skip)]
    pub run_host_program: Option<PathBuf>,
}

/// `[executor.credentials.<provider>]`. Set by the operator only: no request, app or
/// profile can change what a provider is given or where its requests go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderCredentialSettings {
    /// The variable names the provider may be given (a list, or one comma-separated
    /// string as an environment variable can hold); unset = the provider's defaults.
    #[serde(deserialize_with = "names_list")]
    pub env: Option<Vec<String>>,
    /// The only model API base URL the provider's CLI is pointed at; unset = the CLI's
    /// own default endpoint.
    pub base_url: Option<String>,
}

fn names_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Text(String),
    }
    Ok(Some(match Names::deserialize(deserializer)? {
        Names::List(names) => names,
        Names::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
    }))
}

/// Which runs are detached into a run host process (`executor.detach_runs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetachRuns {
    /// Runs of the agent CLI providers; scripted runs stay in-process (they are cheap
    /// and used for benchmarks, where a process per run would dominate).
    #[default]
    Cli,
    All,
    None,
}

/// `[executor.liveness]`, in milliseconds of active time (waiting for a human does not
/// count); 0 disables a limit. A run's `providerOptions` (`handshakeTimeoutMs`,
/// `firstOutputTimeoutMs`, `inactivityTimeoutMs`, `unreachableTimeoutMs`) override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessSettings {
    /// From the spawn to the end of the CLI's protocol handshake.
    pub handshake_ms: u64,
    /// From the handshake to the model's first output (else `provider_no_output`).
    pub first_output_ms: u64,
    /// Longest silence once output has started (else `timeout`).
    pub inactivity_ms: u64,
    /// How long the CLI may keep failing to connect to the model API (else
    /// `provider_unreachable`).
    pub unreachable_ms: u64,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        Self {
            handshake_ms: 30_000,
            first_output_ms: 120_000,
            inactivity_ms: 300_000,
            unreachable_ms: 10_000,
        }
    }
}

impl LivenessSettings {
    pub(crate) fn limits(&self) -> LivenessLimits {
        LivenessLimits {
            handshake: Duration::from_millis(self.handshake_ms),
            first_output: Duration::from_millis(self.first_output_ms),
            inactivity: Duration::from_millis(self.inactivity_ms),
            unreachable: Duration::from_millis(self.unreachable_ms),
        }
    }
}

/// Cleanup policy for `<workspace_root>/<conversation or run id>` at the end of a run.
/// With a `delete*` policy a conversation's directory (workspace, CLI state, session
/// record) goes too, so a follow-up starts afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceCleanup {
    /// Keep everything (inspection, conversations).
    #[default]
    Keep,
    /// Delete after a run that succeeded; keep failed runs for inspection.
    DeleteOnSuccess,
    /// Always delete.
    Delete,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            api_token: None,
            executor_id: None,
            capacity: 16,
            heartbeat_ms: 2_000,
            workspace_root: current_dir().join(".local/workspaces"),
            provider_user: crate::cli::provider_user::AUTO.to_owned(),
            stop_grace_ms: 5_000,
            drain_timeout_ms: 10 * 60 * 1000,
            max_body_bytes: 1024 * 1024,
            keep_alive_secs: 15,
            providers: ProviderName::ALL
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            default_timeout_ms: 30 * 60 * 1000,
            cli_search_path: vec![current_dir().join(".local/providers/node_modules/.bin")],
            credentials_env_file: Some(current_dir().join(".local/provider-env"))
                .filter(|path| path.is_file()),
            credentials_from_environment: true,
            credentials: BTreeMap::new(),
            liveness: LivenessSettings::default(),
            budget: BudgetSettings::default(),
            human_loop_timeout_ms: 60 * 60 * 1000,
            workspace_cleanup: WorkspaceCleanup::default(),
            allowed_workspace_dirs: Vec::new(),
            detach_runs: DetachRuns::default(),
            run_host_program: None,
        }
    }
}

/// An http(s) URL with a host and nothing a CLI's config could read as a substitution
/// (opencode expands `{env:…}` and `{file:…}` in its config) or a second value.
fn check_base_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '"' | '\\'))
    {
        return Err("must not contain spaces, quotes, backslashes, `{` or `}`".to_owned());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// Presence records expire after this long without a heartbeat (the `EXECUTORS`
/// bucket's max age, `nats/kv/EXECUTORS.json`).
fn presence_ttl() -> Option<Duration> {
    let definition: serde_json::Value =
        serde_json::from_str(switchyard_platform::nats::EXECUTORS_KV_JSON).ok()?;
    definition["max_age"].as_u64().map(Duration::from_nanos)
}

impl ExecutorSettings {
    // `ConfigError` is the platform's shared type (large because it can hold a
    // `config::ConfigError`); validation runs once at start-up, so its size is harmless.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, problem: String| Err(ConfigError::Value { key, problem });
        if let Some(token) = &self.api_token {
            check_token("executor.api_token", token)?;
        }
        if self.capacity == 0 {
            return bad("executor.capacity", "must be at least 1".to_owned());
        }
        if self.heartbeat_ms == 0 {
            return bad("executor.heartbeat_ms", "must be at least 1".to_owned());
        }
        if let Some(ttl) = presence_ttl()
            && Duration::from_millis(self.heartbeat_ms) * 2 > ttl
        {
            return bad(
                "executor.heartbeat_ms",
                format!(
                    "must be at most half the presence TTL ({} ms), or the record expires between heartbeats",
                    ttl.as_millis()
                ),
            );
        }
        if self.max_body_bytes == 0 {
            return bad("executor.max_body_bytes", "must be at least 1".to_owned());
        }
        if self.keep_alive_secs == 0 {
            return bad("executor.keep_alive_secs", "must be at least 1".to_owned());
        }
        if self.providers.is_empty() {
            return bad(
                "executor.providers",
                "must name at least one provider".to_owned(),
            );
        }
        if let Some(unknown) = self
            .providers
            .iter()
            .find(|p| ProviderName::parse(p).is_none())
        {
            let known: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
            return bad(
                "executor.providers",
                format!(
                    "names unknown provider {unknown:?} (known: {})",
                    known.join(", ")
                ),
            );
        }
        if let Some(relative) = self
            .allowed_workspace_dirs
            .iter()
            .find(|dir| !dir.is_absolute())
        {
            return bad(
                "executor.allowed_workspace_dirs",
                format!("{relative:?} must be an absolute path"),
            );
        }
        self.credential_policies().map(drop)
    }

    /// Every provider's allowance: the `credentials` tables over the defaults. Errors
    /// name the offending key (`executor.credentials.<provider>.env` …).
    #[allow(clippy::result_large_err)]
    pub(crate) fn credential_policies(&self) -> Result<CredentialPolicies, ConfigError> {
        let mut policies = CredentialPolicies::default();
        let mut seen: std::collections::HashMap<ProviderName, &str> = Default::default();
        for (key, table) in &self.credentials {
            let entry = |field: &str, problem: String| ConfigError::Entry {
                key: format!("executor.credentials.{key}{field}"),
                problem,
            };
            let provider = ProviderName::parse(key)
                .or_else(|| ProviderName::parse(&key.replace('_', "-")))
                .filter(|provider| *provider != ProviderName::Scripted)
                .ok_or_else(|| {
                    let known: Vec<&str> = ProviderName::ALL
                        .iter()
                        .filter(|p| **p != ProviderName::Scripted)
                        .map(|p| p.as_str())
                        .collect();
                    entry(
                        "",
                        format!(
                            "is not a provider that takes credentials ({})",
                            known.join(", ")
                        ),
                    )
                })?;
            if let Some(other) = seen.insert(provider, key) {
                return Err(entry(
                    "",
                    format!(
                        "configures {provider} a second time (also `executor.credentials.{other}`)"
                    ),
                ));
            }
            let mut credentials = ProviderCredentials::defaults(provider);
            if let Some(env) = &table.env {
                if env.is_empty() {
                    return Err(entry(
                        ".env",
                        "must list at least one variable name".to_owned(),
                    ));
                }
                if let Some(bad) = env.iter().find(|name| !is_name(name)) {
                    return Err(entry(
                        ".env",
                        format!("{bad:?} is not an environment variable name"),
                    ));
                }
                if let Some(own) = env.iter().find(|name| {
                    name.get(..PLATFORM_ENV_PREFIX.len())
                        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(PLATFORM_ENV_PREFIX))
                }) {
                    return Err(entry(
                        ".env",
                        format!(
                            "lists {own}: `{PLATFORM_ENV_PREFIX}` variables are the platform's own \
                             configuration and secrets, never a provider credential"
                        ),
                    ));
                }
                credentials.env = env.clone();
            }
            if let Some(url) = &table.base_url {
                credentials.base_url =
                    Some(check_base_url(url).map_err(|problem| entry(".base_url", problem))?);
            }
            policies.set(provider, credentials);
        }
        Ok(policies)
    }

    /// The configured id, or a fresh random one.
    pub(crate) fn resolve_executor_id(&self) -> ExecutorId {
        self.executor_id
            .clone()
            .unwrap_or_else(ExecutorId::generate)
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// How long one human-loop request of a run waits, `None` for as long as the run
    /// lives: `providerOptions.humanLoopTimeoutMs` (a non-negative integer; 0 disables)
    /// or else `human_loop_timeout_ms`.
    pub(crate) fn human_loop_timeout(
        &self,
        provider_options: &serde_json::Value,
    ) -> Option<Duration> {
        let ms = provider_options
            .get("humanLoopTimeoutMs")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(self.human_loop_timeout_ms);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The grace between the steps of a CLI stop (protocol interrupt, SIGINT, SIGTERM,
    /// SIGKILL): a quarter of `stop_grace_ms`, so that the whole sequence fits in the
    /// time the supervisor gives the provider before aborting it.
    pub(crate) fn cli_stop_grace(&self) -> Duration {
        self.stop_grace() / 4
    }

    /// What the CLI environment is built from.
    #[allow(clippy::result_large_err)]
    pub(crate) fn cli_setup(&self) -> Result<CliSetup, ConfigError> {
        Ok(CliSetup {
            policies: self.credential_policies()?,
            credentials_env_file: self.credentials_env_file.clone(),
            credentials_from_environment: self.credentials_from_environment,
            search_path: self.cli_search_path.clone(),
            provider_user: self.provider_user.clone(),
            liveness: self.liveness.limits(),
            stop_grace: self.cli_stop_grace(),
            start_check_dir: self.workspace_root.join(START_CHECK_DIR),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_generate_a_subject_safe_id() {
        let settings = ExecutorSettings::default();
        settings.validate().unwrap();
        assert_eq!(settings.providers.len(), 4, "{:?}", settings.providers);
        assert!(settings.cli_search_path[0].ends_with(".local/providers/node_modules/.bin"));
        assert!(
            settings.workspace_root.ends_with(".local/workspaces")
                && !settings.workspace_root.starts_with(std::env::temp_dir()),
            "the runs' directories are data, not temporary files: {:?}",
            settings.workspace_root
        );
        assert_eq!(settings.provider_user, "auto");
        assert_eq!(settings.workspace_cleanup, WorkspaceCleanup::Keep);
        assert_eq!(
            settings.liveness.limits().first_output,
            Duration::from_secs(120)
        );
        let id = settings.resolve_executor_id();
        assert!(id.starts_with("exec-") && id.len() == 13, "{id}");
    }

    #[test]
    fn a_bad_executor_id_is_refused_at_loading_naming_the_key() {
        let load = |file: &str, env: &[(&str, &str)]| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("switchyard.toml");
            std::fs::write(&path, file).unwrap();
            let env = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            switchyard_platform::config::load_from::<Root>(Some(&path), env)
                .map_err(|e| e.to_string())
        };
        for (file, env) in [
            ("[executor]\nexecutor_id = \"a.b\"\n", vec![]),
            ("", vec![("SWITCHYARD_EXECUTOR__EXECUTOR_ID", "exec 1")]),
        ] {
            let error = load(file, &env).err().unwrap();
            assert!(error.contains("executor.executor_id"), "{error}");
            assert!(error.contains("must be 1-128 characters"), "{error}");
        }
        let root = load("[executor]\nexecutor_id = \"exec-7\"\n", &[]).unwrap();
        assert_eq!(root.executor.resolve_executor_id(), "exec-7");
    }

    #[test]
    fn the_cli_keys_load_from_toml_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(
            &file,
            r#"
[executor]
cli_search_path = ["/opt/clis", "relative/bin"]
credentials_env_file = "/etc/switchyard/provider-env"
workspace_cleanup = "delete_on_success"

[executor.liveness]
handshake_ms = 1000
inactivity_ms = 0
unreachable_ms = 4000
"#,
        )
        .unwrap();
        let env = std::collections::HashMap::from([(
            "SWITCHYARD_EXECUTOR__LIVENESS__FIRST_OUTPUT_MS".to_owned(),
            "2500".to_owned(),
        )]);
        let root: Root = switchyard_platform::config::load_from(Some(&file), env).unwrap();
        let settings = root.executor;
        assert_eq!(
            settings.cli_search_path,
            vec![PathBuf::from("/opt/clis"), PathBuf::from("relative/bin")]
        );
        assert_eq!(
            settings.credentials_env_file,
            Some(PathBuf::from("/etc/switchyard/provider-env"))
        );
        assert_eq!(
            settings.workspace_cleanup,
            WorkspaceCleanup::DeleteOnSuccess
        );
        assert_eq!(
            settings.liveness,
            LivenessSettings {
                handshake_ms: 1000,
                first_output_ms: 2500,
                inactivity_ms: 0,
                unreachable_ms: 4000,
            }
        );
        assert!(settings.credentials_from_environment);
        assert_eq!(settings.cli_stop_grace(), Duration::from_millis(1250));

        std::fs::write(&file, "[executor.liveness]\nhandshake = 5\n").unwrap();
        let error = switchyard_platform::config::load_from::<Root>(Some(&file), Default::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("handshake"), "{error}");
    }

    #[derive(Deserialize)]
    struct Root {
        executor: ExecutorSettings,
    }

    #[test]
    fn credentials_tables_load_from_toml_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(
            &file,
            r#"
[executor.credentials.claude-code]
env = ["ANTHROPIC_API_KEY", "TEAM_ANTHROPIC_KEY"]
base_url = "http://127.0.0.1:4000/"

[executor.credentials.codex-cli]
base_url = "https://llm.example.test/v1"
"#,
        )
        .unwrap();
        let env = std::collections::HashMap::from([
            (
                "SWITCHYARD_EXECUTOR__CREDENTIALS__OPENCODE__ENV".to_owned(),
                "OPENROUTER_API_KEY, OPENAI_API_KEY".to_owned(),
            ),
            (
                "SWITCHYARD_EXECUTOR__CREDENTIALS__CLAUDE_CODE__BASE_URL".to_owned(),
                "http://127.0.0.1:5000".to_owned(),
            ),
        ]);
        let settings = switchyard_platform::config::load_from::<Root>(Some(&file), env)
            .unwrap()
            .executor;
        // The environment's `claude_code` key is the file's `claude-code` table.
        let error = settings.validate().unwrap_err().to_string();
        assert!(
            error.contains("executor.credentials.claude_code"),
            "{error}"
        );
        assert!(error.contains("a second time"), "{error}");

        let mut settings = settings;
        settings.credentials.remove("claude_code");
        let policies = settings.credential_policies().unwrap();
        let claude = policies.get(ProviderName::ClaudeCode);
        assert_eq!(claude.env, ["ANTHROPIC_API_KEY", "TEAM_ANTHROPIC_KEY"]);
        assert_eq!(claude.base_url.as_deref(), Some("http://127.0.0.1:4000"));
        let codex = policies.get(ProviderName::CodexAppServer);
        assert_eq!(
            codex.base_url.as_deref(),
            Some("https://llm.example.test/v1")
        );
        assert_eq!(
            codex.env,
            ProviderCredentials::defaults(ProviderName::CodexAppServer).env
        );
        assert_eq!(
            policies.get(ProviderName::Opencode).env,
            ["OPENROUTER_API_KEY", "OPENAI_API_KEY"]
        );
    }

    #[test]
    fn platform_variables_and_bad_tables_are_refused_naming_the_key() {
        let table = |env: &[&str], base_url: Option<&str>| ProviderCredentialSettings {
            env: Some(env.iter().map(|n| (*n).to_owned()).collect()),
            base_url: base_url.map(str::to_owned),
        };
        let cases = [
            (
                "claude-code",
                table(
                    &["ANTHROPIC_API_KEY", "SWITCHYARD_GATEWAY__ADMIN_TOKEN"],
                    None,
                ),
                "executor.credentials.claude-code.env",
                "SWITCHYARD_GATEWAY__ADMIN_TOKEN",
            ),
            (
                "opencode",
                table(&["switchyard_database__url"], None),
                "executor.credentials.opencode.env",
                "switchyard_database__url",
            ),
            (
                "opencode",
                table(&[], None),
                "executor.credentials.opencode.env",
                "at least one",
            ),
            (
                "opencode",
                table(&["A-B"], None),
                "executor.credentials.opencode.env",
                "A-B",
            ),
            (
                "codex-app-server",
                table(&["OPENAI_API_KEY"], Some("ftp://x")),
                "executor.credentials.codex-app-server.base_url",
                "http",
            ),
            (
                "codex-app-server",
                table(&["OPENAI_API_KEY"], Some("http://x/{env:HOME}")),
                "executor.credentials.codex-app-server.base_url",
                "`{`",
            ),
            (
                "scripted",
                table(&["X"], None),
                "executor.credentials.scripted",
                "provider",
            ),
            (
                "gpt",
                table(&["X"], None),
                "executor.credentials.gpt",
                "provider",
            ),
        ];
        for (provider, table, key, mentions) in cases {
            let settings = ExecutorSettings {
                credentials: BTreeMap::from([(provider.to_owned(), table)]),
                ..Default::default()
            };
            let error = settings.validate().unwrap_err().to_string();
            assert!(
                error.contains(&format!("`{key}`")),
                "{error} should name {key}"
            );
            assert!(
                error.contains(mentions),
                "{error} should mention {mentions}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(ExecutorSettings, &str)> = vec![
            (
                ExecutorSettings {
                    capacity: 0,
                    ..Default::default()
                },
                "executor.capacity",
            ),
            (
                ExecutorSettings {
                    heartbeat_ms: 60_000,
                    ..Default::default()
                },
                "executor.heartbeat_ms",
            ),
            (
                ExecutorSettings {
                    providers: vec!["gpt".into()],
                    ..Default::default()
                },
                "executor.providers",
            ),
            (
                ExecutorSettings {
                    allowed_workspace_dirs: vec!["relative/dir".into()],
                    ..Default::default()
                },
                "executor.allowed_workspace_dirs",
            ),
        ];
        for (settings, key) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        for weak in ["short-token", "a token with spaces", ""] {
            let settings = ExecutorSettings {
                api_token: Some(weak.into()),
                ..Default::default()
            };
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("executor.api_token"), "{err}");
            assert!(
                weak.is_empty() || !err.contains(weak),
                "{err} echoes the token"
            );
        }
        let settings = ExecutorSettings {
            api_token: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        settings.validate().unwrap();
    }
}
