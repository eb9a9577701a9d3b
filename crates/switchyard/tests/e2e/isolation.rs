//! What an agent can reach from inside its run. A hostile model makes a real agent CLI
//! run shell commands that hunt for the executor's own secrets — the environment of every
//! ancestor process and of every process it can see, its own environment, the
//! executor's config file and the credentials env file — and none of those secrets may
//! come back, neither in the run's events nor in what the model is sent.

use crate::crash::{Crash, running_as_root};
use crate::provider_support::{self, ANTHROPIC_SECRET, OPENAI_SECRET, env_lines};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use switchyard_test_support::fake_model::{FakeModel, run_marker};

/// Writes `text` to `path` readable by its owner only (`owner`, else the test's user),
/// like an operator's config.
fn write_private(path: &Path, text: &str, owner: Option<(u32, u32)>) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// Secret values of the executor's own, and the files an executor with them reads.
struct Secrets {
    admin_token: String,
    database_password: String,
    nats_password: String,
    file_secret: String,
    dir: tempfile::TempDir,
    toml: PathBuf,
    env_file: PathBuf,
}

impl Secrets {
    /// Fresh values; the config file and the credentials env file (mode 0600, owned by
    /// `owner`) in a directory anyone may enter, as under /etc/switchyard.
    fn new(owner: Option<(u32, u32)>, fake: &FakeModel) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let env_file = dir.path().join("provider-env");
        write_private(
            &env_file,
            &env_lines(&[
                ("OPENAI_API_KEY", OPENAI_SECRET),
                ("ANTHROPIC_API_KEY", ANTHROPIC_SECRET),
            ]),
            owner,
        );
        let file_secret = format!("file-secret-{suffix}");
        let toml = dir.path().join("executor.toml");
        write_private(
            &toml,
            &format!(
                "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
                 credentials_from_environment = false\n\
                 [executor.liveness]\nhandshake_ms = 60000\nfirst_output_ms = 60000\ninactivity_ms = 60000\n\
                 [executor.credentials.claude-code]\nenv = [\"ANTHROPIC_API_KEY\"]\nbase_url = {:?}\n\
                 [gateway]\nadmin_token = {file_secret:?}\n",
                installed_clis().display().to_string(),
                env_file.display().to_string(),
                fake.url(),
            ),
            owner,
        );
        Self {
            admin_token: format!("admin-token-{suffix}"),
            database_password: format!("dbpass{}", &suffix[..16]),
            nats_password: format!("natspass{}", &suffix[16..]),
            file_secret,
            dir,
            toml,
            env_file,
        }
    }

    /// The executor's configuration: the file, and secrets in its environment.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SWITCHYARD_CONFIG", self.toml.display().to_string()),
            ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", self.admin_token.clone()),
            (
                "SWITCHYARD_DATABASE__URL",
                format!(
                    "postgres://switchyard:{}@127.0.0.1:5432/switchyard",
                    self.database_password
                ),
            ),
            ("SWITCHYARD_NATS__USER", "executor".to_owned()),
            ("SWITCHYARD_NATS__PASSWORD", self.nats_password.clone()),
        ]
    }
}

/// Runs the hunt (reading `files` too) in a real claude run of `crash`'s executor and
/// returns the run's events and everything the model was sent, once the run is over;
/// checks that the hunt ran to its end.
async fn hunt_in_a_run(
    crash: &Crash,
    fake: &FakeModel,
    files: &[&Path],
) -> (Vec<serde_json::Value>, String) {
    let executor_pid = crash.executor.as_ref().unwrap().pid();
    let app_id = provider_support::register(&crash.harness, "claude-code").await;
    let command = hunt(executor_pid, files);
    let run_id = provider_support::start(
        &crash.harness,
        json!({"appId": app_id, "prompt": format!("Please {}", run_marker(&command))}),
    )
    .await;
    let events = provider_support::follow(&crash.harness, &run_id, "approve").await;
    let sent_to_model: String = fake
        .model_requests()
        .iter()
        .map(|r| r.body_text())
        .collect::<Vec<_>>()
        .join("\n");
    let events_text = serde_json::to_string(&events).unwrap();
    for (place, text) in [
        ("the run's events", &events_text),
        ("the model's requests", &sent_to_model),
    ] {
        assert!(
            text.contains("HUNT_BEGIN") && text.contains("HUNT_END"),
            "the hunt ran to its end and its output reached {place}: {text}"
        );
    }
    let completed = provider_support::completed(&events);
    assert_eq!(completed["status"], "succeeded", "{completed}");
    (events, sent_to_model)
}

/// Fails naming the secret and where it got to, showing the hunt's output.
fn assert_none_leaked(events: &[serde_json::Value], sent_to_model: &str, secrets: &[(&str, &str)]) {
    let events_text = serde_json::to_string(events).unwrap();
    for (place, text) in [
        ("the run's events", &events_text),
        ("the model's requests", &sent_to_model.to_owned()),
    ] {
        for (what, secret) in secrets {
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
    let files: String = files
        .iter()
        .map(|f| format!("cat {} 2>&1; ", f.display()))
        .collect();
    format!(
        "echo HUNT_BEGIN; p=$$; while [ \"$p\" -gt 1 ]; do echo \"pid $p\"; \
         tr '\\0' '\\n' < /proc/$p/environ | grep -E 'SWITCHYARD|DATABASE|TOKEN|PASS|KEY'; \
         p=$(cut -d' ' -f4 /proc/$p/stat); done; \
         tr '\\0' '\\n' < /proc/{executor_pid}/environ | grep -E 'SWITCHYARD|DATABASE|TOKEN|PASS|KEY'; \
         cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -E 'SWITCHYARD|DATABASE' | sort -u; \
         env; {files}echo HUNT_END"
    )
}

/// An executor running as root: the agent runs as the provider user and gets none of
/// the executor's secrets, from its processes or its files.
#[tokio::test]
async fn an_agent_cannot_read_the_executor_secrets() {
    let fake = FakeModel::start().await.unwrap();
    let secrets = Secrets::new(None, &fake);
    let crash = Crash::start(&secrets.settings()).await;
    let (events, sent_to_model) =
        hunt_in_a_run(&crash, &fake, &[&secrets.toml, &secrets.env_file]).await;
    assert_none_leaked(
        &events,
        &sent_to_model,
        &[
            ("the admin token", &secrets.admin_token),
            ("the database password", &secrets.database_password),
            ("the NATS password", &secrets.nats_password),
            (
                "a secret of the executor's config file",
                &secrets.file_secret,
            ),
            (
                "another provider's key from the credentials file",
                OPENAI_SECRET,
            ),
        ],
    );
    drop(secrets.dir);
    crash.stop().await;
}

/// An agent running as the executor's own user (an executor that is not root; as root,
/// the test starts the executor as an unprivileged user to get there) can read the
/// files that user can, but not the environment of the executor or of its run host:
/// both are not dumpable.
#[tokio::test]
async fn an_agent_of_the_executors_own_user_cannot_read_its_environment() {
    let user = running_as_root().then_some((65534, 65534));
    let fake = FakeModel::start().await.unwrap();
    let secrets = Secrets::new(user, &fake);
    let crash = Crash::start_as(&secrets.settings(), user).await;
    let (events, sent_to_model) = hunt_in_a_run(&crash, &fake, &[]).await;
    assert_none_leaked(
        &events,
        &sent_to_model,
        &[
            ("the admin token", &secrets.admin_token),
            ("the database password", &secrets.database_password),
            ("the NATS password", &secrets.nats_password),
        ],
    );
    drop(secrets.dir);
    crash.stop().await;
}
