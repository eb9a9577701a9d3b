//! The `claude-code` provider: drives Claude Code (`claude -p`) over its stream-json
//! protocol on stdio, one process per run.
//!
//! * [`launch`] — the command line and environment (providerOptions documented there);
//! * [`protocol`] — the lines exchanged with the CLI;
//! * [`translate`] — CLI lines → Switchyard run events;
//! * [`outcome`] — how a turn ended, from its `result` line;
//! * [`session`] — the driver: spawn, handshake, permission prompts as human-loop
//!   requests, liveness, stop, resume of a conversation's session.

mod launch;
mod outcome;
mod protocol;
mod session;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transcripts;
mod translate;

use crate::cli::CliEnv;
use crate::provider::{Provider, ProviderOutcome, RunContext};
use futures::future::BoxFuture;
use std::sync::Arc;
use switchyard_contracts::ProviderName;
use switchyard_contracts::presence::ProviderAvailability;

pub(crate) struct ClaudeProvider {
    env: Arc<CliEnv>,
}

impl ClaudeProvider {
    pub(crate) fn new(env: Arc<CliEnv>) -> Self {
        Self { env }
    }
}

impl Provider for ClaudeProvider {
    fn name(&self) -> ProviderName {
        ProviderName::ClaudeCode
    }

    fn availability(&self) -> ProviderAvailability {
        let check = self.env.start_check(session::PROGRAM);
        ProviderAvailability {
            name: ProviderName::ClaudeCode.as_str().to_owned(),
            installed: check.installed,
            version: check.version,
            problem: check.problem,
            // Runs may name other allowed variables; this is the one a run naming none gets.
            credentials_configured: Some(
                self.env
                    .default_credential_configured(ProviderName::ClaudeCode),
            ),
            credential_variables: self.env.credential_variables(ProviderName::ClaudeCode),
        }
    }

    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome> {
        Box::pin(session::run(self.env.clone(), ctx))
    }
}
