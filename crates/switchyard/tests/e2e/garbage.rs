//! Hostile input through the whole platform: a few hundred generated bodies, paths,
//! query strings and cursors on every endpoint, and random payloads on every NATS
//! subject the services consume. Every HTTP answer is a 4xx in the JSON error shape
//! (never a 5xx, never a hang), and a normal run still succeeds afterwards.

use crate::harness::{Harness, TOKEN};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use std::time::Duration;

/// Bound of one request: a hang is a failure, not a slow test.
const REQUEST_BOUND: Duration = Duration::from_secs(15);

const KEYS: &[&str] = &[
    "provider",
    "prompt",
    "providerOptions",
    "script",
    "appId",
    "name",
    "profile",
    "executionProfile",
    "executionProfiles",
    "timeoutMs",
    "runTimeoutMs",
    "model",
    "requestId",
    "decision",
    "message",
    "reason",
    "conversationId",
    "metadata",
    "credentials",
    "runtimeDefaults",
    "role",
    "apps",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "scripted", "codex", "claude", "opencode", "approve", "decline", "stop", "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "\\PC{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\u{feff}\u{202e}\u{fffd}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(KEYS).prop_map(str::to_owned),
                    "\\PC{0,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One request body and the content type it is sent with.
fn body() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let json_type = Just("application/json");
    prop_oneof![
        // Well-formed JSON of every shape, mostly objects with the real keys.
        6 => (json_value(), json_type).prop_map(|(v, t)| (v.to_string().into_bytes(), t)),
        // Random bytes.
        2 => (prop::collection::vec(any::<u8>(), 0..512), json_type),
        // Unicode, control characters and NUL bytes inside otherwise valid strings.
        1 => ("[\\x00-\\x7f\u{80}-\u{10ffff}]{0,200}", json_type)
            .prop_map(|(s, t)| (json!({"provider": "scripted", "prompt": s}).to_string().into_bytes(), t)),
        // Deep nesting, far beyond any parser's recursion limit.
        1 => (1_000usize..50_000, json_type).prop_map(|(depth, t)| {
            let mut text = "{\"prompt\":".repeat(depth);
            text.push('1');
            text.push_str(&"}".repeat(depth));
            (text.into_bytes(), t)
        }),
        1 => (1_000usize..50_000, json_type)
            .prop_map(|(depth, t)| (("[".repeat(depth) + &"]".repeat(depth)).into_bytes(), t)),
        // Huge strings: near and beyond the body limit.
        1 => (prop::sample::select(vec![64 * 1024, 900 * 1024, 2 * 1024 * 1024]), json_type)
            .prop_map(|(n, t)| (json!({"provider": "scripted", "prompt": "x".repeat(n)}).to_string().into_bytes(), t)),
        // Wrong or odd content types.
        1 => (json_value(), prop::sample::select(vec![
                "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1",
                "multipart/form-data", "", "application/json\u{0}",
            ]))
            .prop_map(|(v, t)| (v.to_string().into_bytes(), t)),
    ]
}

/// A path segment or query value: printable, percent escapes (valid and not), NUL.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._~-]{0,40}",
        "(%[0-9A-Fa-f]{2}|%[G-Zg-z]{2}|%|[a-z0-9]){0,20}",
        Just("%00".to_owned()),
        Just("..%2F..%2F".to_owned()),
        Just("ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned()),
        Just("00000000-0000-0000-0000-000000000000".to_owned()),
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9_-]{0,120}",
    ]
}

/// Whether the error is the server closing the connection while the body was written.
fn early_close(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn sample<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy.new_tree(runner).expect("generate").current()
}

/// Checks one answer: a 4xx with `{"error": {"code", "message"}}`, or (for bodies that
/// happen to be valid) a 2xx.
/// Returns the status (0: the client could not even build the request).
async fn check(
    what: &str,
    response: Result<reqwest::Response, reqwest::Error>,
    may_succeed: bool,
) -> u16 {
    let response = match response {
        Ok(response) => response,
        // The client refused to build the request (an unencodable URL or header).
        Err(e) if e.is_builder() => return 0,
        // A large body the server refused before reading all of it (an early 4xx, then
        // the connection closes): the client's write fails with a broken pipe or a
        // reset before it reads the answer. The server is fine; counted as 1.
        Err(e) if e.is_request() && early_close(&e) && what.contains("KiB") => return 1,
        Err(e) => panic!("{what}: no answer: {e:?}"),
    };
    let status = response.status().as_u16();
    assert!(status < 500, "{what}: {status}");
    if (200..300).contains(&status) {
        assert!(may_succeed, "{what}: unexpected {status}");
        return status;
    }
    assert!((400..500).contains(&status), "{what}: {status}");
    let body = tokio::time::timeout(REQUEST_BOUND, response.bytes())
        .await
        .unwrap_or_else(|_| panic!("{what}: error body hung"))
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{what}: {status} without a JSON body: {body:?}"));
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"].is_string(),
        "{what}: {status} not in the error shape: {body}"
    );
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_http_gets_4xx_never_5xx_and_the_platform_keeps_working() {
    let h = Harness::start(1, 1).await;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_BOUND)
        .build()
        .unwrap();
    let finished = h
        .start_scripted(json!([{"message": {"text": "x", "chunks": 1}}]))
        .await;
    h.wait_run(&finished, |r| r["status"] == "succeeded").await;
    let mut runner = TestRunner::deterministic();
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<(String, u16), usize>::new());
    let count = |kind: &str, status: u16| {
        *seen
            .lock()
            .unwrap()
            .entry((kind.to_owned(), status))
            .or_default() += 1;
    };

    // POST bodies on every write endpoint, for a real run and for ids that are not.
    let ids = [
        finished.clone(),
        uuid::Uuid::now_v7().to_string(),
        "x%00y".to_owned(),
    ];
    let mut posts = Vec::new();
    for i in 0..120 {
        let (bytes, content_type) = sample(&mut runner, &body());
        let id = &ids[i % ids.len()];
        for (path, may_succeed) in [
            ("/api/apps/register".to_owned(), true),
            ("/api/runs/start".to_owned(), true),
            ("/api/principals".to_owned(), true),
            (format!("/api/runs/{id}/stop"), false),
            (format!("/api/runs/{id}/human-loop/reply"), false),
        ] {
            posts.push((path, bytes.clone(), content_type, may_succeed));
        }
    }
    let sent = posts.len();
    futures::stream::iter(posts)
        .for_each_concurrent(8, |(path, bytes, content_type, may_succeed)| {
            let request = http
                .post(h.url(&path))
                .bearer_auth(TOKEN)
                .header("content-type", content_type)
                .body(bytes.clone());
            let count = &count;
            async move {
                let size = if bytes.len() >= 64 * 1024 {
                    format!("{} KiB", bytes.len() / 1024)
                } else {
                    format!("{} bytes", bytes.len())
                };
                let what = format!("POST {path} ({content_type}, {size})");
                count(
                    "POST",
                    check(&what, request.send().await, may_succeed).await,
                );
            }
        })
        .await;

    // GETs: random paths, query strings and cursors.
    let mut gets = Vec::new();
    for i in 0..150 {
        let a = sample(&mut runner, &segment());
        let b = sample(&mut runner, &segment());
        let (path, header) = match i % 6 {
            0 => (format!("/api/{a}/{b}"), None),
            1 => (format!("/api/runs/{a}"), None),
            2 => (format!("/api/runs?{a}={b}&limit={b}&cursor={a}"), None),
            3 => (format!("/api/runs/{finished}/stream?cursor={a}"), None),
            4 => (format!("/api/runs/{finished}/stream"), Some(a)),
            _ => (format!("/api/runs/{a}/human-loop?{b}"), None),
        };
        gets.push((path, header));
    }
    futures::stream::iter(gets)
        .for_each_concurrent(8, |(path, last_event_id)| {
            let mut request = http.get(h.url(&path)).bearer_auth(TOKEN);
            if let Some(id) = &last_event_id {
                request = request.header("last-event-id", id.as_str());
            }
            let count = &count;
            async move {
                // A stream from a garbage cursor that happens to be valid answers 200
                // and ends (the run is finished): allowed.
                let may_succeed = !path.starts_with("/api/{");
                let what = format!("GET {path} {last_event_id:?}");
                count("GET", check(&what, request.send().await, may_succeed).await);
            }
        })
        .await;
    assert!(sent >= 500, "{sent} POSTs");
    let seen = seen.into_inner().unwrap();
    eprintln!("garbage answers (method, status) -> count: {seen:?}");
    let rejected: usize = seen
        .iter()
        .filter(|((_, status), _)| (400..500).contains(status))
        .map(|(_, n)| n)
        .sum();
    assert!(
        rejected >= 500,
        "only {rejected} requests were refused: {seen:?}"
    );

    // And the platform still serves a normal run, end to end.
    let run_id = h
        .start_scripted(json!([{"message": {"text": "still here", "chunks": 2}}]))
        .await;
    let run = h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    assert_eq!(run["status"], "succeeded");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_nats_subjects_is_survived_by_every_service() {
    let h = Harness::start(1, 1).await;
    let js = h.jetstream().await;
    let client = async_nats::connect(h.nats.url()).await.unwrap();
    let presence = js.get_key_value("EXECUTORS").await.unwrap();
    let executor_ids: Vec<String> = presence
        .keys()
        .await
        .unwrap()
        .filter_map(|k| async move { k.ok() })
        .collect()
        .await;
    assert_eq!(executor_ids.len(), 1, "{executor_ids:?}");
    let executor = &executor_ids[0];

    // A run the executor is working on while the garbage arrives.
    let busy = h
        .start_scripted(
            json!([{"message": {"text": "busy", "chunks": 1}}, {"sleepMs": 2000},
                               {"message": {"text": "done", "chunks": 1}}]),
        )
        .await;
    h.read_until(&busy, None, |e| e["type"] == "message.completed")
        .await;

    let mut runner = TestRunner::deterministic();
    let payload = prop_oneof![
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => prop_oneof![
            Just(json!({"action": "stop"})),
            Just(json!({"action": "human_loop_reply", "decision": "approve"})),
            Just(json!({"command": {"runId": "nope"}, "position": {"nextSeq": 0, "lastStreamSeq": u64::MAX}})),
            Just(json!({"runId": uuid::Uuid::now_v7(), "provider": "scripted", "prompt": 5})),
            Just(json!({"seq": 0, "type": "run.completed", "runId": "x"})),
        ].prop_map(|v| v.to_string().into_bytes()),
    ];
    let fresh = uuid::Uuid::now_v7();
    for i in 0..60 {
        let bytes: Vec<u8> = sample(&mut runner, &payload);
        // Core request/reply subjects: the services answer or ignore, never crash.
        for subject in [
            format!("executors.{executor}.dispatch"),
            format!("runs.control.{busy}"),
            format!("runs.control.{fresh}"),
        ] {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                client.request(subject, bytes.clone().into()),
            )
            .await;
        }
        // Streams: a garbage command for the manager, garbage events for the projector
        // (on a run nobody owns), garbage presence for everyone who reads it.
        js.publish("runs.commands.scripted", bytes.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        js.publish(format!("runs.events.{fresh}"), bytes.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        js.publish(format!("runs.events.not-a-run-{i}"), bytes.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        presence
            .put(format!("garbage-{}", i % 5), bytes.clone().into())
            .await
            .unwrap();
    }

    // The busy run was not disturbed by garbage on its control subject... except by a
    // well-formed stop, which is a legitimate request: either way it ends cleanly.
    let done = h
        .wait_run(&busy, |r| {
            matches!(r["status"].as_str(), Some("succeeded" | "stopped"))
        })
        .await;
    assert!(done["status"].is_string());

    // Presence garbage does not break the providers view.
    let (status, body) = h.get("/api/providers").await;
    assert_eq!(status, 200, "{body}");

    // A normal run still goes all the way through.
    let run_id = h
        .start_scripted(json!([{"message": {"text": "after the garbage", "chunks": 2}}]))
        .await;
    let run = h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    assert_eq!(run["status"], "succeeded");
    h.shutdown().await;
}
