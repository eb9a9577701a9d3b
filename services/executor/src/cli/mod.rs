//! The machinery every agent-CLI adapter shares: finding the CLI binaries, resolving
//! and redacting credentials, per-run liveness limits, the child process (own process
//! group, line-oriented stdout, redacted stderr tail, staged termination) and the
//! per-run or per-conversation directories.
//!
//! [`CliEnv`] is built once at executor start from the `[executor]` settings and shared
//! by the adapters (`Arc<CliEnv>`).

pub mod binaries;
pub mod credentials;
pub mod liveness;
pub mod process;
pub mod workdirs;

pub use binaries::CliLocator;
pub use credentials::{
    CredentialPolicies, Credentials, CredentialsError, MissingCredentials, ProviderCredentials,
};
pub use liveness::{Liveness, LivenessFailure, LivenessLimits, PauseGuard};
pub use process::{CliCommand, CliProcess, SpawnError};
pub use workdirs::{ConversationState, WorkDirs};

use crate::settings::ExecutorSettings;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_contracts::ProviderName;

/// A CLI run that may spawn: where the binary is and the credential values to pass.
pub struct Preflight {
    pub program: PathBuf,
    pub credentials: Vec<(String, secrecy::SecretString)>,
}

/// What the CLI adapters share: built once at executor start.
#[derive(Debug, Clone)]
pub struct CliEnv {
    /// Where the CLIs are found (and their versions, probed once).
    pub binaries: CliLocator,
    /// Credential values from the executor's env file and the allowed part of its
    /// environment.
    pub credentials: Credentials,
    /// What each provider may be given and where its CLI sends model requests
    /// (`[executor.credentials.<provider>]`).
    pub policies: CredentialPolicies,
    /// Default liveness limits (`[executor.liveness]`); providerOptions may override
    /// them per run, see [`Liveness::new`].
    pub liveness: LivenessLimits,
    /// Between a protocol interrupt and the signals, and between successive signals
    /// (see [`CliProcess::terminate`]).
    pub stop_grace: Duration,
}

impl CliEnv {
    /// Builds the environment from the settings: reads the env file (if any) and the
    /// process environment, and probes the versions of the known CLIs.
    pub fn from_settings(settings: &ExecutorSettings) -> Result<Self, CredentialsError> {
        let env = Self::unprobed(settings)?;
        env.binaries.probe_versions(KNOWN_PROGRAMS);
        Ok(env)
    }

    /// Like [`from_settings`](Self::from_settings), but probes a CLI's version only when
    /// it is first asked for (a run host needs one CLI, and no start-up delay).
    pub fn unprobed(settings: &ExecutorSettings) -> Result<Self, CredentialsError> {
        let policies = settings.credential_policies().map_err(Box::new)?;
        let process_env = switchyard_platform::config::process_env();
        // Only names some provider is allowed are ever read from the environment.
        let from_environment = if settings.credentials_from_environment {
            policies.all_names()
        } else {
            Default::default()
        };
        let credentials = Credentials::load(
            settings.credentials_env_file.as_deref(),
            &process_env,
            &from_environment,
        )?;
        let binaries = CliLocator::new(
            settings.cli_search_path.clone(),
            process_env.get("PATH").map(String::as_str),
        );
        Ok(Self {
            binaries,
            credentials,
            policies,
            liveness: settings.liveness.limits(),
            stop_grace: settings.cli_stop_grace(),
        })
    }

    /// An environment for tests: the given locator, credentials from explicit pairs,
    /// the default policies, default limits and a short stop grace.
    pub fn for_tests(binaries: CliLocator, credentials: Credentials) -> Self {
        Self {
            binaries,
            credentials,
            policies: CredentialPolicies::default(),
            liveness: LivenessLimits::default(),
            stop_grace: Duration::from_millis(500),
        }
    }

    /// `provider`'s allowance (`[executor.credentials.<provider>]`).
    pub fn policy(&self, provider: ProviderName) -> ProviderCredentials {
        self.policies.get(provider)
    }

    /// Whether the credential a run of `provider` naming none gets has a value (for
    /// presence and the providers API).
    pub fn default_credential_configured(&self, provider: ProviderName) -> bool {
        let names = self.policy(provider).names_for(&[]);
        !names.is_empty() && self.credentials.is_configured(&names)
    }

    /// What every CLI run checks before it spawns anything: every credential it names
    /// (`credential_env`, or else the provider's first allowed name) is one the operator
    /// allowed `provider` (else `auth_missing`, naming the variable and the config key),
    /// and has a value (else `auth_missing`, naming the variables, never a value); and
    /// its binary is installed (else `binary_missing`, naming where it looked). The
    /// credentials come back in the order named.
    pub fn preflight(
        &self,
        provider: ProviderName,
        program: &str,
        credential_env: &[String],
    ) -> Result<Preflight, crate::provider::ProviderOutcome> {
        use switchyard_contracts::FailureReason;
        let policy = self.policy(provider);
        let credential_env = policy.names_for(credential_env);
        if let Some(refused) = policy.refused(&credential_env) {
            return Err(crate::provider::ProviderOutcome::failed(
                FailureReason::AuthMissing,
                format!(
                    "{provider} may not be given the credential variable {refused}: the \
                     variables it may be given are set by the executor's operator in \
                     `executor.credentials.{provider}.env` (now: {})",
                    policy.env.join(", ")
                ),
            ));
        }
        let credentials = self
            .credentials
            .resolve(&credential_env)
            .map_err(|missing| {
                crate::provider::ProviderOutcome::failed(
                    FailureReason::AuthMissing,
                    format!("{program}: {missing}"),
                )
            })?;
        let program_path = self.binaries.find(program).ok_or_else(|| {
            crate::provider::ProviderOutcome::failed(
                FailureReason::BinaryMissing,
                self.binaries.describe_search(program),
            )
        })?;
        Ok(Preflight {
            program: program_path,
            credentials,
        })
    }

    /// How a run ends when its CLI cannot be started: a binary that vanished since the
    /// preflight is `binary_missing` (naming where it was looked for), anything else
    /// `provider_crashed`.
    pub fn spawn_failure(
        &self,
        program: &str,
        error: SpawnError,
    ) -> crate::provider::ProviderOutcome {
        use switchyard_contracts::FailureReason;
        match error {
            SpawnError::NotFound { .. } => crate::provider::ProviderOutcome::failed(
                FailureReason::BinaryMissing,
                self.binaries.describe_search(program),
            ),
            other => crate::provider::ProviderOutcome::failed(
                FailureReason::ProviderCrashed,
                format!("{program} could not be started: {other}"),
            ),
        }
    }
}

/// The programs whose version is probed at start-up (the adapters' binaries).
pub const KNOWN_PROGRAMS: &[&str] = &["codex", "claude", "opencode"];
