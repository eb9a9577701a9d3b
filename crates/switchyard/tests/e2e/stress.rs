//! `switchyard stress` against the real platform: a batch whose option sets cycle through
//! every failure the scripted provider can produce, a refused start and a hung run under
//! a short client timeout is counted exactly; every failed sample has its raw stream and
//! run record; a stream cut under the client is `stream_failed` with transport `reset`;
//! exit codes 0 and 20.

use crate::cli::describe;
use crate::harness::{DEADLINE, Harness, TOKEN};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard::cli::stress::FAILURE_REASONS;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The client timeout of the mixed batch: far longer than a scripted run takes, even on
/// a loaded machine, and far shorter than the hung run's sleep.
const CLIENT_TIMEOUT_MS: u64 = 25_000;
const HUNG_SLEEP_MS: u64 = 600_000;

/// `switchyard stress …` against `url`, with none of the developer's settings.
fn command(home: &Path, url: &str, args: &[&str]) -> tokio::process::Command {
    let mut all = vec!["stress"];
    all.extend(args);
    all.extend(["--url", url, "--token", TOKEN]);
    let mut command = tokio::process::Command::from(crate::cli::command(home, &all));
    command
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn stress(home: &Path, url: &str, args: &[&str], bound: Duration) -> Output {
    tokio::time::timeout(bound, command(home, url, args).output())
        .await
        .expect("switchyard stress finished in time")
        .expect("switchyard runs")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

async fn register(h: &Harness, app: &str) {
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": app, "runtimeDefaults": {"provider": "scripted", "timeoutMs": 300000}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

/// The terminal status a scripted `fail` with `reason` ends with.
fn status_of(reason: &str) -> &'static str {
    match reason {
        "timeout" => "timed_out",
        "stopped" => "stopped",
        _ => "failed",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_every_failure_class_and_a_hung_run_is_counted_exactly_with_evidence() {
    let h = Harness::start(1, 1).await;
    register(&h, "stress-mix").await;
    let home = tempfile::tempdir().unwrap();

    // The option sets, each with the class its samples must get.
    let mut sets: Vec<(Value, String)> = vec![
        (
            json!({"script": [{"message": {"text": "all good", "chunks": 2}}]}),
            "succeeded".into(),
        ),
        (
            json!({"script": [{"message": {"text": "about to hang"}}, {"sleepMs": HUNG_SLEEP_MS}]}),
            "timeout".into(),
        ),
        // A negative duration: the control-plane refuses the start with 400.
        (json!({"timeoutMs": -1}), "start_refused".into()),
    ];
    for reason in FAILURE_REASONS {
        let reason = reason.as_str();
        sets.push((
            json!({"script": [
                {"message": {"text": format!("before {reason}")}},
                {"fail": {"reason": reason, "detail": format!("scripted {reason}")}}
            ]}),
            reason.to_owned(),
        ));
    }
    let options = home.path().join("sets.json");
    std::fs::write(
        &options,
        serde_json::to_string(&sets.iter().map(|(o, _)| o).collect::<Vec<_>>()).unwrap(),
    )
    .unwrap();
    // One sample more than sets: the first set (succeeded) runs twice.
    let runs = sets.len() + 1;
    let expected_class = |n: usize| sets[(n - 1) % sets.len()].1.clone();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for n in 1..=runs {
        *expected.entry(expected_class(n)).or_default() += 1;
    }
    let failed = runs as u64 - expected["succeeded"];

    let out = home.path().join("mix");
    let result = stress(
        home.path(),
        &h.base,
        &[
            "--app",
            "stress-mix",
            "--provider",
            "scripted",
            "--runs",
            &runs.to_string(),
            "--concurrency",
            "6",
            "--timeout-ms",
            &CLIENT_TIMEOUT_MS.to_string(),
            "--options-json",
            &format!("@{}", options.display()),
            "--out",
            out.to_str().unwrap(),
        ],
        DEADLINE * 3,
    )
    .await;
    assert_eq!(result.status.code(), Some(20), "{}", describe(&result));

    let report = read_json(&out.join("report.json"));
    let context = serde_json::to_string_pretty(&report).unwrap();
    // Every class is listed; each count is exactly what the sets make.
    let classes = report["classes"].as_object().unwrap();
    for (class, count) in classes {
        assert_eq!(
            count.as_u64(),
            Some(expected.get(class).copied().unwrap_or(0)),
            "class {class}: {context}"
        );
    }
    for class in expected.keys() {
        assert!(classes.contains_key(class), "{class} is not listed");
    }
    assert_eq!(expected["timeout"], 2, "the platform's and the client's");
    assert_eq!(report["completed"], runs);
    assert_eq!(report["failed"].as_u64(), Some(failed));
    assert_eq!(report["interrupted"], false);
    assert_eq!(report["transports"]["client_timeout"], 1, "{context}");
    assert_eq!(report["transports"]["not_opened"], 1, "{context}");
    assert_eq!(
        report["transports"]["completed"].as_u64(),
        Some(runs as u64 - 2),
        "{context}"
    );

    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), runs);
    for (i, row) in samples.iter().enumerate() {
        let n = i + 1;
        let class = expected_class(n);
        assert_eq!(row["n"], n);
        assert_eq!(row["optionSet"], (n - 1) % sets.len());
        assert_eq!(row["class"], class.as_str(), "sample {n}: {row}");
        let dir = out.join("samples").join(n.to_string());
        if class == "succeeded" {
            assert_eq!(row["transport"], "completed");
            assert!(row["terminalMs"].as_u64().is_some(), "{row}");
            assert!(!dir.exists(), "a succeeded sample keeps no evidence");
            continue;
        }
        assert_eq!(row["evidence"], format!("samples/{n}"), "{row}");
        let raw = std::fs::read_to_string(dir.join("sse.raw.txt")).unwrap();
        assert!(!raw.trim().is_empty(), "sample {n}: empty sse.raw.txt");
        let record = read_json(&dir.join("run.json"));
        match class.as_str() {
            "start_refused" => {
                assert_eq!(row["startHttpStatus"], 400, "{row}");
                assert_eq!(row["startError"]["code"], "invalid_duration", "{row}");
                assert_eq!(row["transport"], "not_opened");
                assert!(row["runId"].is_null());
                assert_eq!(record["startHttpStatus"], 400, "{record}");
                assert_eq!(record["startAnswer"]["error"]["code"], "invalid_duration");
                // Nothing arrived: one comment line that says so.
                assert_eq!(raw.lines().count(), 1, "{raw}");
                assert!(raw.starts_with(": switchyard stress: "), "{raw}");
                assert!(raw.contains("invalid_duration"), "{raw}");
            }
            "timeout" if row["transport"] == "client_timeout" => {
                assert_eq!(
                    row["optionSet"], 1,
                    "only the hung run times out client-side"
                );
                assert_eq!(row["startHttpStatus"], 202);
                assert!(row["terminalMs"].is_null(), "{row}");
                assert!(row["firstEventMs"].as_u64().is_some(), "{row}");
                assert_eq!(row["stoppedByClient"], true, "{row}");
                assert!(raw.contains("about to hang"), "{raw}");
                assert!(!raw.contains("run.completed"), "{raw}");
                assert_eq!(record["runId"], row["runId"]);
                assert_eq!(record["status"], "stopped", "{record}");
                assert_eq!(row["runStatus"], "stopped");
            }
            reason => {
                assert_eq!(row["transport"], "completed", "{row}");
                assert_eq!(row["startHttpStatus"], 202);
                assert_eq!(row["reason"], reason);
                assert_eq!(row["status"], status_of(reason));
                assert_eq!(row["detail"], format!("scripted {reason}"));
                assert!(row["terminalMs"].as_u64() >= row["firstEventMs"].as_u64());
                assert!(raw.contains("run.completed"), "{raw}");
                assert!(raw.contains(&format!("\"reason\":\"{reason}\"")), "{raw}");
                assert!(raw.contains(&format!("before {reason}")), "{raw}");
                assert_eq!(record["runId"], row["runId"]);
                assert_eq!(record["failureReason"], reason, "{record}");
                assert_eq!(record["status"], status_of(reason), "{record}");
            }
        }
    }

    // Percentiles over the samples that have the measurement.
    let latency = &report["latencyMs"];
    let of =
        |field: &str| -> Vec<u64> { samples.iter().filter_map(|s| s[field].as_u64()).collect() };
    for (name, field, count) in [
        ("firstEvent", "firstEventMs", runs - 1),
        ("terminal", "terminalMs", runs - 2),
        ("startCall", "startMs", runs),
    ] {
        let values = of(field);
        assert_eq!(values.len(), count, "{field}");
        let p = &latency[name];
        assert_eq!(p["count"], count, "{name}: {p}");
        assert_eq!(p["max"].as_u64(), values.iter().max().copied(), "{name}");
        let (p50, p90, p99) = (
            p["p50"].as_u64().unwrap(),
            p["p90"].as_u64().unwrap(),
            p["p99"].as_u64().unwrap(),
        );
        assert!(
            p50 <= p90 && p90 <= p99 && p99 <= p["max"].as_u64().unwrap(),
            "{p}"
        );
        assert!(values.contains(&p50), "a percentile is one of the values");
    }

    // The verdict: every failure class with its count, in report.json, report.md and on
    // standard output.
    let verdict = report["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!("FAIL: {failed} of {runs} failed (")),
        "{verdict}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.lines().any(|l| l == verdict), "{md}");
    assert!(String::from_utf8_lossy(&result.stdout).contains(verdict));
    for (class, count) in &expected {
        assert!(
            md.contains(&format!("| {class} | {count} |")),
            "report.md lacks {class}: {md}"
        );
        if class != "succeeded" {
            assert!(verdict.contains(&format!("{count} {class}")), "{verdict}");
        }
    }
    // Not a terminal: plain progress lines, one per failed sample.
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("stress: sample "))
            .count() as u64,
        failed,
        "{stderr}"
    );

    // A batch that all succeeds: exit 0, a PASS verdict, no evidence.
    let pass = home.path().join("pass");
    let args = [
        "--app",
        "stress-mix",
        "--runs",
        "3",
        "--concurrency",
        "3",
        "--option",
        r#"script=[{"message":{"text":"fine"}}]"#,
        "--out",
        pass.to_str().unwrap(),
    ];
    let result = stress(home.path(), &h.base, &args, DEADLINE).await;
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    let report = read_json(&pass.join("report.json"));
    assert_eq!(report["verdict"], "PASS: 3/3 succeeded");
    assert_eq!(report["classes"]["succeeded"], 3);
    assert_eq!(
        std::fs::read_dir(pass.join("samples")).unwrap().count(),
        0,
        "no evidence for succeeded samples"
    );
    // The same directory again: refused, the first report stays.
    let again = stress(home.path(), &h.base, &args, DEADLINE).await;
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a stress report"),
        "{}",
        describe(&again)
    );
    h.shutdown().await;
}

/// A TCP proxy that keeps a copy of what it relays to the client, and can close every
/// connection open at the moment (cleanly: the client sees the stream end early).
struct SnoopingProxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    cut: tokio::sync::watch::Sender<u32>,
    task: tokio::task::JoinHandle<()>,
}

impl SnoopingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (cut, cut_rx) = tokio::sync::watch::channel(0u32);
        let copy = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let seen = copy.clone();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = inbound.into_split();
                    let (mut server_read, mut server_write) = outbound.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = match server_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            seen.lock().unwrap().extend_from_slice(&buffer[..n]);
                            if client_write.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        () = down => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        SnoopingProxy {
            addr,
            seen,
            cut,
            task,
        }
    }

    /// Whether a whole SSE frame with `text` in it (up to its blank line) was relayed.
    fn has_relayed_frame(&self, text: &str) -> bool {
        let seen = String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned();
        seen.find(text)
            .is_some_and(|at| seen[at..].contains("\n\n"))
    }
}

impl Drop for SnoopingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_under_the_client_is_stream_failed_with_the_bytes_before_the_cut() {
    let h = Harness::start(1, 1).await;
    register(&h, "stress-cut").await;
    let home = tempfile::tempdir().unwrap();
    let proxy = SnoopingProxy::start(h.gateway.handle.http_addr.unwrap()).await;
    let url = format!("http://{}", proxy.addr);
    let out = home.path().join("cut");
    // The run waits at an approval nobody gives, so its stream stays open until the cut.
    let script = json!([
        {"message": {"text": "before the cut"}},
        {"humanLoop": {"prompt": "go on?", "kind": "permission"}}
    ]);
    let script_option = format!("script={script}");
    let child = command(
        home.path(),
        &url,
        &[
            "--app",
            "stress-cut",
            "--runs",
            "1",
            "--option",
            &script_option,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // Cut once the client has been sent the approval request.
    tokio::time::timeout(DEADLINE, async {
        while !proxy.has_relayed_frame("\"type\":\"human_loop.requested\"") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the stream reached the approval");
    proxy.cut.send_modify(|n| *n += 1);

    let result = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("stress ended after the cut")
        .unwrap();
    assert_eq!(result.status.code(), Some(20), "{}", describe(&result));
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["classes"]["stream_failed"], 1, "{report}");
    assert_eq!(report["transports"]["reset"], 1, "{report}");
    assert_eq!(report["verdict"], "FAIL: 1 of 1 failed (1 stream_failed)");
    let row = &report["samples"][0];
    assert_eq!(row["class"], "stream_failed");
    assert_eq!(row["transport"], "reset");
    assert_eq!(row["streamHttpStatus"], 200);
    assert!(row["terminalMs"].is_null(), "{row}");
    assert!(row["transportDetail"].as_str().is_some(), "{row}");
    let raw = std::fs::read_to_string(out.join("samples/1/sse.raw.txt")).unwrap();
    assert!(raw.contains("before the cut"), "{raw}");
    assert!(raw.contains("human_loop.requested"), "{raw}");
    // The run itself goes on: its record, caught up with the stream, says it waits for
    // the approval.
    let record = read_json(&out.join("samples/1/run.json"));
    assert_eq!(record["runId"], row["runId"]);
    assert!(
        record["lastEventSeq"].as_u64() >= row["lastSeq"].as_u64(),
        "{record} {row}"
    );
    assert_eq!(record["status"], "waiting_for_human", "{record}");

    let run_id = row["runId"].as_str().unwrap();
    let (status, body) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_starts_no_new_sample_lets_the_running_one_finish_and_exits_21() {
    let h = Harness::start(1, 1).await;
    register(&h, "stress-int").await;
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("int");
    // Each run waits at an approval, so the first is still running when Ctrl-C comes.
    let script = json!([
        {"humanLoop": {"prompt": "go on?", "kind": "permission"}},
        {"message": {"text": "approved"}}
    ]);
    let script_option = format!("script={script}");
    let mut child = command(
        home.path(),
        &h.base,
        &[
            "--app",
            "stress-int",
            "--runs",
            "3",
            "--concurrency",
            "1",
            "--option",
            &script_option,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id().unwrap();

    let waiting = tokio::time::timeout(DEADLINE, async {
        loop {
            let (_, list) = h.get("/api/runs?appId=stress-int").await;
            if let Some(run) = list["runs"]
                .as_array()
                .and_then(|runs| runs.iter().find(|r| r["status"] == "waiting_for_human"))
            {
                return run["runId"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first sample's run waits for its approval");
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Answer the approval only once the command has taken the Ctrl-C in.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    tokio::time::timeout(DEADLINE, async {
        use tokio::io::AsyncBufReadExt as _;
        while !seen.contains("Ctrl-C: no new samples start") {
            assert!(
                stderr.read_line(&mut seen).await.unwrap() > 0,
                "stderr ended: {seen}"
            );
        }
    })
    .await
    .expect("the command noted the Ctrl-C");
    let (status, body) = h
        .post(
            &format!("/api/runs/{waiting}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let result = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("stress ended after its running sample")
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(21),
        "{}\n{seen}",
        describe(&result)
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["completed"], 1);
    assert_eq!(report["classes"]["succeeded"], 1);
    assert_eq!(
        report["verdict"],
        "INCOMPLETE: interrupted after 1 of 3 samples; 1 succeeded, 0 failed"
    );
    assert_eq!(report["samples"][0]["runId"], waiting.as_str());
    // No second run was started.
    let (_, list) = h.get("/api/runs?appId=stress-int").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
    h.shutdown().await;
}
