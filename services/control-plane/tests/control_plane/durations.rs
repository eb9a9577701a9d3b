//! Every duration a start request, an app or an execution profile may set is checked at
//! the edge: a value of the wrong type or out of range is refused, naming the field,
//! instead of being replaced by a default (or taken as is) further down.

use crate::common::{Harness, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `providerOptions` keys holding milliseconds, and whether 0 (no limit) is allowed.
const KEYS: [(&str, bool); 8] = [
    ("timeoutMs", false),
    ("runTimeoutMs", false),
    ("humanLoopTimeoutMs", true),
    ("handshakeTimeoutMs", true),
    ("firstOutputTimeoutMs", true),
    ("inactivityTimeoutMs", true),
    ("streamIdleTimeoutMs", false),
    ("apiTimeoutMs", false),
];
/// The documented upper bound: 7 days.
const MAX_MS: u64 = 604_800_000;

async fn run_count(h: &Harness) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM runs"#)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
}

fn assert_refused(status: StatusCode, json: &Value, field: &str, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what} → {json}");
    assert_eq!(error_code(json), "invalid_duration", "{what}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{field}`")), "{what}: {message}");
}

#[tokio::test]
async fn start_requests_with_bad_durations_are_refused_naming_the_field() {
    let h = Harness::start().await;
    let before = run_count(&h).await;
    for (key, zero_allowed) in KEYS {
        let mut bad = vec![
            json!(-5),
            json!("soon"),
            json!("5000"),
            json!(18_446_744_073_709_551_615_u64),
            json!(MAX_MS + 1),
            json!(1.5),
            json!(true),
            json!([1000]),
        ];
        if !zero_allowed {
            bad.push(json!(0));
        }
        for value in bad {
            let body = json!({"provider": "scripted", "prompt": "p",
                              "providerOptions": {key: value}});
            let (status, json) = h.post("/api/runs/start", body.clone()).await;
            assert_refused(
                status,
                &json,
                &format!("providerOptions.{key}"),
                &body.to_string(),
            );
        }
    }
    assert_eq!(run_count(&h).await, before, "refused starts store nothing");

    for (key, zero_allowed) in KEYS {
        let mut good = vec![json!(1), json!(MAX_MS), Value::Null];
        if zero_allowed {
            good.push(json!(0));
        }
        for value in good {
            let body = json!({"provider": "scripted", "prompt": "p",
                              "providerOptions": {key: value}});
            let (status, json) = h.post("/api/runs/start", body.clone()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body} → {json}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn apps_and_profiles_with_bad_durations_are_refused_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        (
            json!({"appId": "a", "runtimeDefaults": {"timeoutMs": 9_223_372_036_854_775_807_u64}}),
            "runtimeDefaults.timeoutMs",
        ),
        (
            json!({"appId": "a", "runtimeDefaults": {"timeoutMs": MAX_MS + 1}}),
            "runtimeDefaults.timeoutMs",
        ),
        (
            json!({"appId": "a", "runtimeDefaults": {"timeoutMs": 0}}),
            "runtimeDefaults.timeoutMs",
        ),
        (
            json!({"appId": "a", "runtimeDefaults": {"providerOptions": {"inactivityTimeoutMs": "x"}}}),
            "runtimeDefaults.providerOptions.inactivityTimeoutMs",
        ),
        (
            json!({"appId": "a", "runtimeDefaults": {"providerOptions": {"timeoutMs": -5}}}),
            "runtimeDefaults.providerOptions.timeoutMs",
        ),
        (
            json!({"appId": "a", "executionProfiles": {"fast": {"timeoutMs": 9_223_372_036_854_775_807_u64}}}),
            "executionProfiles.fast.timeoutMs",
        ),
        (
            json!({"appId": "a", "executionProfiles": {"fast": {"providerOptions": {"runTimeoutMs": 0}}}}),
            "executionProfiles.fast.providerOptions.runTimeoutMs",
        ),
        (
            json!({"appId": "a", "executionProfiles": {"fast": {"providerOptions": {"humanLoopTimeoutMs": 1e12}}}}),
            "executionProfiles.fast.providerOptions.humanLoopTimeoutMs",
        ),
    ];
    for (body, field) in cases {
        let (status, json) = h.post("/api/apps/register", body.clone()).await;
        assert_refused(status, &json, field, &body.to_string());
    }
    // A `timeoutMs` that is not a whole non-negative number does not decode at all.
    for value in [json!(-5), json!("soon"), json!(1.5)] {
        let body = json!({"appId": "a", "runtimeDefaults": {"timeoutMs": value}});
        let (status, json) = h.post("/api/apps/register", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {json}");
        assert_eq!(error_code(&json), "invalid_body");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("runtimeDefaults.timeoutMs"), "{message}");
    }
    let (status, _) = h.get("/api/apps/a").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was registered");

    h.register_app(json!({
        "appId": "a",
        "runtimeDefaults": {"timeoutMs": MAX_MS, "providerOptions": {"inactivityTimeoutMs": 0}},
        "executionProfiles": {"fast": {"timeoutMs": 1, "providerOptions": {"humanLoopTimeoutMs": 0}}}
    }))
    .await;
    h.stop().await;
}
