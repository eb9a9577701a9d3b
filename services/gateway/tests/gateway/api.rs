//! Authentication, forwarding to the control-plane, and health of the gateway.

use crate::common::{Harness, INTERNAL_TOKEN, TOKEN, error_code};
use axum::http::{Method, StatusCode};
use std::time::{Duration, Instant};
use switchyard_gateway::{Config, GatewayConfig};
use switchyard_platform::config::NatsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn api_requests_need_the_admin_token_but_health_does_not() {
    let h = Harness::start().await;
    let run_id = h.new_run();
    let paths = [
        "/api/echo/x".to_owned(),
        format!("/api/runs/{run_id}/stream"),
    ];
    for path in &paths {
        let missing = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(error_code(missing).await, "unauthorized");

        for wrong in ["wrong", "test-admin-tokenX", "test-admin-toke", ""] {
            let response = h
                .http
                .get(h.url(path))
                .bearer_auth(wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {wrong:?}"
            );
            assert!(response.headers().contains_key("www-authenticate"));
            assert_eq!(error_code(response).await, "unauthorized");
        }
        let basic = h
            .http
            .get(h.url(path))
            .header("authorization", format!("Basic {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    }

    let ok = h.get("/api/echo/x").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);

    for public in ["/healthz", "/readyz"] {
        let response = h.http.get(h.url(public)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{public}");
    }
}

#[tokio::test]
async fn requests_are_forwarded_with_method_path_query_body_and_status() {
    let h = Harness::start().await;
    let body = r#"{"prompt":"hello","n":1}"#;
    let response = h
        .request(Method::POST, "/api/echo/a/b?x=1&y=two%20words")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-switchyard-principal", "spoofed")
        .header("x-custom", "kept")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .header("accept-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.echo+json"
    );
    assert_eq!(response.headers()["x-echo"], "yes");
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/echo/a/b");
    assert_eq!(seen["query"], "x=1&y=two%20words");
    assert_eq!(seen["body"], body);
    assert_eq!(seen["contentType"], "application/json");
    assert_eq!(seen["accept"], "application/json");
    assert_eq!(seen["custom"], "kept");
    // The client's credentials, spoofed principal and hop-by-hop headers stay behind.
    assert_eq!(seen["authorization"], serde_json::Value::Null);
    assert_eq!(seen["principal"], "admin");
    // The gateway proves itself to the control-plane; a client never sees the secret.
    assert_eq!(seen["internalToken"], INTERNAL_TOKEN);
    assert_eq!(seen["private"], serde_json::Value::Null);
    assert_eq!(seen["acceptEncoding"], serde_json::Value::Null);

    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let response = h
            .request(method.clone(), "/api/echo/m")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let seen: serde_json::Value = response.json().await.unwrap();
        assert_eq!(seen["method"], method.as_str());
    }

    // Upstream errors come back as they are, status and body.
    let response = h
        .get("/api/echo/conflict")
        .header("x-echo-status", "409")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/api/echo/conflict");

    // The fake control-plane answers 404 for routes it does not have; passed through.
    let response = h.get("/api/nothing-here").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paths_cannot_escape_the_api_tree() {
    let h = Harness::start().await;
    let addr = h.gateway.as_ref().unwrap().http_addr.unwrap();
    // reqwest would normalise the dots away, so speak HTTP/1.1 by hand.
    for path in [
        "/api/../secret",
        "/api/%2e%2e/secret",
        "/api/runs/../../secret",
    ] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("leaked"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let h = Harness::start_with(|g| g.max_body_bytes = 1024).await;
    let fits = h
        .request(Method::POST, "/api/echo/big")
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), StatusCode::CREATED);

    let too_big = h
        .request(Method::POST, "/api/echo/big")
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(too_big).await, "body_too_large");

    // Without a Content-Length (chunked) the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'a'; 512])).collect();
    let chunked = h
        .request(Method::POST, "/api/echo/big")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(chunked).await, "body_too_large");
}

#[tokio::test]
async fn an_unreachable_control_plane_is_a_json_503_without_internal_details() {
    // Bound but not listening: the port stays ours for the whole test (no parallel
    // test's server can take it) and every connection to it is refused.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let closed_port = reserved.local_addr().unwrap().port();
    let h = Harness::start_with(|g| {
        g.control_plane_url = format!("http://127.0.0.1:{closed_port}");
    })
    .await;
    let run_id = uuid::Uuid::now_v7();
    for path in ["/api/runs".to_owned(), format!("/api/runs/{run_id}/stream")] {
        let response = h.get(&path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let text = response.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{text}");
        let lower = text.to_lowercase();
        for leak in ["refused", "error sending", "127.0.0.1", "tcp"] {
            assert!(!lower.contains(leak), "{path}: {text}");
        }
    }
    let ready = h.http.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let healthy = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_slow_control_plane_times_out_with_503() {
    let h = Harness::start_with(|g| g.upstream_timeout_ms = 300).await;
    let started = Instant::now();
    let response = h.get("/api/slow").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn anonymous_mode_serves_without_a_token_and_is_off_by_default() {
    let h = Harness::start_with(|g| {
        g.admin_token = None;
        g.allow_anonymous = true;
    })
    .await;
    let response = h.http.get(h.url("/api/echo/anon")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["principal"], "anonymous");

    let refused = switchyard_gateway::start(
        Config {
            nats: NatsConfig {
                url: h.nats.url(),
                ..Default::default()
            },
            gateway: GatewayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await;
    let error = refused
        .err()
        .expect("a gateway without a token must not start");
    assert!(error.to_string().contains("gateway.admin_token"), "{error}");
}

#[tokio::test]
async fn shutdown_stops_the_gateway() {
    let mut h = Harness::start().await;
    let handle = h.gateway.take().unwrap();
    h.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the gateway did not stop")
        .unwrap();
    assert!(h.http.get(h.url("/healthz")).send().await.is_err());
}
