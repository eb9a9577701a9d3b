//! The control-plane's typed configuration (`[control_plane]` plus the shared `[nats]`,
//! `[telemetry]` and `[database]` sections) and its start-up validation.

use serde::{Deserialize, Deserializer};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use switchyard_contracts::ProviderName;
use switchyard_contracts::provider::DEFAULT_PROVIDER;
use switchyard_platform::config::{
    ConfigError, DatabaseConfig, ExposeSecret, NatsConfig, check_token,
};
use switchyard_platform::http::HttpServerConfig;
use switchyard_platform::metrics::MetricsConfig;
use switchyard_platform::telemetry::TelemetryConfig;

/// Everything the control-plane reads from the merged configuration. Other services'
/// sections are ignored, so one file can configure the whole platform.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub http: HttpServerConfig,
    pub metrics: MetricsConfig,
    pub control_plane: ControlPlaneSettings,
}

/// `[control_plane]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneSettings {
    /// Internal HTTP address (the gateway forwards `/api/*` here); port 0 picks one.
    pub listen: SocketAddr,
    /// Largest request body accepted (413 `body_too_large` above it).
    pub max_body_bytes: usize,
    /// Largest prompt accepted (413 `prompt_too_large` above it).
    pub max_prompt_bytes: usize,
    /// How often the outbox sweeper looks for commands whose publication did not finish.
    pub outbox_sweep_ms: u64,
    /// How long a stop or human-loop reply keeps retrying while the run's owner does
    /// not answer yet (503 `owner_unavailable` after it).
    pub control_timeout_ms: u64,
    /// Prefix of the stream URL returned for a run: `<base>/<run_id>/stream`.
    pub stream_url_base: String,
    /// Requests whose response has not started after this long get 503.
    pub request_timeout_ms: u64,
    /// Period of the reconciler's passes (runs of lost executors, lost commands).
    pub reconcile_interval_ms: u64,
    /// Required: every request but `/healthz` and `/readyz` must carry it in
    /// `x-switchyard-internal-token`, so only gateways (configured with the same
    /// `gateway.control_plane_token`) may call the control-plane and assert who the
    /// caller is. The control-plane does not start without it.
    pub internal_token: Option<secrecy::SecretString>,
    /// The provider of a run when neither the start request, its execution profile nor
    /// its app names one (canonical name or alias). Also read from the legacy
    /// `CONTROL_PLANE_PROVIDER_MODE` (`scripted` was the old system's documented
    /// rollback switch); `SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER` wins over it. An
    /// unknown name stops the control-plane at start-up.
    #[serde(deserialize_with = "provider_name")]
    pub default_provider: ProviderName,
}

/// A provider name (canonical or alias), refused with the accepted names otherwise. The
/// config crate adds the key to the message.
fn provider_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ProviderName, D::Error> {
    let name = String::deserialize(deserializer)?;
    ProviderName::parse(name.trim()).ok_or_else(|| {
        let known: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
        serde::de::Error::custom(format!(
            "{:?} is not a provider (set by control_plane.default_provider or the legacy \
             CONTROL_PLANE_PROVIDER_MODE); expected one of: {}",
            name.chars().take(64).collect::<String>(),
            known.join(", ")
        ))
    })
}

impl Default for ControlPlaneSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8081)),
            max_body_bytes: 1024 * 1024,
            max_prompt_bytes: 256 * 1024,
            outbox_sweep_ms: 1_000,
            control_timeout_ms: 5_000,
            stream_url_base: "/api/runs".to_owned(),
            request_timeout_ms: 30_000,
            reconcile_interval_ms: 5_000,
            internal_token: None,
            default_provider: DEFAULT_PROVIDER,
        }
    }
}

impl ControlPlaneSettings {
    pub fn outbox_sweep_interval(&self) -> Duration {
        Duration::from_millis(self.outbox_sweep_ms)
    }

    pub fn control_timeout(&self) -> Duration {
        Duration::from_millis(self.control_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `<stream_url_base>/<run_id>/stream`.
    pub fn stream_url(&self, run_id: &uuid::Uuid) -> String {
        format!(
            "{}/{run_id}/stream",
            self.stream_url_base.trim_end_matches('/')
        )
    }
}

impl Config {
    /// Checks what serde cannot; the error names the offending key.
    // `ConfigError` is the platform's shared type; it is returned once at start-up.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.metrics.validate()?;
        let s = &self.control_plane;
        let invalid = |key: &'static str, problem: &str| {
            Err(ConfigError::Value {
                key,
                problem: problem.to_owned(),
            })
        };
        match &s.internal_token {
            Some(token) => check_token("control_plane.internal_token", token)?,
            None => {
                return invalid(
                    "control_plane.internal_token",
                    "is not set: the control-plane trusts the caller identity its callers \
                     send, so it serves only callers with this shared secret; set it \
                     (SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN) and the same value as \
                     gateway.control_plane_token",
                );
            }
        }
        if s.max_body_bytes < 1024 {
            return invalid("control_plane.max_body_bytes", "must be at least 1024");
        }
        if s.max_prompt_bytes == 0 || s.max_prompt_bytes > s.max_body_bytes {
            return invalid(
                "control_plane.max_prompt_bytes",
                "must be at least 1 and at most control_plane.max_body_bytes",
            );
        }
        if s.outbox_sweep_ms < 10 {
            return invalid("control_plane.outbox_sweep_ms", "must be at least 10");
        }
        if s.control_timeout_ms == 0 {
            return invalid("control_plane.control_timeout_ms", "must be at least 1");
        }
        if s.request_timeout_ms <= s.control_timeout_ms {
            return invalid(
                "control_plane.request_timeout_ms",
                "must be larger than control_plane.control_timeout_ms",
            );
        }
        if !s.stream_url_base.starts_with('/') && !s.stream_url_base.starts_with("http") {
            return invalid(
                "control_plane.stream_url_base",
                "must be an absolute path (`/api/runs`) or an http(s) URL",
            );
        }
        let url = self.database.url.expose_secret();
        let postgres_scheme = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres_scheme || sqlx::postgres::PgConnectOptions::from_str(url).is_err() {
            // The URL may hold a password: name the key, never echo the value.
            return invalid("database.url", "is not a valid postgres:// URL");
        }
        if self.database.max_connections < 2 {
            // The projector holds one connection per batch while requests need others.
            return invalid("database.max_connections", "must be at least 2");
        }
        if self.database.connect_timeout_ms == 0 {
            return invalid("database.connect_timeout_ms", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_token() -> HashMap<String, String> {
        HashMap::from([(
            "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN".to_owned(),
            "0123456789abcdef-internal".to_owned(),
        )])
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config: Config = switchyard_platform::config::load_from(None, HashMap::new()).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("control_plane.internal_token"), "{err}");
        let config: Config = switchyard_platform::config::load_from(None, with_token()).unwrap();
        config.validate().unwrap();
        let s = &config.control_plane;
        assert_eq!(s.listen.port(), 8081);
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(s.max_prompt_bytes, 256 * 1024);
        assert_eq!(
            s.stream_url(&uuid::Uuid::nil()),
            "/api/runs/00000000-0000-0000-0000-000000000000/stream"
        );
    }

    #[test]
    fn environment_sets_keys_and_bad_values_name_their_key() {
        let mut env = with_token();
        env.insert(
            "SWITCHYARD_CONTROL_PLANE__MAX_PROMPT_BYTES".to_owned(),
            "0".to_owned(),
        );
        let config: Config = switchyard_platform::config::load_from(None, env).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("control_plane.max_prompt_bytes"), "{err}");

        let mut env = with_token();
        env.insert(
            "SWITCHYARD_DATABASE__URL".to_owned(),
            "mysql://user:hunter2@host/db".to_owned(),
        );
        let config: Config = switchyard_platform::config::load_from(None, env).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn default_provider_comes_from_file_env_or_the_legacy_variable() {
        let load = |pairs: &[(&str, &str)]| {
            let mut env = with_token();
            env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            switchyard_platform::config::load_from::<Config>(None, env).unwrap()
        };
        assert_eq!(
            load(&[]).control_plane.default_provider,
            ProviderName::CodexAppServer
        );
        let legacy = load(&[("CONTROL_PLANE_PROVIDER_MODE", "scripted")]);
        assert_eq!(
            legacy.control_plane.default_provider,
            ProviderName::Scripted
        );
        // The new name wins over the legacy one; aliases are accepted.
        let both = load(&[
            ("CONTROL_PLANE_PROVIDER_MODE", "scripted"),
            ("SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER", "codex-cli"),
        ]);
        assert_eq!(
            both.control_plane.default_provider,
            ProviderName::CodexAppServer
        );

        let dir = std::env::temp_dir().join(format!("sy-cp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("switchyard.toml");
        std::fs::write(
            &file,
            "[control_plane]\ndefault_provider = \"claude-code\"\n",
        )
        .unwrap();
        let from_file: Config =
            switchyard_platform::config::load_from(Some(&file), with_token()).unwrap();
        assert_eq!(
            from_file.control_plane.default_provider,
            ProviderName::ClaudeCode
        );
        let mut env = with_token();
        env.insert(
            "SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER".to_owned(),
            "opencode".to_owned(),
        );
        let env_over_file: Config =
            switchyard_platform::config::load_from(Some(&file), env).unwrap();
        assert_eq!(
            env_over_file.control_plane.default_provider,
            ProviderName::Opencode
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unknown_default_provider_is_a_start_up_error_naming_the_key() {
        for (name, value) in [
            ("CONTROL_PLANE_PROVIDER_MODE", "real"),
            ("SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER", "gpt"),
        ] {
            let mut env = with_token();
            env.insert(name.to_owned(), value.to_owned());
            let err = switchyard_platform::config::load_from::<Config>(None, env)
                .unwrap_err()
                .to_string();
            assert!(err.contains("control_plane.default_provider"), "{err}");
            assert!(err.contains(value) && err.contains("scripted"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_in_the_section_are_rejected() {
        let env = HashMap::from([(
            "SWITCHYARD_CONTROL_PLANE__LISTNE".to_owned(),
            "127.0.0.1:1".to_owned(),
        )]);
        assert!(switchyard_platform::config::load_from::<Config>(None, env).is_err());
    }
}
