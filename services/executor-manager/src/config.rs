//! The executor-manager's typed configuration (`[executor_manager]` plus the shared
//! `[nats]` and `[telemetry]` sections) and its start-up validation.

use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use switchyard_contracts::{ProviderName, WorkerId};
use switchyard_platform::config::{ConfigError, NatsConfig};
use switchyard_platform::http::HttpServerConfig;
use switchyard_platform::telemetry::TelemetryConfig;

/// Everything the executor-manager reads from the merged configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpServerConfig,
    pub metrics: switchyard_platform::metrics::MetricsConfig,
    pub executor_manager: ExecutorManagerSettings,
}

/// `[executor_manager]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorManagerSettings {
    /// Address of `/healthz` and `/readyz`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Concurrent fetch loops in this process, all on the shared durable consumer.
    pub workers: u32,
    /// Written into `run.claimed` and dispatch requests; `mgr-<8 hex>` when unset.
    pub worker_id: Option<WorkerId>,
    /// Commands requested per fetch.
    pub batch_size: u32,
    /// Commands processed at once by this process (all workers together).
    pub max_in_flight: u32,
    /// How long an executor has to answer a dispatch request.
    pub dispatch_timeout_ms: u64,
    /// Redelivery delay of a command when no executor has room for it.
    pub no_capacity_delay_ms: u64,
    /// A run whose provider is installed on none of the live executors fails with
    /// `binary_missing` once no executor has offered that provider for this long (and
    /// the manager has been up this long). With no live executor at all, runs wait.
    pub binary_missing_grace_ms: u64,
    /// Run timeout when neither the command nor a template sets one
    /// (legacy `EXECUTOR_RUN_TIMEOUT_MS`).
    pub default_run_timeout_ms: u64,
    /// Per provider (and optionally model) run timeouts; the first match wins, and a
    /// template naming the model wins over one for the provider alone.
    pub timeout_templates: Vec<TimeoutTemplate>,
}

impl Default for ExecutorManagerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8083)),
            workers: 2,
            worker_id: None,
            batch_size: 32,
            max_in_flight: 256,
            dispatch_timeout_ms: 5_000,
            no_capacity_delay_ms: 500,
            binary_missing_grace_ms: 5_000,
            default_run_timeout_ms: 600_000,
            timeout_templates: Vec::new(),
        }
    }
}

/// A run timeout for one provider, or one provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutTemplate {
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
    pub timeout_ms: u64,
}

/// The `executor-manager` consumer's `ack_wait` (nats/consumers). A dispatch attempt
/// sends an in-progress ack first, so one attempt must fit well inside it or the
/// command is redelivered to another worker while it is still being dispatched.
const CONSUMER_ACK_WAIT_MS: u64 = 10_000;

impl ExecutorManagerSettings {
    pub fn dispatch_timeout(&self) -> Duration {
        Duration::from_millis(self.dispatch_timeout_ms)
    }

    pub fn no_capacity_delay(&self) -> Duration {
        Duration::from_millis(self.no_capacity_delay_ms)
    }

    pub fn binary_missing_grace(&self) -> Duration {
        Duration::from_millis(self.binary_missing_grace_ms)
    }
}

impl Config {
    /// Checks what serde cannot; the error names the offending key.
    // The signature every service shares; ConfigError's size is the platform's choice
    // and this runs once at start-up.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.metrics.validate()?;
        match self.executor_manager.problem() {
            Some((key, problem)) => Err(ConfigError::Value { key, problem }),
            None => Ok(()),
        }
    }
}

impl ExecutorManagerSettings {
    /// The first invalid key and what is wrong with it.
    fn problem(&self) -> Option<(&'static str, String)> {
        let at_least_one = |key| Some((key, "must be at least 1".to_owned()));
        if self.workers == 0 {
            return at_least_one("executor_manager.workers");
        }
        if self.batch_size == 0 {
            return at_least_one("executor_manager.batch_size");
        }
        if self.max_in_flight == 0 {
            return at_least_one("executor_manager.max_in_flight");
        }
        if self.default_run_timeout_ms == 0 {
            return at_least_one("executor_manager.default_run_timeout_ms");
        }
        if self.dispatch_timeout_ms == 0 || self.dispatch_timeout_ms > CONSUMER_ACK_WAIT_MS / 2 {
            return Some((
                "executor_manager.dispatch_timeout_ms",
                format!(
                    "must be between 1 and {} (half the work queue's ack wait)",
                    CONSUMER_ACK_WAIT_MS / 2
                ),
            ));
        }
        for (i, template) in self.timeout_templates.iter().enumerate() {
            if ProviderName::parse(&template.provider).is_none() {
                return Some((
                    "executor_manager.timeout_templates",
                    format!("entry {i}: unknown provider `{}`", template.provider),
                ));
            }
            if template.timeout_ms == 0 {
                return Some((
                    "executor_manager.timeout_templates",
                    format!("entry {i}: `timeout_ms` must be at least 1"),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Config {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        switchyard_platform::config::load_from(None, env).unwrap()
    }

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let config = load(&[]);
        let s = &config.executor_manager;
        assert_eq!(s.listen, "127.0.0.1:8083".parse().unwrap());
        assert_eq!(s.workers, 2);
        assert_eq!(s.batch_size, 32);
        assert_eq!(s.max_in_flight, 256);
        assert_eq!(s.dispatch_timeout_ms, 5_000);
        assert_eq!(s.no_capacity_delay_ms, 500);
        assert_eq!(s.binary_missing_grace_ms, 5_000);
        assert_eq!(s.default_run_timeout_ms, 600_000);
        assert!(s.worker_id.is_none());
        assert!(s.timeout_templates.is_empty());
        config.validate().unwrap();
    }

    #[test]
    fn legacy_timeout_variable_sets_the_default_run_timeout() {
        let config = load(&[("EXECUTOR_RUN_TIMEOUT_MS", "1234")]);
        assert_eq!(config.executor_manager.default_run_timeout_ms, 1234);
    }

    #[test]
    fn templates_load_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(
            &file,
            "[executor_manager]\nworkers = 4\n\
             [[executor_manager.timeout_templates]]\nprovider = \"claude-code\"\nmodel = \"opus\"\ntimeout_ms = 900000\n\
             [[executor_manager.timeout_templates]]\nprovider = \"scripted\"\ntimeout_ms = 1000\n",
        )
        .unwrap();
        let config: Config =
            switchyard_platform::config::load_from(Some(&file), HashMap::new()).unwrap();
        let s = &config.executor_manager;
        assert_eq!(s.workers, 4);
        assert_eq!(s.timeout_templates.len(), 2);
        assert_eq!(s.timeout_templates[0].model.as_deref(), Some("opus"));
        assert_eq!(s.timeout_templates[1].model, None);
        config.validate().unwrap();
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut config = Config::default();
        config.executor_manager.workers = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("executor_manager.workers"), "{err}");

        let mut config = Config::default();
        config.executor_manager.dispatch_timeout_ms = 60_000;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("executor_manager.dispatch_timeout_ms"),
            "{err}"
        );

        let mut config = Config::default();
        config
            .executor_manager
            .timeout_templates
            .push(TimeoutTemplate {
                provider: "gpt".into(),
                model: None,
                timeout_ms: 5,
            });
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("executor_manager.timeout_templates"), "{err}");
        assert!(err.contains("gpt"), "{err}");
    }

    #[test]
    fn a_bad_worker_id_is_refused_at_loading_naming_the_key() {
        let env = |id: &str| {
            HashMap::from([(
                "SWITCHYARD_EXECUTOR_MANAGER__WORKER_ID".to_owned(),
                id.to_owned(),
            )])
        };
        let err = switchyard_platform::config::load_from::<Config>(None, env("a.b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("executor_manager.worker_id"), "{err}");
        assert!(err.contains("must be 1-128 characters"), "{err}");
        let config: Config = switchyard_platform::config::load_from(None, env("mgr-7")).unwrap();
        assert_eq!(config.executor_manager.worker_id.unwrap(), "mgr-7");
    }

    #[test]
    fn unknown_keys_in_the_section_are_rejected() {
        let result: Result<Config, _> = switchyard_platform::config::load_from(
            None,
            [(
                "SWITCHYARD_EXECUTOR_MANAGER__WORKRS".to_string(),
                "3".to_string(),
            )]
            .into(),
        );
        assert!(result.is_err());
    }
}
