//! `GET /api/providers`: the registry built from the presence records in `EXECUTORS`.

use crate::common::Harness;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_contracts::presence::{ExecutorPresence, ProviderAvailability};
use switchyard_contracts::subjects;
use switchyard_platform::nats::{self as platform_nats, Resources};

fn presence(id: &str, age_secs: i64, providers: Vec<ProviderAvailability>) -> ExecutorPresence {
    let heartbeat_at = chrono::Utc::now() - chrono::Duration::seconds(age_secs);
    ExecutorPresence {
        executor_id: id.parse().unwrap(),
        version: "test".into(),
        capacity: 2,
        active: 0,
        draining: false,
        providers,
        started_at: heartbeat_at,
        heartbeat_at,
    }
}

fn available(
    name: &str,
    installed: bool,
    version: Option<&str>,
    credentials: Option<bool>,
) -> ProviderAvailability {
    ProviderAvailability {
        name: name.into(),
        installed,
        version: version.map(str::to_owned),
        problem: (!installed).then(|| format!("{name} cannot start here")),
        credentials_configured: credentials,
        credential_variables: Vec::new(),
    }
}

fn provider<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
}

#[tokio::test]
async fn providers_are_listed_with_the_live_executors_that_have_them() {
    let h = Harness::start().await;

    // No executor ever announced itself: the bucket does not even exist.
    let (status, list) = h.get("/api/providers").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<_> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["codex-app-server", "claude-code", "opencode", "scripted"]
    );
    for p in list["providers"].as_array().unwrap() {
        assert_eq!(p["installed"], false, "{p}");
        assert_eq!(p["executors"], json!([]), "{p}");
        assert!(p["credentialsConfigured"].is_null(), "{p}");
    }

    platform_nats::provision(
        &h.js,
        Resources {
            executors_kv: true,
            ..Resources::default()
        },
    )
    .await
    .unwrap();
    let kv =
        h.js.get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap();
    let records = [
        presence(
            "exec-a",
            0,
            vec![
                // Announced under the alias: counts for the canonical name.
                available("codex-cli", true, Some("0.169.0"), Some(true)),
                available("claude-code", false, None, Some(true)),
                available("scripted", true, None, None),
            ],
        ),
        presence(
            "exec-b",
            0,
            vec![
                available("codex-app-server", true, None, Some(false)),
                available("scripted", true, Some("1"), Some(true)),
                available("opencode", true, Some("1.18.33"), Some(false)),
            ],
        ),
        // Its heartbeat is older than the bucket's TTL: a dead executor.
        presence(
            "exec-stale",
            600,
            vec![available("claude-code", true, Some("2.1.197"), Some(true))],
        ),
    ];
    for record in &records {
        kv.put(
            &record.executor_id,
            serde_json::to_vec(record).unwrap().into(),
        )
        .await
        .unwrap();
    }
    // Garbage next to them: not JSON, and a record under another executor's key.
    kv.put("junk", "{not json".into()).await.unwrap();
    let impostor = presence(
        "exec-a",
        0,
        vec![available("claude-code", true, None, Some(true))],
    );
    kv.put("exec-z", serde_json::to_vec(&impostor).unwrap().into())
        .await
        .unwrap();

    let (status, list) = h.get("/api/providers").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        provider(&list, "codex-app-server"),
        &json!({
            "name": "codex-app-server",
            "aliases": ["codex-cli"],
            "installed": true,
            "executors": [
                {"executorId": "exec-a", "version": "0.169.0"},
                {"executorId": "exec-b", "version": null}
            ],
            "unavailable": [],
            "credentialsConfigured": true
        })
    );
    assert_eq!(
        provider(&list, "claude-code"),
        &json!({
            "name": "claude-code",
            "aliases": [],
            "installed": false,
            "executors": [],
            // A live executor that offers it but cannot start it says why.
            "unavailable": [
                {"executorId": "exec-a", "problem": "claude-code cannot start here"}
            ],
            "credentialsConfigured": null
        })
    );
    let opencode = provider(&list, "opencode");
    assert_eq!(opencode["installed"], true);
    assert_eq!(
        opencode["executors"],
        json!([{"executorId": "exec-b", "version": "1.18.33"}])
    );
    assert_eq!(opencode["credentialsConfigured"], false);
    let scripted = provider(&list, "scripted");
    assert_eq!(scripted["executors"].as_array().unwrap().len(), 2);
    assert_eq!(scripted["credentialsConfigured"], true);

    // An executor that withdraws its record is gone from the registry at once.
    kv.delete("exec-b").await.unwrap();
    let (_, list) = h.get("/api/providers").await;
    assert_eq!(provider(&list, "opencode")["installed"], false);
    assert_eq!(
        provider(&list, "codex-app-server")["executors"],
        json!([{"executorId": "exec-a", "version": "0.169.0"}])
    );
    h.stop().await;
}
