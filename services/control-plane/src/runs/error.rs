//! Why a start is refused.

use crate::durations::InvalidDuration;
use crate::store::StoreError;
use switchyard_contracts::provider::operator_only_message;
use switchyard_contracts::{AppId, ProviderName, RunId};
use switchyard_platform::events::EventLogError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartRunError {
    #[error("{0}")]
    Invalid(String),
    /// An option that chooses where credentials go (see
    /// [`switchyard_contracts::provider::OPERATOR_ONLY_OPTIONS`]).
    #[error("{}{}", operator_only_message(field, *provider), if *stored {
        "; it comes from the app's runtime defaults or execution profile: register the app \
         again without it"
    } else {
        ""
    })]
    OptionNotAllowed {
        /// The caller's path to it, e.g. `providerOptions.baseUrl`.
        field: String,
        provider: Option<ProviderName>,
        /// Whether it came from stored app defaults rather than the request.
        stored: bool,
    },
    #[error("unknown provider `{0}`; known providers: {known}", known = known_providers())]
    UnknownProvider(String),
    #[error("the prompt is {size} bytes; the limit is {limit}")]
    PromptTooLarge { size: usize, limit: usize },
    #[error("the run command would be {size} bytes; the limit is {limit}")]
    CommandTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    InvalidDuration(#[from] InvalidDuration),
    #[error("no app `{0}` is registered")]
    AppNotFound(AppId),
    #[error("{0}")]
    ProfileNotFound(String),
    #[error("no run {0}")]
    RunNotFound(RunId),
    #[error("no conversation {0}")]
    ConversationNotFound(RunId),
    #[error(
        "the conversation runs `{conversation}`; a follow-up cannot switch to `{requested}` \
         (start a new conversation instead)"
    )]
    ConversationProviderMismatch {
        conversation: &'static str,
        requested: &'static str,
    },
    #[error(
        "the conversation belongs to {conversation}; a follow-up cannot run under {requested} \
         (a conversation's runs share one app's provider, endpoint and credentials; start a \
         new conversation instead)",
        conversation = app_words(conversation.as_ref()),
        requested = app_words(requested.as_ref())
    )]
    ConversationAppMismatch {
        conversation: Option<AppId>,
        requested: Option<AppId>,
    },
    #[error(
        "conversation {conversation_id} has a run in progress ({active_run_id}); a follow-up \
         can start once it has ended (or stop it first)"
    )]
    ConversationBusy {
        conversation_id: RunId,
        active_run_id: RunId,
    },
    #[error(
        "the Idempotency-Key was used for a different request (run {run_id}) within the last \
         24 hours; a retry must repeat its request exactly, a new request needs a new key"
    )]
    IdempotencyKeyReused { run_id: RunId },
    #[error("could not read the event log of run {run_id}: {source}")]
    EventLog {
        run_id: RunId,
        #[source]
        source: EventLogError,
    },
    #[error("could not serialise {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn app_words(app_id: Option<&AppId>) -> String {
    match app_id {
        Some(app_id) => format!("app `{app_id}`"),
        None => "no app".to_owned(),
    }
}

fn known_providers() -> String {
    ProviderName::ALL
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
