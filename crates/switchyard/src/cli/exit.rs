//! The command's exit codes: one meaning each, the same for every subcommand, listed in
//! `switchyard --help` and the README.

use switchyard_contracts::event::TerminalStatus;

/// How `switchyard` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `run --follow` and `follow`, the run succeeded.
    Success,
    /// The command could not do its work: the gateway is unreachable, the API refused
    /// the request (its code and message are printed), a file or the config is bad.
    Error,
    /// The command line is wrong (unknown flag, missing argument); clap's own code.
    Usage,
    /// `health`: the environment is not ready (no executor, a provider's binary or
    /// credentials missing). Shares code 2 with [`Exit::Usage`], as the health check of
    /// the system this replaces did: a usage error prints clap's usage on stderr and no
    /// report, a report always ends with its category on stdout.
    EnvironmentNotReady,
    /// `health`: the runtime is unhealthy (NATS, Postgres, migrations, a stalled
    /// consumer, a failed probe run).
    RuntimeUnhealthy,
    /// The followed run ended `failed`.
    RunFailed,
    /// The followed run ended `timed_out`.
    RunTimedOut,
    /// The followed run ended `stopped`.
    RunStopped,
    /// Detached from a run that goes on (Ctrl-C twice, or once in `follow`).
    Detached,
    /// `stress`: at least one sample did not succeed (the report says which and why).
    StressFailed,
    /// `stress`: Ctrl-C ended it before every sample had run (the report covers those
    /// that did).
    StressInterrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage | Exit::EnvironmentNotReady => 2,
            Exit::RuntimeUnhealthy => 3,
            Exit::RunFailed => 10,
            Exit::RunTimedOut => 11,
            Exit::RunStopped => 12,
            Exit::Detached => 13,
            Exit::StressFailed => 20,
            Exit::StressInterrupted => 21,
        }
    }

    /// The exit of a run that ended `status`.
    pub fn of_run(status: TerminalStatus) -> Self {
        match status {
            TerminalStatus::Succeeded => Exit::Success,
            TerminalStatus::Failed => Exit::RunFailed,
            TerminalStatus::TimedOut => Exit::RunTimedOut,
            TerminalStatus::Stopped => Exit::RunStopped,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The epilogue of `switchyard --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success; for `run --follow` and `follow`: the run succeeded
   1  error: gateway unreachable, API error (its code and message are printed), bad file or config
   2  usage error: unknown flag, missing or invalid argument; for `health`: the
      environment is not ready (a report on stdout; a usage error prints no report)
   3  `health`: the runtime is unhealthy (the report says what failed)
  10  the followed run failed (its reason and evidence are printed)
  11  the followed run timed out
  12  the followed run was stopped
  13  detached from a run that goes on (`switchyard follow RUN --cursor C` resumes)
  20  `stress`: at least one sample failed (see its report)
  21  `stress`: interrupted by Ctrl-C before every sample had run

Gateway URL and token, first found wins: --url/--token, SWITCHYARD_URL/SWITCHYARD_TOKEN,
$XDG_CONFIG_HOME/switchyard/config.toml (default ~/.config/switchyard/config.toml:
url = \"…\", token = \"…\"), else http://127.0.0.1:8080 without a token.
Colours only on a terminal; NO_COLOR turns them off.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_has_its_own_code_and_the_help_lists_it() {
        // Exhaustive on purpose: a new exit does not compile until it is listed here.
        let code_of = |exit: Exit| match exit {
            Exit::Success
            | Exit::Error
            | Exit::Usage
            | Exit::EnvironmentNotReady
            | Exit::RuntimeUnhealthy
            | Exit::RunFailed
            | Exit::RunTimedOut
            | Exit::RunStopped
            | Exit::Detached
            | Exit::StressFailed
            | Exit::StressInterrupted => exit.code(),
        };
        let all = [
            Exit::Success,
            Exit::Error,
            Exit::Usage,
            Exit::RuntimeUnhealthy,
            Exit::RunFailed,
            Exit::RunTimedOut,
            Exit::RunStopped,
            Exit::Detached,
            Exit::StressFailed,
            Exit::StressInterrupted,
        ];
        let codes: std::collections::HashSet<u8> = all.iter().map(|e| code_of(*e)).collect();
        assert_eq!(codes.len(), all.len(), "two exits share a code");
        // The one documented exception: `health`'s 0/2/3 are the old system's codes, and
        // 2 is also clap's usage error.
        assert_eq!(Exit::EnvironmentNotReady.code(), Exit::Usage.code());
        assert!(EXIT_CODES_HELP.contains("for `health`: the\n      environment is not ready"));
        for code in codes {
            assert!(
                EXIT_CODES_HELP
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "exit code {code} is not in the help"
            );
        }
    }

    #[test]
    fn every_run_outcome_has_its_own_code() {
        let codes: Vec<u8> = [
            TerminalStatus::Succeeded,
            TerminalStatus::Failed,
            TerminalStatus::TimedOut,
            TerminalStatus::Stopped,
        ]
        .into_iter()
        .map(|s| Exit::of_run(s).code())
        .collect();
        assert_eq!(codes, [0, 10, 11, 12]);
        for code in &codes[1..] {
            assert!(
                ![Exit::Error, Exit::Usage, Exit::Detached]
                    .iter()
                    .any(|e| e.code() == *code)
            );
        }
    }
}
