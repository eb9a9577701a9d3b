//! What an agent can reach from inside its run. A hostile model makes a real agent CLI
//! run shell commands that hunt for the executor's own secrets — the environment of every
//! ancestor process and of every process it can see, its own environment, the
//! executor's config file and the credentials env file — and none of those secrets may
//! come back, neither in the run's events nor in what the model is sent.

use crate::crash::Crash;
use crate::provider_support::{self, ANTHROPIC_SECRET, OPENAI_SECRET};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use switchyard_test_support::fake_model::{FakeModel, run_marker};

/// Writes `text` to `path` readable by its owner only, like an operator's config.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn installed_clis() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.local/providers/node_modules/.bin")
        .canonicalize()
        .expect("the pinned CLIs: run scripts/install-providers.sh")
}

/// A shell command that prints every secret the agent could get at. Ancestors' and
/// other processes' environments are cut down to the lines that name a variable of
/// ours, so that the output stays within what the CLI passes on whole.
fn hunt(executor_pid: u32, files: &[&Path]) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!(
        "echo HUNT_BEGIN; p=$$; while [ \"$p\" -gt 1 ]; do echo \"pid $p\"; \
         tr '\\0' '\\n' < /proc/$p/environ | grep -E 'SWITCHYARD|DATABASE|TOKEN|PASS|KEY'; \
         p=$(cut -d' ' -f4 /proc/$p/stat); done; \
         tr '\\0' '\\n' < /proc/{executor_pid}/environ | grep -E 'SWITCHYARD|DATABASE|TOKEN|PASS|KEY'; \
         cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -E 'SWITCHYARD|DATABASE' | sort -u; \
         env; cat {} 2>&1; echo HUNT_END",
        files.join(" ")
    )
}

#[tokio::test]
async fn an_agent_cannot_read_the_executor_secrets() {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let admin_token = format!("admin-token-{suffix}");
    let database_password = format!("dbpass{}", &suffix[..16]);
    let nats_password = format!("natspass{}", &suffix[16..]);
    let file_secret = format!("file-secret-{suffix}");

    let fake = FakeModel::start().await.unwrap();
    // Only the files' own modes keep the agent out, as under /etc/switchyard.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let env_file = dir.path().join("provider-env");
    write_private(
        &env_file,
        &format!("OPENAI_API_KEY={OPENAI_SECRET}\nANTHROPIC_API_KEY={ANTHROPIC_SECRET}\n"),
    );
    let toml = dir.path().join("executor.toml");
    write_private(
        &toml,
        &format!(
            "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
             credentials_from_environment = false\n\
             [executor.liveness]\nhandshake_ms = 60000\nfirst_output_ms = 60000\ninactivity_ms = 60000\n\
             [gateway]\nadmin_token = {file_secret:?}\n",
            installed_clis().display().to_string(),
            env_file.display().to_string(),
        ),
    );
    let crash = Crash::start(&[
        ("SWITCHYARD_CONFIG", toml.display().to_string()),
        ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", admin_token.clone()),
        (
            "SWITCHYARD_DATABASE__URL",
            format!("postgres://switchyard:{database_password}@127.0.0.1:5432/switchyard"),
        ),
        ("SWITCHYARD_NATS__USER", "executor".to_owned()),
        ("SWITCHYARD_NATS__PASSWORD", nats_password.clone()),
    ])
    .await;
    let executor_pid = crash.executor.as_ref().unwrap().pid();

    let app_id = provider_support::register(&crash.harness, &fake, "claude-code").await;
    let command = hunt(executor_pid, &[&toml, &env_file]);
    let run_id = provider_support::start(
        &crash.harness,
        json!({"appId": app_id, "prompt": format!("Please {}", run_marker(&command))}),
    )
    .await;
    let events = provider_support::follow(&crash.harness, &run_id, "approve").await;
    let events_text = serde_json::to_string(&events).unwrap();
    let sent_to_model: String = fake
        .model_requests()
        .iter()
        .map(|r| r.body_text())
        .collect::<Vec<_>>()
        .join("\n");
    for (place, text) in [
        ("the run's events", &events_text),
        ("the model's requests", &sent_to_model),
    ] {
        assert!(
            text.contains("HUNT_BEGIN") && text.contains("HUNT_END"),
            "the hunt ran to its end and its output reached {place}: {text}"
        );
        for (what, secret) in [
            ("the admin token", admin_token.as_str()),
            ("the database password", database_password.as_str()),
            ("the NATS password", nats_password.as_str()),
            (
                "a secret of the executor's config file",
                file_secret.as_str(),
            ),
            (
                "another provider's key from the credentials file",
                OPENAI_SECRET,
            ),
        ] {
            assert!(
                !text.contains(secret),
                "{what} reached {place}; the hunt's output: {}",
                events
                    .iter()
                    .filter(|e| e["type"] == "tool.completed" || e["type"] == "tool.output")
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let completed = provider_support::completed(&events);
    assert_eq!(completed["status"], "succeeded", "{completed}");
    crash.stop().await;
}
