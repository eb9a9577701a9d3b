//! The executor's configuration: `[nats]`, `[telemetry]`, `[http]` and `[executor]`.

use crate::settings::ExecutorSettings;
use serde::Deserialize;
use switchyard_platform::config::{ConfigError, NatsConfig};
use switchyard_platform::http::HttpServerConfig;
use switchyard_platform::telemetry::TelemetryConfig;

/// The executor's configuration: `[nats]`, `[telemetry]`, `[http]` and `[executor]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpServerConfig,
    pub metrics: switchyard_platform::metrics::MetricsConfig,
    pub executor: ExecutorSettings,
}

impl Config {
    /// Lets this binary start run hosts (`executor.detach_runs`): it must answer the
    /// first argument [`RUN_HOST_COMMAND`](crate::RUN_HOST_COMMAND) with
    /// [`run_host`](crate::run_host).
    pub fn with_run_hosts_from_this_binary(mut self) -> Self {
        match std::env::current_exe() {
            Ok(program) => self.executor.run_host_program = Some(program),
            Err(error) => {
                tracing::warn!(%error, "cannot find this binary; every run stays in-process");
            }
        }
        self
    }

    /// Checks every value once at start-up; the error names the offending key.
    #[allow(clippy::result_large_err)] // the platform's shared error type; called once
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.metrics.validate()?;
        self.executor.validate()
    }
}
