//! The portal: the web workbench built from `portal/` (`npm run build` writes
//! `portal/dist`), served at `/` from `gateway.portal_dir`.
//!
//! * `/assets/*` are Vite's content-hashed files: a new build gets new names, so they
//!   are cached for a year (`immutable`); a missing one is a JSON 404 (never the page,
//!   which a browser would try to run as a script).
//! * Any other file in the directory (`/favicon.svg`) is served with `no-cache`.
//! * Every other path outside `/api/` is `index.html` (`no-cache`, so a new build is
//!   picked up at the next load): the portal routes in the browser, so a reload of
//!   `/runs/<id>` must get the page. `/api` paths never get it.
//! * Without an `index.html` (the portal was not built) every such path gets a short
//!   page saying how to build it; the API works regardless.
//!
//! The directory is looked at on each request, so building the portal while the
//! gateway runs needs no restart. HTML answers carry a Content-Security-Policy that
//! allows only the portal's own scripts, styles and connections: agent output the
//! portal renders is untrusted, and the policy is the second line behind rendering it
//! as text.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use switchyard_platform::http::ApiError;
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

/// Where hashed build output lives.
const ASSETS_PREFIX: &str = "/assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
/// Only the portal's own files; no inline script, no framing, no plug-ins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// Where the built portal is.
pub(crate) struct Portal {
    dir: PathBuf,
}

impl Portal {
    pub(crate) fn new(dir: &Path) -> Portal {
        Portal {
            dir: dir.to_owned(),
        }
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index.html")
    }

    /// The answer to a `GET` of any path no other route takes.
    pub(crate) async fn serve(&self, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        if path == "/api" || path.starts_with("/api/") {
            return ApiError::not_found("no such endpoint").into_response();
        }
        let index = self.index();
        if !tokio::fs::try_exists(&index).await.unwrap_or(false) {
            return not_built(&self.dir);
        }
        let (parts, _) = request.into_parts();
        if path != "/" && path != "/index.html" {
            let request = Request::from_parts(parts.clone(), Body::empty());
            let file = ServeDir::new(&self.dir)
                .append_index_html_on_directories(false)
                .oneshot(request)
                .await;
            match file {
                Ok(response) if response.status() != StatusCode::NOT_FOUND => {
                    let cache = if path.starts_with(ASSETS_PREFIX) {
                        IMMUTABLE
                    } else {
                        NO_CACHE
                    };
                    return finish(response.map(Body::new), cache);
                }
                Ok(_) if path.starts_with(ASSETS_PREFIX) => {
                    return ApiError::not_found("no such file").into_response();
                }
                Ok(_) => {}
                Err(infallible) => match infallible {},
            }
        }
        let request = Request::from_parts(parts, Body::empty());
        match ServeFile::new(&index).oneshot(request).await {
            Ok(response) => finish(response.map(Body::new), NO_CACHE),
            Err(infallible) => match infallible {},
        }
    }
}

fn finish(mut response: Response, cache: &'static str) -> Response {
    let status = response.status();
    // Error answers of the file service (a range it cannot serve) are not cached.
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    security_headers(response.headers_mut());
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
}

/// The page `/` answers while the portal is not built.
fn not_built(dir: &Path) -> Response {
    let dir = html_escape(&dir.display().to_string());
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Switchyard: portal not built</title></head>\n<body>\
         <h1>Switchyard is running; its portal is not built</h1>\
         <p>The API answers under <code>/api/</code>. To use the web workbench, build it \
         once (Node.js 20 or newer):</p>\
         <pre>cd portal &amp;&amp; npm ci &amp;&amp; npm run build</pre>\
         <p>then reload this page. <code>scripts/quickstart.sh</code> builds it when \
         Node.js is installed. The gateway serves it from <code>{dir}</code> \
         (<code>gateway.portal_dir</code>).</p></body></html>\n"
    );
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        page,
    )
        .into_response();
    security_headers(response.headers_mut());
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_in_the_not_built_page() {
        assert_eq!(
            html_escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
