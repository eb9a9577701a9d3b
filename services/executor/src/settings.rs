//! The `executor` config section: what this executor offers (capacity, providers) and
//! the timings it runs runs with.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_contracts::{ProviderName, subjects};
use switchyard_platform::config::ConfigError;

/// `[executor]` section. Every key has a default, so an empty section is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Address of the standalone provider-run API and health endpoints (port 0 = any).
    pub listen: SocketAddr,
    /// Identity in subjects (`executors.<id>.dispatch`) and the presence bucket.
    /// Default: `exec-` and 8 hex digits of a random UUID, fresh at every start.
    pub executor_id: Option<String>,
    /// Runs owned at once.
    pub capacity: u32,
    /// Presence heartbeat period; must stay well below the `EXECUTORS` bucket's max age.
    pub heartbeat_ms: u64,
    /// Parent directory of the per-run workspaces (`<workspace_root>/<run_id>`).
    pub workspace_root: PathBuf,
    /// How long a provider gets to wind down after a stop or a timeout before it is aborted.
    pub stop_grace_ms: u64,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub keep_alive_secs: u64,
    /// Providers this executor offers (canonical names or aliases).
    pub providers: Vec<String>,
    /// Run timeout for standalone provider runs that name none (dispatched runs always
    /// carry the timeout the executor-manager resolved).
    pub default_timeout_ms: u64,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            executor_id: None,
            capacity: 16,
            heartbeat_ms: 2_000,
            workspace_root: std::env::temp_dir().join("switchyard-workspaces"),
            stop_grace_ms: 5_000,
            max_body_bytes: 1024 * 1024,
            keep_alive_secs: 15,
            providers: vec![ProviderName::Scripted.as_str().to_owned()],
            default_timeout_ms: 30 * 60 * 1000,
        }
    }
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
        if let Some(id) = &self.executor_id
            && !subjects::is_subject_token(id)
        {
            return bad(
                "executor.executor_id",
                format!("{id:?} must be 1-128 ASCII letters, digits, `-` or `_`"),
            );
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
        Ok(())
    }

    /// The configured id, or a fresh random one.
    pub fn resolve_executor_id(&self) -> String {
        self.executor_id.clone().unwrap_or_else(|| {
            let hex = uuid::Uuid::new_v4().simple().to_string();
            format!("exec-{}", &hex[..8])
        })
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_generate_a_subject_safe_id() {
        let settings = ExecutorSettings::default();
        settings.validate().unwrap();
        let id = settings.resolve_executor_id();
        assert!(id.starts_with("exec-") && id.len() == 13, "{id}");
        assert!(subjects::is_subject_token(&id));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(ExecutorSettings, &str)> = vec![
            (
                ExecutorSettings {
                    executor_id: Some("a.b".into()),
                    ..Default::default()
                },
                "executor.executor_id",
            ),
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
        ];
        for (settings, key) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }
}
