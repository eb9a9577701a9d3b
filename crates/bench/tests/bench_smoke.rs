//! CI smoke test of `switchyard-bench --quick`: the harness runs end to end against a
//! real nats-server and Postgres and reports every figure, each with a positive value
//! or an explicit reason it was not measured. Benchmarks are not timed tests: nothing
//! here asserts on a figure's size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use switchyard_bench::{self as bench, BenchOptions};

fn check_entries(entries: &[Value], kind: &str) {
    for entry in entries {
        let name = entry["name"].as_str().expect("a name");
        match (entry["value"].as_f64(), entry["not_measured"].as_str()) {
            (Some(value), None) => assert!(
                value > 0.0 && value.is_finite(),
                "{kind} {name} is not a positive value: {entry}"
            ),
            (None, Some(reason)) => {
                assert!(!reason.trim().is_empty(), "{kind} {name}: empty reason");
                // An environment limit is a reason; a broken harness is not.
                assert!(
                    !reason.starts_with("the measurement failed"),
                    "{kind} {name} failed: {reason}"
                );
            }
            _ => panic!("{kind} {name} has neither a value nor a reason: {entry}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_benchmark_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let options = BenchOptions {
        quick: true,
        json_path: json_path.clone(),
        only: None,
        client_exe: Some(env!("CARGO_BIN_EXE_switchyard-bench").into()),
    };
    let report = bench::run(&options)
        .await
        .expect("the quick benchmark runs");
    assert!(
        report
            .table()
            .contains("| figure | value | baseline | ratio | goal | met |")
    );

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap())
        .expect("the JSON file parses");
    assert_eq!(json["mode"], "quick");
    let figures = json["figures"].as_array().expect("figures");
    let names: Vec<&str> = figures.iter().filter_map(|f| f["name"].as_str()).collect();
    let expected: Vec<&str> = bench::FIGURES.iter().map(|f| f.name).collect();
    assert_eq!(names, expected, "every figure once, in table order");
    check_entries(figures, "figure");

    let baselines = json["baselines"].as_array().expect("baselines");
    for name in [
        "jetstream_publish_pipelined",
        "jetstream_publish_sequential",
        "jetstream_publish_consume_p50",
        "postgres_single_row_commits",
        "jetstream_ordered_replay",
        "axum_sse_memory_per_connection",
        "jetstream_event_path",
        "raw_run_path",
        "raw_latency_path_p50_ms",
        "raw_latency_path_p99_ms",
    ] {
        assert!(
            baselines.iter().any(|b| b["name"] == name),
            "baseline {name} is missing"
        );
    }
    check_entries(baselines, "baseline");

    // A figure with a baseline carries the ratio of the two.
    for figure in figures {
        if let (Some(value), Some(baseline)) = (
            figure["value"].as_f64(),
            figure["baseline"]["value"].as_f64(),
        ) {
            let ratio = figure["ratio"]
                .as_f64()
                .expect("a ratio next to a baseline");
            assert!((ratio - value / baseline).abs() <= 1e-9 * ratio.abs().max(1.0));
        }
    }

    // The figures a raw path bounds name it, with its value; quick mode judges no goal,
    // so not whether the bound reaches it either.
    for (figure_name, bound_name) in [
        ("runs_per_sec", "raw_run_path"),
        ("first_event_latency_p50_ms", "raw_latency_path_p50_ms"),
        ("sse_events_per_sec", "jetstream_event_path"),
    ] {
        let figure = figures
            .iter()
            .find(|f| f["name"] == figure_name)
            .expect("figure");
        let baseline = baselines
            .iter()
            .find(|b| b["name"] == bound_name)
            .expect("baseline");
        assert_eq!(figure["bound"]["name"], bound_name, "{figure}");
        assert_eq!(figure["bound"]["value"], baseline["value"], "{figure}");
        assert!(figure["bound"]["meets_goal"].is_null(), "{figure}");
    }
}

#[tokio::test]
async fn an_unknown_only_name_is_refused_before_anything_starts() {
    let options = BenchOptions {
        quick: true,
        json_path: std::env::temp_dir().join("never-written.json"),
        only: Some(vec!["runs".to_owned(), "warp_speed".to_owned()]),
        client_exe: None,
    };
    let error = bench::run(&options).await.unwrap_err().to_string();
    assert!(error.contains("warp_speed"), "{error}");
    assert!(
        error.contains("executor_memory"),
        "lists the groups: {error}"
    );
}
