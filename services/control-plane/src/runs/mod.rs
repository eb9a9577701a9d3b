//! Starting runs: validating a start request, resolving what it runs with (request →
//! execution profile → app defaults → `control_plane.default_provider`; for a follow-up, the
//! conversation's provider and model first), and accepting it durably (run row +
//! outbox row in one transaction) before it is published.

mod conversations;
mod error;
mod request;

pub(crate) use error::StartRunError;
pub(crate) use request::parse_provider;

use crate::actor::Actor;
use crate::config::ControlPlaneSettings;
use crate::idempotency::IdempotencyKey;
use crate::outbox::{Cleaner, Publisher};
use crate::store::{self, StoreError};
use chrono::Utc;
use conversations::Conversation;
use request::{resolve, validate_request};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::api::{AppView, StartRunRequest, StartRunResponse};
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{ProfileName, RunCommand, RunId, RunStatus};
use switchyard_platform::events::EventLog;
use switchyard_platform::trace::TraceParent;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// Largest serialized run command: the RUN_COMMANDS stream's `max_msg_size` (1 MiB)
/// minus room for headers. A larger command could never be published, so it is refused
/// up front instead of sitting in the outbox forever.
pub(crate) const MAX_COMMAND_BYTES: usize = 1024 * 1024 - 4096;

/// The answer to a start: the run, and whether it was started by an earlier request
/// with the same idempotency key (then nothing was started now).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Started {
    pub(crate) response: StartRunResponse,
    pub(crate) replayed: bool,
}

/// Keys used before this instant have expired.
fn idempotency_since() -> chrono::DateTime<Utc> {
    Utc::now()
        - chrono::Duration::from_std(crate::idempotency::WINDOW).unwrap_or(chrono::Duration::MAX)
}

/// Accepts runs: persists them with their outbox entry, then publishes.
pub(crate) struct Runs {
    pool: PgPool,
    publisher: Arc<Publisher>,
    events: EventLog,
    cleaner: Cleaner,
    settings: Arc<ControlPlaneSettings>,
    /// Bound on the inline publication; past it the sweeper finishes the job.
    publish_timeout: Duration,
    /// The service's tasks: shutdown waits for the publications in flight.
    tasks: TaskTracker,
}

impl Runs {
    pub(crate) fn new(
        pool: PgPool,
        publisher: Arc<Publisher>,
        events: EventLog,
        cleaner: Cleaner,
        settings: Arc<ControlPlaneSettings>,
        publish_timeout: Duration,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            pool,
            publisher,
            events,
            cleaner,
            settings,
            publish_timeout,
            tasks,
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
    pub(crate) async fn start(
        &self,
        request: StartRunRequest,
        actor: &Actor,
        idempotency_key: Option<String>,
        trace: TraceParent,
    ) -> Result<Started, StartRunError> {
        validate_request(&request, self.settings.max_prompt_bytes)?;
        let idempotency = idempotency_key
            .map(|key| IdempotencyKey::new(key, &request))
            .transpose()
            .map_err(|source| StartRunError::Encode {
                what: "the start request's fingerprint",
                source,
            })?;
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
        let mut resolved = resolve(
            &request,
            profile,
            app_defaults,
            self.settings.default_provider,
        )?;
        if let Some(conversation) = &conversation {
            let named_profile_provider = profile
                .filter(|_| request.execution_profile.is_some())
                .and_then(|p| p.provider.as_deref());
            conversations::inherit(
                &mut resolved,
                &request,
                named_profile_provider,
                &conversation.head,
            )?;
        }

        let run_id = RunId::now_v7();
        let conversation_id = conversation.as_ref().map_or(run_id, |c| c.id);
        let preferred_executor = conversation.and_then(|c| c.head.executor_id);
        let span = tracing::info_span!("start_run", %run_id, trace_id = trace.trace_id(), %conversation_id);
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
            let size = crate::json::to_vec("a run command", &command)
                .map_err(|source| StartRunError::Encode {
                    what: "the run command",
                    source,
                })?
                .len();
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
                // Passed on as this service's child span of the request's trace.
                trace: Some(trace.child()),
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
        if status.is_terminal() {
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
    ) -> Result<(Option<AppView>, Option<ProfileName>), StartRunError> {
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
    ) -> Result<(Option<AppView>, Option<ProfileName>), StartRunError> {
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
    ) -> Result<(Option<AppView>, Option<ProfileName>), StartRunError> {
        let Some(app_id) = &conversation.head.app_id else {
            return Ok((None, None));
        };
        let Some(app) = store::apps::get(&self.pool, app_id).await? else {
            tracing::warn!(
                %app_id,
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
        // In the service's tracker, so a shutdown waits for it (at most `timeout`)
        // before it drains NATS, rather than cutting it off halfway.
        self.tasks.spawn(publication.in_current_span());
    }
}
