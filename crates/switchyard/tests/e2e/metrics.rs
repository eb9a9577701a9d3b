//! `/metrics` on every service: after N runs the counters say N, the gauges agree with
//! what is running, only the configured token reads them; and the start request's
//! trace reaches the run command and the executor's dispatch.

use crate::harness::{DEADLINE, Harness};
use futures::StreamExt as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_contracts::subjects;

const METRICS_TOKEN: &str = "e2e-metrics-token-5b1c9e";

/// One sample of the exposition text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4): comments and blank lines skipped, each
/// other line `name{label="value",...} value [timestamp]` with `\\`, `\"` and `\n`
/// escapes in label values. Panics on anything else: a malformed exposition is a bug.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value on line {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name on line {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let end = loop {
                // `}` or `key="value"` followed by `,` or `}`.
                let Some(&(i, c)) = chars.peek() else {
                    panic!("unterminated labels on line {line:?}")
                };
                if c == '}' {
                    break i + 1;
                }
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('='), "{line:?}");
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("bad escape {other:?} on line {line:?}"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value on line {line:?}"),
                    }
                }
                assert!(
                    labels.insert(key.clone(), value).is_none(),
                    "label {key} twice on line {line:?}"
                );
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((i, '}')) => break i + 1,
                    other => panic!("expected , or }} but got {other:?} on line {line:?}"),
                }
            };
            rest = &after[end..];
        }
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .unwrap_or_else(|| panic!("no value on line {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value {v:?} on line {line:?}")),
        };
        assert!(fields.count() <= 1, "trailing fields on line {line:?}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The one sample named `name` whose labels include `labels` (panics if several match).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "several samples match {name} {labels:?}: {matching:?}"
    );
    matching.first().map(|s| s.value)
}

/// The sum of every sample named `name`.
fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

fn address(handle: &switchyard_platform::service::ServiceHandle) -> String {
    format!("http://{}", handle.http_addr.expect("service address"))
}

/// Every service's `/metrics` address, by service name.
fn services(h: &Harness) -> Vec<(&'static str, String)> {
    vec![
        ("control-plane", address(&h.control_plane.handle)),
        ("gateway", h.base.clone()),
        ("executor", address(&h.executors[0].handle)),
        ("executor-manager", address(&h.managers[0].handle)),
    ]
}

async fn get_metrics(h: &Harness, base: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = h.http.get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("metrics request")
}

/// Scrapes `base` with the token and parses the answer.
async fn scrape(h: &Harness, base: &str) -> Vec<Sample> {
    let response = get_metrics(h, base, Some(METRICS_TOKEN)).await;
    assert_eq!(response.status().as_u16(), 200, "scrape of {base}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_exposition(&response.text().await.expect("metrics body"))
}

/// Scrapes `base` until `done` holds for the samples (counters and gauges follow
/// events a moment after the API shows them); returns the last scrape.
async fn scrape_until(h: &Harness, base: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let samples = scrape(h, base).await;
        if done(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics of {base} never matched; last: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_with_metrics(executors: usize, managers: usize) -> Harness {
    Harness::start_with_env(
        executors,
        managers,
        &[("SWITCHYARD_METRICS__TOKEN", METRICS_TOKEN.to_owned())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_n_runs_the_counters_say_n() {
    const SUCCEEDED: usize = 3;
    const FAILED: usize = 2;
    let h = start_with_metrics(1, 1).await;
    let [cp, gateway, executor, manager] = services(&h)
        .into_iter()
        .map(|(_, base)| base)
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();

    // One run held on a human-loop request: its slot is in use while it waits.
    let held = h
        .start_scripted(json!([
            {"humanLoop": {"prompt": "go on?", "kind": "command"}},
            {"message": {"text": "done"}}
        ]))
        .await;
    let request_id = h.pending_request(&held).await;
    let samples = scrape(&h, &executor).await;
    assert_eq!(
        value(&samples, "switchyard_executor_slots_used", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "switchyard_executor_slots_free", &[]),
        Some(15.0)
    );
    let (status, body) = h
        .post(
            &format!("/api/runs/{held}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut runs = vec![held];
    for i in 0..SUCCEEDED {
        runs.push(
            h.start_scripted(json!([{"message": {"text": format!("hello {i}"), "chunks": 2}}]))
                .await,
        );
    }
    for _ in 0..FAILED {
        runs.push(
            h.start_scripted(json!([
                {"message": {"text": "trying"}},
                {"fail": {"reason": "auth_invalid", "detail": "the key was refused"}}
            ]))
            .await,
        );
    }
    let total_runs = runs.len();
    // Every run streamed to its end through the gateway.
    for run_id in &runs {
        let frames = h.read_stream(run_id, None).await;
        assert!(!frames.is_empty(), "{run_id} streamed nothing");
    }
    for run_id in &runs {
        h.wait_run(run_id, |r| {
            r["status"] == "succeeded" || r["status"] == "failed"
        })
        .await;
    }

    let succeeded = (SUCCEEDED + 1) as f64;
    let failed = FAILED as f64;
    let samples = scrape_until(&h, &cp, |s| {
        total(s, "switchyard_runs_finished_total") >= total_runs as f64
    })
    .await;
    assert_eq!(
        value(
            &samples,
            "switchyard_runs_started_total",
            &[("provider", "scripted")]
        ),
        Some(total_runs as f64),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "switchyard_runs_finished_total",
            &[
                ("provider", "scripted"),
                ("status", "succeeded"),
                ("reason", "none")
            ]
        ),
        Some(succeeded)
    );
    assert_eq!(
        value(
            &samples,
            "switchyard_runs_finished_total",
            &[
                ("provider", "scripted"),
                ("status", "failed"),
                ("reason", "auth_invalid")
            ]
        ),
        Some(failed)
    );
    // Nothing else finished, and every series says which service it is from.
    assert_eq!(
        total(&samples, "switchyard_runs_finished_total"),
        total_runs as f64
    );
    assert!(
        samples
            .iter()
            .all(|s| s.labels.get("service").map(String::as_str) == Some("control-plane"))
    );
    // run.queued of each run was appended by the control-plane.
    assert!(
        value(&samples, "switchyard_event_append_seconds_count", &[]).unwrap_or(0.0)
            >= total_runs as f64
    );
    assert_eq!(
        value(&samples, "switchyard_serialization_failures_total", &[]),
        Some(0.0)
    );

    // The gateway: every stream closed, their bytes counted.
    let samples = scrape_until(&h, &gateway, |s| {
        value(s, "switchyard_sse_streams_open", &[]) == Some(0.0)
    })
    .await;
    let bytes = value(&samples, "switchyard_sse_bytes_sent_total", &[]).unwrap_or(0.0);
    assert!(bytes > 0.0, "{samples:#?}");

    // The executor: every slot free again; its event appends are measured.
    let samples = scrape_until(&h, &executor, |s| {
        value(s, "switchyard_executor_slots_used", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        value(&samples, "switchyard_executor_slots_free", &[]),
        Some(16.0)
    );
    assert_eq!(
        value(&samples, "switchyard_provider_processes", &[]).map(|v| v >= 0.0),
        Some(true)
    );
    let batches = value(&samples, "switchyard_event_append_batch_events_count", &[]).unwrap_or(0.0);
    let events = value(&samples, "switchyard_event_append_batch_events_sum", &[]).unwrap_or(0.0);
    assert!(batches > 0.0 && events >= batches, "{samples:#?}");

    // The manager: each command dispatched once, none left in the queue.
    let samples = scrape(&h, &manager).await;
    assert_eq!(
        value(
            &samples,
            "switchyard_dispatch_seconds_count",
            &[("outcome", "ack")]
        ),
        Some(total_runs as f64),
        "{samples:#?}"
    );
    assert_eq!(
        value(&samples, "switchyard_command_queue_depth", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "switchyard_command_queue_oldest_age_seconds", &[]),
        Some(0.0)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_queue_gauges_show_what_waits() {
    // No executor: the manager takes the command and hands it back, again and again.
    let mut h = start_with_metrics(0, 1).await;
    let manager = address(&h.managers[0].handle);
    let run_id = h
        .start_scripted(json!([{"message": {"text": "later"}}]))
        .await;
    scrape_until(&h, &manager, |s| {
        value(s, "switchyard_command_queue_depth", &[]) == Some(1.0)
            && value(s, "switchyard_command_queue_oldest_age_seconds", &[]).is_some_and(|a| a > 0.0)
            && value(
                s,
                "switchyard_dispatch_seconds_count",
                &[("outcome", "retry")],
            )
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    // ...until an executor comes: then the queue empties.
    h.add_executor(4).await;
    h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    scrape_until(&h, &manager, |s| {
        value(s, "switchyard_command_queue_depth", &[]) == Some(0.0)
            && value(s, "switchyard_command_queue_oldest_age_seconds", &[]) == Some(0.0)
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_only_the_configured_token() {
    // Without `metrics.token` every service says metrics are off.
    let h = Harness::start(1, 1).await;
    for (service, base) in services(&h) {
        let response = get_metrics(&h, &base, Some(METRICS_TOKEN)).await;
        assert_eq!(response.status().as_u16(), 403, "{service}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "metrics_disabled",
            "{service}: {body}"
        );
    }
    h.shutdown().await;

    let h = start_with_metrics(1, 1).await;
    for (service, base) in services(&h) {
        for token in [
            None,
            Some("e2e-wrong-token-0123456789"),
            Some(crate::harness::TOKEN),
        ] {
            let response = get_metrics(&h, &base, token).await;
            assert_eq!(response.status().as_u16(), 401, "{service} with {token:?}");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{service}"
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{service}: {body}");
        }
        // Inside every service's common layers: a request id, and a JSON 405.
        let response = h
            .http
            .post(format!("{base}/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{service}");
        assert!(response.headers().contains_key("x-request-id"), "{service}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{service}: {body}"
        );
        let samples = scrape(&h, &base).await;
        assert!(
            samples
                .iter()
                .any(|s| s.name == "switchyard_serialization_failures_total"
                    && s.labels.get("service").map(String::as_str) == Some(service)),
            "{service}: {samples:#?}"
        );
    }
    h.shutdown().await;
}

async fn start_traced(h: &Harness, traceparent: &str) -> reqwest::Response {
    h.http
        .post(h.url("/api/runs/start"))
        .bearer_auth(crate::harness::TOKEN)
        .header("traceparent", traceparent)
        .json(&json!({"provider": "scripted", "prompt": "traced"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_requests_trace_reaches_the_command_and_the_dispatch() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    // No manager yet: the command waits in the queue where the test can read it.
    let mut h = Harness::start(1, 0).await;
    let js = h.jetstream().await;
    let response = start_traced(&h, &traceparent).await;
    assert_eq!(response.status().as_u16(), 202);
    let run_id = response.json::<serde_json::Value>().await.unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_owned();

    let stream = js.get_stream(subjects::RUN_COMMANDS_STREAM).await.unwrap();
    let command = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(message) = stream
                .get_last_raw_message_by_subject(&subjects::run_command("scripted"))
                .await
            {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the run command was published");
    let headers = command.headers;
    assert_eq!(
        headers.get(subjects::HEADER_RUN_ID).map(|v| v.as_str()),
        Some(run_id.as_str())
    );
    let sent = headers
        .get("traceparent")
        .map(|v| v.as_str().to_owned())
        .expect("the command carries a traceparent");
    let parsed =
        switchyard_platform::trace::TraceParent::parse(&sent).expect("a valid traceparent");
    assert_eq!(parsed.trace_id(), TRACE_ID);
    // The control-plane's own span in the trace, not the caller's.
    assert_ne!(sent, traceparent);

    // The dispatch the manager sends the executor carries the same trace.
    let dispatches = js.client().subscribe("executors.*.dispatch").await.unwrap();
    js.client().flush().await.unwrap();
    let mut dispatches = dispatches;
    h.add_manager().await;
    let dispatch = tokio::time::timeout(DEADLINE, dispatches.next())
        .await
        .expect("a dispatch in time")
        .expect("a dispatch");
    let dispatched = dispatch
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned())
        .expect("the dispatch carries a traceparent");
    let parsed = switchyard_platform::trace::TraceParent::parse(&dispatched).unwrap();
    assert_eq!(parsed.trace_id(), TRACE_ID);
    h.wait_run(&run_id, |r| r["status"] == "succeeded").await;

    // A malformed traceparent does not fail the start: the run gets a trace of its own.
    let response = start_traced(&h, "00-not-a-trace").await;
    assert_eq!(response.status().as_u16(), 202);
    let other = response.json::<serde_json::Value>().await.unwrap()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    let dispatch = tokio::time::timeout(DEADLINE, dispatches.next())
        .await
        .expect("a dispatch in time")
        .expect("a dispatch");
    let header = dispatch
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned())
        .expect("a fresh traceparent");
    let fresh = switchyard_platform::trace::TraceParent::parse(&header).unwrap();
    assert_ne!(fresh.trace_id(), TRACE_ID);
    h.wait_run(&other, |r| r["status"] == "succeeded").await;
    h.shutdown().await;
}
