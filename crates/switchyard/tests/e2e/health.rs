//! The provider-runtime health check (`GET /api/health`, `switchyard health`): every
//! readiness category and blocking reason produced for real — NATS stopped, Postgres
//! refusing connections, a migration missing from the database, a consumer nobody pulls
//! from and then deleted, no executor, a provider's binary not found, its credential not
//! set, a probe run whose model refuses the key — and the command's exit code for each
//! category (0 ready, 2 environment not ready, 3 runtime unhealthy).

use crate::cli::describe;
use crate::harness::{DEADLINE, Harness, Service, TOKEN};
use crate::provider_support::{self, ANTHROPIC_SECRET, OPENAI_SECRET};
use crate::rbac::create_principal;
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use switchyard_platform::config;
use tokio_util::sync::CancellationToken;

/// `GET /api/health?query` on `base` with `token`.
async fn report_as(h: &Harness, base: &str, token: &str, query: &str) -> (u16, Value) {
    let response = h
        .http
        .get(format!("{base}/api/health{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("health request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The admin's report from the harness's gateway; it must be a 200 report.
async fn report(h: &Harness, query: &str) -> Value {
    let (status, body) = report_as(h, &h.base, TOKEN, query).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the report until `done` holds for it (executors announce themselves, the
/// gateway notices a lost connection: nothing to await on this side).
async fn wait_report(h: &Harness, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let body = report(h, query).await;
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the health report never matched; last: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn blocking(report: &Value) -> &str {
    report["blockingReason"].as_str().unwrap_or("")
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// `switchyard health args --url base --token TOKEN`, with none of the developer's
/// settings.
async fn cli(base: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["health"];
    all.extend(args);
    all.extend(["--url", base, "--token", TOKEN]);
    let mut command = tokio::process::Command::from(crate::cli::command(home.path(), &all));
    command
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE * 2, command.output())
        .await
        .expect("switchyard health finished in time")
        .expect("switchyard runs")
}

/// Asserts the command exits `code` and its JSON report says `category`/`reason`.
async fn assert_cli(base: &str, args: &[&str], code: i32, category: &str, reason: Option<&str>) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(base, &all).await;
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", describe(&out)));
    assert_eq!(report["readinessCategory"], category, "{report:#}");
    assert_eq!(report["blockingReason"].as_str(), reason, "{report:#}");
    // The human form says the same, with the same exit code.
    let out = cli(base, args).await;
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    assert!(last.starts_with(category), "{}", describe(&out));
    if let Some(reason) = reason {
        assert!(last.contains(reason), "{}", describe(&out));
    }
}

/// A second gateway on the harness's NATS and control-plane, with `extra` settings
/// (the probe's prompt and timeout); returns its base URL.
async fn gateway_with(h: &Harness, extra: &[(&str, String)]) -> (String, Service) {
    let mut settings = vec![("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:0".to_owned())];
    settings.extend(extra.iter().cloned());
    let config: switchyard_gateway::Config =
        config::load_from(None, h.service_env(&settings)).expect("gateway config");
    let shutdown = CancellationToken::new();
    let handle = switchyard_gateway::start(config, shutdown.clone())
        .await
        .expect("gateway starts");
    let base = format!("http://{}", handle.http_addr.expect("gateway address"));
    (base, Service { handle, shutdown })
}

/// A gateway whose probe runs say `prompt` (a fake-model marker picks its answer).
async fn probing_gateway(h: &Harness, prompt: &str) -> (String, Service) {
    gateway_with(
        h,
        &[
            ("SWITCHYARD_GATEWAY__HEALTH_PROBE_PROMPT", prompt.to_owned()),
            (
                "SWITCHYARD_GATEWAY__HEALTH_PROBE_TIMEOUT_MS",
                "45000".to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__UPSTREAM_TIMEOUT_MS",
                "60000".to_owned(),
            ),
        ],
    )
    .await
}

async fn stop(service: Service) {
    service.shutdown.cancel();
    let _ = tokio::time::timeout(DEADLINE, service.handle.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_in_place_is_ready_and_a_probe_run_succeeds() {
    let (h, _fake, _dir) = provider_support::platform_with_clis().await;
    let ready = wait_report(&h, "", |r| r["readinessCategory"] == "ready").await;
    assert!(ready.get("blockingReason").is_none(), "{ready:#}");
    assert!(
        check(&ready, "nats")["detail"]
            .as_str()
            .unwrap()
            .contains("nats-server 2."),
        "the server version is reported: {ready:#}"
    );
    for name in [
        "nats.stream.RUN_COMMANDS",
        "nats.stream.RUN_EVENTS",
        "nats.consumer.RUN_COMMANDS.executor-manager",
        "nats.consumer.RUN_EVENTS.control-plane-projector",
        "nats.kv.EXECUTORS",
        "postgres",
        "postgres.migrations",
        "executors",
        "provider.codex-app-server.binary",
        "provider.claude-code.binary",
        "provider.claude-code.credentials",
        "provider.opencode.credentials",
        "provider.scripted.binary",
    ] {
        assert_eq!(check(&ready, name)["ok"], true, "{name}: {ready:#}");
    }
    // The CLI's version of the binary is reported, and no secret value anywhere.
    let claude = check(&ready, "provider.claude-code.binary")["detail"]
        .as_str()
        .unwrap();
    assert!(claude.chars().any(|c| c.is_ascii_digit()), "{claude}");
    let text = ready.to_string();
    assert!(!text.contains(ANTHROPIC_SECRET) && !text.contains(OPENAI_SECRET));
    assert_cli(&h.base, &[], 0, "ready", None).await;

    // A live probe through the normal start path, the model answering text. Two
    // reports asking at once share one probe run.
    let (base, gateway) = probing_gateway(&h, "SCN_TEXT health probe").await;
    let query = "?provider=claude-code&probe=true";
    let ((status, probed), (other_status, other)) = tokio::join!(
        report_as(&h, &base, TOKEN, query),
        report_as(&h, &base, TOKEN, query)
    );
    assert_eq!(status, 200, "{probed}");
    assert_eq!(other_status, 200, "{other}");
    assert_eq!(probed["readinessCategory"], "ready", "{probed:#}");
    assert_eq!(other["readinessCategory"], "ready", "{other:#}");
    let probe = check(&probed, "provider.claude-code.probe");
    assert_eq!(probe["ok"], true, "{probed:#}");
    let other_probe = check(&other, "provider.claude-code.probe")["detail"]
        .as_str()
        .unwrap();
    let first_probe = probe["detail"].as_str().unwrap();
    // One of them started the run; the other joined it (or, had it come late, found
    // its outcome cached): the same run either way.
    let run_of = |detail: &str| detail.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(run_of(first_probe), run_of(other_probe));
    assert!(
        [first_probe, other_probe]
            .iter()
            .any(|d| d.contains("(shared: ") || d.contains("(cached: ")),
        "{first_probe} / {other_probe}"
    );
    // A report right after reuses the outcome, saying so, and starts no run.
    let (_, again) = report_as(&h, &base, TOKEN, query).await;
    let again_probe = check(&again, "provider.claude-code.probe")["detail"]
        .as_str()
        .unwrap();
    assert!(
        again_probe.contains("(cached: this probe ended "),
        "{again:#}"
    );
    assert_eq!(run_of(again_probe), run_of(first_probe));
    let (_, runs) = h.get("/api/runs?limit=100").await;
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one probe run for three reports: {runs:#?}");
    // Only the provider asked for was checked.
    assert!(
        probed["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["name"].as_str().unwrap().starts_with("provider.codex")),
        "{probed:#}"
    );
    // The probe was a real run, and it succeeded.
    let run_id = probe["detail"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let run = h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    assert_eq!(run["provider"], "claude-code", "{run}");
    stop(gateway).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_whose_model_refuses_the_key_is_runtime_unhealthy() {
    let (h, _fake, _dir) = provider_support::platform_with_clis().await;
    wait_report(&h, "", |r| r["readinessCategory"] == "ready").await;
    let (base, gateway) = probing_gateway(&h, "SCN_E401 health probe").await;
    let (status, probed) = report_as(&h, &base, TOKEN, "?provider=claude-code&probe=true").await;
    assert_eq!(status, 200, "{probed}");
    assert_eq!(
        probed["readinessCategory"], "runtime_unhealthy",
        "{probed:#}"
    );
    assert_eq!(
        blocking(&probed),
        "probe_failed:claude-code:auth_invalid",
        "{probed:#}"
    );
    let probe = check(&probed, "provider.claude-code.probe");
    assert_eq!(probe["ok"], false);
    assert_eq!(
        probe["blockingReason"],
        "probe_failed:claude-code:auth_invalid"
    );
    // The environment checks passed: the runtime, not the setup, is at fault.
    assert_eq!(
        check(&probed, "provider.claude-code.credentials")["ok"],
        true
    );
    assert_cli(
        &base,
        &["--provider", "claude-code", "--probe"],
        3,
        "runtime_unhealthy",
        Some("probe_failed:claude-code:auth_invalid"),
    )
    .await;
    stop(gateway).await;

    // A probe whose model never answers, on a gateway with a short budget: the report
    // still gets out as a report (not the timeout layer's bare 503), blames the probe,
    // and the run is not left behind.
    let (base, gateway) = gateway_with(
        &h,
        &[
            (
                "SWITCHYARD_GATEWAY__HEALTH_PROBE_PROMPT",
                "SCN_HANG health probe".to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__HEALTH_PROBE_TIMEOUT_MS",
                "3000".to_owned(),
            ),
            ("SWITCHYARD_GATEWAY__UPSTREAM_TIMEOUT_MS", "4000".to_owned()),
        ],
    )
    .await;
    let (status, probed) = report_as(&h, &base, TOKEN, "?provider=claude-code&probe=true").await;
    assert_eq!(status, 200, "{probed}");
    assert_eq!(
        probed["readinessCategory"], "runtime_unhealthy",
        "{probed:#}"
    );
    // Its own timeout or the report's budget, whichever is seen first, ended it.
    assert!(
        blocking(&probed).starts_with("probe_failed:claude-code:"),
        "{probed:#}"
    );
    let detail = check(&probed, "provider.claude-code.probe")["detail"]
        .as_str()
        .unwrap();
    let run_id = detail.split_whitespace().nth(1).unwrap();
    let run = h
        .wait_run(run_id, |r| {
            matches!(
                r["status"].as_str(),
                Some("stopped" | "timed_out" | "failed")
            )
        })
        .await;
    assert_eq!(run["provider"], "claude-code", "{run}");
    assert_cli(
        &base,
        &["--provider", "claude-code", "--probe"],
        3,
        "runtime_unhealthy",
        Some(blocking(&probed)),
    )
    .await;
    stop(gateway).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_executor_is_environment_not_ready_and_only_admins_and_operators_may_ask() {
    let h = Harness::start(0, 1).await;
    let body = report(&h, "").await;
    assert_eq!(
        body["readinessCategory"], "environment_not_ready",
        "{body:#}"
    );
    assert_eq!(blocking(&body), "no_executor", "{body:#}");
    assert_eq!(check(&body, "executors")["ok"], false);
    // The runtime underneath is fine.
    for name in [
        "nats",
        "postgres",
        "postgres.migrations",
        "nats.kv.EXECUTORS",
    ] {
        assert_eq!(check(&body, name)["ok"], true, "{name}: {body:#}");
    }
    assert_cli(
        &h.base,
        &[],
        2,
        "environment_not_ready",
        Some("no_executor"),
    )
    .await;

    // Who may ask, and what they may ask.
    let (_, operator) = create_principal(&h, "olga", "operator", &[]).await;
    let (status, body) = report_as(&h, &h.base, &operator, "").await;
    assert_eq!(status, 200, "{body}");
    let (_, developer) = create_principal(&h, "dev", "developer", &[]).await;
    let (status, body) = report_as(&h, &h.base, &developer, "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &Value::from("forbidden"))
    );
    let (status, body) = report_as(&h, &h.base, TOKEN, "?provider=gpt-7").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Value::from("unknown_provider")),
        "{body}"
    );
    let (status, body) = report_as(&h, &h.base, TOKEN, "?probe=maybe").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Value::from("invalid_request")),
        "{body}"
    );
    let (status, _) = report_as(&h, &h.base, "wrong-token", "").await;
    assert_eq!(status, 401);
    h.shutdown().await;
}

/// An executor config whose CLI search path is an empty directory (no CLI found) and
/// whose env file holds only the OpenAI key.
fn config_without(dir: &Path, clis: Option<&Path>) -> std::path::PathBuf {
    let env_file = dir.join("provider-env");
    provider_support::write_env_file(&env_file, &[("OPENAI_API_KEY", OPENAI_SECRET)]);
    let empty = dir.join("no-clis");
    std::fs::create_dir_all(&empty).unwrap();
    let search = clis.unwrap_or(&empty);
    let toml = dir.join(format!("executor-{}.toml", clis.is_some()));
    std::fs::write(
        &toml,
        format!(
            "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
             credentials_from_environment = false\n",
            search.display().to_string(),
            env_file.display().to_string()
        ),
    )
    .unwrap();
    toml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_then_a_missing_credential_are_environment_not_ready() {
    let mut h = Harness::start(0, 1).await;
    let dir = tempfile::tempdir().unwrap();
    // No CLI anywhere on this executor.
    h.add_executor_with(2, Some(&config_without(dir.path(), None)))
        .await;
    let body = wait_report(&h, "?provider=claude-code", |r| {
        blocking(r) != "no_executor"
    })
    .await;
    assert_eq!(
        body["readinessCategory"], "environment_not_ready",
        "{body:#}"
    );
    assert_eq!(
        blocking(&body),
        "provider_binary_missing:claude-code",
        "{body:#}"
    );
    let binary = check(&body, "provider.claude-code.binary");
    assert!(
        binary["detail"].as_str().unwrap().contains("claude"),
        "the executor's problem is quoted: {body:#}"
    );
    assert_cli(
        &h.base,
        &["--provider", "claude-code"],
        2,
        "environment_not_ready",
        Some("provider_binary_missing:claude-code"),
    )
    .await;

    // An executor that has the CLIs, but no Anthropic key.
    let clis = provider_support::installed_clis();
    h.add_executor_with(2, Some(&config_without(dir.path(), Some(&clis))))
        .await;
    let body = wait_report(&h, "?provider=claude-code", |r| {
        blocking(r) != "provider_binary_missing:claude-code"
    })
    .await;
    assert_eq!(
        body["readinessCategory"], "environment_not_ready",
        "{body:#}"
    );
    assert_eq!(
        blocking(&body),
        "credentials_missing:claude-code",
        "{body:#}"
    );
    assert_eq!(check(&body, "provider.claude-code.binary")["ok"], true);
    let credentials = check(&body, "provider.claude-code.credentials")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        credentials.contains("ANTHROPIC_API_KEY"),
        "the variable is named: {credentials}"
    );
    assert!(!body.to_string().contains(OPENAI_SECRET), "{body:#}");
    // codex has its key there: the same fleet is ready for it.
    let codex = report(&h, "?provider=codex-app-server").await;
    assert_eq!(codex["readinessCategory"], "ready", "{codex:#}");
    assert_cli(
        &h.base,
        &["--provider", "claude-code"],
        2,
        "environment_not_ready",
        Some("credentials_missing:claude-code"),
    )
    .await;
    assert_cli(
        &h.base,
        &["--provider", "codex-app-server"],
        0,
        "ready",
        None,
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_migration_is_runtime_unhealthy() {
    let h = Harness::start(1, 1).await;
    // A probe through the gateway's defaults: the scripted provider's default script.
    let body = report(&h, "?provider=scripted&probe=true").await;
    assert_eq!(body["readinessCategory"], "ready", "{body:#}");
    assert_eq!(
        check(&body, "provider.scripted.probe")["ok"],
        true,
        "{body:#}"
    );
    // The database forgets its newest migration: this build expects one more.
    let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
    let newest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let body = report(&h, "?provider=scripted").await;
    assert_eq!(body["readinessCategory"], "runtime_unhealthy", "{body:#}");
    assert_eq!(blocking(&body), "migrations_pending", "{body:#}");
    assert!(
        check(&body, "postgres.migrations")["detail"]
            .as_str()
            .unwrap()
            .contains(&newest.to_string()),
        "the pending version is named: {body:#}"
    );
    assert_cli(
        &h.base,
        &["--provider", "scripted"],
        3,
        "runtime_unhealthy",
        Some("migrations_pending"),
    )
    .await;
    // No probe run on a runtime that is not healthy: it would say nothing new.
    let body = report(&h, "?provider=scripted&probe=true").await;
    assert_eq!(blocking(&body), "migrations_pending", "{body:#}");
    let probe = check(&body, "probe");
    assert_eq!(probe["ok"], false);
    assert!(probe.get("blockingReason").is_none(), "{body:#}");
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "provider.scripted.probe"),
        "{body:#}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_is_runtime_unhealthy() {
    let mut h = Harness::start(1, 1).await;
    let body = report(&h, "?provider=scripted").await;
    assert_eq!(body["readinessCategory"], "ready", "{body:#}");
    h.nats.stop().await;
    let body = wait_report(&h, "?provider=scripted", |r| {
        r["readinessCategory"] != "ready"
    })
    .await;
    assert_eq!(body["readinessCategory"], "runtime_unhealthy", "{body:#}");
    assert_eq!(blocking(&body), "nats_unreachable", "{body:#}");
    assert_eq!(check(&body, "nats")["ok"], false);
    assert_cli(
        &h.base,
        &["--provider", "scripted"],
        3,
        "runtime_unhealthy",
        Some("nats_unreachable"),
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_is_runtime_unhealthy() {
    let h = Harness::start(1, 1).await;
    let body = report(&h, "?provider=scripted").await;
    assert_eq!(body["readinessCategory"], "ready", "{body:#}");
    // The database stops taking connections and the control-plane's are cut: for the
    // control-plane, Postgres is gone.
    // From another database: one cannot close the database one is connected to.
    let options: sqlx::postgres::PgConnectOptions = h.db.url.parse().unwrap();
    let admin = sqlx::PgPool::connect_with(options.database("postgres"))
        .await
        .unwrap();
    let name = h.db.name().to_owned();
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {quoted} ALLOW_CONNECTIONS false"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&admin)
    .await
    .unwrap();
    let body = wait_report(&h, "?provider=scripted", |r| {
        r["readinessCategory"] != "ready"
    })
    .await;
    assert_eq!(body["readinessCategory"], "runtime_unhealthy", "{body:#}");
    assert_eq!(blocking(&body), "postgres_unreachable", "{body:#}");
    assert_eq!(check(&body, "postgres")["ok"], false);
    assert!(
        !body.to_string().contains(&h.db.url),
        "the database URL stays out of the report"
    );
    assert_cli(
        &h.base,
        &["--provider", "scripted"],
        3,
        "runtime_unhealthy",
        Some("postgres_unreachable"),
    )
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_then_a_missing_consumer_is_runtime_unhealthy() {
    let mut h = Harness::start(1, 1).await;
    let body = report(&h, "?provider=scripted").await;
    assert_eq!(body["readinessCategory"], "ready", "{body:#}");
    // No executor-manager any more: a run's command waits and nobody pulls it.
    let manager = h.managers.remove(0);
    stop(manager).await;
    h.start_scripted(serde_json::json!([{"message": {"text": "never dispatched"}}]))
        .await;
    let body = wait_report(&h, "?provider=scripted", |r| {
        r["readinessCategory"] != "ready"
    })
    .await;
    assert_eq!(body["readinessCategory"], "runtime_unhealthy", "{body:#}");
    assert_eq!(
        blocking(&body),
        "consumer_stalled:RUN_COMMANDS/executor-manager",
        "{body:#}"
    );
    // The consumer itself is deleted.
    let js = h.jetstream().await;
    js.get_stream("RUN_COMMANDS")
        .await
        .unwrap()
        .delete_consumer("executor-manager")
        .await
        .unwrap();
    let body = report(&h, "?provider=scripted").await;
    assert_eq!(
        blocking(&body),
        "nats_resource_missing:RUN_COMMANDS/executor-manager",
        "{body:#}"
    );
    assert_cli(
        &h.base,
        &["--provider", "scripted"],
        3,
        "runtime_unhealthy",
        Some("nats_resource_missing:RUN_COMMANDS/executor-manager"),
    )
    .await;
    h.shutdown().await;
}
