//! Configuration loading: defaults < optional TOML file < environment.
//!
//! * File: the path in `SWITCHYARD_CONFIG`, else `./switchyard.toml` when it exists.
//! * Environment: `SWITCHYARD_<SECTION>__<KEY>`, e.g. `SWITCHYARD_NATS__URL`,
//!   `SWITCHYARD_GATEWAY__LISTEN`, `SWITCHYARD_EXECUTOR__CAPACITY`.
//! * Legacy names kept for old deployments: `EXECUTOR_RUN_TIMEOUT_MS` sets
//!   `executor_manager.default_run_timeout_ms` and `CONTROL_PLANE_PROVIDER_MODE` sets
//!   `control_plane.default_provider` (a `SWITCHYARD_` variable wins over either).
//!
//! Every service deserializes the same merged source into its own typed config and
//! ignores other services' sections. This is the only module that reads the process
//! environment; `docs/configuration.md` lists every key.

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secrecy::ExposeSecret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    #[error("invalid configuration: {0}")]
    Invalid(#[source] config::ConfigError),
    #[error("invalid configuration: `{key}` {problem}")]
    Value { key: &'static str, problem: String },
    /// Like `Value`, for a key whose path is only known at run time (an entry of a
    /// table, e.g. `executor.credentials.claude-code.env`).
    #[error("invalid configuration: `{key}` {problem}")]
    Entry { key: String, problem: String },
}

/// Environment variables under older names, mapped to their config keys.
const LEGACY_ENV: &[(&str, &str)] = &[
    (
        "EXECUTOR_RUN_TIMEOUT_MS",
        "executor_manager.default_run_timeout_ms",
    ),
    // The old system's rollback switch: `CONTROL_PLANE_PROVIDER_MODE=scripted` ran every
    // run that named no provider on the scripted one.
    (
        "CONTROL_PLANE_PROVIDER_MODE",
        "control_plane.default_provider",
    ),
];

/// A snapshot of the process environment, for the few components that need variables
/// outside the config keys (the executor resolves provider credentials and the agent
/// CLIs' `PATH` from it). Kept here so that this stays the only module reading it.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Loads `T` from the default file location and the process environment.
pub fn load<T: DeserializeOwned>() -> Result<T, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = env
        .get("SWITCHYARD_CONFIG")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("switchyard.toml")).filter(|p| p.exists()));
    load_from(file.as_deref(), env)
}

/// Loads `T` from an explicit file and environment map (what tests and tools use).
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    env: HashMap<String, String>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        // Read the file ourselves so that a missing file names its path.
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            source: config::ConfigError::Foreign(Box::new(e)),
        })?;
        let parsed = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
        builder = builder.add_source(parsed);
    }
    for (legacy, key) in LEGACY_ENV {
        // Overrides beat every source, so apply a legacy name only when its
        // SWITCHYARD_ spelling is absent; that keeps the documented precedence.
        let modern = format!("SWITCHYARD_{}", key.replace('.', "__").to_uppercase());
        if env.contains_key(&modern) {
            continue;
        }
        if let Some(value) = env.get(*legacy) {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(ConfigError::Invalid)?;
        }
    }
    let switchyard_env: HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("SWITCHYARD_") && k.contains("__"))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("SWITCHYARD")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(switchyard_env)),
    );
    builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(ConfigError::Invalid)
}

/// Shortest accepted shared secret of an internal listener (`executor.api_token`,
/// `control_plane.internal_token`): a short one could be guessed over the network.
const MIN_TOKEN_LEN: usize = 16;

/// Checks a shared secret an internal listener requires: at least [`MIN_TOKEN_LEN`]
/// printable ASCII characters, no spaces (it travels in an HTTP header). The error
/// names `key` and the rule, never the value.
// The platform's shared error type is large; validation runs once at start-up.
#[allow(clippy::result_large_err)]
pub fn check_token(key: &'static str, token: &SecretString) -> Result<(), ConfigError> {
    let token = token.expose_secret();
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Value {
            key,
            problem: format!(
                "must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces"
            ),
        });
    }
    Ok(())
}

/// How to reach NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// User and password auth (both or neither).
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// A `.creds` file (JWT + nkey seed), for operator-mode deployments.
    pub credentials_file: Option<PathBuf>,
    /// An nkey seed (`SU…`) for nkey auth.
    pub nkey_seed: Option<SecretString>,
    pub connect_timeout_ms: u64,
    /// Timeout for core requests (dispatch, control) and JetStream API calls.
    pub request_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            user: None,
            password: None,
            credentials_file: None,
            nkey_seed: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
        }
    }
}

impl NatsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May contain a password, hence secret: never logged.
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/switchyard"),
            max_connections: 16,
            connect_timeout_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Sample {
        nats: NatsConfig,
        executor_manager: SampleManager,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct SampleManager {
        default_run_timeout_ms: u64,
        workers: u32,
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(
            &file,
            "[nats]\nurl = \"nats://file:1\"\nrequest_timeout_ms = 7\n[executor_manager]\nworkers = 3\n",
        )
        .unwrap();
        let cfg: Sample = load_from(
            Some(&file),
            env(&[("SWITCHYARD_NATS__URL", "nats://env:2")]),
        )
        .unwrap();
        assert_eq!(cfg.nats.url, "nats://env:2");
        assert_eq!(cfg.nats.request_timeout_ms, 7);
        assert_eq!(cfg.nats.connect_timeout_ms, 5_000);
        assert_eq!(cfg.executor_manager.workers, 3);
    }

    #[test]
    fn legacy_timeout_variable_is_honoured_but_loses_to_the_prefixed_one() {
        let cfg: Sample = load_from(None, env(&[("EXECUTOR_RUN_TIMEOUT_MS", "1234")])).unwrap();
        assert_eq!(cfg.executor_manager.default_run_timeout_ms, 1234);
        let cfg: Sample = load_from(
            None,
            env(&[
                ("EXECUTOR_RUN_TIMEOUT_MS", "1234"),
                ("SWITCHYARD_EXECUTOR_MANAGER__DEFAULT_RUN_TIMEOUT_MS", "99"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.executor_manager.default_run_timeout_ms, 99);
    }

    #[test]
    fn a_bad_value_is_an_error_not_a_panic() {
        let result: Result<Sample, _> = load_from(
            None,
            env(&[("SWITCHYARD_NATS__CONNECT_TIMEOUT_MS", "soon")]),
        );
        assert!(result.is_err());
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = load_from::<Sample>(Some(Path::new("/nonexistent/sy.toml")), HashMap::new())
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sy.toml"), "{err}");
    }
}
