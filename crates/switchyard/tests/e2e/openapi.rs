//! The OpenAPI description (`schemas/openapi.json`, served at `/api/openapi.json`)
//! against the real platform.
//!
//! * Its operations are exactly the routes the gateway answers itself plus the
//!   control-plane's `/api/*` routes the gateway forwards: a route added without
//!   documentation (or documentation of a route that is gone) fails.
//! * Driven from the document: every operation is called without credentials, with a
//!   bad token, as a viewer, with a session cookie but no CSRF header, with ids that
//!   are malformed or unknown, bad queries and headers, bodies that are not JSON or
//!   have the wrong shape, and once validly. Each answer's status must be one the operation documents, an error
//!   body's `code` one the document lists for that status, and every body must be
//!   valid against the schema documented for its status, and the headers it documents
//!   as always sent must be there. Each valid call must succeed.

use crate::harness::{Harness, TOKEN};
use crate::rbac::{create_principal, start_waiting_run};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

fn committed() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("schemas/openapi.json"))
        .expect("schemas/openapi.json is JSON")
}

/// `/api/runs/{runId}` and `/api/runs/{id}` name the same route.
fn normalized(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// `(METHOD, path template, operation)` of every documented operation.
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: unexpected key {method}"
            );
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn the_description_covers_exactly_the_routes_the_services_serve() {
    let spec = committed();
    let documented: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, normalized(&path)))
        .collect();
    let served: BTreeSet<(String, String)> = switchyard_gateway::own_routes()
        .into_iter()
        .chain(switchyard_control_plane::api_routes())
        .map(|route| (route.method.to_owned(), normalized(route.path)))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes without documentation: {undocumented:?}; documented but not served: \
         {unserved:?} (describe routes in services/gateway/src/openapi.rs, then regenerate \
         schemas/openapi.json)"
    );
    // Operation ids are unique (clients generate function names from them).
    let ids: Vec<String> = operations(&spec)
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().expect("operationId").to_owned())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

/// How a request authenticates.
#[derive(Clone)]
enum Credential {
    None,
    Bearer(String),
    /// The session cookie without the CSRF header.
    CookieWithoutCsrf(String),
}

/// A request body.
#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes, with `Content-Type: application/json` or without any.
    Raw(&'static str, bool),
}

struct Case {
    label: String,
    params: BTreeMap<String, String>,
    query: String,
    headers: Vec<(&'static str, String)>,
    credential: Credential,
    body: Body,
    /// A valid call: it must succeed.
    valid: bool,
}

/// What the calls of the conformance test use.
struct Fixtures {
    app: String,
    /// A run waiting for a human (replied to by the valid reply).
    run: String,
    request_id: String,
    /// Another waiting run (stopped by the valid stop).
    run_to_stop: String,
    principal: String,
    principal_to_delete: String,
    token_to_revoke: String,
    viewer: String,
    cookie: String,
}

impl Fixtures {
    fn param(&self, op_id: &str, name: &str) -> String {
        match (op_id, name) {
            ("stopRun", "runId") => self.run_to_stop.clone(),
            (_, "runId") => self.run.clone(),
            (_, "appId") => self.app.clone(),
            ("deletePrincipal", "principalId") => self.principal_to_delete.clone(),
            (_, "principalId") => self.principal.clone(),
            (_, "tokenId") => self.token_to_revoke.clone(),
            _ => panic!("{op_id}: no value for the path parameter {name}"),
        }
    }

    /// The valid call of each operation: body and query. An operation this does not
    /// know fails the test, so a newly documented one gets a case.
    fn valid(&self, op_id: &str) -> (String, Body) {
        let none = (String::new(), Body::None);
        match op_id {
            "healthz"
            | "readyz"
            | "openApiDocument"
            | "apiDocsPage"
            | "showSession"
            | "signOut"
            | "listApps"
            | "showApp"
            | "showRun"
            | "streamRun"
            | "showRunQueue"
            | "listProviders"
            | "listPrincipals"
            | "showPrincipal"
            | "deletePrincipal"
            | "createToken"
            | "revokePrincipalTokens"
            | "revokeToken" => none,
            "signIn" => (String::new(), Body::Json(json!({"token": TOKEN}))),
            "registerApp" => (
                String::new(),
                Body::Json(
                    json!({"appId": "oa-other", "runtimeDefaults": {"provider": "scripted"}}),
                ),
            ),
            "startRun" => (
                String::new(),
                Body::Json(json!({
                    "appId": self.app,
                    "provider": "scripted",
                    "prompt": "openapi",
                    "providerOptions": {"script": [{"message": {"text": "done", "chunks": 1}}]}
                })),
            ),
            "listRuns" => (
                format!("?limit=5&appId={}&provider=scripted", self.app),
                Body::None,
            ),
            "showHealth" => ("?provider=scripted".to_owned(), Body::None),
            "stopRun" => (String::new(), Body::Json(json!({"reason": "openapi test"}))),
            "listHumanLoopRequests" => ("?status=pending".to_owned(), Body::None),
            "replyHumanLoop" => (
                String::new(),
                Body::Json(json!({"requestId": self.request_id, "decision": "approve"})),
            ),
            "createPrincipal" => (
                String::new(),
                Body::Json(json!({"name": "openapi new", "role": "developer", "apps": [self.app]})),
            ),
            "setPrincipalRole" => (String::new(), Body::Json(json!({"role": "operator"}))),
            "setPrincipalApps" => (String::new(), Body::Json(json!({"apps": [self.app]}))),
            other => panic!("no valid call for the documented operation {other}"),
        }
    }

    /// Request headers that break their rules, per operation.
    fn bad_headers(op_id: &str) -> Vec<(&'static str, String)> {
        match op_id {
            "startRun" => vec![
                ("idempotency-key", "k".repeat(256)),
                ("idempotency-key", "has space".to_owned()),
            ],
            "streamRun" => vec![("last-event-id", "garbage".to_owned())],
            _ => Vec::new(),
        }
    }

    /// Queries that break their rules, per operation.
    fn bad_queries(op_id: &str) -> &'static [&'static str] {
        match op_id {
            "listRuns" => &[
                "?limit=0",
                "?before=not-a-run",
                "?provider=no-such-provider",
                "?status=nope",
                "?conversationId=x",
                "?appId=bad%20id",
                "?unknownFilter=1",
            ],
            "listHumanLoopRequests" => &["?status=nope"],
            "streamRun" => &["?cursor=garbage"],
            "showHealth" => &["?provider=no-such-provider", "?probe=maybe", "?other=1"],
            _ => &[],
        }
    }
}

async fn setup(h: &Harness) -> Fixtures {
    let app = "oa-app".to_owned();
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": app, "runtimeDefaults": {"provider": "scripted"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = start_waiting_run(h, TOKEN, &app).await;
    let run_to_stop = start_waiting_run(h, TOKEN, &app).await;
    let request_id = h.pending_request(&run).await;
    h.pending_request(&run_to_stop).await;
    let (principal, _) = create_principal(h, "openapi p", "developer", &[&app]).await;
    let (principal_to_delete, _) = create_principal(h, "openapi gone", "developer", &[]).await;
    let (_, viewer) = create_principal(h, "openapi viewer", "viewer", &[&app]).await;
    let (status, created) = crate::rbac::call(
        h,
        TOKEN,
        Method::POST,
        "/api/principals",
        Some(json!({"name": "openapi revoked", "role": "viewer", "apps": []})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token_to_revoke = created["tokenId"].as_str().expect("tokenId").to_owned();
    let response = h
        .http
        .post(h.url("/api/session"))
        .json(&json!({"token": TOKEN}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    Fixtures {
        app,
        run,
        request_id,
        run_to_stop,
        principal,
        principal_to_delete,
        token_to_revoke,
        viewer,
        cookie,
    }
}

/// The refused calls of an operation (no credentials, bad token, viewer, cookie
/// without CSRF, bad ids, bad queries, bad bodies), then its valid call.
fn cases(f: &Fixtures, op_id: &str, method: &str, op: &Value) -> Vec<Case> {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let params: Vec<String> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("name").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let good: BTreeMap<String, String> = params
        .iter()
        .map(|name| (name.clone(), f.param(op_id, name)))
        .collect();
    let (valid_query, valid_body) = f.valid(op_id);
    let admin = Credential::Bearer(TOKEN.to_owned());
    let case =
        |label: String, params: BTreeMap<String, String>, credential, query: &str, body| Case {
            label,
            params,
            query: query.to_owned(),
            headers: Vec::new(),
            credential,
            body,
            valid: false,
        };
    let mut out = vec![case(
        "no credentials".into(),
        good.clone(),
        Credential::None,
        &valid_query,
        valid_body.clone(),
    )];
    if secured {
        out.push(case(
            "unknown token".into(),
            good.clone(),
            Credential::Bearer("sy_not-a-token".into()),
            &valid_query,
            valid_body.clone(),
        ));
        out.push(case(
            "viewer".into(),
            good.clone(),
            Credential::Bearer(f.viewer.clone()),
            &valid_query,
            valid_body.clone(),
        ));
        if method != "GET" {
            out.push(case(
                "cookie without CSRF".into(),
                good.clone(),
                Credential::CookieWithoutCsrf(f.cookie.clone()),
                &valid_query,
                valid_body.clone(),
            ));
        }
    }
    // Public operations ignore the token (and `GET /api/session` needs one).
    let cred = admin;
    for name in &params {
        for (kind, value) in [
            ("malformed", "not%20an%20id"),
            ("unknown", "0190d3e4-0000-7000-8000-000000000000"),
        ] {
            let mut bad = good.clone();
            bad.insert(name.clone(), value.to_owned());
            out.push(case(
                format!("{kind} {name}"),
                bad,
                cred.clone(),
                &valid_query,
                valid_body.clone(),
            ));
        }
    }
    for query in Fixtures::bad_queries(op_id) {
        out.push(case(
            format!("query {query}"),
            good.clone(),
            cred.clone(),
            query,
            Body::None,
        ));
    }
    for (name, value) in Fixtures::bad_headers(op_id) {
        let mut bad = case(
            format!("header {name}: {value:.20}"),
            good.clone(),
            cred.clone(),
            &valid_query,
            valid_body.clone(),
        );
        bad.headers.push((name, value));
        out.push(bad);
    }
    if let Some(request_body) = op.get("requestBody") {
        let mut bodies = vec![
            ("not JSON", Body::Raw("{", true)),
            ("wrong shape", Body::Raw("\"a string\"", true)),
        ];
        // An optional body (stop's) may well be absent or empty: those calls would
        // succeed, and act, before the valid one.
        if request_body["required"] == true {
            bodies.push(("no content type", Body::Raw("{}", false)));
            bodies.push(("empty object", Body::Json(json!({}))));
        }
        for (label, body) in bodies {
            out.push(case(
                format!("body {label}"),
                good.clone(),
                cred.clone(),
                "",
                body,
            ));
        }
    }
    out.push(Case {
        label: "valid".into(),
        params: good,
        query: valid_query,
        headers: Vec::new(),
        credential: cred,
        body: valid_body,
        valid: true,
    });
    out
}

fn fill(path: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = path.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    assert!(!out.contains('{'), "{path}: a parameter without a value");
    out
}

/// The codes the document lists for `status` of the operation.
fn documented_codes(response: &Value) -> Vec<String> {
    response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .map(|codes| {
            codes
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The response headers the document says `status` always carries.
fn documented_headers(responses: &serde_json::Map<String, Value>, status: u16) -> Vec<String> {
    responses
        .get(&status.to_string())
        .and_then(|r| r["headers"].as_object())
        .map(|headers| {
            headers
                .iter()
                .filter(|(_, h)| h["required"] == true)
                .map(|(name, _)| name.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `instance` against `schema`, a schema of the document (its `$ref`s point into
/// the document's components, which become the `$defs` of a standalone schema).
fn validate(spec: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": spec["components"]["schemas"],
        "allOf": [schema]
    });
    let text = root
        .to_string()
        .replace("#/components/schemas/", "#/$defs/");
    let root: Value = serde_json::from_str(&text).expect("JSON");
    let validator = jsonschema::draft202012::new(&root).map_err(|e| format!("bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let h = Harness::start(1, 1).await;

    // The served document is the committed one.
    let served: Value = h
        .http
        .get(h.url("/api/openapi.json"))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("JSON");
    let spec = committed();
    assert_eq!(served, spec, "the gateway serves schemas/openapi.json");

    let fixtures = setup(&h).await;
    let mut failures = Vec::new();
    let mut calls = 0;
    for (method, path, op) in operations(&spec) {
        let op_id = op["operationId"].as_str().expect("operationId").to_owned();
        let responses = op["responses"].as_object().expect("responses").clone();
        for case in cases(&fixtures, &op_id, &method, &op) {
            calls += 1;
            let url = h.url(&format!("{}{}", fill(&path, &case.params), case.query));
            let mut request = h
                .http
                .request(Method::from_bytes(method.as_bytes()).expect("method"), url);
            request = match &case.credential {
                Credential::None => request,
                Credential::Bearer(token) => request.bearer_auth(token),
                Credential::CookieWithoutCsrf(cookie) => request.header("cookie", cookie),
            };
            for (name, value) in &case.headers {
                request = request.header(*name, value);
            }
            request = match &case.body {
                Body::None => request,
                Body::Json(body) => request.json(body),
                Body::Raw(text, true) => request
                    .header("content-type", "application/json")
                    .body(*text),
                Body::Raw(text, false) => request.body(*text),
            };
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let missing_headers: Vec<String> = documented_headers(&responses, status)
                .into_iter()
                .filter(|name| !response.headers().contains_key(name.as_str()))
                .collect();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            // A stream is not read to its end: its status and type say enough.
            let body: Value = if content_type.starts_with("application/json") {
                response.json().await.unwrap_or(Value::Null)
            } else {
                drop(response);
                Value::Null
            };
            let what = format!("{method} {path} ({op_id}), {}: {status} {body}", case.label);
            let Some(documented) = responses.get(&status.to_string()) else {
                failures.push(format!("{what}: status not documented"));
                continue;
            };
            if !missing_headers.is_empty() {
                failures.push(format!("{what}: without the headers {missing_headers:?}"));
            }
            if case.valid && status >= 300 {
                failures.push(format!("{what}: the valid call did not succeed"));
                continue;
            }
            if status >= 400 {
                let code = body["error"]["code"].as_str().unwrap_or("<none>");
                let codes = documented_codes(documented);
                if !codes.iter().any(|c| c == code) {
                    failures.push(format!("{what}: code `{code}` not among {codes:?}"));
                }
                if body["error"]["message"].as_str().is_none_or(str::is_empty) {
                    failures.push(format!("{what}: no error message"));
                }
            }
            match documented["content"]
                .as_object()
                .and_then(|c| c.iter().next())
            {
                Some((media_type, content)) => {
                    if !content_type.starts_with(media_type.as_str()) {
                        failures.push(format!(
                            "{what}: content type {content_type}, documented {media_type}"
                        ));
                    } else if media_type == "application/json"
                        && let Err(e) = validate(&spec, &content["schema"], &body)
                    {
                        failures.push(format!("{what}: the body breaks its schema: {e}"));
                    }
                }
                None if !content_type.is_empty() => {
                    failures.push(format!("{what}: a {content_type} body, documented none"));
                }
                None => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls answered otherwise than documented:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(calls > 100, "only {calls} calls");
    h.shutdown().await;
}
