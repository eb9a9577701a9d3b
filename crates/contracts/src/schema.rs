//! JSON Schemas of the wire types, generated from the Rust types. The files under the
//! repository's `schemas/` are produced by [`all`]; a test fails when they drift.

use schemars::{JsonSchema, schema_for};

/// `(file name, schema)` for every wire type with a checked-in schema.
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    fn entry<T: JsonSchema>(name: &'static str) -> (&'static str, serde_json::Value) {
        (name, schema_for!(T).to_value())
    }
    vec![
        entry::<crate::command::RunCommand>("run-command.json"),
        entry::<crate::event::RunEvent>("run-event.json"),
        entry::<crate::control::ControlRequest>("control-request.json"),
        entry::<crate::control::ControlReply>("control-reply.json"),
        entry::<crate::dispatch::DispatchRequest>("dispatch-request.json"),
        entry::<crate::dispatch::DispatchReply>("dispatch-reply.json"),
        entry::<crate::presence::ExecutorPresence>("executor-presence.json"),
        entry::<crate::api::ErrorBody>("api-error.json"),
        entry::<crate::api::RegisterAppRequest>("api-register-app-request.json"),
        entry::<crate::api::AppView>("api-app.json"),
        entry::<crate::api::StartRunRequest>("api-start-run-request.json"),
        entry::<crate::api::StartRunResponse>("api-start-run-response.json"),
        entry::<crate::api::RunView>("api-run.json"),
        entry::<crate::api::HumanLoopReplyRequest>("api-human-loop-reply-request.json"),
        entry::<crate::api::HumanLoopRequestList>("api-human-loop-requests.json"),
        entry::<crate::api::RunQueueView>("api-run-queue.json"),
        entry::<crate::api::ProviderList>("api-providers.json"),
        entry::<crate::api::ProviderRunStartRequest>("api-provider-run-start-request.json"),
        entry::<crate::budget::RunBudget>("run-budget.json"),
        entry::<crate::principals::CreatePrincipalRequest>("api-create-principal-request.json"),
        entry::<crate::principals::SetPrincipalAppsRequest>("api-set-principal-apps-request.json"),
        entry::<crate::principals::SetPrincipalRoleRequest>("api-set-principal-role-request.json"),
        entry::<crate::principals::PrincipalView>("api-principal.json"),
        entry::<crate::principals::PrincipalList>("api-principals.json"),
        entry::<crate::principals::CreatedPrincipal>("api-created-principal.json"),
        entry::<crate::principals::CreatedToken>("api-created-token.json"),
        entry::<crate::principals::RevokedTokens>("api-revoked-tokens.json"),
        entry::<crate::principals::ResolveTokenRequest>("auth-resolve-request.json"),
        entry::<crate::principals::ResolveTokenResponse>("auth-resolve-response.json"),
        entry::<crate::principals::PrincipalChanged>("principal-changed.json"),
        entry::<crate::session::SignInRequest>("api-sign-in-request.json"),
        entry::<crate::session::SessionView>("api-session.json"),
        entry::<crate::health::HealthReport>("api-health.json"),
        entry::<crate::health::ControlPlaneHealth>("control-plane-health.json"),
    ]
}

/// Pretty JSON with a trailing newline, the form the checked-in files use.
pub fn render(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
