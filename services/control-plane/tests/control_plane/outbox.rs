//! The outbox: a run accepted by a control-plane that died before publishing is
//! published by the next one's sweeper.

use crate::common::{Harness, eventually, outbox_len};
use chrono::Utc;
use serde_json::json;
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{RunCommand, RunId};
use switchyard_control_plane::MIGRATOR;
use switchyard_test_support::{NatsServer, TestDb};

/// Adds an outbox entry for `command` (with its `run.queued`).
async fn add_outbox_entry(pool: &sqlx::PgPool, queued: &RunQueued, command: &RunCommand) {
    sqlx::query!(
        "INSERT INTO outbox (run_id, queued_event, command) VALUES ($1, $2, $3)",
        command.run_id,
        serde_json::to_value(queued).unwrap(),
        serde_json::to_value(command).unwrap(),
    )
    .execute(pool)
    .await
    .unwrap();
}

/// What `POST /api/runs/start` commits before it publishes: the run's row and its
/// outbox entry.
async fn accept_without_publishing(db: &TestDb, provider: &str) -> RunId {
    let run_id = RunId::now_v7();
    let created_at = Utc::now();
    let command = RunCommand {
        run_id,
        provider: provider.into(),
        model: None,
        prompt: "left behind".into(),
        app_id: None,
        execution_profile: None,
        provider_options: json!({}),
        credential_env: Vec::new(),
        timeout_ms: None,
        conversation_id: Some(run_id),
        preferred_executor: None,
        created_at,
    };
    let queued = RunQueued {
        provider: provider.into(),
        model: None,
        app_id: None,
    };
    sqlx::query!(
        "INSERT INTO runs (run_id, conversation_id, provider, prompt, status, created_at,
                           updated_at)
         VALUES ($1, $1, $2, $3, 'queued', $4, $4)",
        run_id,
        provider,
        command.prompt,
        created_at,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    add_outbox_entry(&db.pool, &queued, &command).await;
    run_id
}

#[tokio::test]
async fn the_sweeper_publishes_runs_accepted_before_a_crash() {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start().await.unwrap();
    let db = TestDb::create().await.unwrap();
    MIGRATOR.run(&db.pool).await.unwrap();
    let first = accept_without_publishing(&db, "scripted").await;
    let second = accept_without_publishing(&db, "claude-code").await;
    assert_eq!(outbox_len(&db.pool).await, 2);

    let h = Harness::start_on(nats, db, |_| {}).await;
    for (run_id, provider) in [(first, "scripted"), (second, "claude-code")] {
        let command = eventually("the swept command", || async {
            h.last_command(provider).await
        })
        .await;
        let msg_id = command.headers.get("Nats-Msg-Id").map(|v| v.to_string());
        assert_eq!(msg_id, Some(run_id.to_string()));
        let last = h
            .events
            .last(run_id)
            .await
            .unwrap()
            .expect("run.queued appended");
        assert_eq!(
            (last.header.seq, last.header.event_type.as_str()),
            (1, "run.queued")
        );
    }
    eventually("an empty outbox", || async {
        (outbox_len(&h.db.pool).await == 0).then_some(())
    })
    .await;
    // The projector saw run.queued and remembered where the run's history starts.
    let first_stream_seq = eventually("the projected first event", || async {
        sqlx::query_scalar!(
            "SELECT first_event_stream_seq FROM runs WHERE run_id = $1",
            first
        )
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert!(first_stream_seq >= 1);
    // Each command went out once: the stream deduplicated nothing because nothing
    // was sent twice, and holds exactly the two commands.
    let mut stream = h.js.get_stream("RUN_COMMANDS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    h.stop().await;
}

#[tokio::test]
async fn republishing_an_already_published_run_is_harmless() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "once", "provider": "scripted"}))
        .await;
    // Simulate a crash after the publish but before the outbox row was deleted.
    let command: RunCommand =
        serde_json::from_slice(&h.command_of("scripted", run_id).await.payload).unwrap();
    let queued = RunQueued {
        provider: "scripted".into(),
        model: None,
        app_id: None,
    };
    add_outbox_entry(&h.db.pool, &queued, &command).await;
    eventually("the sweeper to process the duplicate", || async {
        (outbox_len(&h.db.pool).await == 0).then_some(())
    })
    .await;
    let mut stream = h.js.get_stream("RUN_COMMANDS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "deduplicated by run id"
    );
    let last = h.events.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, 1, "run.queued was not appended twice");
    h.stop().await;
}
