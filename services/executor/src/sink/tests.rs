//! The sink against a real nats-server: group commit, order, fencing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_contracts::event::{MessageDelta, RunCompleted};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::nats::{self, Resources};
use switchyard_test_support::NatsServer;

async fn event_log(server: &NatsServer) -> EventLog {
    let config = NatsConfig {
        url: server.url(),
        ..Default::default()
    };
    let js = async_nats::jetstream::new(nats::connect(&config, "test").await.unwrap());
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    EventLog::open(js).await.unwrap()
}

fn delta(text: String) -> RunEventKind {
    RunEventKind::MessageDelta(MessageDelta {
        message_id: "m".into(),
        text,
    })
}

#[tokio::test]
async fn queued_events_go_out_in_order_and_together() {
    let server = NatsServer::start().await.unwrap();
    let log = event_log(&server).await;
    assert!(log.batches_atomically());
    let run_id = RunId::now_v7();
    let sink = EventSink::new(log.clone(), run_id, EventPosition::EMPTY);
    const EVENTS: u64 = 600;
    for i in 0..EVENTS {
        sink.emit(delta(format!("e{i}"))).await.unwrap();
    }
    let mut sealed = sink.seal().await;
    sealed
        .append(RunEventKind::RunCompleted(RunCompleted::succeeded()))
        .await
        .unwrap();
    drop(sealed);
    assert!(matches!(
        sink.emit(delta("late".into())).await,
        Err(EmitError::RunEnded)
    ));

    let stream = log.jetstream().get_stream("RUN_EVENTS").await.unwrap();
    let mut appends = HashSet::new();
    for stream_seq in 1..=EVENTS + 1 {
        let message = stream.direct_get(stream_seq).await.unwrap();
        let event: RunEvent = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(event.seq, stream_seq, "events are stored in emit order");
        match &event.kind {
            RunEventKind::MessageDelta(d) => assert_eq!(d.text, format!("e{}", stream_seq - 1)),
            other => assert_eq!(other.type_name(), "run.completed"),
        }
        // Events of one atomic batch share its id; a lone append has none.
        let batch = message
            .headers
            .get("Nats-Batch-Id")
            .map_or_else(|| format!("single {stream_seq}"), |id| id.to_string());
        appends.insert(batch);
    }
    // One acknowledged append per event would be 601.
    assert!(
        appends.len() <= 10,
        "{} appends for {} events",
        appends.len(),
        EVENTS + 1
    );
}

#[tokio::test]
async fn a_stored_wait_returns_after_the_event_is_stored() {
    let server = NatsServer::start().await.unwrap();
    let log = event_log(&server).await;
    let run_id = RunId::now_v7();
    let sink = EventSink::new(log.clone(), run_id, EventPosition::EMPTY);
    for i in 0..20 {
        sink.emit(delta(format!("e{i}"))).await.unwrap();
    }
    let marked = Arc::new(AtomicBool::new(false));
    let flag = marked.clone();
    sink.emit_then(delta("last".into()), move || {
        flag.store(true, Ordering::SeqCst)
    })
    .await
    .unwrap();
    assert!(marked.load(Ordering::SeqCst));
    let last = log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, 21);
}

#[tokio::test]
async fn a_fenced_append_loses_the_run_and_writes_nothing_more() {
    let server = NatsServer::start().await.unwrap();
    let log = event_log(&server).await;
    let run_id = RunId::now_v7();
    let sink = EventSink::new(log.clone(), run_id, EventPosition::EMPTY);
    // Another writer takes the run before this sink appends anything.
    let mut other = EventPosition::EMPTY;
    log.append(run_id, &mut other, delta("other".into()))
        .await
        .unwrap();
    let _ = sink.emit(delta("zombie 1".into())).await;
    tokio::time::timeout(Duration::from_secs(10), sink.lost())
        .await
        .expect("the sink notices it lost the run");
    assert_eq!(
        sink.emit(delta("zombie 2".into())).await,
        Err(EmitError::Fenced)
    );
    let mut sealed = sink.seal().await;
    assert_eq!(sealed.lost_reason(), Some(EmitError::Fenced));
    assert_eq!(
        sealed
            .append(RunEventKind::RunCompleted(RunCompleted::succeeded()))
            .await,
        Err(EmitError::Fenced)
    );
    let last = log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.stream_seq, other.last_stream_seq);
    assert_eq!(log.position(run_id).await.unwrap(), other);
}
