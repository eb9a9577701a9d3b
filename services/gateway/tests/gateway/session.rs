//! Browser sessions (the `sy_session` cookie and its CSRF token), cross-origin access
//! and the portal's static files, against a gateway with the admin token. Revocation of
//! issued tokens and principal changes need the real control-plane: they are in
//! `crates/switchyard/tests/e2e/portal_sessions.rs`.

use crate::common::{Harness, TOKEN, error_code};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A signed-in browser: its cookie value and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    body: Value,
    set_cookie: String,
}

impl Browser {
    fn cookie_header(&self) -> String {
        format!("theme=dark; sy_session={}", self.cookie)
    }
}

/// The `Set-Cookie` header of a response, which must be the only one.
fn set_cookie(response: &reqwest::Response) -> String {
    let mut values = response.headers().get_all("set-cookie").iter();
    let value = values.next().expect("a Set-Cookie header");
    assert!(values.next().is_none(), "one Set-Cookie");
    value.to_str().unwrap().to_owned()
}

/// The cookie's value in a `Set-Cookie` header.
fn cookie_value(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap();
    let (name, value) = first.split_once('=').unwrap();
    assert_eq!(name, "sy_session");
    value.to_owned()
}

fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

async fn sign_in(h: &Harness, token: &str) -> Browser {
    let response = h
        .http
        .post(h.url("/api/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let set_cookie = set_cookie(&response);
    let body: Value = response.json().await.unwrap();
    Browser {
        cookie: cookie_value(&set_cookie),
        csrf: body["csrfToken"].as_str().unwrap().to_owned(),
        body,
        set_cookie,
    }
}

/// A request carrying only the browser's cookie (no bearer token).
fn with_cookie(
    h: &Harness,
    browser: &Browser,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    h.http
        .request(method, h.url(path))
        .header("cookie", browser.cookie_header())
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_expiring_cookie() {
    let h = Harness::start().await;
    let before = chrono::Utc::now();
    let browser = sign_in(&h, TOKEN).await;
    let attrs = attributes(&browser.set_cookie);
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/api", "Max-Age=28800"] {
        assert!(
            attrs.iter().any(|a| a == wanted),
            "{wanted} missing from {}",
            browser.set_cookie
        );
    }
    assert!(
        !attrs.iter().any(|a| a == "Secure"),
        "not Secure unless configured: {}",
        browser.set_cookie
    );
    assert!(
        !browser.set_cookie.contains(TOKEN),
        "the token is not readable in the cookie"
    );
    assert_eq!(browser.body["principal"]["id"], "admin");
    assert_eq!(browser.body["principal"]["role"], "admin");
    assert_eq!(browser.body["auth"], "cookie");
    let expires: chrono::DateTime<chrono::Utc> =
        browser.body["expiresAt"].as_str().unwrap().parse().unwrap();
    let lifetime = expires - before;
    assert!(
        (chrono::Duration::seconds(28_790)..=chrono::Duration::seconds(28_801)).contains(&lifetime),
        "{lifetime:?}"
    );
    assert!(browser.csrf.len() >= 20, "{}", browser.csrf);

    // Secure when the gateway is told browsers reach it over https.
    let secure = Harness::start_with(|g| g.session_cookie_secure = true).await;
    let browser = sign_in(&secure, TOKEN).await;
    assert!(
        attributes(&browser.set_cookie)
            .iter()
            .any(|a| a == "Secure"),
        "{}",
        browser.set_cookie
    );
}

#[tokio::test]
async fn the_cookie_authenticates_api_calls_and_streams_and_is_not_forwarded() {
    let h = Harness::start().await;
    let browser = sign_in(&h, TOKEN).await;

    let response = with_cookie(&h, &browser, Method::GET, "/api/echo/x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["principal"], "admin");
    assert_eq!(
        seen["cookie"],
        Value::Null,
        "the cookie stays at the gateway"
    );
    assert_eq!(seen["authorization"], Value::Null);

    let (run_id, _) = h.finished_run(3).await;
    let stream = with_cookie(
        &h,
        &browser,
        Method::GET,
        &format!("/api/runs/{run_id}/stream"),
    )
    .header("accept", "text/event-stream")
    .send()
    .await
    .unwrap();
    let frames = crate::common::SseReader::new(stream).rest().await;
    assert_eq!(frames.len(), 5, "{frames:?}");

    let me: Value = with_cookie(&h, &browser, Method::GET, "/api/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["auth"], "cookie");
    assert_eq!(
        me["csrfToken"],
        browser.csrf.as_str(),
        "a reload gets the same token"
    );
    assert_eq!(me["principal"]["id"], "admin");

    // Bearer tokens keep working, and win over a cookie.
    let me: Value = h
        .get("/api/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["auth"], "bearer");
    assert_eq!(me["csrfToken"], Value::Null);
    let bearer_post = h
        .request(Method::POST, "/api/echo/y")
        .header("cookie", browser.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer_post.status(),
        StatusCode::CREATED,
        "no CSRF check for bearer tokens"
    );

    // Without either, nobody is signed in.
    let anonymous = h.http.get(h.url("/api/session")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_token_or_a_form_post_does_not_sign_in() {
    let h = Harness::start().await;
    for token in ["wrong", "sy_unknown", "test-admin-tokenX"] {
        let response = h
            .http
            .post(h.url("/api/session"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(error_code(response).await, "unauthorized");
    }
    let empty = h
        .http
        .post(h.url("/api/session"))
        .json(&json!({ "token": "  " }))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    // What a cross-site HTML form can send: refused before the token is looked at, so
    // another site cannot sign a visitor in under its own account.
    let form = h
        .http
        .post(h.url("/api/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(form.headers().get("set-cookie").is_none());
    let plain = h
        .http
        .post(h.url("/api/session"))
        .header("content-type", "text/plain")
        .body(json!({ "token": TOKEN }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_cookie_alone_never_authorises_a_change() {
    let h = Harness::start().await;
    let browser = sign_in(&h, TOKEN).await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        // No header: what a cross-site form or a script without the token sends.
        let response = with_cookie(&h, &browser, method.clone(), "/api/echo/change")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method}");
        assert_eq!(error_code(response).await, "csrf_rejected");
        // A wrong token, or the token twice.
        let wrong = with_cookie(&h, &browser, method.clone(), "/api/echo/change")
            .header("x-switchyard-csrf", format!("{}x", browser.csrf))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "{method}");
        let twice = with_cookie(&h, &browser, method.clone(), "/api/echo/change")
            .header("x-switchyard-csrf", &browser.csrf)
            .header("x-switchyard-csrf", &browser.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(twice.status(), StatusCode::FORBIDDEN, "{method}");
        // The session's own token.
        let ok = with_cookie(&h, &browser, method.clone(), "/api/echo/change")
            .header("x-switchyard-csrf", &browser.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::CREATED, "{method}");
        let seen: Value = ok.json().await.unwrap();
        assert_eq!(seen["method"], method.as_str());
    }
    // Another session's token does not fit this one.
    let other = sign_in(&h, TOKEN).await;
    assert_ne!(other.csrf, browser.csrf);
    let crossed = with_cookie(&h, &browser, Method::POST, "/api/echo/change")
        .header("x-switchyard-csrf", &other.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_expire() {
    let h = Harness::start_with(|g| g.session_ttl_secs = 1).await;
    let browser = sign_in(&h, TOKEN).await;
    assert!(attributes(&browser.set_cookie).contains(&"Max-Age=1".to_owned()));
    let first = with_cookie(&h, &browser, Method::GET, "/api/echo/x")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // The browser drops the cookie after Max-Age; a copy sent later must be refused by
    // the gateway itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = with_cookie(&h, &browser, Method::GET, "/api/echo/x")
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::UNAUTHORIZED {
            break response;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let removal = set_cookie(&refused);
    assert!(removal.starts_with("sy_session=;"), "{removal}");
    assert!(
        attributes(&removal).contains(&"Max-Age=0".to_owned()),
        "{removal}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn tampered_and_foreign_cookies_are_refused_and_cleared() {
    let h = Harness::start().await;
    let browser = sign_in(&h, TOKEN).await;
    let mut tampered = browser.cookie.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    // A gateway with another key (its own admin token) does not accept this one's.
    let other = Harness::start_with(|g| g.admin_token = Some("another-admin-token".into())).await;
    let foreign = sign_in(&other, "another-admin-token").await;

    for value in [tampered.as_str(), foreign.cookie.as_str(), "garbage", ""] {
        let response = h
            .http
            .get(h.url("/api/echo/x"))
            .header("cookie", format!("sy_session={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value:?}");
        assert!(set_cookie(&response).starts_with("sy_session=;"));
    }
    // Two session cookies: which one the browser meant cannot be told.
    let two = h
        .http
        .get(h.url("/api/echo/x"))
        .header(
            "cookie",
            format!(
                "sy_session={}; sy_session={}",
                browser.cookie, browser.cookie
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn gateways_with_the_same_key_accept_each_others_cookies() {
    // Two gateways configured alike (a restart, or several behind a load balancer).
    let a = Harness::start().await;
    let b = Harness::start().await;
    let browser = sign_in(&a, TOKEN).await;
    let response = with_cookie(&b, &browser, Method::POST, "/api/echo/x")
        .header("x-switchyard-csrf", &browser.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // An explicit session secret replaces the admin token as the key.
    let c = Harness::start_with(|g| {
        g.session_secret = Some("a session secret of at least 32 chars".into());
    })
    .await;
    let refused = with_cookie(&c, &browser, Method::GET, "/api/echo/x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_clears_the_cookie() {
    let h = Harness::start().await;
    let browser = sign_in(&h, TOKEN).await;
    let without = with_cookie(&h, &browser, Method::DELETE, "/api/session")
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(without).await, "csrf_rejected");
    let out = with_cookie(&h, &browser, Method::DELETE, "/api/session")
        .header("x-switchyard-csrf", &browser.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let removal = set_cookie(&out);
    assert!(removal.starts_with("sy_session=;"), "{removal}");
    assert!(attributes(&removal).contains(&"Max-Age=0".to_owned()));
    assert!(attributes(&removal).contains(&"Path=/api".to_owned()));
    // Signing out of a session that is gone already just clears it.
    let stale = h
        .http
        .delete(h.url("/api/session"))
        .header("cookie", "sy_session=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn cross_origin_access_is_off_by_default() {
    let h = Harness::start().await;
    let preflight = h
        .http
        .request(Method::OPTIONS, h.url("/api/runs/start"))
        .header("origin", "https://tools.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success(), "{}", preflight.status());
    assert!(
        preflight
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        preflight.headers()
    );
    let get = h
        .get("/api/echo/x")
        .header("origin", "https://tools.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::CREATED);
    assert!(get.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn listed_origins_get_cors_answers_and_others_do_not() {
    let allowed = "https://tools.example.com";
    let h = Harness::start_with(|g| {
        g.cors_allowed_origins = vec![allowed.to_owned(), "http://127.0.0.1:5173".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        h.http
            .request(Method::OPTIONS, h.url("/api/runs/start"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight(allowed).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    let headers = ok.headers();
    assert_eq!(headers["access-control-allow-origin"], allowed);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    assert!(
        !allowed_headers.contains("x-switchyard-csrf"),
        "the CSRF header is the portal's own"
    );
    assert!(headers.get("access-control-max-age").is_some());
    assert!(
        headers.get("access-control-allow-credentials").is_none(),
        "never with credentials"
    );
    assert!(
        headers["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("origin"),
        "{headers:?}"
    );

    for refused in [
        "https://evil.example",
        "https://tools.example.com.evil.example",
        "null",
    ] {
        let response = preflight(refused).await.unwrap();
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{refused}: {:?}",
            response.headers()
        );
    }

    // The request itself, from the listed origin, with a bearer token.
    let get = h
        .get("/api/echo/x")
        .header("origin", allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::CREATED);
    assert_eq!(get.headers()["access-control-allow-origin"], allowed);
    let exposed = get.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let other = h
        .get("/api/echo/x")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// A built portal: `index.html`, one hashed asset and one plain file.
fn built_portal() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>portal</title><script type=module src=/assets/app-1a2b3c.js></script>",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/app-1a2b3c.js"), "console.log(1)").unwrap();
    std::fs::write(dir.path().join("favicon.svg"), "<svg/>").unwrap();
    dir
}

#[tokio::test]
async fn the_portal_is_served_at_the_root_with_cache_headers() {
    let portal = built_portal();
    let dir = portal.path().to_owned();
    let h = Harness::start_with(move |g| g.portal_dir = dir).await;
    let get = |path: &str| h.http.get(h.url(path)).send();

    for path in [
        "/",
        "/index.html",
        "/runs/0190-some-run",
        "/apps/demo/profiles",
        "/start?app=a",
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("<title>portal</title>"),
            "{path}"
        );
    }

    let asset = get("/assets/app-1a2b3c.js").await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(asset.text().await.unwrap(), "console.log(1)");

    let favicon = get("/favicon.svg").await.unwrap();
    assert_eq!(favicon.status(), StatusCode::OK);
    assert_eq!(favicon.headers()["cache-control"], "no-cache");

    // A missing asset is not the page (a browser would run HTML as a script).
    let missing = get("/assets/app-000000.js").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "not_found");
    // API paths never get the page.
    for path in ["/api", "/api/"] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
    // Nothing outside the directory.
    let outside = h
        .http
        .get(h.url("/assets/..%2f..%2fetc%2fpasswd"))
        .send()
        .await
        .unwrap();
    assert_ne!(outside.status(), StatusCode::OK);
    // Health stays where it was.
    let health: Value = get("/healthz").await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    // Other methods on page paths are not forwarded anywhere.
    let post = h.http.post(h.url("/runs/x")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_a_built_portal_the_root_says_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().join("dist");
    let h = Harness::start_with(move |g| g.portal_dir = dir).await;
    for path in ["/", "/runs/x"] {
        let response = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let page = response.text().await.unwrap();
        assert!(page.contains("npm ci &amp;&amp; npm run build"), "{page}");
        assert!(page.contains("gateway.portal_dir"), "{page}");
    }
    // The API works regardless.
    assert_eq!(
        h.get("/api/echo/x").send().await.unwrap().status(),
        StatusCode::CREATED
    );
}
