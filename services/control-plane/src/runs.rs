//! Starting runs: validating a start request, resolving what it runs with (request →
//! execution profile → app defaults → system default; for a follow-up, the
//! conversation's provider and model first), and accepting it durably (run row +
//! outbox row in one transaction) before it is published.

use crate::access::Actor;
use crate::config::ControlPlaneSettings;
use crate::conversations::{self, Conversation};
use crate::idempotency::IdempotencyKey;
use crate::outbox::{Cleaner, Publisher};
use crate::store::{self, StoreError};
use chrono::Utc;
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::api::{AppView, RuntimeDefaults, StartRunRequest, StartRunResponse};
use switchyard_contracts::budget::{BUDGET_OPTION, InvalidBudget, RunBudget};
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::provider::{
    DEFAULT_PROVIDER, operator_only_message, operator_only_option,
};
use switchyard_contracts::{ProviderName, RunCommand, RunId, RunStatus};
use switchyard_platform::events::{EventLog, EventLogError};
use tracing::Instrument as _;

/// Largest serialized run command: the RUN_COMMANDS stream's `max_msg_size` (1 MiB)
/// minus room for headers. A larger command could never be published, so it is refused
/// up front instead of sitting in the outbox forever.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024 - 4096;
/// Longest model name accepted.
const MAX_MODEL_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StartRunError {
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
    InvalidDuration(#[from] crate::durations::InvalidDuration),
    #[error("no app `{0}` is registered")]
    AppNotFound(String),
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
        conversation = app_words(conversation.as_deref()),
        requested = app_words(requested.as_deref())
    )]
    ConversationAppMismatch {
        conversation: Option<String>,
        requested: Option<String>,
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn app_words(app_id: Option<&str>) -> String {
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

/// `1–64` characters of `[A-Za-z0-9_-]`: app ids and profile names end up in URLs,
/// logs and metrics labels.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Environment variable names as a shell accepts them.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a provider name (canonical or alias).
pub fn parse_provider(name: &str) -> Result<ProviderName, StartRunError> {
    ProviderName::parse(name).ok_or_else(|| StartRunError::UnknownProvider(truncate(name, 64)))
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// What a run runs with, after every level had its say.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub provider: ProviderName,
    pub model: Option<String>,
    pub provider_options: Map<String, Value>,
    pub credential_env: Vec<String>,
    pub timeout_ms: Option<u64>,
}

/// Request over profile over app defaults over the system default. Provider options
/// are merged shallowly (a key set at a higher level replaces the whole value);
/// credential names are merged (see [`merged_credential_env`]).
pub fn resolve(
    request: &StartRunRequest,
    profile: Option<&RuntimeDefaults>,
    app: Option<&RuntimeDefaults>,
) -> Result<Resolved, StartRunError> {
    let levels = [profile, app];
    let provider = match request.provider.as_deref().or_else(|| {
        levels
            .iter()
            .flatten()
            .find_map(|defaults| defaults.provider.as_deref())
    }) {
        Some(name) => parse_provider(name)?,
        None => DEFAULT_PROVIDER,
    };
    let model = request.model.clone().or_else(|| {
        levels
            .iter()
            .flatten()
            .find_map(|defaults| defaults.model.clone())
    });
    // Where credentials go is the executor operator's: refused from the request, and
    // from stored defaults too (registration refuses them, but a row may predate that).
    if let Some(key) = request
        .provider_options
        .iter()
        .flat_map(|own| own.keys())
        .find_map(|key| operator_only_option([key.as_str()]))
    {
        return Err(StartRunError::OptionNotAllowed {
            field: format!("providerOptions.{key}"),
            provider: Some(provider),
            stored: false,
        });
    }
    let mut provider_options = Map::new();
    for defaults in levels.iter().rev().flatten() {
        provider_options.extend(defaults.provider_options.clone());
    }
    if let Some(key) = operator_only_option(provider_options.keys().map(String::as_str)) {
        return Err(StartRunError::OptionNotAllowed {
            field: format!("providerOptions.{key}"),
            provider: Some(provider),
            stored: true,
        });
    }
    if let Some(own) = &request.provider_options {
        // Which existing directory a run may work in is the app's decision (and the
        // executor's `allowed_workspace_dirs`), never a caller's.
        if let Some(dir) = own.get("workspaceDir")
            && provider_options.get("workspaceDir") != Some(dir)
        {
            return Err(StartRunError::Invalid(
                "`providerOptions.workspaceDir` can only be set by the app's runtime defaults \
                 or an execution profile; a start request cannot set or change it"
                    .into(),
            ));
        }
        provider_options.extend(own.clone());
    }
    merge_budget(&mut provider_options, request, profile, app)?;
    let credential_env = merged_credential_env(&levels);
    let timeout_ms = levels
        .iter()
        .flatten()
        .find_map(|defaults| defaults.timeout_ms);
    Ok(Resolved {
        provider,
        model,
        provider_options,
        credential_env,
        timeout_ms,
    })
}

/// The credential names of every level, the most specific first (a provider takes its
/// primary credential from the first name), each name once: a profile adds to what its
/// app declares instead of replacing it.
fn merged_credential_env(levels: &[Option<&RuntimeDefaults>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in levels
        .iter()
        .flatten()
        .flat_map(|defaults| &defaults.credential_env)
    {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// `providerOptions.budget` merged field by field, request over profile over app (the
/// shallow merge above would let a request's budget drop the app's other limits).
fn merge_budget(
    provider_options: &mut Map<String, Value>,
    request: &StartRunRequest,
    profile: Option<&RuntimeDefaults>,
    app: Option<&RuntimeDefaults>,
) -> Result<(), StartRunError> {
    let invalid = |e: InvalidBudget| StartRunError::Invalid(e.to_string());
    let mut budget = match &request.provider_options {
        Some(own) => RunBudget::from_options(own, "providerOptions").map_err(invalid)?,
        None => None,
    }
    .unwrap_or_default();
    for (defaults, at) in [
        (profile, "the execution profile's providerOptions"),
        (app, "the app's runtimeDefaults.providerOptions"),
    ] {
        if let Some(defaults) = defaults
            && let Some(lower) =
                RunBudget::from_options(&defaults.provider_options, at).map_err(invalid)?
        {
            budget = budget.or(lower);
        }
    }
    if budget.is_empty() {
        provider_options.remove(BUDGET_OPTION);
    } else if let Ok(value) = serde_json::to_value(budget) {
        provider_options.insert(BUDGET_OPTION.to_owned(), value);
    }
    Ok(())
}

/// Checks what the request's shape cannot express.
pub fn validate_request(
    request: &StartRunRequest,
    max_prompt_bytes: usize,
) -> Result<(), StartRunError> {
    if request.prompt.trim().is_empty() {
        return Err(StartRunError::Invalid("`prompt` must not be empty".into()));
    }
    if request.prompt.len() > max_prompt_bytes {
        return Err(StartRunError::PromptTooLarge {
            size: request.prompt.len(),
            limit: max_prompt_bytes,
        });
    }
    if request.prompt.contains('\0') {
        return Err(StartRunError::Invalid(
            "`prompt` must not contain NUL characters".into(),
        ));
    }
    if let Some(app_id) = &request.app_id
        && !is_valid_name(app_id)
    {
        return Err(StartRunError::Invalid(
            "`appId` must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`".into(),
        ));
    }
    if let Some(profile) = &request.execution_profile
        && !is_valid_name(profile)
    {
        return Err(StartRunError::Invalid(
            "`executionProfile` must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`".into(),
        ));
    }
    if let Some(model) = &request.model
        && (model.trim().is_empty() || model.len() > MAX_MODEL_LEN || model.contains('\0'))
    {
        return Err(StartRunError::Invalid(format!(
            "`model` must be 1-{MAX_MODEL_LEN} bytes without NUL characters"
        )));
    }
    if let Some(options) = &request.provider_options
        && options
            .iter()
            .any(|(k, v)| k.contains('\0') || store::json_contains_nul(v))
    {
        return Err(StartRunError::Invalid(
            "`providerOptions` must not contain NUL characters".into(),
        ));
    }
    if let Some(provider) = &request.provider {
        parse_provider(provider)?;
    }
    if let Some(options) = &request.provider_options {
        crate::durations::check_provider_options(options, "providerOptions")?;
        RunBudget::from_options(options, "providerOptions")
            .map_err(|e| StartRunError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// The answer to a start: the run, and whether it was started by an earlier request
/// with the same idempotency key (then nothing was started now).
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub response: StartRunResponse,
    pub replayed: bool,
}

/// Keys used before this instant have expired.
fn idempotency_since() -> chrono::DateTime<Utc> {
    Utc::now()
        - chrono::Duration::from_std(crate::idempotency::WINDOW).unwrap_or(chrono::Duration::MAX)
}

/// Accepts runs: persists them with their outbox entry, then publishes.
pub struct Runs {
    pool: PgPool,
    publisher: Arc<Publisher>,
    events: EventLog,
    cleaner: Cleaner,
    settings: Arc<ControlPlaneSettings>,
    /// Bound on the inline publication; past it the sweeper finishes the job.
    publish_timeout: Duration,
}

impl Runs {
    pub fn new(
        pool: PgPool,
        publisher: Arc<Publisher>,
        events: EventLog,
        cleaner: Cleaner,
        settings: Arc<ControlPlaneSettings>,
        publish_timeout: Duration,
    ) -> Self {
        Self {
            pool,
            publisher,
            events,
            cleaner,
            settings,
            publish_timeout,
        }
    }

    /// Validates, resolves, persists and publishes a run. Once the transaction has
    /// committed the run is accepted: a failed publication is left to the sweeper.
    /// `actor` must be allowed to start runs at all (the HTTP layer checks the role);
    /// here the run's app, once resolved, must be one they see — otherwise the app
    /// "does not exist" for them.
    ///
    /// With an idempotency key (see [`crate::idempotency`]), a start the key already
    /// made within the window is answered as it was, and nothing else happens.
    pub async fn start(
        &self,
        request: StartRunRequest,
        actor: &Actor,
        idempotency_key: Option<String>,
    ) -> Result<Started, StartRunError> {
        validate_request(&request, self.settings.max_prompt_bytes)?;
        let idempotency = idempotency_key.map(|key| IdempotencyKey::new(key, &request));
        if let Some(keyed) = &idempotency
            && let Some(earlier) = self.earlier_start(&self.pool, actor, keyed).await?
        {
            return Ok(earlier);
        }
        let conversation = conversations::find(&self.pool, &request).await?;
        let (app, profile_name) = match &conversation {
            Some(conversation)
                if request.app_id.is_none() && request.execution_profile.is_none() =>
            {
                self.inherited_app_and_profile(conversation).await?
            }
            Some(conversation) => {
                self.follow_up_app_and_profile(&request, conversation)
                    .await?
            }
            None => self.app_and_profile(&request).await?,
        };
        if let Some(app) = &app
            && !actor.may_see_app(&app.app_id)
        {
            return Err(StartRunError::AppNotFound(app.app_id.clone()));
        }
        if let Some(conversation) = &conversation
            && (request.app_id.is_some() || request.execution_profile.is_some())
        {
            conversations::ensure_same_app(conversation, app.as_ref())?;
        }
        let app_defaults = app.as_ref().map(|a| &a.runtime_defaults);
        let profile = match (&app, &profile_name) {
            (Some(app), Some(name)) => Some(app.execution_profiles.get(name).ok_or_else(|| {
                StartRunError::ProfileNotFound(format!(
                    "app `{}` has no execution profile `{name}`",
                    app.app_id
                ))
            })?),
            _ => None,
        };
        let mut resolved = resolve(&request, profile, app_defaults)?;
        if let Some(conversation) = &conversation {
            conversations::inherit(&mut resolved, &request, &conversation.head)?;
        }

        let run_id = RunId::now_v7();
        let conversation_id = conversation.as_ref().map_or(run_id, |c| c.id);
        let preferred_executor = conversation.and_then(|c| c.head.executor_id);
        let span = tracing::info_span!("start_run", %run_id, %conversation_id);
        async move {
            let created_at = Utc::now();
            let provider = resolved.provider.as_str().to_owned();
            let app_id = app.as_ref().map(|a| a.app_id.clone());
            let command = RunCommand {
                run_id,
                provider: provider.clone(),
                model: resolved.model.clone(),
                prompt: request.prompt,
                app_id: app_id.clone(),
                execution_profile: profile_name.clone(),
                provider_options: Value::Object(resolved.provider_options),
                credential_env: resolved.credential_env,
                timeout_ms: resolved.timeout_ms,
                conversation_id: Some(conversation_id),
                preferred_executor,
                created_at,
            };
            let size = serde_json::to_vec(&command)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_COMMAND_BYTES {
                return Err(StartRunError::CommandTooLarge {
                    size,
                    limit: MAX_COMMAND_BYTES,
                });
            }
            let queued = RunQueued {
                provider: provider.clone(),
                model: command.model.clone(),
                app_id: app_id.clone(),
            };
            let new_run = store::runs::NewRun {
                run_id,
                conversation_id,
                app_id,
                execution_profile: profile_name,
                provider: provider.clone(),
                model: command.model.clone(),
                prompt: command.prompt.clone(),
                provider_options: command.provider_options.clone(),
                credential_env: command.credential_env.clone(),
                timeout_ms: command.timeout_ms.map(store::to_bigint),
                created_at,
                created_by: Some(actor.id.clone()),
                idempotency: idempotency
                    .as_ref()
                    .map(|keyed| (keyed.key.clone(), keyed.fingerprint.clone())),
            };
            let outbox_id = if conversation_id == run_id && idempotency.is_none() {
                store::runs::insert_queued(&self.pool, &new_run, &queued, &command).await?
            } else {
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                if let Some(keyed) = &idempotency {
                    // Under the key's lock: an attempt that committed while this one
                    // was resolving is found here, after its commit.
                    store::idempotency::lock(&mut tx, &actor.id, &keyed.key).await?;
                    if let Some(earlier) = self.earlier_start(&mut *tx, actor, keyed).await? {
                        return Ok(earlier);
                    }
                    store::idempotency::release_expired(
                        &mut *tx,
                        &actor.id,
                        &keyed.key,
                        idempotency_since(),
                    )
                    .await?;
                }
                if conversation_id != run_id {
                    // A follow-up is judged and inserted under the conversation's lock.
                    self.ensure_idle(&mut tx, conversation_id).await?;
                }
                let id = store::runs::insert_queued(&mut *tx, &new_run, &queued, &command).await?;
                tx.commit().await.map_err(StoreError::from)?;
                id
            };
            tracing::info!(
                provider,
                model = ?command.model,
                preferred_executor = ?command.preferred_executor,
                "run accepted"
            );

            let model = command.model.clone();
            self.publish_soon(store::outbox::OutboxEntry {
                id: outbox_id,
                run_id,
                queued,
                command,
            });
            Ok(Started {
                response: StartRunResponse {
                    run_id,
                    conversation_id,
                    status: RunStatus::Queued,
                    provider,
                    model,
                    stream_url: self.settings.stream_url(&run_id),
                },
                replayed: false,
            })
        }
        .instrument(span)
        .await
    }

    /// The answer of the start `keyed` already made within the window: the same `202`
    /// for the same request, `IdempotencyKeyReused` for another one.
    async fn earlier_start(
        &self,
        conn: impl sqlx::PgExecutor<'_>,
        actor: &Actor,
        keyed: &IdempotencyKey,
    ) -> Result<Option<Started>, StartRunError> {
        let Some(earlier) =
            store::idempotency::find(conn, &actor.id, &keyed.key, idempotency_since()).await?
        else {
            return Ok(None);
        };
        if earlier.idempotency_fingerprint != keyed.fingerprint {
            return Err(StartRunError::IdempotencyKeyReused {
                run_id: earlier.run_id,
            });
        }
        tracing::info!(run_id = %earlier.run_id, "start retried with its idempotency key; answering it again");
        Ok(Some(Started {
            response: StartRunResponse {
                run_id: earlier.run_id,
                conversation_id: earlier.conversation_id,
                status: RunStatus::Queued,
                provider: earlier.provider,
                model: earlier.model,
                stream_url: self.settings.stream_url(&earlier.run_id),
            },
            replayed: true,
        }))
    }

    /// Refuses a follow-up while the conversation's latest run has not ended: two runs
    /// of one conversation would drive the same provider session and workspace at once.
    /// Holds the conversation's lock until `tx` ends, so concurrent follow-ups are judged
    /// one after the other. The projection may lag the run's log by a few milliseconds,
    /// so a run it still shows active is asked of the log itself, which is authoritative.
    async fn ensure_idle(
        &self,
        tx: &mut sqlx::PgConnection,
        conversation_id: RunId,
    ) -> Result<(), StartRunError> {
        store::runs::lock_conversation(tx, conversation_id).await?;
        let Some((latest, status)) =
            store::runs::latest_in_conversation(tx, conversation_id).await?
        else {
            return Ok(());
        };
        if RunStatus::parse(&status).is_some_and(RunStatus::is_terminal) {
            return Ok(());
        }
        let last = self
            .events
            .last(latest)
            .await
            .map_err(|source| StartRunError::EventLog {
                run_id: latest,
                source,
            })?;
        if last.is_some_and(|event| event.header.is_terminal()) {
            return Ok(());
        }
        Err(StartRunError::ConversationBusy {
            conversation_id,
            active_run_id: latest,
        })
    }

    /// The app the request names (directly or through a profile name) and the profile.
    async fn app_and_profile(
        &self,
        request: &StartRunRequest,
    ) -> Result<(Option<AppView>, Option<String>), StartRunError> {
        let profile = request.execution_profile.clone();
        let app_id = match (&request.app_id, &profile) {
            (Some(app_id), _) => Some(app_id.clone()),
            (None, Some(name)) => {
                let mut apps = store::apps::apps_with_profile(&self.pool, name).await?;
                match apps.len() {
                    0 => {
                        return Err(StartRunError::ProfileNotFound(format!(
                            "no app has an execution profile `{name}`"
                        )));
                    }
                    1 => apps.pop(),
                    _ => {
                        return Err(StartRunError::Invalid(format!(
                            "several apps have an execution profile `{name}`; name the `appId`"
                        )));
                    }
                }
            }
            (None, None) => None,
        };
        let Some(app_id) = app_id else {
            return Ok((None, None));
        };
        match store::apps::get(&self.pool, &app_id).await? {
            Some(app) => Ok((Some(app), profile)),
            None => Err(StartRunError::AppNotFound(app_id)),
        }
    }

    /// A follow-up that names its app or profile: a profile named without an app is
    /// looked up in the conversation's app first, since that is the only app the
    /// follow-up may run under.
    async fn follow_up_app_and_profile(
        &self,
        request: &StartRunRequest,
        conversation: &Conversation,
    ) -> Result<(Option<AppView>, Option<String>), StartRunError> {
        if request.app_id.is_none()
            && let (Some(name), Some(app_id)) =
                (&request.execution_profile, &conversation.head.app_id)
            && let Some(app) = store::apps::get(&self.pool, app_id).await?
            && app.execution_profiles.contains_key(name)
        {
            return Ok((Some(app), Some(name.clone())));
        }
        self.app_and_profile(request).await
    }

    /// A follow-up that names neither app nor profile runs under the conversation's, so
    /// it gets the same credentials, options and timeout. One that has been removed
    /// since is left out rather than failing a request that did not name it.
    async fn inherited_app_and_profile(
        &self,
        conversation: &Conversation,
    ) -> Result<(Option<AppView>, Option<String>), StartRunError> {
        let Some(app_id) = &conversation.head.app_id else {
            return Ok((None, None));
        };
        let Some(app) = store::apps::get(&self.pool, app_id).await? else {
            tracing::warn!(
                app_id,
                conversation_id = %conversation.id,
                "the conversation's app is gone; the follow-up runs without it"
            );
            return Ok((None, None));
        };
        let profile = conversation
            .head
            .execution_profile
            .clone()
            .filter(|name| app.execution_profiles.contains_key(name));
        Ok((Some(app), profile))
    }

    /// Publishes beside the answer, so a healthy system dispatches without waiting for
    /// the sweeper and the `202` does not wait for two acknowledged publishes (the
    /// committed outbox entry already makes the run safe). A failure, a slow NATS or a
    /// crash before it is done leaves the entry to the sweeper. A client that opens the
    /// run's stream at once waits for `run.queued` like for any later event; a stop or
    /// a follow-up that comes first is handled as before publication (see `outbox`).
    fn publish_soon(&self, entry: store::outbox::OutboxEntry) {
        let publisher = self.publisher.clone();
        let cleaner = self.cleaner.clone();
        let timeout = self.publish_timeout;
        let publication = async move {
            match tokio::time::timeout(timeout, publisher.publish(&entry)).await {
                // Deleted in the background: a second commit here would delay the next run.
                Ok(Ok(())) => cleaner.published(entry.id),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "publication failed; the outbox sweeper will retry");
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "publication is slow; the outbox sweeper will finish it"
                    );
                }
            }
        };
        tokio::spawn(publication.in_current_span());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(provider: Option<&str>, model: Option<&str>) -> StartRunRequest {
        StartRunRequest {
            provider: provider.map(str::to_owned),
            model: model.map(str::to_owned),
            prompt: "hi".into(),
            ..Default::default()
        }
    }

    fn defaults(provider: Option<&str>, options: Value, timeout: Option<u64>) -> RuntimeDefaults {
        RuntimeDefaults {
            provider: provider.map(str::to_owned),
            model: provider.map(|p| format!("{p}-model")),
            credential_env: provider
                .map(|p| vec![format!("{}_KEY", p.replace('-', "_").to_uppercase())])
                .unwrap_or_default(),
            provider_options: options.as_object().cloned().unwrap_or_default(),
            timeout_ms: timeout,
        }
    }

    #[test]
    fn request_wins_over_profile_over_app_over_default() {
        let app = defaults(Some("claude-code"), json!({"a": 1, "b": 1}), Some(10));
        let profile = defaults(Some("opencode"), json!({"b": 2, "c": 2}), None);
        let r = resolve(&request(Some("scripted"), None), Some(&profile), Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::Scripted);
        assert_eq!(r.model.as_deref(), Some("opencode-model"));
        let r = resolve(&request(None, Some("m")), Some(&profile), Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::Opencode);
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.credential_env, vec!["OPENCODE_KEY", "CLAUDE_CODE_KEY"]);
        assert_eq!(r.timeout_ms, Some(10));
        assert_eq!(
            Value::Object(r.provider_options),
            json!({"a": 1, "b": 2, "c": 2})
        );
        let r = resolve(&request(None, None), None, Some(&app)).unwrap();
        assert_eq!(r.provider, ProviderName::ClaudeCode);
        let r = resolve(&request(None, None), None, None).unwrap();
        assert_eq!(r.provider, ProviderName::CodexAppServer);
        assert_eq!(r.model, None);
    }

    #[test]
    fn an_endpoint_is_refused_from_the_request_and_from_stored_defaults() {
        let mut own = request(Some("claude-code"), None);
        own.provider_options = json!({"base_url": "http://127.0.0.1:9"})
            .as_object()
            .cloned();
        let error = resolve(&own, None, None).unwrap_err();
        assert!(
            matches!(&error, StartRunError::OptionNotAllowed { field, stored: false, .. }
                if field == "providerOptions.base_url"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("executor.credentials.claude-code.base_url"),
            "{message}"
        );
        let app = defaults(
            Some("codex-app-server"),
            json!({"baseUrl": "http://127.0.0.1:9"}),
            None,
        );
        let error = resolve(&request(None, None), None, Some(&app)).unwrap_err();
        assert!(
            matches!(&error, StartRunError::OptionNotAllowed { stored: true, .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("executor.credentials.codex-app-server.base_url"),
            "{error}"
        );
    }

    #[test]
    fn request_options_replace_whole_keys() {
        let app = defaults(None, json!({"script": {"steps": [1]}, "x": true}), None);
        let mut req = request(None, None);
        req.provider_options = json!({"script": {"other": 1}}).as_object().cloned();
        let r = resolve(&req, None, Some(&app)).unwrap();
        assert_eq!(
            Value::Object(r.provider_options),
            json!({"script": {"other": 1}, "x": true})
        );
    }

    #[test]
    fn budgets_merge_field_by_field_and_bad_ones_are_refused() {
        let app = defaults(
            None,
            json!({"budget": {"maxTurns": 50, "maxEvents": 1000}}),
            None,
        );
        let profile = defaults(None, json!({"budget": {"maxEvents": 500}}), None);
        let mut req = request(None, None);
        req.provider_options = json!({"budget": {"maxOutputTokens": 9}})
            .as_object()
            .cloned();
        let r = resolve(&req, Some(&profile), Some(&app)).unwrap();
        assert_eq!(
            r.provider_options["budget"],
            json!({"maxTurns": 50, "maxOutputTokens": 9, "maxEvents": 500})
        );
        let r = resolve(&request(None, None), None, None).unwrap();
        assert!(r.provider_options.get("budget").is_none());

        req.provider_options = json!({"budget": {"maxEvents": 0}}).as_object().cloned();
        for error in [
            validate_request(&req, 10).unwrap_err(),
            resolve(&req, None, None).unwrap_err(),
        ] {
            assert!(
                matches!(&error, StartRunError::Invalid(m) if m.contains("providerOptions.budget.maxEvents")),
                "{error}"
            );
        }
    }

    #[test]
    fn codex_cli_resolves_to_codex_app_server_and_unknown_is_an_error() {
        let r = resolve(&request(Some("codex-cli"), None), None, None).unwrap();
        assert_eq!(r.provider.as_str(), "codex-app-server");
        assert!(matches!(
            resolve(&request(Some("gpt"), None), None, None),
            Err(StartRunError::UnknownProvider(_))
        ));
    }

    #[test]
    fn validation_rejects_what_the_shape_allows() {
        let mut req = request(None, None);
        req.prompt = "  ".into();
        assert!(matches!(
            validate_request(&req, 10),
            Err(StartRunError::Invalid(_))
        ));
        req.prompt = "x".repeat(11);
        assert!(matches!(
            validate_request(&req, 10),
            Err(StartRunError::PromptTooLarge {
                size: 11,
                limit: 10
            })
        ));
        req.prompt = "a\0b".into();
        assert!(validate_request(&req, 10).is_err());
        req.prompt = "ok".into();
        req.app_id = Some("bad id".into());
        assert!(validate_request(&req, 10).is_err());
        req.app_id = Some("a".repeat(65));
        assert!(validate_request(&req, 10).is_err());
        req.app_id = Some("good_app-1".into());
        validate_request(&req, 10).unwrap();
        req.provider_options = json!({"k": ["\u{0}"]}).as_object().cloned();
        assert!(validate_request(&req, 10).is_err());
    }

    #[test]
    fn env_names_follow_shell_rules() {
        assert!(is_valid_env_name("OPENAI_API_KEY"));
        assert!(is_valid_env_name("_X1"));
        assert!(!is_valid_env_name("1X"));
        assert!(!is_valid_env_name("A-B"));
        assert!(!is_valid_env_name(""));
    }
}
