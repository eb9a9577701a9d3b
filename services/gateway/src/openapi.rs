//! The gateway's API as an OpenAPI 3.1 document, and a small HTML page listing it.
//!
//! The document is built from the wire types the handlers read and answer
//! (`switchyard_contracts`), whose `schemars::JsonSchema` derives give the JSON
//! Schemas (OpenAPI 3.1 schemas are JSON Schema 2020-12); [`aide`]'s OpenAPI model
//! holds and serializes it. What types cannot say is stated here, once per operation:
//! method and path, parameters, success statuses, and the stable error codes it may
//! answer. Every code has exactly one status ([`ERROR_CODES`]); an operation's error
//! responses are grouped by that status, each with an `enum` of its codes, so a
//! client (and the conformance test) can read which codes a status may carry.
//!
//! `/api/*` routes the gateway forwards to the control-plane are described here too:
//! the client sees one API. The route tables of both services are compared with this
//! description by the end-to-end tests, so a route without documentation fails.
//! `schemas/openapi.json` is this document, checked by a drift test.
//!
//! Both the document (`GET /api/openapi.json`) and the page (`GET /api/docs`) are
//! public: the API's shape is not a secret, and tools read it before they have a token.

use aide::openapi::{
    ApiKeyLocation, Components, Header, Info, MediaType, OpenApi, Operation, Parameter,
    ParameterData, ParameterSchemaOrContent, PathItem, Paths, ReferenceOr, RequestBody, Response,
    Responses, SchemaObject, SecurityRequirement, SecurityScheme, StatusCode, Tag,
};
use indexmap::IndexMap;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema, json_schema};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchyard_contracts::RunStatus;
use switchyard_contracts::api::{
    AppList, AppView, ErrorBody, HumanLoopReplyRequest, HumanLoopReplyResponse,
    HumanLoopRequestList, ProviderList, RegisterAppRequest, RunList, RunQueueView, RunView,
    StartRunRequest, StartRunResponse, StopRunRequest, StopRunResponse,
};
use switchyard_contracts::health::HealthReport;
use switchyard_contracts::principals::{
    CreatePrincipalRequest, CreatedPrincipal, CreatedToken, PrincipalList, PrincipalView,
    RevokedTokens, SetPrincipalAppsRequest, SetPrincipalRoleRequest,
};
use switchyard_contracts::session::{SessionView, SignInRequest};

/// Every error code the API answers, with its one status and what it means.
pub(crate) const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_request",
        400,
        "a parameter, header or body field breaks its rule",
    ),
    ("invalid_json", 400, "the body is not valid JSON"),
    (
        "invalid_run_id",
        400,
        "the run id in the path is not a UUID",
    ),
    (
        "invalid_cursor",
        400,
        "the cursor is not one this listing or stream gave out",
    ),
    ("unknown_provider", 400, "no such provider (name or alias)"),
    (
        "option_not_allowed",
        400,
        "a provider option only the executor's operator may set",
    ),
    ("invalid_duration", 400, "a duration option is not valid"),
    (
        "unauthorized",
        401,
        "no valid bearer token or session cookie",
    ),
    ("forbidden", 403, "the caller's role does not allow this"),
    (
        "csrf_rejected",
        403,
        "a cookie-authenticated change without the session's CSRF header",
    ),
    ("not_found", 404, "no such endpoint"),
    (
        "run_not_found",
        404,
        "no such run, or the caller may not see it",
    ),
    (
        "app_not_found",
        404,
        "no such app, or the caller may not see it",
    ),
    (
        "profile_not_found",
        404,
        "the app has no such execution profile",
    ),
    (
        "conversation_not_found",
        404,
        "no such conversation, or the caller may not see it",
    ),
    ("principal_not_found", 404, "no such principal"),
    ("token_not_found", 404, "no such token"),
    (
        "method_not_allowed",
        405,
        "the path exists but not with this method",
    ),
    ("run_finished", 409, "the run has already finished"),
    (
        "no_pending_request",
        409,
        "the run has no pending human-loop request with that id",
    ),
    (
        "control_rejected",
        409,
        "the run's owner refused the stop or reply",
    ),
    (
        "conversation_busy",
        409,
        "the conversation has a run that has not finished",
    ),
    (
        "conversation_provider_mismatch",
        409,
        "the follow-up names another provider than its conversation",
    ),
    (
        "conversation_app_mismatch",
        409,
        "the follow-up names another app than its conversation",
    ),
    (
        "history_expired",
        410,
        "the run finished and its events are no longer stored",
    ),
    (
        "body_too_large",
        413,
        "the body is larger than the configured limit",
    ),
    (
        "prompt_too_large",
        413,
        "the prompt is larger than the configured limit",
    ),
    (
        "unsupported_media_type",
        415,
        "a JSON body without `Content-Type: application/json`",
    ),
    ("invalid_body", 422, "the JSON body has the wrong shape"),
    (
        "invalid_decision",
        422,
        "the human-loop decision is not one the API knows",
    ),
    (
        "idempotency_key_reused",
        422,
        "the `Idempotency-Key` was used for a different request",
    ),
    (
        "too_many_streams",
        429,
        "the token has as many streams open as it may",
    ),
    (
        "stream_rate_limited",
        429,
        "the token opened streams too fast",
    ),
    (
        "internal",
        500,
        "an unexpected server error (details only in the server's log)",
    ),
    (
        "unavailable",
        503,
        "a dependency (control-plane, database, NATS) is unavailable: retry",
    ),
    (
        "owner_unavailable",
        503,
        "no executor owning the run answered: retry",
    ),
    (
        "not_ready",
        503,
        "the service's dependencies do not answer yet",
    ),
];

fn status_of(code: &str) -> Option<u16> {
    ERROR_CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, status, _)| *status)
}

/// How an operation is authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No credentials needed.
    Public,
    /// Bearer token, or the session cookie (+ CSRF header for a change).
    Principal,
    /// As [`Auth::Principal`], and only admins (principal and token management).
    Admin,
}

/// Where a parameter is.
#[derive(Clone, Copy)]
enum In {
    Path,
    Query,
    Header,
}

struct Param {
    name: &'static str,
    at: In,
    required: bool,
    description: &'static str,
    schema: Schema,
}

/// A response body: media type and schema.
type Content = Option<(&'static str, Schema)>;

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: Auth,
    /// The route is the control-plane's, forwarded by the gateway.
    forwarded: bool,
    params: Vec<Param>,
    /// A JSON body: its schema and whether it may be absent.
    body: Option<(Schema, bool)>,
    /// Success answers: status, description, media type and schema.
    ok: Vec<(u16, &'static str, Content)>,
    /// Error codes besides the ones every operation of its kind answers.
    errors: &'static [&'static str],
}

/// The error codes `op` may answer: its own, and those of its kind (authentication,
/// JSON body, forwarding).
fn error_codes(op: &Op) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = op.errors.to_vec();
    if op.auth != Auth::Public {
        codes.extend(["unauthorized", "unavailable", "internal"]);
        if op.method != "GET" {
            codes.push("csrf_rejected");
        }
    }
    if op.auth == Auth::Admin || (op.forwarded && op.method != "GET") {
        codes.push("forbidden");
    }
    if op.body.is_some() {
        codes.extend([
            "invalid_json",
            "invalid_body",
            "invalid_request",
            "body_too_large",
        ]);
        if op.body.as_ref().is_some_and(|(_, optional)| !optional) {
            codes.push("unsupported_media_type");
        }
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

struct Builder {
    generator: SchemaGenerator,
}

impl Builder {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "#/components/schemas".into();
        });
        Self {
            generator: settings.into_generator(),
        }
    }

    /// A `$ref` to `T`'s schema in the components (inline for unnamed types).
    fn schema<T: JsonSchema>(&mut self) -> Schema {
        self.generator.subschema_for::<T>()
    }
}

fn path_param(name: &'static str, description: &'static str, schema: Schema) -> Param {
    Param {
        name,
        at: In::Path,
        required: true,
        description,
        schema,
    }
}

fn query(name: &'static str, description: &'static str, schema: Schema) -> Param {
    Param {
        name,
        at: In::Query,
        required: false,
        description,
        schema,
    }
}

fn uuid() -> Schema {
    json_schema!({"type": "string", "format": "uuid"})
}

fn run_id() -> Param {
    path_param("runId", "The run's id (a UUID).", uuid())
}

fn principal_id() -> Param {
    path_param("principalId", "The principal's id (a UUID).", uuid())
}

fn json(schema: Schema) -> Content {
    Some(("application/json", schema))
}

/// The operations of the whole API, in the order the document lists them.
fn operations(b: &mut Builder) -> Vec<Op> {
    let status_body = json_schema!({
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"]
    });
    vec![
        // Health.
        Op {
            method: "GET",
            path: "/healthz",
            id: "healthz",
            tag: "health",
            summary: "The gateway process is up",
            description: "",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(200, "`{\"status\": \"ok\"}`", json(status_body.clone()))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/readyz",
            id: "readyz",
            tag: "health",
            summary: "The gateway can serve: NATS connected and the control-plane answers",
            description: "",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(200, "`{\"status\": \"ready\"}`", json(status_body))],
            errors: &["not_ready"],
        },
        // The description itself.
        Op {
            method: "GET",
            path: "/api/openapi.json",
            id: "openApiDocument",
            tag: "meta",
            summary: "This OpenAPI 3.1 document",
            description: "Public: the API's shape is not a secret.",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(200, "The document", json(json_schema!({"type": "object"})))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/api/docs",
            id: "apiDocsPage",
            tag: "meta",
            summary: "A human-readable page listing every operation of this document",
            description: "Public, self-contained HTML (no scripts, nothing loaded from elsewhere).",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "The page",
                Some(("text/html", json_schema!({"type": "string"}))),
            )],
            errors: &[],
        },
        // Portal sessions.
        Op {
            method: "POST",
            path: "/api/session",
            id: "signIn",
            tag: "session",
            summary: "Sign in to the portal with an API token",
            description: "Checks the token like a bearer token and answers with the \
                principal, the session's CSRF token and its expiry, and a `Set-Cookie` of \
                the `sy_session` cookie (HttpOnly, SameSite=Strict, path `/api`). Needs \
                `Content-Type: application/json`. Answers carry `Cache-Control: no-store`.",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: Some((b.schema::<SignInRequest>(), false)),
            ok: vec![(200, "Signed in", json(b.schema::<SessionView>()))],
            errors: &["unauthorized", "unavailable", "internal"],
        },
        Op {
            method: "GET",
            path: "/api/session",
            id: "showSession",
            tag: "session",
            summary: "Who the caller is (bearer token, session cookie, or anonymous)",
            description: "With a session cookie the answer carries the session's CSRF token, \
                so a reloaded page needs no second sign-in. `auth` is `anonymous` only when \
                the gateway runs without an admin token (no authentication).",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(200, "The caller", json(b.schema::<SessionView>()))],
            errors: &["unauthorized", "unavailable"],
        },
        Op {
            method: "DELETE",
            path: "/api/session",
            id: "signOut",
            tag: "session",
            summary: "Sign out: clear the session cookie",
            description: "A session that is still valid must send its CSRF token in \
                `X-Switchyard-CSRF`; one that is not valid any more is cleared without it.",
            auth: Auth::Public,
            forwarded: false,
            params: vec![],
            body: None,
            ok: vec![(204, "Signed out (the cookie is removed)", None)],
            errors: &["csrf_rejected"],
        },
        // Apps.
        Op {
            method: "POST",
            path: "/api/apps/register",
            id: "registerApp",
            tag: "apps",
            summary: "Register or replace an app (runtime defaults and execution profiles)",
            description: "Admins and operators register any app; developers only apps they \
                are members of; viewers none.",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![],
            body: Some((b.schema::<RegisterAppRequest>(), false)),
            ok: vec![
                (
                    200,
                    "An existing app was replaced",
                    json(b.schema::<AppView>()),
                ),
                (201, "A new app was registered", json(b.schema::<AppView>())),
            ],
            errors: &["unknown_provider", "option_not_allowed", "invalid_duration"],
        },
        Op {
            method: "GET",
            path: "/api/apps",
            id: "listApps",
            tag: "apps",
            summary: "The apps the caller may see",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![],
            body: None,
            ok: vec![(200, "The apps", json(b.schema::<AppList>()))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/api/apps/{appId}",
            id: "showApp",
            tag: "apps",
            summary: "One app",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![path_param(
                "appId",
                "The app's id.",
                json_schema!({"type": "string"}),
            )],
            body: None,
            ok: vec![(200, "The app", json(b.schema::<AppView>()))],
            errors: &["invalid_request", "app_not_found"],
        },
        // Runs.
        Op {
            method: "POST",
            path: "/api/runs/start",
            id: "startRun",
            tag: "runs",
            summary: "Start a run (queued at once; follow it on its stream)",
            description: "A run the caller cannot see (another app's) is answered as not \
                found. With `Idempotency-Key`, a retry of the same request answers the \
                first answer again, with `Idempotent-Replayed: true`.",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![Param {
                name: "Idempotency-Key",
                at: In::Header,
                required: false,
                description: "1-255 visible ASCII characters; the same key with another \
                    request is 422 `idempotency_key_reused`.",
                schema: json_schema!({"type": "string", "minLength": 1, "maxLength": 255}),
            }],
            body: Some((b.schema::<StartRunRequest>(), false)),
            ok: vec![(
                202,
                "Accepted and queued",
                json(b.schema::<StartRunResponse>()),
            )],
            errors: &[
                "option_not_allowed",
                "unknown_provider",
                "invalid_duration",
                "prompt_too_large",
                "app_not_found",
                "profile_not_found",
                "run_not_found",
                "conversation_not_found",
                "conversation_busy",
                "conversation_provider_mismatch",
                "conversation_app_mismatch",
                "idempotency_key_reused",
            ],
        },
        Op {
            method: "GET",
            path: "/api/runs",
            id: "listRuns",
            tag: "runs",
            summary: "Runs the caller may see, newest first, a page at a time",
            description: "The next page: `before=<runId of the last run of this page>`.",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![
                query(
                    "status",
                    "Only runs in this status.",
                    b.schema::<RunStatus>(),
                ),
                query(
                    "appId",
                    "Only runs of this app.",
                    json_schema!({"type": "string"}),
                ),
                query(
                    "provider",
                    "Only runs of this provider (a name or an alias).",
                    json_schema!({"type": "string"}),
                ),
                query("conversationId", "Only runs of this conversation.", uuid()),
                query(
                    "limit",
                    "Page size (at most 500).",
                    json_schema!({"type": "integer", "minimum": 1, "default": 50}),
                ),
                query(
                    "before",
                    "Paging cursor: the run id the previous page ended with.",
                    uuid(),
                ),
            ],
            body: None,
            ok: vec![(200, "A page of runs", json(b.schema::<RunList>()))],
            errors: &["invalid_request", "invalid_cursor", "unknown_provider"],
        },
        Op {
            method: "GET",
            path: "/api/runs/{runId}",
            id: "showRun",
            tag: "runs",
            summary: "One run: status, failure reason, usage, what it waits for",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![run_id()],
            body: None,
            ok: vec![(200, "The run", json(b.schema::<RunView>()))],
            errors: &["invalid_run_id", "run_not_found"],
        },
        Op {
            method: "GET",
            path: "/api/runs/{runId}/stream",
            id: "streamRun",
            tag: "runs",
            summary: "The run's events as Server-Sent Events",
            description: "Starts with `retry:`; each frame is `id: <cursor>`, `event: \
                <type>`, `data: <event JSON>` (a `RunEvent`). Resume after a cut with \
                `?cursor=` or `Last-Event-ID` (the query wins): the stream continues right \
                after that event. A `stream.reset` event (`{expectedSeq, \
                firstAvailableSeq}`) says retention removed events. The stream ends after \
                `run.completed`; resuming past it answers 204, which makes `EventSource` \
                stop.",
            auth: Auth::Principal,
            forwarded: false,
            params: vec![
                run_id(),
                query(
                    "cursor",
                    "Resume after the event with this SSE `id`.",
                    json_schema!({"type": "string"}),
                ),
                Param {
                    name: "Last-Event-ID",
                    at: In::Header,
                    required: false,
                    description: "What `EventSource` sends on reconnect; `?cursor=` wins.",
                    schema: json_schema!({"type": "string"}),
                },
            ],
            body: None,
            ok: vec![
                (
                    200,
                    "The event stream",
                    Some((
                        "text/event-stream",
                        json_schema!({
                            "type": "string",
                            "description": "SSE frames; each `data:` is a RunEvent"
                        }),
                    )),
                ),
                (
                    204,
                    "Resumed past the run's terminal event: nothing more",
                    None,
                ),
            ],
            errors: &[
                "invalid_run_id",
                "invalid_cursor",
                "forbidden",
                "run_not_found",
                "history_expired",
                "too_many_streams",
                "stream_rate_limited",
            ],
        },
        Op {
            method: "POST",
            path: "/api/runs/{runId}/stop",
            id: "stopRun",
            tag: "runs",
            summary: "Stop a run",
            description: "The body is optional: without one the run stops without a reason.",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![run_id()],
            body: Some((b.schema::<StopRunRequest>(), true)),
            ok: vec![(
                202,
                "The stop was delivered",
                json(b.schema::<StopRunResponse>()),
            )],
            errors: &[
                "invalid_run_id",
                "run_not_found",
                "run_finished",
                "control_rejected",
                "owner_unavailable",
            ],
        },
        Op {
            method: "GET",
            path: "/api/runs/{runId}/human-loop",
            id: "listHumanLoopRequests",
            tag: "approvals",
            summary: "The run's human-loop requests (approvals), pending and resolved",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![
                run_id(),
                query(
                    "status",
                    "Only `pending` or only `resolved` requests.",
                    json_schema!({"type": "string", "enum": ["pending", "resolved"]}),
                ),
            ],
            body: None,
            ok: vec![(
                200,
                "The requests",
                json(b.schema::<HumanLoopRequestList>()),
            )],
            errors: &["invalid_run_id", "invalid_request", "run_not_found"],
        },
        Op {
            method: "POST",
            path: "/api/runs/{runId}/human-loop/reply",
            id: "replyHumanLoop",
            tag: "approvals",
            summary: "Approve or deny a pending human-loop request",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![run_id()],
            body: Some((b.schema::<HumanLoopReplyRequest>(), false)),
            ok: vec![(
                200,
                "The reply was delivered",
                json(b.schema::<HumanLoopReplyResponse>()),
            )],
            errors: &[
                "invalid_run_id",
                "invalid_decision",
                "run_not_found",
                "run_finished",
                "no_pending_request",
                "control_rejected",
                "owner_unavailable",
            ],
        },
        // Queue and providers.
        Op {
            method: "GET",
            path: "/api/run-queue",
            id: "showRunQueue",
            tag: "queue",
            summary: "The command queue: depth, oldest command, runs waiting",
            description: "Developers and viewers see only their runs in the listing; the \
                counts are global.",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![],
            body: None,
            ok: vec![(200, "The queue", json(b.schema::<RunQueueView>()))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/api/providers",
            id: "listProviders",
            tag: "providers",
            summary: "The providers live executors offer, with their free slots",
            description: "",
            auth: Auth::Principal,
            forwarded: true,
            params: vec![],
            body: None,
            ok: vec![(200, "The providers", json(b.schema::<ProviderList>()))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/api/health",
            id: "showHealth",
            tag: "providers",
            summary: "The provider-runtime health report: can runs work, and whose side is at fault",
            description: "Admins and operators only. Always 200 when the report could be \
                made: `readinessCategory` is `ready`, `environment_not_ready` or \
                `runtime_unhealthy`, and `blockingReason` names the first check that \
                failed. The checks are made from the executors' side (their presence, \
                their binaries and credential names), never from the control-plane's \
                machine.",
            auth: Auth::Principal,
            forwarded: false,
            params: vec![
                query(
                    "provider",
                    "Check only this provider (a name or an alias).",
                    json_schema!({"type": "string"}),
                ),
                query(
                    "probe",
                    "Also start a one-turn probe run per ready provider.",
                    json_schema!({"type": "boolean"}),
                ),
            ],
            body: None,
            ok: vec![(200, "The report", json(b.schema::<HealthReport>()))],
            errors: &["forbidden", "unknown_provider", "invalid_request"],
        },
        // Principals and tokens (admins).
        Op {
            method: "POST",
            path: "/api/principals",
            id: "createPrincipal",
            tag: "principals",
            summary: "Create a principal and its first token (shown once)",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![],
            body: Some((b.schema::<CreatePrincipalRequest>(), false)),
            ok: vec![(201, "Created", json(b.schema::<CreatedPrincipal>()))],
            errors: &["app_not_found"],
        },
        Op {
            method: "GET",
            path: "/api/principals",
            id: "listPrincipals",
            tag: "principals",
            summary: "Every principal with its tokens (ids and dates, never secrets)",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![],
            body: None,
            ok: vec![(200, "The principals", json(b.schema::<PrincipalList>()))],
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/api/principals/{principalId}",
            id: "showPrincipal",
            tag: "principals",
            summary: "One principal with its tokens",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: None,
            ok: vec![(200, "The principal", json(b.schema::<PrincipalView>()))],
            errors: &["invalid_request", "principal_not_found"],
        },
        Op {
            method: "DELETE",
            path: "/api/principals/{principalId}",
            id: "deletePrincipal",
            tag: "principals",
            summary: "Delete a principal (its tokens and memberships go with it)",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: None,
            ok: vec![(204, "Deleted", None)],
            errors: &["invalid_request", "principal_not_found"],
        },
        Op {
            method: "PUT",
            path: "/api/principals/{principalId}/role",
            id: "setPrincipalRole",
            tag: "principals",
            summary: "Change a principal's role",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: Some((b.schema::<SetPrincipalRoleRequest>(), false)),
            ok: vec![(200, "The principal", json(b.schema::<PrincipalView>()))],
            errors: &["principal_not_found"],
        },
        Op {
            method: "PUT",
            path: "/api/principals/{principalId}/apps",
            id: "setPrincipalApps",
            tag: "principals",
            summary: "Replace a principal's app memberships",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: Some((b.schema::<SetPrincipalAppsRequest>(), false)),
            ok: vec![(200, "The principal", json(b.schema::<PrincipalView>()))],
            errors: &["principal_not_found", "app_not_found"],
        },
        Op {
            method: "POST",
            path: "/api/principals/{principalId}/tokens",
            id: "createToken",
            tag: "principals",
            summary: "Issue another token for a principal (shown once)",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: None,
            ok: vec![(201, "Created", json(b.schema::<CreatedToken>()))],
            errors: &["invalid_request", "principal_not_found"],
        },
        Op {
            method: "DELETE",
            path: "/api/principals/{principalId}/tokens",
            id: "revokePrincipalTokens",
            tag: "principals",
            summary: "Revoke every active token of a principal",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![principal_id()],
            body: None,
            ok: vec![(
                200,
                "How many were revoked",
                json(b.schema::<RevokedTokens>()),
            )],
            errors: &["invalid_request", "principal_not_found"],
        },
        Op {
            method: "DELETE",
            path: "/api/tokens/{tokenId}",
            id: "revokeToken",
            tag: "principals",
            summary: "Revoke one token",
            description: "",
            auth: Auth::Admin,
            forwarded: true,
            params: vec![path_param("tokenId", "The token's id (a UUID).", uuid())],
            body: None,
            ok: vec![(204, "Revoked", None)],
            errors: &["invalid_request", "token_not_found"],
        },
    ]
}

const DESCRIPTION: &str = "The Switchyard gateway's HTTP API. Every `/api/*` operation \
    but the session, `openapi.json` and `docs` ones needs a credential: \
    `Authorization: Bearer <token>` (an API token, or the gateway's admin token), or the \
    portal's `sy_session` cookie from `POST /api/session`, in which case every request \
    but GET/HEAD/OPTIONS must also send the session's CSRF token in `X-Switchyard-CSRF`. \
    (A gateway run without `gateway.admin_token` serves the API without authentication.)\n\n\
    Every error is `{\"error\": {\"code\", \"message\"}}` with a stable `code`; each code \
    has one HTTP status. An error response below lists the codes its status may carry. \
    Any path the API does not have answers 404 `not_found`; a known path with another \
    method 405 `method_not_allowed`.";

const TAGS: &[(&str, &str)] = &[
    (
        "runs",
        "Starting, listing, reading, following and stopping runs",
    ),
    ("approvals", "Human-loop requests of runs and their answers"),
    ("apps", "Apps: runtime defaults and execution profiles"),
    ("queue", "The command queue"),
    ("providers", "Providers and the executors offering them"),
    ("principals", "Principals and API tokens (admins only)"),
    ("session", "Portal sign-in with a session cookie"),
    ("meta", "This description"),
    (
        "health",
        "Liveness and readiness (for load balancers and orchestrators)",
    ),
];

fn media(media_type: &str, schema: Schema) -> IndexMap<String, MediaType> {
    IndexMap::from([(
        media_type.to_owned(),
        MediaType {
            schema: Some(SchemaObject {
                json_schema: schema,
                external_docs: None,
                example: None,
            }),
            ..Default::default()
        },
    )])
}

/// An error response's schema: the shared error body with `code` one of `codes`.
fn error_schema(codes: &[&str]) -> Schema {
    json_schema!({
        "allOf": [
            {"$ref": "#/components/schemas/ErrorBody"},
            {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string", "enum": codes}}
                    }
                }
            }
        ]
    })
}

/// Response headers worth a client's attention: `(status, name, description,
/// always sent)`.
fn response_headers(op: &Op) -> Vec<(u16, &'static str, &'static str, bool)> {
    let mut out = Vec::new();
    if op.auth != Auth::Public {
        out.push((
            401,
            "WWW-Authenticate",
            "`Bearer`, or `Bearer error=\"invalid_token\"` for a token that is not valid",
            true,
        ));
        out.push((
            401,
            "Set-Cookie",
            "Removes a session cookie that is no longer valid",
            false,
        ));
    }
    match op.id {
        "signIn" => out.push((200, "Set-Cookie", "The new `sy_session` cookie", true)),
        "signOut" => out.push((204, "Set-Cookie", "Removes the `sy_session` cookie", true)),
        "startRun" => out.push((
            202,
            "Idempotent-Replayed",
            "`true` when this repeats the answer to an earlier request with the same \
             `Idempotency-Key`",
            false,
        )),
        _ => {}
    }
    out
}

fn header(description: &str, required: bool) -> ReferenceOr<Header> {
    ReferenceOr::Item(Header {
        description: Some(description.to_owned()),
        style: Default::default(),
        required,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: json_schema!({"type": "string"}),
            external_docs: None,
            example: None,
        }),
        example: None,
        examples: IndexMap::new(),
        extensions: IndexMap::new(),
    })
}

fn security(op: &Op) -> Vec<SecurityRequirement> {
    if op.auth == Auth::Public {
        return Vec::new();
    }
    let cookie: SecurityRequirement = if op.method == "GET" {
        IndexMap::from([("sessionCookie".to_owned(), Vec::new())])
    } else {
        IndexMap::from([
            ("sessionCookie".to_owned(), Vec::new()),
            ("csrfHeader".to_owned(), Vec::new()),
        ])
    };
    vec![IndexMap::from([("bearer".to_owned(), Vec::new())]), cookie]
}

fn operation(op: &Op) -> Operation {
    let parameters = op
        .params
        .iter()
        .map(|p| {
            let data = ParameterData {
                name: p.name.to_owned(),
                description: Some(p.description.to_owned()),
                required: p.required,
                deprecated: None,
                format: ParameterSchemaOrContent::Schema(SchemaObject {
                    json_schema: p.schema.clone(),
                    external_docs: None,
                    example: None,
                }),
                example: None,
                examples: IndexMap::new(),
                explode: None,
                extensions: IndexMap::new(),
            };
            ReferenceOr::Item(match p.at {
                In::Path => Parameter::Path {
                    parameter_data: data,
                    style: Default::default(),
                },
                In::Query => Parameter::Query {
                    parameter_data: data,
                    allow_reserved: false,
                    style: Default::default(),
                    allow_empty_value: None,
                },
                In::Header => Parameter::Header {
                    parameter_data: data,
                    style: Default::default(),
                },
            })
        })
        .collect();
    let request_body = op.body.as_ref().map(|(schema, optional)| {
        ReferenceOr::Item(RequestBody {
            content: media("application/json", schema.clone()),
            required: !optional,
            ..Default::default()
        })
    });
    let mut responses = IndexMap::new();
    for (status, description, content) in &op.ok {
        responses.insert(
            StatusCode::Code(*status),
            ReferenceOr::Item(Response {
                description: (*description).to_owned(),
                content: content
                    .as_ref()
                    .map(|(media_type, schema)| media(media_type, schema.clone()))
                    .unwrap_or_default(),
                ..Default::default()
            }),
        );
    }
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for code in error_codes(op) {
        // A code missing from the catalogue is caught by this module's tests.
        if let Some(status) = status_of(code) {
            by_status.entry(status).or_default().push(code);
        }
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|code| {
                let meaning = ERROR_CODES
                    .iter()
                    .find(|(c, _, _)| c == code)
                    .map_or("", |(_, _, m)| *m);
                format!("`{code}`: {meaning}")
            })
            .collect::<Vec<_>>()
            .join("; ");
        responses.insert(
            StatusCode::Code(status),
            ReferenceOr::Item(Response {
                description,
                content: media("application/json", error_schema(&codes)),
                ..Default::default()
            }),
        );
    }
    for (status, name, description, required) in response_headers(op) {
        if let Some(ReferenceOr::Item(response)) = responses.get_mut(&StatusCode::Code(status)) {
            response
                .headers
                .insert(name.to_owned(), header(description, required));
        }
    }
    let mut description = op.description.to_owned();
    if op.auth == Auth::Admin {
        description = format!("Admins only. {description}");
    }
    Operation {
        tags: vec![op.tag.to_owned()],
        summary: Some(op.summary.to_owned()),
        description: (!description.trim().is_empty()).then(|| description.trim().to_owned()),
        operation_id: Some(op.id.to_owned()),
        parameters,
        request_body,
        responses: Some(Responses {
            responses,
            ..Default::default()
        }),
        security: security(op),
        ..Default::default()
    }
}

fn security_schemes() -> IndexMap<String, ReferenceOr<SecurityScheme>> {
    IndexMap::from([
        (
            "bearer".to_owned(),
            ReferenceOr::Item(SecurityScheme::Http {
                scheme: "bearer".to_owned(),
                bearer_format: Some("an API token (`sy_…`) or the admin token".to_owned()),
                description: Some(
                    "`Authorization: Bearer <token>`. Tokens are issued by \
                     `POST /api/principals` and `POST /api/principals/{principalId}/tokens`."
                        .to_owned(),
                ),
                extensions: IndexMap::new(),
            }),
        ),
        (
            "sessionCookie".to_owned(),
            ReferenceOr::Item(SecurityScheme::ApiKey {
                location: ApiKeyLocation::Cookie,
                name: "sy_session".to_owned(),
                description: Some(
                    "The portal's session cookie, set by `POST /api/session`.".to_owned(),
                ),
                extensions: IndexMap::new(),
            }),
        ),
        (
            "csrfHeader".to_owned(),
            ReferenceOr::Item(SecurityScheme::ApiKey {
                location: ApiKeyLocation::Header,
                name: "X-Switchyard-CSRF".to_owned(),
                description: Some(
                    "The session's CSRF token (`csrfToken` of `GET /api/session`), required \
                     with the session cookie on every request but GET/HEAD/OPTIONS."
                        .to_owned(),
                ),
                extensions: IndexMap::new(),
            }),
        ),
    ])
}

/// The whole document.
pub(crate) fn document() -> OpenApi {
    let mut builder = Builder::new();
    // Named so that the error responses' `$ref` resolves.
    builder.schema::<ErrorBody>();
    let ops = operations(&mut builder);
    let mut paths: IndexMap<String, ReferenceOr<PathItem>> = IndexMap::new();
    for op in &ops {
        let item = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| ReferenceOr::Item(PathItem::default()));
        let ReferenceOr::Item(item) = item else {
            continue;
        };
        let slot = match op.method {
            "GET" => &mut item.get,
            "POST" => &mut item.post,
            "PUT" => &mut item.put,
            "DELETE" => &mut item.delete,
            _ => &mut item.patch,
        };
        *slot = Some(operation(op));
    }
    let schemas = builder
        .generator
        .take_definitions(true)
        .into_iter()
        .filter_map(|(name, value)| {
            Schema::try_from(value).ok().map(|json_schema| {
                (
                    name,
                    SchemaObject {
                        json_schema,
                        external_docs: None,
                        example: None,
                    },
                )
            })
        })
        .collect();
    OpenApi {
        info: Info {
            title: "Switchyard gateway API".to_owned(),
            description: Some(DESCRIPTION.to_owned()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        },
        paths: Some(Paths {
            paths,
            ..Default::default()
        }),
        components: Some(Components {
            schemas,
            security_schemes: security_schemes(),
            ..Default::default()
        }),
        tags: TAGS
            .iter()
            .map(|(name, description)| Tag {
                name: (*name).to_owned(),
                description: Some((*description).to_owned()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The document as the pretty JSON `schemas/openapi.json` holds (trailing newline).
pub(crate) fn render(document: &OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(document).unwrap_or_default();
    text.push('\n');
    text
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as HTML, its `code spans` in `<code>` (an unpaired backtick stays as it is).
fn inline(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    let mut out = String::with_capacity(text.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push_str(&escape(part));
        } else if i + 1 == parts.len() {
            out.push('`');
            out.push_str(&escape(part));
        } else {
            let _ = write!(out, "<code>{}</code>", escape(part));
        }
    }
    out
}

/// The `/api/docs` page: every operation by tag, with its parameters, its answers and
/// their error codes. Plain HTML and one inline style sheet: no script, nothing
/// fetched from anywhere else.
pub(crate) fn html(document: &OpenApi) -> String {
    let mut out = String::new();
    let title = escape(&document.info.title);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         code{{background:#f3f3f3;padding:0 .2em}}\
         .op{{border:1px solid #ddd;border-radius:4px;margin:.6rem 0;padding:.4rem .8rem}}\
         .m{{font-weight:bold;display:inline-block;min-width:4.5rem}}\
         .GET{{color:#1565c0}}.POST{{color:#2e7d32}}.PUT{{color:#ef6c00}}.DELETE{{color:#c62828}}\
         td{{vertical-align:top;padding:.1rem .5rem}}\
         </style></head><body><h1>{title} <small>{}</small></h1>\
         <p>The machine-readable description: <a href=\"/api/openapi.json\"><code>/api/openapi.json</code></a> (OpenAPI 3.1).</p>\
         <p>{}</p>",
        escape(&document.info.version),
        inline(document.info.description.as_deref().unwrap_or("")).replace("\n\n", "</p><p>")
    );
    for tag in &document.tags {
        let _ = write!(
            out,
            "<h2 id=\"{0}\">{0}</h2><p>{1}</p>",
            escape(&tag.name),
            inline(tag.description.as_deref().unwrap_or(""))
        );
        for (path, method, op) in document.operations() {
            if !op.tags.contains(&tag.name) {
                continue;
            }
            let method = method.to_ascii_uppercase();
            let auth = if op.security.is_empty() {
                "public"
            } else {
                "bearer token or session cookie"
            };
            let _ = write!(
                out,
                "<div class=\"op\" id=\"{}\"><div><span class=\"m {method}\">{method}</span> \
                 <code>{}</code> — {} <small>({auth})</small></div>",
                escape(op.operation_id.as_deref().unwrap_or("")),
                escape(path),
                inline(op.summary.as_deref().unwrap_or("")),
            );
            if let Some(description) = &op.description {
                let _ = write!(out, "<p>{}</p>", inline(description));
            }
            if !op.parameters.is_empty() {
                out.push_str("<p>Parameters: ");
                let names: Vec<String> = op
                    .parameters
                    .iter()
                    .filter_map(|p| match p {
                        ReferenceOr::Item(p) => {
                            let data = p.parameter_data_ref();
                            let at = match p {
                                Parameter::Path { .. } => "path",
                                Parameter::Query { .. } => "query",
                                Parameter::Header { .. } => "header",
                                Parameter::Cookie { .. } => "cookie",
                            };
                            Some(format!("<code>{}</code> ({at})", escape(&data.name)))
                        }
                        _ => None,
                    })
                    .collect();
                out.push_str(&names.join(", "));
                out.push_str("</p>");
            }
            if let Some(responses) = &op.responses {
                out.push_str("<table>");
                for (status, response) in &responses.responses {
                    if let ReferenceOr::Item(response) = response {
                        let status = match status {
                            StatusCode::Code(code) => code.to_string(),
                            StatusCode::Range(range) => format!("{range}XX"),
                        };
                        let _ = write!(
                            out,
                            "<tr><td>{status}</td><td>{}</td></tr>",
                            inline(&response.description)
                        );
                    }
                }
                out.push_str("</table>");
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn every_code_used_is_in_the_catalogue_once() {
        let mut builder = Builder::new();
        for op in operations(&mut builder) {
            for code in error_codes(&op) {
                assert!(
                    status_of(code).is_some(),
                    "{} {}: `{code}`",
                    op.method,
                    op.path
                );
            }
        }
        let mut codes: Vec<&str> = ERROR_CODES.iter().map(|(c, _, _)| *c).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(
            before,
            codes.len(),
            "a code listed twice (one status per code)"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let text = serde_json::to_value(document()).unwrap();
        let schemas = text["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&text, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            assert!(schemas.contains_key(name), "{reference} does not resolve");
        }
        assert_eq!(text["openapi"], "3.1.0");
    }

    fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_page_lists_every_operation_and_escapes_text() {
        let document = document();
        let page = html(&document);
        for (path, _, op) in document.operations() {
            assert!(
                page.contains(&format!("<code>{}</code>", escape(path))),
                "{path}"
            );
            assert!(page.contains(op.operation_id.as_deref().unwrap()));
        }
        assert!(!page.contains("<script"));
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(inline("a `<b>` c `d"), "a <code>&lt;b&gt;</code> c `d");
    }

    /// Fails when `schemas/openapi.json` no longer matches the document. Regenerate with
    /// `SWITCHYARD_UPDATE_SCHEMAS=1 cargo test -p switchyard-gateway --lib openapi`.
    #[test]
    fn checked_in_openapi_matches_the_document() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/openapi.json");
        let rendered = render(&document());
        if std::env::var_os("SWITCHYARD_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
            return;
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == rendered,
            "schemas/openapi.json drifted from the gateway's API description; regenerate \
             with SWITCHYARD_UPDATE_SCHEMAS=1 cargo test -p switchyard-gateway --lib openapi"
        );
    }
}
