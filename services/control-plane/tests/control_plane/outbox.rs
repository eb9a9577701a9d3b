//! The outbox: a run accepted by a control-plane that died before publishing is
//! published by the next one's sweeper.

use crate::common::{Harness, eventually};
use chrono::Utc;
use serde_json::json;
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{RunCommand, RunId};
use switchyard_control_plane::{MIGRATOR, store};
use switchyard_test_support::{NatsServer, TestDb};

/// What `POST /api/runs/start` commits before it publishes.
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
    store::runs::insert_queued(
        &db.pool,
        &store::runs::NewRun {
            run_id,
            conversation_id: run_id,
            app_id: None,
            execution_profile: None,
            provider: provider.into(),
            model: None,
            prompt: command.prompt.clone(),
            provider_options: json!({}),
            credential_env: Vec::new(),
            timeout_ms: None,
            created_at,
            created_by: None,
            idempotency: None,
        },
        &queued,
        &command,
    )
    .await
    .unwrap();
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
    assert_eq!(store::outbox::count(&db.pool).await.unwrap(), 2);

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
        (store::outbox::count(&h.db.pool).await.unwrap() == 0).then_some(())
    })
    .await;
    // The projector saw run.queued and remembered where the run's history starts.
    let first_stream_seq = eventually("the projected first event", || async {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT first_event_stream_seq FROM runs WHERE run_id = $1",
        )
        .bind(first)
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
    let mut conn = h.db.pool.acquire().await.unwrap();
    store::outbox::insert(&mut conn, run_id, &queued, &command)
        .await
        .unwrap();
    drop(conn);
    eventually("the sweeper to process the duplicate", || async {
        (store::outbox::count(&h.db.pool).await.unwrap() == 0).then_some(())
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
