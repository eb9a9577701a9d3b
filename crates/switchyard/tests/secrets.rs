//! No credential value on any NATS subject, in any event, log line or API response:
//! runs all three real CLIs through the platform with recognisable fake keys, records
//! every message that crosses NATS and every log line, and searches them all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "e2e/provider_support.rs"]
#[allow(dead_code)]
mod provider_support;

use futures::StreamExt;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line of the process, at debug level.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(place: &str, text: &str) {
    for secret in [
        provider_support::OPENAI_SECRET,
        provider_support::ANTHROPIC_SECRET,
    ] {
        assert!(
            !text.contains(secret),
            "a credential value leaked into {place}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_value_reaches_nats_events_logs_or_api_responses() {
    let logs = captured_logs().clone();
    let (h, fake, _dir) = provider_support::platform_with_clis().await;

    // Everything published on any subject, as an eavesdropper on the bus sees it.
    let tap = async_nats::connect(h.nats.url()).await.unwrap();
    let mut everything = tap.subscribe(">").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = seen.clone();
    let recorder = tokio::spawn(async move {
        while let Some(message) = everything.next().await {
            let mut seen = sink.lock().unwrap();
            seen.extend_from_slice(message.subject.as_bytes());
            if let Some(headers) = &message.headers {
                seen.extend_from_slice(format!("{headers:?}").as_bytes());
            }
            seen.extend_from_slice(&message.payload);
            seen.push(b'\n');
        }
    });

    let mut api_text = String::new();
    for provider in ["codex-app-server", "claude-code", "opencode"] {
        let app = provider_support::register(&h, provider).await;
        let events = provider_support::tool_turn(&h, &app, provider).await;
        api_text.push_str(&serde_json::to_string(&events).unwrap());
    }
    // The fake model did receive the keys: the scan is looking for values that exist.
    let requests = fake.requests();
    let keys: Vec<&str> = requests.iter().filter_map(|r| r.api_key()).collect();
    assert!(keys.contains(&provider_support::OPENAI_SECRET));
    assert!(keys.contains(&provider_support::ANTHROPIC_SECRET));

    for path in [
        "/api/runs?limit=500",
        "/api/apps",
        "/api/providers",
        "/api/run-queue",
    ] {
        let (status, body) = h.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        api_text.push_str(&body.to_string());
    }
    let (_, runs) = h.get("/api/runs?limit=500").await;
    for run in runs["runs"].as_array().unwrap() {
        let (_, body) = h
            .get(&format!("/api/runs/{}", run["runId"].as_str().unwrap()))
            .await;
        api_text.push_str(&body.to_string());
    }
    assert_clean("API responses and SSE events", &api_text);

    // The whole event history, as stored.
    let js = h.jetstream().await;
    let mut stream = js.get_stream("RUN_EVENTS").await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert!(stored > 10, "expected the runs' events in the stream");
    for seq in 1..=stream.info().await.unwrap().state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await {
            assert_clean(
                "the RUN_EVENTS stream",
                &String::from_utf8_lossy(&message.payload),
            );
        }
    }

    h.shutdown().await;
    recorder.abort();
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(seen.contains("runs.events."), "the tap saw no traffic");
    assert_clean("NATS traffic", &seen);
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("run"), "no logs captured");
    assert_clean("the logs", &logs);
}
