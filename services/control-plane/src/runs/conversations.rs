//! Conversations: which conversation a new run belongs to, and what a follow-up
//! inherits from it.
//!
//! Every run belongs to one conversation, named by the run id of its first run. A
//! follow-up names it directly (`conversationId`) or through one of its runs
//! (`parentRunId`), continues the provider session the executor kept for it, and so
//! must run the same provider and stays in the conversation's app (a follow-up naming
//! another app is refused: it would send one app's credentials with another app's
//! settings); it inherits the model and profile of the conversation's latest run unless
//! it names its own. The executor that ran the
//! conversation last holds its workspace and session, so the run command names it as
//! the preferred executor.

use super::error::StartRunError;
use super::request::{Resolved, parse_provider};
use crate::store;
use crate::store::runs::ConversationHead;
use sqlx::PgPool;
use switchyard_contracts::RunId;
use switchyard_contracts::api::{AppView, StartRunRequest};

/// The existing conversation a run continues.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub(crate) id: RunId,
    pub(crate) head: ConversationHead,
}

/// The conversation `request` continues, `None` when it starts a new one.
pub(crate) async fn find(
    pool: &PgPool,
    request: &StartRunRequest,
) -> Result<Option<Conversation>, StartRunError> {
    let via_parent = match request.parent_run_id {
        Some(parent) => Some(
            store::runs::conversation_of(pool, parent)
                .await?
                .ok_or(StartRunError::RunNotFound(parent))?,
        ),
        None => None,
    };
    let id = match (request.conversation_id, via_parent) {
        (None, None) => return Ok(None),
        (Some(named), Some(of_parent)) if named != of_parent => {
            return Err(StartRunError::Invalid(format!(
                "`parentRunId` belongs to conversation {of_parent}, not to the \
                 `conversationId` {named}"
            )));
        }
        (Some(id), _) | (None, Some(id)) => id,
    };
    let head = store::runs::conversation_head(pool, id)
        .await?
        .ok_or(StartRunError::ConversationNotFound(id))?;
    Ok(Some(Conversation { id, head }))
}

/// A conversation belongs to the app of its runs (or to none): a follow-up that names
/// another app — directly or through a profile only that app has — is refused.
pub(crate) fn ensure_same_app(
    conversation: &Conversation,
    requested: Option<&AppView>,
) -> Result<(), StartRunError> {
    let requested = requested.map(|app| &app.app_id);
    if requested == conversation.head.app_id.as_ref() {
        return Ok(());
    }
    Err(StartRunError::ConversationAppMismatch {
        conversation: conversation.head.app_id.clone(),
        requested: requested.cloned(),
    })
}

/// Applies what a follow-up inherits to what the request, profile and app resolved:
/// the conversation's provider and its model unless the request names one. A request
/// that names another provider, itself or through the execution profile it names
/// (`named_profile_provider`), is refused: the provider session cannot move to a
/// different agent, and that profile's options and credentials are another agent's.
pub(crate) fn inherit(
    resolved: &mut Resolved,
    request: &StartRunRequest,
    named_profile_provider: Option<&str>,
    head: &ConversationHead,
) -> Result<(), StartRunError> {
    let provider = parse_provider(&head.provider)?;
    if let Some(requested) = request.provider.as_deref().or(named_profile_provider) {
        let requested = parse_provider(requested)?;
        if requested != provider {
            return Err(StartRunError::ConversationProviderMismatch {
                conversation: provider.as_str(),
                requested: requested.as_str(),
            });
        }
    }
    resolved.provider = provider;
    resolved.model = request
        .model
        .clone()
        .or_else(|| head.model.clone())
        .or_else(|| resolved.model.take());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use switchyard_contracts::ProviderName;

    fn head(provider: &str, model: Option<&str>) -> ConversationHead {
        ConversationHead {
            provider: provider.into(),
            model: model.map(str::to_owned),
            app_id: None,
            execution_profile: None,
            executor_id: None,
        }
    }

    fn resolved(provider: ProviderName, model: Option<&str>) -> Resolved {
        Resolved {
            provider,
            model: model.map(str::to_owned),
            provider_options: Map::new(),
            credential_env: Vec::new(),
            timeout_ms: None,
        }
    }

    fn request(provider: Option<&str>, model: Option<&str>) -> StartRunRequest {
        StartRunRequest {
            provider: provider.map(str::to_owned),
            model: model.map(str::to_owned),
            prompt: "again".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_follow_up_runs_the_conversations_provider_and_model() {
        // The app now defaults to another provider and model: the conversation wins.
        let mut r = resolved(ProviderName::Opencode, Some("app-model"));
        inherit(
            &mut r,
            &request(None, None),
            None,
            &head("claude-code", Some("opus")),
        )
        .unwrap();
        assert_eq!(r.provider, ProviderName::ClaudeCode);
        assert_eq!(r.model.as_deref(), Some("opus"));
    }

    #[test]
    fn the_request_may_name_the_same_provider_by_alias_and_another_model() {
        let mut r = resolved(ProviderName::CodexAppServer, Some("new"));
        let req = request(Some("codex-cli"), Some("new"));
        inherit(&mut r, &req, None, &head("codex-app-server", Some("old"))).unwrap();
        assert_eq!(r.provider, ProviderName::CodexAppServer);
        assert_eq!(r.model.as_deref(), Some("new"));
    }

    #[test]
    fn without_a_model_in_the_conversation_the_defaults_apply() {
        let mut r = resolved(ProviderName::Scripted, Some("app-model"));
        inherit(&mut r, &request(None, None), None, &head("scripted", None)).unwrap();
        assert_eq!(r.model.as_deref(), Some("app-model"));
    }

    #[test]
    fn another_provider_is_refused() {
        let mut r = resolved(ProviderName::Opencode, None);
        let err = inherit(
            &mut r,
            &request(Some("opencode"), None),
            None,
            &head("claude-code", None),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                StartRunError::ConversationProviderMismatch {
                    conversation: "claude-code",
                    requested: "opencode"
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_named_profile_of_another_provider_is_refused() {
        let mut r = resolved(ProviderName::Opencode, None);
        let err = inherit(
            &mut r,
            &request(None, None),
            Some("opencode"),
            &head("claude-code", None),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                StartRunError::ConversationProviderMismatch {
                    conversation: "claude-code",
                    requested: "opencode"
                }
            ),
            "{err:?}"
        );
        // A named profile of the conversation's own provider is fine.
        let mut r = resolved(ProviderName::ClaudeCode, None);
        inherit(
            &mut r,
            &request(None, None),
            Some("claude-code"),
            &head("claude-code", None),
        )
        .unwrap();
    }
}
