//! The `codex-app-server` provider (alias `codex-cli`): drives `codex app-server`
//! (JSON-RPC 2.0, one JSON object per line on stdio) for one turn per run.
//!
//! * [`protocol`] — the subset of the app-server protocol this adapter speaks;
//! * [`translate`] — notifications → Switchyard events;
//! * [`failure`] — a failed turn → one failure reason;
//! * [`options`] — `providerOptions` and their defaults;
//! * [`home`] — the per-conversation `CODEX_HOME` and its `config.toml`;
//! * [`noise`] — what codex prints on every start, kept out of the evidence;
//! * [`session`] — the driver: handshake, approvals, liveness, stop.
//!
//! A run spawns one app-server with `CODEX_HOME` under the conversation's state dir,
//! opens a thread (resuming the conversation's thread when this executor has one,
//! starting fresh in the same workspace when that fails), starts a turn with the prompt
//! and ends at `turn/completed`. The thread id is reported with
//! `RunContext::set_session_id` so that a follow-up run continues it.

mod failure;
mod home;
mod noise;
mod options;
mod protocol;
mod session;
mod translate;

use crate::cli::CliEnv;
use crate::provider::{Provider, ProviderOutcome, RunContext};
use futures::future::BoxFuture;
use std::sync::Arc;
use switchyard_contracts::ProviderName;
use switchyard_contracts::presence::ProviderAvailability;
use tracing::Instrument as _;

/// The `codex-app-server` provider.
pub(crate) struct CodexProvider {
    env: Arc<CliEnv>,
}

impl CodexProvider {
    pub(crate) fn new(env: Arc<CliEnv>) -> Self {
        Self { env }
    }
}

impl Provider for CodexProvider {
    fn name(&self) -> ProviderName {
        ProviderName::CodexAppServer
    }

    fn availability(&self) -> ProviderAvailability {
        let check = self.env.start_check(session::PROGRAM);
        ProviderAvailability {
            name: ProviderName::CodexAppServer.as_str().to_owned(),
            installed: check.installed,
            version: check.version,
            problem: check.problem,
            credentials_configured: Some(
                self.env
                    .default_credential_configured(ProviderName::CodexAppServer),
            ),
            credential_variables: self.env.credential_variables(ProviderName::CodexAppServer),
        }
    }

    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome> {
        let span = tracing::info_span!("codex", run_id = %ctx.command.run_id);
        Box::pin(session::run(self.env.clone(), ctx).instrument(span))
    }
}

#[cfg(test)]
mod tests;
