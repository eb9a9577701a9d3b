//! SSE resume: any cursor, any time, the rest of the run exactly once.

use crate::harness::{assert_gapless, events};
use crate::shared::shared;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cursor_of_a_finished_run_resumes_with_exactly_the_rest() {
    let h = shared().await;
    let run_id = h
        .start_scripted(
            json!([{"message": {"text": "a b c d e f", "chunks": 6}}, {"filler": {"count": 10}}]),
        )
        .await;
    let frames = h.read_stream(&run_id, None).await;
    let all = events(&frames);
    assert_gapless(&all);
    for (i, frame) in frames.iter().enumerate() {
        let cursor = frame.id.as_deref().unwrap();
        if i + 1 == frames.len() {
            // Past the end: 204 so that EventSource stops reconnecting.
            let response = h.open_stream(&run_id, Some(cursor)).await;
            assert_eq!(response.status().as_u16(), 204);
            continue;
        }
        let rest = events(&h.read_stream(&run_id, Some(cursor)).await);
        assert_eq!(
            rest,
            all[i + 1..],
            "resume from event {} of {}",
            i + 1,
            all.len()
        );
    }
    // Last-Event-ID works the same as ?cursor=.
    let response = h
        .http
        .get(h.url(&format!("/api/runs/{run_id}/stream")))
        .bearer_auth(crate::harness::TOKEN)
        .header("Last-Event-ID", frames[2].id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let rest: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(switchyard::sse_client::frames(response)).await;
    let rest: Vec<_> = rest.into_iter().filter_map(|f| f.unwrap().json()).collect();
    assert_eq!(rest, all[3..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_during_a_live_run_loses_and_repeats_nothing() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "one two", "chunks": 2}},
            {"humanLoop": {"prompt": "continue?", "kind": "permission"}},
            {"message": {"text": "three four", "chunks": 2}}
        ]))
        .await;
    // First connection: read until the run waits for a human, then disconnect.
    let first = h
        .read_until(&run_id, None, |e| e["type"] == "human_loop.requested")
        .await;
    let cursor = first.last().unwrap().id.clone().unwrap();
    // The run goes on while the client is away.
    let (status, _) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200);
    let rest = h.read_stream(&run_id, Some(&cursor)).await;
    let mut stitched = events(&first);
    stitched.extend(events(&rest));
    assert_gapless(&stitched);
    assert_eq!(stitched, events(&h.read_stream(&run_id, None).await));
    assert_eq!(stitched.last().unwrap()["data"]["status"], "succeeded");
}
