//! `GET /api/runs/{id}/stream`: SSE from JetStream, resumable, shared per run.

use crate::common::{Frame, Harness, SseReader, completed, delta, error_code, queued};
use axum::http::StatusCode;
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_platform::sse::{Cursor, RunTag};

fn seqs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(Frame::seq).collect()
}

#[tokio::test]
async fn a_finished_run_streams_every_event_in_order_and_ends() {
    let h = Harness::start().await;
    let (run_id, stream_seqs) = h.finished_run(5).await;
    let response = h.stream(run_id, None).await;
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let frames = SseReader::new(response).rest().await;

    assert_eq!(seqs(&frames), (1..=7).collect::<Vec<_>>());
    let types: Vec<_> = frames.iter().map(|f| f.event.clone().unwrap()).collect();
    assert_eq!(types.first().unwrap(), "run.queued");
    assert_eq!(types.last().unwrap(), "run.completed");
    assert!(types[1..6].iter().all(|t| t == "message.delta"));
    for (frame, stream_seq) in frames.iter().zip(&stream_seqs) {
        let json = frame.json();
        assert_eq!(json["runId"], run_id.to_string());
        assert_eq!(json["type"], *frame.event.as_ref().unwrap());
        let cursor = Cursor::decode(frame.id.as_deref().unwrap(), &RunTag::of(&run_id)).unwrap();
        assert_eq!((cursor.seq, cursor.stream_seq), (frame.seq(), *stream_seq));
    }
}

#[tokio::test]
async fn every_cursor_resumes_with_exactly_the_remaining_events() {
    let h = Harness::start().await;
    let (run_id, _) = h.finished_run(4).await;
    let all = SseReader::new(h.stream(run_id, None).await).rest().await;
    assert_eq!(all.len(), 6);

    for (i, frame) in all.iter().enumerate() {
        let id = frame.id.as_deref().unwrap();
        let expected: Vec<u64> = all[i + 1..].iter().map(Frame::seq).collect();
        let via_query = h.stream(run_id, Some(id)).await;
        let via_header = h.stream_with_last_event_id(run_id, id).await;
        if expected.is_empty() {
            // Resuming at the terminal event: 204, so EventSource stops reconnecting.
            for response in [via_query, via_header] {
                assert_eq!(response.status(), StatusCode::NO_CONTENT);
                assert!(response.bytes().await.unwrap().is_empty());
            }
            continue;
        }
        let rest = SseReader::new(via_query).rest().await;
        assert_eq!(seqs(&rest), expected, "?cursor= after seq {}", frame.seq());
        assert_eq!(rest, all[i + 1..], "frames are identical on replay");
        let rest = SseReader::new(via_header).rest().await;
        assert_eq!(
            seqs(&rest),
            expected,
            "Last-Event-ID after seq {}",
            frame.seq()
        );
    }

    // The query wins over Last-Event-ID.
    let response = h
        .get(&format!(
            "/api/runs/{run_id}/stream?cursor={}",
            all[3].id.as_deref().unwrap()
        ))
        .header("last-event-id", all[0].id.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(seqs(&SseReader::new(response).rest().await), [5, 6]);
}

/// Run A's cursors on run B: refused, never a resume of B from A's position (which
/// would skip B's first events on a live run, or answer 204 on a finished one).
#[tokio::test]
async fn another_runs_cursor_is_invalid_on_a_live_and_a_finished_run() {
    let h = Harness::start().await;
    let (a, _) = h.finished_run(30).await;
    let a_frames = SseReader::new(h.stream(a, None).await).rest().await;
    let a_cursor = a_frames[29].id.clone().unwrap();
    let a_terminal = a_frames.last().unwrap().id.clone().unwrap();

    let live = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(live, &mut position, vec![queued(), delta(0), delta(1)])
        .await;
    let (finished, _) = h.finished_run(1).await;
    h.control_plane
        .runs
        .lock()
        .unwrap()
        .insert(finished, "succeeded".to_owned());

    for run in [live, finished] {
        for cursor in [&a_cursor, &a_terminal] {
            let response = h.stream(run, Some(cursor)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{run} ?cursor=");
            assert_eq!(error_code(response).await, "invalid_cursor");
            let response = h.stream_with_last_event_id(run, cursor).await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{run} Last-Event-ID"
            );
            assert_eq!(error_code(response).await, "invalid_cursor");
        }
    }
    // The run's own cursors still resume it.
    let own = SseReader::new(h.stream(live, None).await)
        .next()
        .await
        .unwrap();
    let mut resumed = SseReader::new(h.stream(live, own.id.as_deref()).await);
    assert_eq!(resumed.next().await.unwrap().seq(), 2);
}

/// Cursors of the earlier, untagged format (`c1:<seq>:<stream seq>`) resume their own
/// run; one naming another run's event is refused.
#[tokio::test]
async fn untagged_cursors_resume_only_their_own_run() {
    use base64::Engine;
    let legacy = |seq: u64, stream_seq: u64| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c1:{seq}:{stream_seq}"))
    };
    let h = Harness::start().await;
    let (a, a_stream_seqs) = h.finished_run(3).await;
    let (b, b_stream_seqs) = h.finished_run(3).await;

    let rest = SseReader::new(h.stream(a, Some(&legacy(2, a_stream_seqs[1]))).await)
        .rest()
        .await;
    assert_eq!(seqs(&rest), [3, 4, 5]);
    let response = h.stream(a, Some(&legacy(5, a_stream_seqs[4]))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for cursor in [
        legacy(2, a_stream_seqs[1]),
        legacy(2, b_stream_seqs[2]),
        legacy(2, 1_000_000),
    ] {
        let response = h.stream_with_last_event_id(b, &cursor).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{cursor}");
        assert_eq!(error_code(response).await, "invalid_cursor");
    }
    assert_eq!(b_stream_seqs.len(), 5);
}

#[tokio::test]
async fn every_stream_starts_with_the_configured_retry() {
    let h = Harness::start_with(|gateway| gateway.sse_retry_ms = 2500).await;
    let (run_id, _) = h.finished_run(2).await;
    let mut fresh = SseReader::new(h.stream(run_id, None).await);
    let first = fresh.next().await.unwrap();
    assert_eq!(
        fresh.retry,
        Some((2500, 0)),
        "retry: before the first event"
    );
    assert_eq!(first.seq(), 1);
    let mut resumed = SseReader::new(h.stream(run_id, first.id.as_deref()).await);
    assert_eq!(resumed.next().await.unwrap().seq(), 2);
    assert_eq!(resumed.retry, Some((2500, 0)));

    let default = Harness::start().await;
    let (run_id, _) = default.finished_run(0).await;
    let mut reader = SseReader::new(default.stream(run_id, None).await);
    reader.rest().await;
    assert_eq!(reader.retry, Some((switchyard_platform::sse::RETRY_MS, 0)));
    assert_eq!(switchyard_platform::sse::RETRY_MS, 1000);
}

#[tokio::test]
async fn a_live_run_is_streamed_as_events_arrive_and_can_be_joined_midway() {
    let h = Harness::start().await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;

    // Connected before the run has any event.
    let mut early = SseReader::new(h.stream(run_id, None).await);
    h.append(run_id, &mut position, vec![queued()]).await;
    assert_eq!(early.next().await.unwrap().seq(), 1);
    h.append(run_id, &mut position, vec![delta(0)]).await;
    let second = early.next().await.unwrap();
    assert_eq!(second.seq(), 2);
    // Quiet run: keep-alive comments flow.
    early.wait_for_comment().await;

    let mut joiner = SseReader::new(h.stream(run_id, second.id.as_deref()).await);
    h.append(run_id, &mut position, vec![delta(1), delta(2)])
        .await;
    assert_eq!(early.next().await.unwrap().seq(), 3);
    assert_eq!(joiner.next().await.unwrap().seq(), 3);
    h.append(run_id, &mut position, vec![completed()]).await;

    assert_eq!(seqs(&early.rest().await), [4, 5]);
    assert_eq!(seqs(&joiner.rest().await), [4, 5]);
}

#[tokio::test]
async fn many_clients_of_one_run_share_one_jetstream_consumer() {
    let h = Harness::start().await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued()]).await;

    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = SseReader::new(h.stream(run_id, None).await);
        assert_eq!(client.next().await.unwrap().seq(), 1);
        clients.push(client);
    }
    assert_eq!(h.consumer_count().await, 1, "one tail for 50 clients");

    h.append(run_id, &mut position, vec![delta(0), delta(1), completed()])
        .await;
    for client in &mut clients {
        assert_eq!(seqs(&client.rest().await), [2, 3, 4]);
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let h = Harness::start().await;
    let (run_id, _) = h.finished_run(1).await;

    for bad in ["not-a-uuid", "123", "%ff%fe"] {
        let response = h
            .get(&format!("/api/runs/{bad}/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(response).await, "invalid_run_id");
    }
    for bad in ["garbage", "YzE6MDow", &"A".repeat(100)] {
        let response = h.stream(run_id, Some(bad)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(response).await, "invalid_cursor");
        let response = h.stream_with_last_event_id(run_id, bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(response).await, "invalid_cursor");
    }

    let unknown = uuid::Uuid::now_v7();
    let response = h.stream(unknown, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "run_not_found");
}

#[tokio::test]
async fn deleted_history_is_announced_with_a_reset_event() {
    let h = Harness::start().await;
    let (run_id, stream_seqs) = h.finished_run(3).await;
    let all = SseReader::new(h.stream(run_id, None).await).rest().await;
    assert_eq!(all.len(), 5);

    let stream = h.js.get_stream("RUN_EVENTS").await.unwrap();
    for seq in &stream_seqs[..2] {
        assert!(stream.delete_message(*seq).await.unwrap());
    }
    let reset_data = |frame: &Frame| {
        assert_eq!(frame.event.as_deref(), Some("stream.reset"));
        assert_eq!(frame.id, None);
        let json = frame.json();
        (
            json["expectedSeq"].as_u64().unwrap(),
            json["firstAvailableSeq"].as_u64().unwrap(),
        )
    };

    // Without a cursor the client expects seq 1, but 3 is the first one left.
    let frames = SseReader::new(h.stream(run_id, None).await).rest().await;
    assert_eq!(reset_data(&frames[0]), (1, 3));
    assert_eq!(seqs(&frames[1..]), [3, 4, 5]);

    // A cursor into the deleted part: told that seq 2 is gone.
    let frames = SseReader::new(h.stream(run_id, all[0].id.as_deref()).await)
        .rest()
        .await;
    assert_eq!(reset_data(&frames[0]), (2, 3));
    assert_eq!(seqs(&frames[1..]), [3, 4, 5]);

    // A cursor right before the first kept event: nothing missing, no reset.
    let frames = SseReader::new(h.stream(run_id, all[1].id.as_deref()).await)
        .rest()
        .await;
    assert_eq!(seqs(&frames), [3, 4, 5]);
}

#[tokio::test]
async fn a_finished_run_without_stored_events_is_gone() {
    let h = Harness::start().await;
    let (run_id, stream_seqs) = h.finished_run(0).await;
    h.control_plane
        .runs
        .lock()
        .unwrap()
        .insert(run_id, "succeeded".to_owned());
    let stream = h.js.get_stream("RUN_EVENTS").await.unwrap();
    for seq in stream_seqs {
        stream.delete_message(seq).await.unwrap();
    }
    let response = h.stream(run_id, None).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(error_code(response).await, "history_expired");
}

#[tokio::test]
async fn streams_per_token_are_limited_and_released_when_clients_leave() {
    let h = Harness::start_with(|g| g.max_streams_per_token = 2).await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued()]).await;

    let mut first = SseReader::new(h.stream(run_id, None).await);
    let mut second = SseReader::new(h.stream(run_id, None).await);
    assert_eq!(first.next().await.unwrap().seq(), 1);
    assert_eq!(second.next().await.unwrap().seq(), 1);
    let third = h.stream(run_id, None).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(third).await, "too_many_streams");

    // A stream that ended frees its slot.
    h.append(run_id, &mut position, vec![completed()]).await;
    assert_eq!(seqs(&first.rest().await), [2]);
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        let response = h.stream(run_id, None).await;
        if response.status() == StatusCode::OK {
            again = Some(SseReader::new(response));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = again.expect("the finished stream's slot was not released");
    assert_eq!(seqs(&again.rest().await), [1, 2]);
}

#[tokio::test]
async fn opening_streams_too_fast_is_refused_per_token() {
    let h = Harness::start_with(|g| g.stream_opens_per_minute = 2).await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued(), completed()])
        .await;
    for _ in 0..2 {
        let response = h.stream(run_id, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(seqs(&SseReader::new(response).rest().await), [1, 2]);
    }
    // Both earlier streams have ended: it is the opening rate, not the open count.
    let third = h.stream(run_id, None).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(third).await, "stream_rate_limited");
}

#[tokio::test]
async fn a_nats_restart_does_not_lose_or_repeat_events() {
    let mut h = Harness::start().await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued(), delta(0)])
        .await;
    let mut client = SseReader::new(h.stream(run_id, None).await);
    assert_eq!(client.next().await.unwrap().seq(), 1);
    assert_eq!(client.next().await.unwrap().seq(), 2);

    h.nats.restart().await.unwrap();
    h.append(run_id, &mut position, vec![delta(1), delta(2), completed()])
        .await;
    // The feed re-opens its tail as soon as the gateway has reconnected, not when the
    // ordered consumer would have noticed its lost heartbeats (about 15 s).
    let rest = tokio::time::timeout(Duration::from_secs(10), client.rest())
        .await
        .expect("the feed re-opened its tail on the reconnect");
    assert_eq!(seqs(&rest), [3, 4, 5]);
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let mut h = Harness::start().await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued()]).await;
    let mut client = SseReader::new(h.stream(run_id, None).await);
    assert_eq!(client.next().await.unwrap().seq(), 1);

    let handle = h.gateway.take().unwrap();
    h.shutdown.cancel();
    assert_eq!(client.rest().await, Vec::<Frame>::new());
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the gateway did not stop with a stream open")
        .unwrap();
}

#[tokio::test]
async fn a_slow_client_does_not_hold_up_the_others() {
    let h = Harness::start().await;
    let run_id = h.new_run();
    let mut position = EventPosition::EMPTY;
    h.append(run_id, &mut position, vec![queued()]).await;
    let mut slow = SseReader::new(h.stream(run_id, None).await);
    assert_eq!(slow.next().await.unwrap().seq(), 1);
    let mut fast = SseReader::new(h.stream(run_id, None).await);

    // ~13 MB: more than the socket buffers between the gateway and a client that
    // stopped reading, so the gateway must leave that client behind and carry on.
    let big = "x".repeat(32 * 1024);
    let kinds: Vec<_> = (0..400)
        .map(|i| {
            switchyard_contracts::RunEventKind::MessageDelta(
                switchyard_contracts::event::MessageDelta {
                    message_id: format!("m{i}"),
                    text: big.clone(),
                },
            )
        })
        .chain([completed()])
        .collect();
    h.append(run_id, &mut position, kinds).await;

    let fast_frames = fast.rest().await;
    assert_eq!(seqs(&fast_frames), (1..=402).collect::<Vec<_>>());
    // The slow client still gets everything, exactly once, when it reads again.
    assert_eq!(seqs(&slow.rest().await), (2..=402).collect::<Vec<_>>());
}
