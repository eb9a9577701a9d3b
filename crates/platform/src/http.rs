//! HTTP plumbing shared by the services: the error type every handler returns, a JSON
//! extractor whose rejections use the same error shape, health endpoints, and `serve`.

use crate::config::ConfigError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Router, middleware};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::InvalidId;
use switchyard_contracts::api::{ErrorBody, ErrorDetail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// An error answered to an HTTP client: one status, one stable code, a message.
/// 5xx errors keep their cause for the log; the client only sees a generic message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    cause: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A dependency (NATS, Postgres, the control-plane) is unreachable or too slow.
    pub fn unavailable(message: impl Into<String>, cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// A bug or an unexpected failure. The cause is logged, never sent.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the service log",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.cause {
                Some(cause) => {
                    tracing::error!(status = %self.status, code = self.code, error = format!("{cause:#}"), "request failed")
                }
                None => tracing::error!(status = %self.status, code = self.code, "request failed"),
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// `axum::Json`, but a rejection is an [`ApiError`] in the shared shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if let JsonRejection::JsonDataError(error) = &rejection
        && let Some(error) = invalid_id_in(error)
    {
        return error;
    }
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "invalid_json",
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with `Content-Type: application/json`".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        other => other.body_text(),
    };
    ApiError::new(status, code, message)
}

/// Decodes a JSON value taken from a request body, answering like [`Json`] does: an id
/// that breaks its rule is 400 `invalid_request` naming the field, any other mismatch
/// 422 `invalid_body`.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        invalid_id(&e).unwrap_or_else(|| {
            ApiError::unprocessable("invalid_body", format!("the body has the wrong shape: {e}"))
        })
    })
}

/// [`invalid_id`] for the decoding error somewhere in `error`'s source chain (axum keeps
/// it behind its rejection).
fn invalid_id_in(error: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return invalid_id(error);
        }
        next = error.source();
    }
    None
}

/// 400 `invalid_request` when a body failed to decode because one of its ids broke
/// its rule ([`switchyard_contracts::ids`]): the message names the field and the rule
/// in our words, without serde's wording, position or the rejected value.
fn invalid_id(error: &serde_path_to_error::Error<serde_json::Error>) -> Option<ApiError> {
    let inner = error.inner();
    let text = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let id = InvalidId::from_message(text.strip_suffix(&position).unwrap_or(&text))?;
    let mut path: Vec<&Segment> = error.path().iter().collect();
    // A map key that breaks the rule is the id in error (an id inside the value would
    // add a segment of its own); the message names the map, not the rejected key.
    let bad_key = matches!(path.last(), Some(Segment::Map { key }) if !id.kind().accepts(key));
    if bad_key {
        path.pop();
    }
    let message = match (field(&path), bad_key) {
        (Some(field), false) => format!("`{field}` {}", id.rule()),
        (Some(field), true) => format!("the keys of `{field}` {}", id.rule()),
        (None, _) => id.to_string(),
    };
    Some(ApiError::bad_request("invalid_request", message))
}

/// The field a decoding error is at, as the client wrote it (`appId`, `apps[2]`,
/// `executionProfiles.fast.provider`); `None` at the top level.
fn field(path: &[&Segment]) -> Option<String> {
    let mut field = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => break,
        }
    }
    (!field.is_empty()).then_some(field)
}

/// A raw body that could not be read: 413 `body_too_large` over the limit, otherwise
/// 400 `invalid_request` (handlers that take `Bytes` instead of [`Json`]).
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        )
    } else {
        ApiError::bad_request("invalid_request", "the request body could not be read")
    }
}

/// Whether `given` is the configured shared secret (an internal listener's token), in
/// time that does not depend on where they differ or on either length: both sides are
/// hashed to the same length first and the digests compared in constant time.
pub fn secret_matches(given: &[u8], expected: &SecretString) -> bool {
    use sha2::{Digest as _, Sha256};
    use subtle::ConstantTimeEq as _;
    let given = Sha256::digest(given);
    let wanted = Sha256::digest(expected.expose_secret().as_bytes());
    given.ct_eq(&wanted).into()
}

/// The token of an `Authorization: Bearer <token>` header: `None` without one or with
/// anything else (another scheme, an empty token, two headers).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// 401 `unauthorized` with the `WWW-Authenticate: Bearer` challenge.
pub fn bearer_challenge(message: impl Into<String>) -> Response {
    let mut response = ApiError::unauthorized(message).into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Answers unknown routes in the shared error shape.
async fn not_found_fallback() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// A readiness probe: `Ok` when the service can do its work.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// `/healthz` (the process is up) and `/readyz` (its dependencies answer).
pub fn health_routes<S: Clone + Send + Sync + 'static>(ready: ReadinessCheck) -> Router<S> {
    health_route_table(ready).into_router()
}

/// [`health_routes`] as a [`RouteTable`](crate::routes::RouteTable), for a router
/// whose routes are listed (the gateway's, which its OpenAPI description covers).
pub fn health_route_table<S: Clone + Send + Sync + 'static>(
    ready: ReadinessCheck,
) -> crate::routes::RouteTable<S> {
    crate::routes::RouteTable::new()
        .get("/healthz", || async {
            axum::Json(serde_json::json!({"status": "ok"}))
        })
        .get("/readyz", move || {
            let ready = ready.clone();
            async move {
                match ready().await {
                    Ok(()) => Ok(axum::Json(serde_json::json!({"status": "ready"}))),
                    Err(problem) => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_ready",
                        problem,
                    )),
                }
            }
        })
}

/// Readiness of a NATS connection.
pub fn nats_ready(client: async_nats::Client) -> ReadinessCheck {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            match client.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                state => Err(format!("NATS connection is {state:?}")),
            }
        })
    })
}

/// Binds `addr`; port 0 picks a free port (tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the layers every service wants (outermost first): request id, tracing, and a
/// JSON 404/405 for unknown routes. Requests whose response takes longer than
/// `timeout` to start get 503; streaming bodies (SSE) are not cut by it.
pub fn with_common_layers(router: Router, timeout: Duration) -> Router {
    router
        .fallback(not_found_fallback)
        .layer(middleware::map_response(method_not_allowed_as_json))
        .layer(middleware::from_fn(close_after_refused_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// An error answered to a request that carried a body may have left part of that body
/// unread (a 413, a 401 before the body was looked at), and then the server closes the
/// connection. Say so with `Connection: close`: otherwise a client that pools
/// connections may send its next request on one that is about to close and get no
/// answer at all.
async fn close_after_refused_body(request: Request, next: middleware::Next) -> Response {
    let has_body = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|len| len.trim() != "0")
        || request
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn method_not_allowed_as_json(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.headers().get("content-type").is_none()
    {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
        .into_response();
    }
    response
}

/// The shared `[http]` section: limits every HTTP listener of every service applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// How long a client may take to send a request's head (request line and headers)
    /// once the server waits for one: after it the connection is closed. The server
    /// waits for a head right after accepting a connection and again after each
    /// answer on a kept-alive one, so this also bounds idle connections. A request
    /// being handled or a response being streamed (SSE) is not affected.
    pub header_read_timeout_ms: u64,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
        }
    }
}

impl HttpServerConfig {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// Checks the values once at start-up; the error names the key.
    // The platform's shared error type is large; validation runs once.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout_ms == 0 {
            return Err(ConfigError::Value {
                key: "http.header_read_timeout_ms",
                problem: "must be at least 1 (a request head must arrive in bounded time)"
                    .to_owned(),
            });
        }
        Ok(())
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting,
/// lets the requests in flight finish and waits for their connections to close.
///
/// HTTP/1.1 only (what every client of ours speaks). Each connection gets hyper's
/// header-read timeout (`http.header_read_timeout_ms`), which `axum::serve` cannot set:
/// without it a client that trickles header bytes, or opens connections and sends
/// nothing, keeps a socket and a task for as long as it likes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // One router for every connection: cloning a `Router<()>` is a reference count,
    // where `axum::serve(listener, router)` re-built it (a deep copy of every route and
    // layer, ~20 KiB) for each connection and kept it while the connection (an SSE
    // stream) was open.
    let router = router.with_state(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_read_timeout());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut listener = listener;
    loop {
        let (io, remote) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            // axum's `Listener` retries what `accept` may fail with (a reset connection,
            // out of file descriptors: after a pause) instead of ending the server.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client that went away or was too slow: not the service's problem.
                tracing::debug!(%remote, %error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
    use serde_json::json;
    use switchyard_contracts::api::{HumanLoopReplyRequest, RegisterAppRequest};
    use switchyard_contracts::principals::CreatePrincipalRequest;

    const APP_RULE: &str = "must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`";

    async fn extract(body: serde_json::Value) -> Result<RegisterAppRequest, ApiError> {
        let request = Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        Json::<RegisterAppRequest>::from_request(request, &())
            .await
            .map(|Json(body)| body)
    }

    #[tokio::test]
    async fn a_bad_id_in_a_body_names_the_field_in_our_words() {
        let error = extract(json!({"appId": "bad id with spaces"}))
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "invalid_request");
        assert_eq!(error.message, format!("`appId` {APP_RULE}"));

        let error = extract(json!({"appId": "a", "executionProfiles": {"no good": {}}}))
            .await
            .unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert_eq!(
            error.message,
            format!("the keys of `executionProfiles` {APP_RULE}")
        );

        // Not an id problem: the shape error it always was.
        let error = extract(json!({"appId": 5})).await.unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "invalid_body");
        assert!(extract(json!({"appId": "a-1_B"})).await.is_ok());
    }

    #[test]
    fn decoded_values_answer_like_the_extractor() {
        let error = decode_value::<CreatePrincipalRequest>(
            json!({"name": "n", "role": "viewer", "apps": ["ok", "x.y"]}),
        )
        .unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert_eq!(error.message, format!("`apps[1]` {APP_RULE}"));
        assert!(!error.message.contains("x.y"), "{}", error.message);

        let error = decode_value::<HumanLoopReplyRequest>(
            json!({"requestId": "r 1", "decision": "approve"}),
        )
        .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error.message,
            "`requestId` must be 1-128 characters of A-Z, a-z, 0-9, `_` and `-`"
        );

        let error = decode_value::<HumanLoopReplyRequest>(json!({"decision": "approve", "x": 1}))
            .unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "invalid_body");
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let secret = SecretString::from("internal-token-0123456789");
        assert!(secret_matches(b"internal-token-0123456789", &secret));
        for wrong in [
            &b""[..],
            b"internal-token-012345678",
            b"internal-token-01234567890",
            b"INTERNAL-token-0123456789",
        ] {
            assert!(!secret_matches(wrong, &secret), "{wrong:?}");
        }
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let headers = |values: &[&'static str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(AUTHORIZATION, HeaderValue::from_static(v));
            }
            map
        };
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Some("abc"));
        assert_eq!(bearer_token(&headers(&["bearer  abc "])), Some("abc"));
        for bad in [
            &["Basic abc"][..],
            &["Bearer"],
            &["Bearer "],
            &["abc"],
            &[],
            &["Bearer abc", "Bearer abc"],
        ] {
            assert_eq!(bearer_token(&headers(bad)), None, "{bad:?}");
        }
    }
}
