//! The `opencode` provider: drives `opencode serve` (opencode-ai 1.18) over its HTTP
//! API and SSE event stream on a loopback port.
//!
//! * `options.rs` — what the run asks for (model, key name, permissions, retry
//!   budget), the operator's endpoint, and the `opencode.json` written into the run's
//!   config dir;
//! * `api.rs` — the HTTP client and the SSE reader;
//! * `translate.rs` — opencode events → Switchyard events, error classification;
//! * `session.rs` — the driver: spawn, handshake, session, prompt, turn, stop;
//! * `recover.rs` — after the event stream broke mid-turn: the bounds of
//!   re-subscribing, and the turn's state read back from the REST API.
//!
//! Wire details (events, permission replies, abort, failure matrix) are in
//! `shared/protocol-samples/PROTOCOLS.md`, section 3; `testdata/` holds captured
//! transcripts the translator is tested against.

mod api;
#[cfg(test)]
mod live_tests;
mod options;
mod recover;
mod session;
mod translate;

use crate::cli::CliEnv;
use crate::provider::{Provider, ProviderOutcome, RunContext};
use futures::future::BoxFuture;
use std::sync::Arc;
use switchyard_contracts::ProviderName;
use switchyard_contracts::presence::ProviderAvailability;

/// Runs opencode turns with the executor's shared CLI machinery.
pub(crate) struct OpencodeProvider {
    env: Arc<CliEnv>,
}

impl OpencodeProvider {
    pub(crate) fn new(env: Arc<CliEnv>) -> Self {
        Self { env }
    }
}

impl Provider for OpencodeProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Opencode
    }

    fn availability(&self) -> ProviderAvailability {
        let check = self.env.start_check(session::PROGRAM);
        ProviderAvailability {
            name: ProviderName::Opencode.as_str().to_owned(),
            installed: check.installed,
            version: check.version,
            problem: check.problem,
            credentials_configured: Some(
                self.env
                    .default_credential_configured(ProviderName::Opencode),
            ),
            credential_variables: self.env.credential_variables(ProviderName::Opencode),
        }
    }

    fn run(&self, ctx: RunContext) -> BoxFuture<'static, ProviderOutcome> {
        Box::pin(session::run(self.env.clone(), ctx))
    }
}
