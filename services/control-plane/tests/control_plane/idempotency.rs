//! `Idempotency-Key` on `POST /api/runs/start`: a retry of an accepted start (the
//! client never saw the `202`) gets the same answer instead of a second run; the key is
//! the principal's, for 24 hours.

use crate::common::{Harness, error_code, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_contracts::RunEventKind;
use switchyard_contracts::RunId;
use switchyard_contracts::event::RunCompleted;

/// A start as `principal` (the gateway's headers) with `key`; status, replay header and
/// body.
async fn start(
    h: &Harness,
    principal: &str,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = h
        .http
        .post(format!("{}/api/runs/start", h.base))
        .header("x-switchyard-role", "developer")
        .header("x-switchyard-principal", principal)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (status, replayed, serde_json::from_str(&text).unwrap())
}

async fn runs_of(h: &Harness, principal: &str) -> i64 {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM runs WHERE created_by = $1"#,
        principal
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap()
}

fn scripted(prompt: &str) -> Value {
    json!({"provider": "scripted", "prompt": prompt})
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_same_answer_and_no_second_run() {
    let h = Harness::start().await;
    let body = scripted("once");
    let (status, replayed, first) = start(&h, "alice", Some("order-17"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(replayed, None);
    let run_id = h.published(&first).await;
    // Whatever happened to the run since, the retry answers what the first start did.
    let mut position = h.events.position(run_id).await.unwrap();
    h.events
        .append(
            run_id,
            &mut position,
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        )
        .await
        .unwrap();
    let (status, replayed, again) = start(&h, "alice", Some("order-17"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again, first);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(runs_of(&h, "alice").await, 1);

    // The same key with another body is a client bug, not a retry.
    let (status, _, refused) = start(&h, "alice", Some("order-17"), &scripted("other")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(error_code(&refused), "idempotency_key_reused");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&run_id.to_string()),
        "{refused}"
    );
    // Keys are per principal; no key means no deduplication.
    let (status, _, bob) = start(&h, "bob", Some("order-17"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{bob}");
    assert_ne!(bob["runId"], first["runId"]);
    for _ in 0..2 {
        let (status, _, _) = start(&h, "alice", None, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(runs_of(&h, "alice").await, 3);

    // After the window the key is free again: a new run.
    sqlx::query!(
        "UPDATE runs SET created_at = created_at - interval '25 hours' WHERE run_id = $1",
        run_id
    )
    .execute(&h.db.pool)
    .await
    .unwrap();
    let (status, replayed, fresh) = start(&h, "alice", Some("order-17"), &scripted("other")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fresh}");
    assert_eq!(replayed, None);
    assert_ne!(fresh["runId"], first["runId"]);
    let (_, replayed, again) = start(&h, "alice", Some("order-17"), &scripted("other")).await;
    assert_eq!(again["runId"], fresh["runId"]);
    assert_eq!(replayed.as_deref(), Some("true"));

    // Keys that cannot be one.
    for key in ["", &"k".repeat(256), "with space"] {
        let response = h
            .http
            .post(format!("{}/api/runs/start", h.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{key:?}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(error_code(&json), "invalid_request");
    }
    h.stop().await;
}

/// Retries racing the first attempt (its transaction still open) all get its answer:
/// one run, whoever commits first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_with_one_key_make_one_run() {
    let h = Harness::start().await;
    let body = scripted("raced");
    let attempts = (0..8).map(|_| start(&h, "carol", Some("burst-1"), &body));
    let answers = futures::future::join_all(attempts).await;
    let run_ids: Vec<&Value> = answers
        .iter()
        .map(|(status, _, json)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{json}");
            &json["runId"]
        })
        .collect();
    assert!(run_ids.iter().all(|id| *id == run_ids[0]), "{run_ids:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|(_, replayed, _)| replayed.is_none())
            .count(),
        1,
        "exactly one attempt started the run"
    );
    assert_eq!(runs_of(&h, "carol").await, 1);
    let run_id: RunId = run_ids[0].as_str().unwrap().parse().unwrap();
    h.published(&answers[0].2).await;
    assert_eq!(
        h.events.position(run_id).await.unwrap().next_seq,
        2,
        "one run.queued"
    );
    h.stop().await;
}

/// A follow-up retried after it was accepted gets its answer back, not
/// `conversation_busy` (its own run is what keeps the conversation busy).
#[tokio::test]
async fn a_retried_follow_up_is_not_refused_as_busy() {
    let h = Harness::start().await;
    let (_, _, first) = start(&h, "dave", None, &scripted("one")).await;
    let first_id = h.published(&first).await;
    let mut position = h.events.position(first_id).await.unwrap();
    h.events
        .append(
            first_id,
            &mut position,
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        )
        .await
        .unwrap();
    let follow_up = json!({"parentRunId": first_id, "prompt": "two"});
    let (status, _, accepted) = start(&h, "dave", Some("f-1"), &follow_up).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, replayed, again) = start(&h, "dave", Some("f-1"), &follow_up).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again, accepted);
    assert_eq!(replayed.as_deref(), Some("true"));
    // Without the key it is a new follow-up, refused while the first one runs.
    let (status, _, busy) = start(&h, "dave", None, &follow_up).await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(error_code(&busy), "conversation_busy");
    eventually("the follow-up published", || async {
        h.events
            .last(accepted["runId"].as_str().unwrap().parse().unwrap())
            .await
            .ok()
            .flatten()
    })
    .await;
    h.stop().await;
}
