//! Appending several events of a run as one unit, against a real nats-server: atomic
//! batches where the stream allows them, one fenced append after another where not.
use async_nats::jetstream;
use futures::StreamExt;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{MessageDelta, RunEventKind};
use switchyard_contracts::{RunEvent, RunId};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::nats::{self, Resources};
use switchyard_test_support::NatsServer;

async fn jetstream(server: &NatsServer) -> jetstream::Context {
    let config = NatsConfig {
        url: server.url(),
        ..Default::default()
    };
    jetstream::new(nats::connect(&config, "test").await.unwrap())
}

async fn provisioned(server: &NatsServer) -> EventLog {
    let js = jetstream(server).await;
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

/// RUN_EVENTS as defined, but without atomic batches (what a stream made before them,
/// or by hand, looks like).
async fn without_atomic_batches(server: &NatsServer) -> EventLog {
    let js = jetstream(server).await;
    let mut config: jetstream::stream::Config =
        serde_json::from_str(nats::RUN_EVENTS_STREAM_JSON).unwrap();
    config.allow_atomic_publish = false;
    js.create_stream(config).await.unwrap();
    EventLog::open(js).await.unwrap()
}

fn deltas(run_id: RunId, first_seq: u64, texts: &[&str]) -> Vec<RunEvent> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            RunEvent::new(
                run_id,
                first_seq + i as u64,
                RunEventKind::MessageDelta(MessageDelta {
                    message_id: "m".into(),
                    text: (*text).into(),
                }),
            )
        })
        .collect()
}

/// Every stored event of the run: (seq, stream seq, text).
async fn stored(log: &EventLog, run_id: RunId) -> Vec<(u64, u64, String)> {
    let count = match log.last(run_id).await.unwrap() {
        Some(last) => last.header.seq as usize,
        None => return Vec::new(),
    };
    let tail = log.tail(run_id, 0).await.unwrap();
    let events: Vec<_> = tail.take(count).collect().await;
    events
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let text = match e.decode().unwrap().kind {
                RunEventKind::MessageDelta(d) => d.text,
                other => other.type_name().to_owned(),
            };
            (e.header.seq, e.stream_seq, text)
        })
        .collect()
}

async fn stream_messages(log: &EventLog) -> u64 {
    let mut stream = log.jetstream().get_stream("RUN_EVENTS").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_batch_at_the_right_position_stores_every_event_in_order() {
    let server = NatsServer::start().await.unwrap();
    let log = provisioned(&server).await;
    assert!(log.batches_atomically());
    let run_id = RunId::now_v7();
    let first = log
        .append_events(&deltas(run_id, 1, &["a"]), EventPosition::EMPTY)
        .await
        .unwrap();
    let after = log
        .append_events(&deltas(run_id, 2, &["b", "c", "d", "e"]), first)
        .await
        .unwrap();
    assert_eq!(after.next_seq, 6);
    assert_eq!(log.position(run_id).await.unwrap(), after);
    let events = stored(&log, run_id).await;
    let texts: Vec<_> = events.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c", "d", "e"]);
    for (i, (seq, stream_seq, _)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(*stream_seq, first.last_stream_seq + i as u64);
    }
    assert_eq!(after.last_stream_seq, events[4].1);
}

#[tokio::test]
async fn a_batch_at_a_stale_position_is_rejected_whole() {
    let server = NatsServer::start().await.unwrap();
    let log = provisioned(&server).await;
    let run_id = RunId::now_v7();
    let owner = log
        .append_events(&deltas(run_id, 1, &["a", "b"]), EventPosition::EMPTY)
        .await
        .unwrap();
    // A zombie that still believes the run is empty.
    let err = log
        .append_events(
            &deltas(run_id, 1, &["z1", "z2", "z3"]),
            EventPosition::EMPTY,
        )
        .await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    // A writer one event behind: the batch would fit after "a", but "b" is there.
    let behind = EventPosition {
        next_seq: 2,
        last_stream_seq: owner.last_stream_seq - 1,
    };
    let err = log
        .append_events(&deltas(run_id, 2, &["y1", "y2"]), behind)
        .await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    assert_eq!(
        stream_messages(&log).await,
        2,
        "nothing of a fenced batch is stored"
    );
    assert_eq!(log.position(run_id).await.unwrap(), owner);
    let texts: Vec<_> = stored(&log, run_id)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(texts, ["a", "b"]);
}

#[tokio::test]
async fn a_retried_batch_is_recognised_as_ours_and_not_doubled() {
    let server = NatsServer::start().await.unwrap();
    let log = provisioned(&server).await;
    let run_id = RunId::now_v7();
    let start = log
        .append_events(&deltas(run_id, 1, &["a"]), EventPosition::EMPTY)
        .await
        .unwrap();
    let batch = deltas(run_id, 2, &["b", "c", "d"]);
    let after = log.append_events(&batch, start).await.unwrap();
    // The same batch at the same position, as a retry after a lost commit ack sends it.
    let again = log.append_events(&batch, start).await.unwrap();
    assert_eq!(again, after);
    assert_eq!(stream_messages(&log).await, 4);
    // A retry that grew meanwhile: the stored part is recognised, the rest appended.
    let mut grown = batch.clone();
    grown.extend(deltas(run_id, 5, &["e", "f"]));
    let grown_after = log.append_events(&grown, start).await.unwrap();
    assert_eq!(grown_after.next_seq, 7);
    let texts: Vec<_> = stored(&log, run_id)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(texts, ["a", "b", "c", "d", "e", "f"]);
    // Other events at that position are a real conflict.
    let other = deltas(run_id, 2, &["x", "y", "z"]);
    let err = log.append_events(&other, start).await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    assert_eq!(stream_messages(&log).await, 6);
}

#[tokio::test]
async fn an_oversized_event_in_a_batch_is_named_and_nothing_is_stored() {
    let server = NatsServer::start().await.unwrap();
    let log = provisioned(&server).await;
    let run_id = RunId::now_v7();
    let big = "x".repeat(1_100_000);
    let events = deltas(run_id, 1, &["a", &big, "c"]);
    let err = log.append_events(&events, EventPosition::EMPTY).await;
    assert!(
        matches!(err, Err(EventLogError::TooLarge { seq: 2, .. })),
        "{err:?}"
    );
    assert_eq!(stream_messages(&log).await, 0);
}

#[tokio::test]
async fn without_atomic_batches_events_are_appended_one_at_a_time() {
    let server = NatsServer::start().await.unwrap();
    let log = without_atomic_batches(&server).await;
    assert!(!log.batches_atomically());
    let run_id = RunId::now_v7();
    let batch = deltas(run_id, 1, &["a", "b", "c"]);
    let after = log
        .append_events(&batch, EventPosition::EMPTY)
        .await
        .unwrap();
    assert_eq!(after.next_seq, 4);
    // Retried as a whole: recognised, not doubled.
    let again = log
        .append_events(&batch, EventPosition::EMPTY)
        .await
        .unwrap();
    assert_eq!(again, after);
    let err = log
        .append_events(&deltas(run_id, 1, &["z"]), EventPosition::EMPTY)
        .await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    let texts: Vec<_> = stored(&log, run_id)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
    assert_eq!(stream_messages(&log).await, 3);
}

#[tokio::test]
async fn provisioning_turns_atomic_batches_on_for_an_existing_stream() {
    let server = NatsServer::start().await.unwrap();
    let old = without_atomic_batches(&server).await;
    let run_id = RunId::now_v7();
    old.append_events(&deltas(run_id, 1, &["a"]), EventPosition::EMPTY)
        .await
        .unwrap();
    let log = provisioned(&server).await;
    assert!(log.batches_atomically());
    let mut stream = log.jetstream().get_stream("RUN_EVENTS").await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_atomic_publish);
    // Updated in place: the history is still there.
    assert_eq!(stream_messages(&log).await, 1);
}

#[tokio::test]
async fn the_first_event_is_read_directly_and_only_the_runs_own() {
    let server = NatsServer::start().await.unwrap();
    let log = provisioned(&server).await;
    let (run, other) = (RunId::now_v7(), RunId::now_v7());
    assert!(log.first(run).await.unwrap().is_none(), "no events yet");
    log.append_events(&deltas(other, 1, &["elsewhere"]), EventPosition::EMPTY)
        .await
        .unwrap();
    log.append_events(
        &deltas(run, 1, &["one", "two", "three"]),
        EventPosition::EMPTY,
    )
    .await
    .unwrap();
    let first = log
        .first(run)
        .await
        .unwrap()
        .expect("the run's first event");
    let last = log.last(run).await.unwrap().expect("the run's last event");
    assert_eq!(first.header.run_id, run);
    assert_eq!(first.header.seq, 1);
    assert_eq!(last.header.seq, 3);
    assert!(first.stream_seq < last.stream_seq);
    match first.decode().unwrap().kind {
        RunEventKind::MessageDelta(delta) => assert_eq!(delta.text, "one"),
        other => panic!("unexpected {other:?}"),
    }
}
