//! The machinery every agent-CLI adapter shares: finding the CLI binaries and checking
//! that they start, resolving and redacting credentials, per-run liveness limits, the
//! child process (own process group, line-oriented stdout, redacted stderr tail, staged
//! termination), who it runs as and how it dies with its parent, and the per-run cgroup
//! of a run host.
//!
//! [`CliEnv`] is built once at executor start from a [`CliSetup`] (what the `[executor]`
//! settings say about the CLIs) and shared by the adapters (`Arc<CliEnv>`).

pub(crate) mod binaries;
pub(crate) mod cgroup;
pub(crate) mod credentials;
pub(crate) mod isolation;
pub(crate) mod liveness;
pub(crate) mod process;
pub(crate) mod provider_user;
pub(crate) mod start_check;

pub(crate) use binaries::CliLocator;
pub(crate) use credentials::{
    CredentialPolicies, Credentials, CredentialsError, ProviderCredentials,
};
pub(crate) use isolation::Isolation;
pub(crate) use liveness::{Liveness, LivenessFailure, LivenessLimits, names_connection_failure};
pub(crate) use process::{CliCommand, CliProcess, SpawnError};
pub(crate) use provider_user::{ProviderUser, ProviderUserError, StateFiles};
pub(crate) use start_check::{StartCheck, StartChecks};

use crate::workdirs::WorkDirs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_contracts::ProviderName;

/// Where the start checks run, under the workspace root.
pub(crate) const START_CHECK_DIR: &str = ".start-check";

/// What the CLI environment is built from: the part of the `[executor]` settings that
/// concerns the agent CLIs, checked already.
#[derive(Debug, Clone)]
pub(crate) struct CliSetup {
    /// What each provider may be given and where its CLI sends model requests.
    pub policies: CredentialPolicies,
    /// The env file credential values are read from, if any.
    pub credentials_env_file: Option<PathBuf>,
    /// Whether the variables some provider is allowed are also read from the
    /// executor's own environment.
    pub credentials_from_environment: bool,
    /// Directories searched for the CLIs before `PATH`.
    pub search_path: Vec<PathBuf>,
    /// `executor.provider_user`, as [`ProviderUser::resolve`] takes it.
    pub provider_user: String,
    pub liveness: LivenessLimits,
    /// See [`CliEnv::stop_grace`].
    pub stop_grace: Duration,
    /// Where the start checks run their CLIs.
    pub start_check_dir: PathBuf,
}

/// The CLI environment could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliEnvError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    ProviderUser(#[from] ProviderUserError),
    /// The agents could read every credential: the file must be the executor's alone.
    #[error(
        "executor.credentials_env_file {}: the provider user {user} (executor.provider_user) can read it; chmod 600 it",
        path.display()
    )]
    CredentialsReadable { path: PathBuf, user: ProviderUser },
}

/// A CLI run that may spawn: where the binary is and the credential values to pass.
pub(crate) struct Preflight {
    pub program: PathBuf,
    pub credentials: Vec<(String, secrecy::SecretString)>,
}

/// What the CLI adapters share: built once at executor start.
#[derive(Debug, Clone)]
pub(crate) struct CliEnv {
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
    /// Who the CLIs run as, and whether they die with the process that started them.
    pub isolation: Isolation,
    /// Whether each CLI can start (cached `--version` checks).
    pub start_checks: StartChecks,
    /// In a run host: the file the process group of every CLI it starts is appended to,
    /// so that the executor can kill what is left once the host is dead.
    pub process_groups: Option<PathBuf>,
}

impl CliEnv {
    /// Builds the environment: reads the env file (if any) and the process
    /// environment, resolves the provider user and checks that the known CLIs start.
    pub(crate) fn new(setup: CliSetup) -> Result<Self, CliEnvError> {
        let env = Self::unprobed(setup)?;
        env.start_checks.check_all(KNOWN_PROGRAMS);
        Ok(env)
    }

    /// Like [`new`](Self::new), but checks a CLI only when it is first asked for (a run
    /// host needs one CLI, and no start-up delay).
    pub(crate) fn unprobed(setup: CliSetup) -> Result<Self, CliEnvError> {
        let CliSetup {
            policies,
            credentials_env_file,
            credentials_from_environment,
            search_path,
            provider_user,
            liveness,
            stop_grace,
            start_check_dir,
        } = setup;
        let process_env = switchyard_platform::config::process_env();
        // Only names some provider is allowed are ever read from the environment.
        let from_environment = if credentials_from_environment {
            policies.all_names()
        } else {
            Default::default()
        };
        let credentials = Credentials::load(
            credentials_env_file.as_deref(),
            &process_env,
            &from_environment,
        )?;
        let path_var = process_env.get("PATH").map(String::as_str);
        let binaries = CliLocator::new(search_path, path_var);
        let user = ProviderUser::resolve(&provider_user)?;
        if let (Some(user), Some(path)) = (user, &credentials_env_file)
            && user.can_read(path)
        {
            return Err(CliEnvError::CredentialsReadable {
                path: path.clone(),
                user,
            });
        }
        let isolation = Isolation::new(user, path_var);
        let start_checks = StartChecks::new(binaries.clone(), isolation.clone(), start_check_dir);
        Ok(Self {
            binaries,
            credentials,
            policies,
            liveness,
            stop_grace,
            isolation,
            start_checks,
            process_groups: None,
        })
    }

    /// An environment for tests: the given locator, credentials from explicit pairs,
    /// the default policies, default limits, a short stop grace, and CLIs run as the
    /// test's own user.
    #[cfg(test)]
    pub(crate) fn for_tests(binaries: CliLocator, credentials: Credentials) -> Self {
        let start_checks = StartChecks::new(
            binaries.clone(),
            Isolation::default(),
            std::env::temp_dir().join("switchyard-start-check"),
        );
        Self {
            binaries,
            credentials,
            policies: CredentialPolicies::default(),
            liveness: LivenessLimits::default(),
            stop_grace: Duration::from_millis(500),
            isolation: Isolation::default(),
            start_checks,
            process_groups: None,
        }
    }

    /// `provider`'s allowance (`[executor.credentials.<provider>]`).
    pub(crate) fn policy(&self, provider: ProviderName) -> ProviderCredentials {
        self.policies.get(provider)
    }

    /// Whether the credential a run of `provider` naming none gets has a value (for
    /// presence and the providers API).
    pub(crate) fn default_credential_configured(&self, provider: ProviderName) -> bool {
        let names = self.policy(provider).names_for(&[]);
        !names.is_empty() && self.credentials.is_configured(&names)
    }

    /// Every variable the operator allows `provider`, with whether it has a value here
    /// (for presence and the health check: names only, never values).
    pub(crate) fn credential_variables(
        &self,
        provider: ProviderName,
    ) -> Vec<switchyard_contracts::presence::CredentialVariable> {
        self.policy(provider)
            .env
            .into_iter()
            .map(|name| {
                let present = self.credentials.is_configured(std::slice::from_ref(&name));
                switchyard_contracts::presence::CredentialVariable { name, present }
            })
            .collect()
    }

    /// Whether `program` can start here (see [`start_check`]).
    pub(crate) fn start_check(&self, program: &str) -> StartCheck {
        self.start_checks.get(program)
    }

    /// The run's CLI state directory, for the adapter to write the CLI's config into.
    pub(crate) fn state_files(&self, dirs: &WorkDirs) -> StateFiles {
        StateFiles::new(&dirs.state, self.isolation.user)
    }

    /// Starts a run's CLI: hands the run's directories to the provider user, starts the
    /// CLI isolated (see [`isolation`]) and, in a run host, notes its process group.
    pub(crate) async fn spawn(
        &self,
        cmd: CliCommand,
        dirs: &WorkDirs,
    ) -> Result<CliProcess, SpawnError> {
        // The run's TMPDIR (see `process::base_environment`), the provider user's.
        self.state_files(dirs)
            .create_dir(process::RUN_TMP_DIR)
            .await
            .map_err(|source| SpawnError::HandOver {
                dir: dirs.state.join(process::RUN_TMP_DIR),
                source,
            })?;
        if let Some(user) = self.isolation.user {
            hand_over(user, dirs).await?;
        }
        let process = CliProcess::start(cmd, &self.credentials, &self.isolation).await?;
        if let (Some(file), Some(group)) = (&self.process_groups, process.pid()) {
            // At once: a host that dies from here on leaves this group for the executor.
            if let Err(error) = note_group(file, group) {
                tracing::warn!(path = %file.display(), %error, "cannot note the CLI's process group; it is reaped by its cgroup only");
            }
        }
        Ok(process)
    }

    /// What every CLI run checks before it spawns anything: every credential it names
    /// (`credential_env`, or else the provider's first allowed name) is one the operator
    /// allowed `provider` (else `auth_missing`, naming the variable and the config key),
    /// and has a value (else `auth_missing`, naming the variables, never a value); and
    /// its binary is installed (else `binary_missing`, naming where it looked). The
    /// credentials come back in the order named.
    pub(crate) fn preflight(
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
    pub(crate) fn spawn_failure(
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

/// The programs checked at start-up (the adapters' binaries).
pub(crate) const KNOWN_PROGRAMS: &[&str] = &["codex", "claude", "opencode"];

/// Gives the provider user the run's directories: the state directory and the workspace,
/// each with everything in it when it was somebody else's (new, or an earlier run's under
/// another user), except a workspace the run was given, which stays its owner's. Fails
/// when the user could not even reach them.
async fn hand_over(user: ProviderUser, dirs: &WorkDirs) -> Result<(), SpawnError> {
    use std::os::unix::fs::MetadataExt as _;
    let dirs = dirs.clone();
    let handed = tokio::task::spawn_blocking(move || {
        if let Some(blocked) =
            user.blocked_on_the_way_to(dirs.state.parent().unwrap_or(Path::new("/")))
        {
            return Err(SpawnError::Unreachable { user, dir: blocked });
        }
        let io = |source| SpawnError::HandOver {
            dir: dirs.state.clone(),
            source,
        };
        let owned_by_user = |dir: &Path| std::fs::metadata(dir).is_ok_and(|m| m.uid() == user.uid);
        // What the executor writes into the state directory is the user's from the start
        // (`StateFiles`), and what the CLI writes is its own: only a directory that was
        // somebody else's before is walked.
        user.hand_over(&dirs.state, !owned_by_user(&dirs.state))
            .map_err(io)?;
        let own_workspace = dirs.workspace == dirs.state.with_file_name("workspace");
        if own_workspace && !owned_by_user(&dirs.workspace) {
            user.hand_over(&dirs.workspace, true).map_err(io)?;
        }
        if let Some(blocked) = user.blocked_on_the_way_to(&dirs.workspace) {
            return Err(SpawnError::Unreachable { user, dir: blocked });
        }
        Ok(())
    });
    handed.await.map_err(|error| SpawnError::HandOver {
        dir: PathBuf::new(),
        source: std::io::Error::other(error),
    })?
}

/// Appends `group` to the run host's process group file.
fn note_group(file: &Path, group: u32) -> std::io::Result<()> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(out, "{group}")
}
