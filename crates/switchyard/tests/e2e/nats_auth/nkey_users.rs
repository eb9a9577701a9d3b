//! nkey users: the checked-in config with every `user` + `password` pair replaced by the
//! public key of a key pair generated here; each service connects with its seed
//! (`nats.nkey_seed`). The executors' users are per executor: one executor's identity is
//! refused another's dispatch subject and presence key.

use super::platform::{
    Credential, USERS, checked_in_config, connect_watching_errors, next_error, start_platform,
    violations,
};
use nkeys::KeyPair;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_platform::config::{self, NatsConfig};
use switchyard_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

/// One generated user key pair per user of the checked-in config.
fn key_pairs() -> HashMap<&'static str, KeyPair> {
    USERS
        .iter()
        .map(|user| (*user, KeyPair::new_user()))
        .collect()
}

fn seed(pair: &KeyPair) -> String {
    pair.seed().expect("a generated pair has a seed")
}

/// The checked-in config with `nkey: <public key>` in place of each user's name and
/// password: what an nkey deployment of that file looks like.
fn nkey_config(pairs: &HashMap<&str, KeyPair>) -> String {
    let text = checked_in_config();
    let mut out = String::new();
    let mut lines = text.lines();
    let mut replaced = 0;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(user) = trimmed.strip_prefix("user: ") {
            let password = lines.next().unwrap_or_default();
            assert!(
                password.trim_start().starts_with("password: "),
                "user {user} is not followed by its password: {password:?}"
            );
            let pair = pairs
                .get(user.trim())
                .unwrap_or_else(|| panic!("no key pair for user {user}"));
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}nkey: {}\n", pair.public_key()));
            replaced += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(replaced, pairs.len(), "every user of the config has a key");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_connect_with_nkey_seeds_and_an_executor_only_reaches_its_own_subjects() {
    let pairs = key_pairs();
    let credentials: HashMap<&str, Credential> = pairs
        .iter()
        .map(|(user, pair)| (*user, Credential::Seed(seed(pair))))
        .collect();
    let mut platform = start_platform(&nkey_config(&pairs), &credentials, &["executor-1"]).await;

    // A run to the end through executor-1, every service on its nkey.
    let (status, body) = platform
        .post(
            "/api/runs/start",
            json!({"provider": "scripted", "prompt": "nkeys", "providerOptions": {"script": [
                {"message": {"text": "signed in with an nkey", "chunks": 2}},
            ]}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let events = platform
        .read_until(&run_id, |e| e["type"] == "run.completed")
        .await;
    assert_eq!(
        events.last().unwrap()["data"]["status"],
        "succeeded",
        "{events:?}"
    );
    let dispatched = events
        .iter()
        .find(|e| e["type"] == "run.dispatched")
        .expect("run.dispatched");
    assert_eq!(dispatched["data"]["executorId"], "executor-1");
    platform.wait_status(&run_id, "succeeded").await;
    // A graceful stop too: the executor drains and deletes its own presence key.
    platform.stop_services().await;
    assert_eq!(
        violations(&platform.nats),
        Vec::<String>::new(),
        "the documented permissions must be sufficient with nkeys too"
    );

    // executor-1's identity may not take executor-2's dispatches nor write its presence.
    let (executor_1, mut errors) = connect_watching_errors(
        &platform.nats,
        async_nats::ConnectOptions::with_nkey(seed(&pairs["executor-1"])),
    )
    .await;
    let _stolen = executor_1
        .subscribe("executors.executor-2.dispatch")
        .await
        .unwrap();
    executor_1.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains(
            "Permissions Violation for Subscription to \"executors.executor-2.dispatch\""
        ),
        "{error}"
    );
    executor_1
        .publish("$KV.EXECUTORS.executor-2", "{}".into())
        .await
        .unwrap();
    executor_1.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains("Permissions Violation for Publish to \"$KV.EXECUTORS.executor-2\""),
        "{error}"
    );
    // The server log names the refusals with executor-1's key.
    let executor_1_key = pairs["executor-1"].public_key();
    let logged = violations(&platform.nats);
    for subject in ["executors.executor-2.dispatch", "$KV.EXECUTORS.executor-2"] {
        assert!(
            logged
                .iter()
                .any(|l| l.contains(subject) && l.contains(&executor_1_key)),
            "{subject}: {logged:?}"
        );
    }

    // The same subject is executor-2's own: the refusal is about the identity.
    let (executor_2, mut errors_2) = connect_watching_errors(
        &platform.nats,
        async_nats::ConnectOptions::with_nkey(seed(&pairs["executor-2"])),
    )
    .await;
    let mut own = executor_2
        .subscribe("executors.executor-2.dispatch")
        .await
        .unwrap();
    executor_2.flush().await.unwrap();
    let manager = async_nats::ConnectOptions::with_nkey(seed(&pairs["executor-manager"]))
        .connect(platform.nats.url())
        .await
        .unwrap();
    manager
        .publish("executors.executor-2.dispatch", "ping".into())
        .await
        .unwrap();
    manager.flush().await.unwrap();
    let delivered =
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut own))
            .await
            .expect("executor-2 gets its own dispatch subject")
            .expect("subscription open");
    assert_eq!(&delivered.payload[..], b"ping");
    assert!(
        errors_2.try_recv().is_err(),
        "executor-2 was refused nothing"
    );

    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_malformed_nkey_seed_fails_at_connect_with_a_clear_error() {
    switchyard_test_support::init_tracing();
    let pairs = key_pairs();
    let nats = NatsServer::start_with_config(&nkey_config(&pairs))
        .await
        .expect("nats-server with nkey users");

    // A well-formed seed the server does not know: refused at connect, not retried forever.
    let stranger = seed(&KeyPair::new_user());
    let env: HashMap<String, String> = [
        ("SWITCHYARD_NATS__URL", nats.url()),
        ("SWITCHYARD_NATS__NKEY_SEED", stranger.clone()),
        (
            "SWITCHYARD_EXECUTOR_MANAGER__LISTEN",
            "127.0.0.1:0".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let em_config: switchyard_executor_manager::Config =
        config::load_from(None, env).expect("executor-manager config");
    let started = tokio::time::timeout(
        Duration::from_secs(20),
        switchyard_executor_manager::start(em_config, CancellationToken::new()),
    )
    .await
    .expect("a refused seed fails fast, it does not hang");
    let error = format!(
        "{:#}",
        started.err().expect("an unknown key must not connect")
    );
    assert!(error.contains("authorization violation"), "{error}");
    assert!(
        error.contains(&nats.url()),
        "the error names the server: {error}"
    );
    assert!(!error.contains(&stranger), "the seed is secret: {error}");

    // Not a seed at all: said so before any connection attempt, without echoing it.
    for bad in [
        "SUNOTASEEDATALL".to_owned(),
        pairs["gateway"].public_key(),
        KeyPair::new_account().seed().unwrap(),
    ] {
        let config = NatsConfig {
            url: nats.url(),
            nkey_seed: Some(bad.clone().into()),
            ..NatsConfig::default()
        };
        let error = tokio::time::timeout(
            Duration::from_secs(20),
            switchyard_platform::nats::connect(&config, "bad-seed"),
        )
        .await
        .expect("a malformed seed fails fast")
        .expect_err("a malformed seed must not connect")
        .to_string();
        assert!(
            error.contains("nats.nkey_seed is not a valid nkey seed"),
            "{error}"
        );
        assert!(!error.contains(&bad), "the seed is secret: {error}");
    }
}
