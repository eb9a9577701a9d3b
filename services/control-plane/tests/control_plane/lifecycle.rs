//! Start-up and recovery: creating the database, two control-planes migrating at once,
//! and the projection surviving a NATS restart.

use crate::common::{Harness, config, gateway_client};
use serde_json::json;
use sqlx::Connection as _;
use switchyard_contracts::RunEventKind;
use switchyard_contracts::event::RunCompleted;
use switchyard_platform::events::EventLog;
use switchyard_test_support::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn two_control_planes_start_at_once_on_a_database_that_does_not_exist_yet() {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start().await.unwrap();
    let db = TestDb::create().await.unwrap();
    let fresh_name = format!("{}_created", db.name());
    let fresh_url = db.url.replace(db.name(), &fresh_name);
    let shutdown = CancellationToken::new();
    let mut one = config(&nats, &db);
    one.database.url = fresh_url.clone().into();
    let two = one.clone();
    let (a, b) = tokio::join!(
        switchyard_control_plane::start(one, shutdown.clone()),
        switchyard_control_plane::start(two, shutdown.clone()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    let mut conn = sqlx::PgConnection::connect(&fresh_url).await.unwrap();
    let applied = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM _sqlx_migrations"#)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        applied,
        switchyard_control_plane::MIGRATOR.iter().count() as i64
    );
    let _ = conn.close().await;

    // Both serve the same data.
    let http = gateway_client();
    let response = http
        .post(format!("http://{}/api/runs/start", a.http_addr.unwrap()))
        .json(&json!({"prompt": "p", "provider": "scripted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let run: serde_json::Value = response.json().await.unwrap();
    let response = http
        .get(format!(
            "http://{}/api/runs/{}",
            b.http_addr.unwrap(),
            run["runId"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    shutdown.cancel();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{fresh_name}" WITH (FORCE)"#
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_projection_resumes_after_a_nats_restart() {
    let mut h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    h.nats.restart().await.unwrap();

    // A fresh connection, as an executor would have after the restart.
    let client = async_nats::connect(h.nats.url()).await.unwrap();
    let events = EventLog::open(async_nats::jetstream::new(client))
        .await
        .unwrap();
    let mut position = events.position(run_id).await.unwrap();
    events
        .append(
            run_id,
            &mut position,
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        )
        .await
        .unwrap();
    h.run_until(run_id, "succeeded after the restart", |v| {
        v["status"] == "succeeded"
    })
    .await;
    // And new runs are accepted and published again.
    let second = h
        .start_run(json!({"prompt": "q", "provider": "scripted"}))
        .await;
    let last = crate::common::eventually("run.queued of the second run", || async {
        events.last(second).await.ok().flatten()
    })
    .await;
    assert_eq!(last.header.event_type, "run.queued");
    h.stop().await;
}
