//! `GET /api/openapi.json` and `GET /api/docs`: the API description
//! ([`crate::openapi`]) and its HTML page, public (see there why), built once on first
//! use.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::LazyLock;

use crate::openapi;

struct Rendered {
    json: Bytes,
    html: Bytes,
}

static RENDERED: LazyLock<Rendered> = LazyLock::new(|| {
    let document = openapi::document();
    Rendered {
        json: Bytes::from(openapi::render(&document)),
        html: Bytes::from(openapi::html(&document)),
    }
});

/// The page has no script and loads nothing: its policy says so.
const DOCS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                        base-uri 'none'; form-action 'none'";

pub(super) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        RENDERED.json.clone(),
    )
        .into_response()
}

pub(super) async fn docs_page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        RENDERED.html.clone(),
    )
        .into_response()
}
