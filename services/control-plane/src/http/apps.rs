//! `/api/apps`: registering apps (runtime defaults and execution profiles) and reading
//! them back.

use super::access::forbidden;
use super::errors::not_found;
use crate::actor::Actor;
use crate::runs::parse_provider;
use crate::state::AppState;
use crate::store::{self, json_contains_nul};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_contracts::api::{AppList, AppView, RegisterAppRequest, RuntimeDefaults};
use switchyard_contracts::budget::RunBudget;
use switchyard_contracts::provider::{operator_only_message, operator_only_option};
use switchyard_contracts::{AppId, ProviderName};
use switchyard_platform::http::{ApiError, Json};
use switchyard_platform::routes::RouteTable;

/// More profiles than this per app is almost certainly a client bug.
const MAX_PROFILES: usize = 100;
const MAX_NAME_CHARS: usize = 200;
const MAX_CREDENTIAL_ENV: usize = 32;

pub(super) fn router() -> RouteTable<AppState> {
    RouteTable::new()
        .post("/api/apps/register", register)
        .get("/api/apps", list)
        .get("/api/apps/{app_id}", show)
}

/// Upsert: 201 for a new app, 200 when an existing one was replaced.
/// Admins and operators register any app; developers only re-register their own
/// (viewers are refused by [`super::access::enforce`]).
async fn register(
    State(state): State<AppState>,
    actor: Actor,
    Json(mut request): Json<RegisterAppRequest>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    if !actor.may_see_app(&request.app_id) || !actor.may_write() {
        return Err(forbidden(
            "developers may only register apps they are members of",
        ));
    }
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| request.app_id.to_string());
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(invalid(format!(
            "`name` must be 1-{MAX_NAME_CHARS} characters without NUL"
        )));
    }
    if request.execution_profiles.len() > MAX_PROFILES {
        return Err(invalid(format!(
            "at most {MAX_PROFILES} execution profiles per app"
        )));
    }
    canonicalize(&mut request.runtime_defaults, "runtimeDefaults", None)?;
    let app_provider = request.runtime_defaults.provider.clone();
    for (profile, defaults) in &mut request.execution_profiles {
        canonicalize(
            defaults,
            &format!("executionProfiles.{profile}"),
            app_provider.as_deref(),
        )?;
    }
    check_durations(&request)?;
    let (view, created) = store::apps::upsert(
        &state.pool,
        store::apps::AppRecord {
            app_id: &request.app_id,
            name: &name,
            runtime_defaults: &request.runtime_defaults,
            execution_profiles: &request.execution_profiles,
        },
    )
    .await?;
    tracing::info!(app_id = %view.app_id, created, "app registered");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

async fn list(State(state): State<AppState>, actor: Actor) -> Result<Json<AppList>, ApiError> {
    let mut apps = store::apps::list(&state.pool).await?;
    apps.retain(|app| actor.may_see_app(&app.app_id));
    Ok(Json(AppList { apps }))
}

async fn show(
    State(state): State<AppState>,
    actor: Actor,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AppView>, ApiError> {
    let app_id: AppId = path
        .ok()
        .and_then(|Path(id)| id.parse().ok())
        .ok_or_else(|| invalid(format!("the app id in the path {}", AppId::KIND.rule())))?;
    store::apps::get(&state.pool, &app_id)
        .await?
        .filter(|_| actor.may_see_app(&app_id))
        .map(Json)
        .ok_or_else(|| not_found("app_not_found", format!("no app `{app_id}` is registered")))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// Validates defaults and stores the provider under its canonical name, so that
/// `codex-cli` registered today resolves the same as `codex-app-server`.
/// `app_provider` is the app's own provider, which a profile naming none runs.
fn canonicalize(
    defaults: &mut RuntimeDefaults,
    field: &str,
    app_provider: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(provider) = &defaults.provider {
        let parsed = parse_provider(provider)
            .map_err(|e| ApiError::bad_request("unknown_provider", e.to_string()))?;
        defaults.provider = Some(parsed.as_str().to_owned());
    }
    // Where credentials go is the executor operator's, not an app's (nor an admin's).
    if let Some(key) = operator_only_option(defaults.provider_options.keys().map(String::as_str)) {
        let provider = defaults
            .provider
            .as_deref()
            .or(app_provider)
            .and_then(ProviderName::parse);
        return Err(ApiError::bad_request(
            "option_not_allowed",
            operator_only_message(&format!("{field}.providerOptions.{key}"), provider),
        ));
    }
    if let Some(model) = &defaults.model
        && (model.trim().is_empty() || model.len() > 256 || model.contains('\0'))
    {
        return Err(invalid(format!(
            "`{field}.model` must be 1-256 bytes without NUL"
        )));
    }
    if defaults.credential_env.len() > MAX_CREDENTIAL_ENV
        || !defaults.credential_env.iter().all(|n| is_valid_env_name(n))
    {
        return Err(invalid(format!(
            "`{field}.credentialEnv` must list at most {MAX_CREDENTIAL_ENV} environment variable names"
        )));
    }
    if defaults
        .provider_options
        .iter()
        .any(|(k, v)| k.contains('\0') || json_contains_nul(v))
    {
        return Err(invalid(format!(
            "`{field}.providerOptions` must not contain NUL characters"
        )));
    }
    RunBudget::from_options(
        &defaults.provider_options,
        &format!("{field}.providerOptions"),
    )
    .map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// Environment variable names as a shell accepts them.
fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Every duration of the defaults and the profiles (see [`crate::durations`]).
fn check_durations(request: &RegisterAppRequest) -> Result<(), ApiError> {
    let invalid_duration = |e: crate::durations::InvalidDuration| {
        ApiError::bad_request("invalid_duration", e.to_string())
    };
    crate::durations::check_defaults(&request.runtime_defaults, "runtimeDefaults")
        .map_err(invalid_duration)?;
    for (name, defaults) in &request.execution_profiles {
        crate::durations::check_defaults(defaults, &format!("executionProfiles.{name}"))
            .map_err(invalid_duration)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_shell_rules() {
        assert!(is_valid_env_name("OPENAI_API_KEY"));
        assert!(is_valid_env_name("_X1"));
        assert!(!is_valid_env_name("1X"));
        assert!(!is_valid_env_name("A-B"));
        assert!(!is_valid_env_name(""));
    }
}
