//! Provisioning against a real nats-server: idempotent, verifying, and loud about drift.
use async_nats::jetstream;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{MessageDelta, RunEventKind};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::nats::{self, Resources};
use switchyard_test_support::NatsServer;

fn delta(text: &str) -> RunEventKind {
    RunEventKind::MessageDelta(MessageDelta {
        message_id: "m".into(),
        text: text.into(),
    })
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    let config = NatsConfig {
        url: server.url(),
        ..Default::default()
    };
    nats::connect(&config, "test").await.unwrap()
}

#[tokio::test]
async fn applying_the_definitions_twice_changes_nothing() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    nats::provision(&js, Resources::ALL).await.unwrap();
    let before = js
        .get_stream("RUN_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .created;
    nats::provision(&js, Resources::ALL).await.unwrap();
    let mut events = js.get_stream("RUN_EVENTS").await.unwrap();
    let info = events.info().await.unwrap();
    assert_eq!(info.created, before, "the stream was recreated");
    assert!(info.config.allow_direct);
    let commands = js.get_stream("RUN_COMMANDS").await.unwrap();
    assert_eq!(
        commands.cached_info().config.retention,
        jetstream::stream::RetentionPolicy::WorkQueue
    );
    commands.consumer_info("executor-manager").await.unwrap();
    js.get_key_value("EXECUTORS").await.unwrap();
}

#[tokio::test]
async fn a_drifted_stream_is_updated_back_to_the_definition() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    let mut drifted: jetstream::stream::Config =
        serde_json::from_str(nats::RUN_EVENTS_STREAM_JSON).unwrap();
    drifted.max_age = std::time::Duration::from_secs(24 * 3600);
    js.create_stream(drifted).await.unwrap();
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut stream = js.get_stream("RUN_EVENTS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.max_age,
        std::time::Duration::from_secs(7 * 24 * 3600)
    );
}

/// `RUN_EVENTS` has a size limit (4 GiB, discard old); a stream provisioned before it
/// had one gets it in place, its events kept.
#[tokio::test]
async fn the_event_stream_is_bounded_and_an_unbounded_one_gets_the_bound() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    let mut unbounded: jetstream::stream::Config =
        serde_json::from_str(nats::RUN_EVENTS_STREAM_JSON).unwrap();
    assert_eq!(unbounded.max_bytes, 4 * 1024 * 1024 * 1024);
    assert_eq!(unbounded.discard, jetstream::stream::DiscardPolicy::Old);
    unbounded.max_bytes = -1;
    js.create_stream(unbounded).await.unwrap();
    let log = EventLog::open(js.clone()).await.unwrap();
    let run_id = uuid::Uuid::now_v7();
    let mut position = EventPosition::EMPTY;
    log.append(run_id, &mut position, delta("kept"))
        .await
        .unwrap();

    let events_only = Resources {
        run_events: true,
        ..Default::default()
    };
    nats::provision(&js, events_only).await.unwrap();
    let mut stream = js.get_stream("RUN_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_bytes, 4 * 1024 * 1024 * 1024);
    assert_eq!(info.state.messages, 1);
    log.append(run_id, &mut position, delta("after"))
        .await
        .unwrap();
    assert_eq!(position.next_seq, 3);
}

/// The size is reserved on the server: one whose JetStream storage is smaller refuses
/// the stream, and provisioning says which stream, which limit and what to change.
#[tokio::test]
async fn a_server_without_room_for_the_event_stream_is_reported() {
    let server = NatsServer::start_with_config("jetstream { max_file_store: 1GB }")
        .await
        .unwrap();
    let js = jetstream::new(connect(&server).await);
    let events_only = Resources {
        run_events: true,
        ..Default::default()
    };
    let error = nats::provision(&js, events_only)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("RUN_EVENTS") && error.contains("max_file_store"),
        "{error}"
    );
}

#[tokio::test]
async fn a_drift_that_cannot_be_updated_is_reported_by_field() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    // Retention cannot be changed in place: the error must name it.
    let mut drifted: jetstream::stream::Config =
        serde_json::from_str(nats::RUN_COMMANDS_STREAM_JSON).unwrap();
    drifted.retention = jetstream::stream::RetentionPolicy::Limits;
    js.create_stream(drifted).await.unwrap();
    let err = nats::provision(
        &js,
        Resources {
            run_commands: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RUN_COMMANDS") && text.contains("retention"),
        "{text}"
    );
}

#[tokio::test]
async fn appends_are_fenced_and_retries_are_deduplicated() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let log = EventLog::open(js).await.unwrap();
    let run_id = uuid::Uuid::now_v7();
    let delta = |t: &str| {
        RunEventKind::MessageDelta(MessageDelta {
            message_id: "m".into(),
            text: t.into(),
        })
    };
    let mut owner = EventPosition::EMPTY;
    log.append(run_id, &mut owner, delta("a")).await.unwrap();
    let stale = EventPosition::EMPTY;
    let mut zombie = stale;
    // A writer with a stale position is rejected and the history is not forked.
    let err = log.append(run_id, &mut zombie, delta("zombie")).await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    log.append(run_id, &mut owner, delta("b")).await.unwrap();
    let last = log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, 2);
    assert_eq!(log.position(run_id).await.unwrap(), owner);
    assert_eq!(
        log.position(uuid::Uuid::now_v7()).await.unwrap(),
        EventPosition::EMPTY
    );
}

#[tokio::test]
async fn an_old_nats_server_is_refused_with_advice() {
    // The machine's own server on 4222 is 2.9 on this kind of machine; skip when absent
    // or when it is new enough, since then there is nothing to refuse.
    let config = NatsConfig {
        url: "nats://127.0.0.1:4222".into(),
        connect_timeout_ms: 1000,
        ..Default::default()
    };
    let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await else {
        return;
    };
    if nats::version_at_least(&client.server_info().version, nats::MIN_SERVER_VERSION) {
        return;
    }
    let err = nats::connect(&config, "test").await.unwrap_err();
    assert!(err.to_string().contains("2.10"), "{err}");
    assert!(err.to_string().contains("dev-deps"), "{err}");
}

#[tokio::test]
async fn a_retried_append_whose_ack_was_lost_is_recognised_as_ours() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(connect(&server).await);
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let log = EventLog::open(js.clone()).await.unwrap();
    let run_id = uuid::Uuid::now_v7();
    let event = switchyard_contracts::RunEvent::new(
        run_id,
        1,
        RunEventKind::MessageDelta(MessageDelta {
            message_id: "m".into(),
            text: "a".into(),
        }),
    );
    let after = log
        .append_event(&event, EventPosition::EMPTY)
        .await
        .unwrap();
    // The same bytes at the same position, as a retry after a lost ack sends them: the
    // server says "wrong last sequence", and the log recognises its own event.
    let again = log
        .append_event(&event, EventPosition::EMPTY)
        .await
        .unwrap();
    assert_eq!(again, after);
    // A different event at that position is a real conflict.
    let other = switchyard_contracts::RunEvent::new(
        run_id,
        1,
        RunEventKind::MessageDelta(MessageDelta {
            message_id: "m".into(),
            text: "b".into(),
        }),
    );
    let err = log.append_event(&other, EventPosition::EMPTY).await;
    assert!(matches!(err, Err(EventLogError::Fenced { .. })), "{err:?}");
    assert_eq!(log.position(run_id).await.unwrap(), after);
}
