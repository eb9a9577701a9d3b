//! The `switchyard` command line against the real platform: help and usage errors,
//! runs followed to their end (exit code = outcome), approvals asked inline through a
//! pseudo-terminal, Ctrl-C, resuming after a cut connection, and `--json` output.

use crate::harness::{Api, DEADLINE, Harness, TOKEN};
use crate::shared::shared;
use serde_json::{Value, json};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

const EXE: &str = env!("CARGO_BIN_EXE_switchyard");
/// Bound on one pseudo-terminal expectation (milliseconds).
const PTY_TIMEOUT_MS: u64 = 60_000;

/// A `switchyard` command that sees none of the developer's settings: no
/// SWITCHYARD_URL/TOKEN, no config file (XDG_CONFIG_HOME is an empty directory), no
/// forced colour. The other client tests (health, stress) start from it too.
pub(crate) fn command(config_home: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(EXE);
    command
        .args(args)
        .env_remove("SWITCHYARD_URL")
        .env_remove("SWITCHYARD_TOKEN")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("NO_COLOR")
        .env("XDG_CONFIG_HOME", config_home);
    command
}

/// Runs `switchyard args` with standard input closed and returns its output.
async fn output(config_home: &std::path::Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(command(config_home, args));
    command.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("switchyard finished in time")
        .expect("switchyard runs")
}

/// Runs a client command against the harness's gateway.
async fn client(h: &Api, config_home: &std::path::Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--url", &h.base, "--token", TOKEN]);
    output(config_home, &all).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(out)))
}

/// Every subcommand with the flags its help must mention.
const HELP: &[(&[&str], &[&str])] = &[
    (&["up"], &["--demo", "--exit-after-demo"]),
    (
        &["serve"],
        &["gateway", "control-plane", "executor-manager", "executor"],
    ),
    (&["demo"], &["--url", "--token", "--prompt"]),
    (
        &["run"],
        &[
            "--app",
            "--provider",
            "--model",
            "--profile",
            "--option",
            "--options-json",
            "--parent",
            "--follow",
            "--json",
            "--url",
            "--token",
            "Ctrl-C",
        ],
    ),
    (&["follow"], &["--cursor", "--json", "--url", "--token"]),
    (&["runs"], &["list", "show"]),
    (
        &["runs", "list"],
        &["--app", "--status", "--provider", "--limit", "--json"],
    ),
    (&["runs", "show"], &["<RUN>", "--json"]),
    (&["approve"], &["<RUN>", "--request", "--message", "--json"]),
    (&["deny"], &["<RUN>", "--request", "--message", "--json"]),
    (&["stop"], &["<RUN>", "--reason", "--json"]),
    (&["apps"], &["register", "list", "show"]),
    (&["apps", "register"], &["<FILE>", "TOML", "--json"]),
    (&["apps", "list"], &["--json"]),
    (&["apps", "show"], &["<APP>", "--json"]),
    (&["queue"], &["--json"]),
    (&["providers"], &["--json"]),
    (
        &["health"],
        &["--provider", "--probe", "--json", "--url", "--token"],
    ),
    (
        &["stress"],
        &[
            "--app",
            "--provider",
            "--runs",
            "--concurrency",
            "--timeout-ms",
            "--prompt",
            "--option",
            "--options-json",
            "--out",
            "client_timeout",
            "start_refused",
            "sse.raw.txt",
        ],
    ),
];

#[tokio::test]
async fn every_subcommand_has_help_and_a_wrong_command_line_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let top = output(home.path(), &["--help"]).await;
    assert_eq!(top.status.code(), Some(0), "{}", describe(&top));
    let top_text = text(&top.stdout);
    assert!(top_text.contains("Exit codes:"), "{top_text}");
    assert!(top_text.contains("SWITCHYARD_URL"), "{top_text}");
    // Every command `--help` lists is covered below.
    let listed: Vec<&str> = top_text
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .expect("a command list")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    for name in &listed {
        assert!(
            HELP.iter().any(|(path, _)| path[0] == *name),
            "`switchyard {name}` has no help check"
        );
    }
    assert_eq!(listed.len(), 14, "{listed:?}");

    for (path, flags) in HELP {
        let mut args = path.to_vec();
        args.push("--help");
        let out = output(home.path(), &args).await;
        assert_eq!(out.status.code(), Some(0), "{path:?}: {}", describe(&out));
        let help = text(&out.stdout);
        for flag in *flags {
            assert!(
                help.contains(flag),
                "`{path:?} --help` does not mention {flag}:\n{help}"
            );
        }
    }

    let version = output(home.path(), &["--version"]).await;
    assert_eq!(version.status.code(), Some(0));
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

    for args in [
        &["runs", "list", "--bogus"][..],
        &["up", "--bogus"],
        &["run"],
        &["follow", "not-a-uuid"],
        &["runs", "list", "--status", "sleeping"],
        &["frobnicate"],
        &[],
    ] {
        let out = output(home.path(), args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        // clap's usage error, pointing at the help.
        assert!(
            text(&out.stderr).contains("Usage:") || text(&out.stderr).contains("'--help'"),
            "{args:?}: {}",
            describe(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_followed_to_the_end_prints_its_text_and_exits_0() {
    let h = shared().await;
    let home = tempfile::tempdir().unwrap();
    let app = home.path().join("demo.toml");
    std::fs::write(
        &app,
        "appId = \"cli-demo\"\n[runtimeDefaults]\nprovider = \"scripted\"\ntimeoutMs = 60000\n",
    )
    .unwrap();
    let registered = client(
        &h,
        home.path(),
        &["apps", "register", app.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(json_of(&registered)["appId"], "cli-demo");

    let script = json!([
        {"reasoning": {"text": "Looking around first."}},
        {"message": {"text": "Hello from the CLI test, streamed in pieces.", "chunks": 4}},
        {"toolCall": {"name": "shell", "input": {"command": "ls -a"}, "output": "README.md\nsrc\n", "exitCode": 0}},
        {"fileChange": {"path": "hello.txt", "change": "added"}},
        {"usage": {"inputTokens": 120, "outputTokens": 42}}
    ])
    .to_string();
    let option = format!("script={script}");
    let out = client(
        &h,
        home.path(),
        &[
            "run",
            "--app",
            "cli-demo",
            "--option",
            &option,
            "--follow",
            "say hello",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for expected in [
        "thinking: Looking around first.",
        "Hello from the CLI test, streamed in pieces.\n",
        "▶ shell ls -a",
        "  │ README.md",
        "+ hello.txt (added)",
        "usage: 120 input tokens, 42 output tokens",
        "succeeded",
    ] {
        assert!(
            stdout.contains(expected),
            "no {expected:?} in:\n{}",
            describe(&out)
        );
    }
    assert_eq!(
        stdout.matches("Hello from the CLI test").count(),
        1,
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "colour on a pipe: {stdout:?}");
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("✔ run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the final line names the run")
        .to_owned();

    // --json on the read commands: stdout is JSON and nothing else. (The run's row is
    // projected from its events, eventually: wait for the projection first.)
    h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    let show = json_of(&client(&h, home.path(), &["runs", "show", &run_id, "--json"]).await);
    assert_eq!(show["status"], "succeeded", "{show}");
    assert_eq!(show["appId"], "cli-demo");
    let list = json_of(
        &client(
            &h,
            home.path(),
            &[
                "runs",
                "list",
                "--app",
                "cli-demo",
                "--provider",
                "scripted",
                "--json",
            ],
        )
        .await,
    );
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runId"] == run_id.as_str()),
        "{list}"
    );
    let none = json_of(
        &client(
            &h,
            home.path(),
            &[
                "runs",
                "list",
                "--app",
                "cli-demo",
                "--provider",
                "opencode",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(none["runs"], json!([]), "filtered by provider: {none}");
    let apps = json_of(&client(&h, home.path(), &["apps", "list", "--json"]).await);
    assert!(
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["appId"] == "cli-demo")
    );
    let app = json_of(&client(&h, home.path(), &["apps", "show", "cli-demo", "--json"]).await);
    assert_eq!(app["runtimeDefaults"]["timeoutMs"], 60000);
    let queue = json_of(&client(&h, home.path(), &["queue", "--json"]).await);
    assert!(queue["pending"].is_u64(), "{queue}");
    let providers = json_of(&client(&h, home.path(), &["providers", "--json"]).await);
    assert!(
        providers["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "scripted" && p["installed"] == true),
        "{providers}"
    );

    // `follow --json` of the finished run: one event per line, the whole history.
    let follow = client(&h, home.path(), &["follow", &run_id, "--json"]).await;
    assert_eq!(follow.status.code(), Some(0), "{}", describe(&follow));
    let events: Vec<Value> = text(&follow.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap()["type"], "run.completed");

    // The human forms of the read commands answer too.
    for args in [
        &["runs", "list", "--limit", "1"][..],
        &["runs", "show", &run_id],
        &["apps", "list"],
        &["apps", "show", "cli-demo"],
        &["queue"],
        &["providers"],
    ] {
        let out = client(&h, home.path(), args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
    let shown = text(
        &client(&h, home.path(), &["runs", "show", &run_id])
            .await
            .stdout,
    );
    assert!(
        shown.contains("succeeded") && shown.contains("cli-demo"),
        "{shown}"
    );

    // On a terminal there is colour, unless NO_COLOR says otherwise.
    let args: Vec<String> = ["runs", "show", &run_id, "--url", &h.base, "--token", TOKEN]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let path = home.path().to_owned();
    let (coloured, plain) = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        let coloured = p.exp_eof().unwrap();
        let mut command = command(&path, &args.iter().map(String::as_str).collect::<Vec<_>>());
        command.env("TERM", "xterm").env("NO_COLOR", "1");
        let mut p = rexpect::session::spawn_command(command, Some(PTY_TIMEOUT_MS)).unwrap();
        (coloured, p.exp_eof().unwrap())
    })
    .await
    .unwrap();
    assert!(
        coloured.contains("\u{1b}[") && coloured.contains("succeeded"),
        "{coloured:?}"
    );
    assert!(
        !plain.contains('\u{1b}') && plain.contains("succeeded"),
        "{plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_non_zero_with_its_reason_and_api_errors_show_their_code() {
    let h = shared().await;
    let home = tempfile::tempdir().unwrap();
    let options = json!({"script": [
        {"message": {"text": "Trying the model."}},
        {"fail": {"reason": "auth_invalid", "detail": "the model refused the key"}}
    ]})
    .to_string();
    let out = client(
        &h,
        home.path(),
        &[
            "run",
            "--provider",
            "scripted",
            "--options-json",
            &options,
            "--follow",
            "go",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("failed: auth_invalid"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout.contains("the model refused the key"),
        "{}",
        describe(&out)
    );

    // Without --follow: the run's id, exit 0 whatever the run does later.
    let started = json_of(
        &client(
            &h,
            home.path(),
            &["run", "--provider", "scripted", "--json", "go"],
        )
        .await,
    );
    assert!(started["runId"].is_string(), "{started}");

    // The API's errors: code and message, exit 1.
    let missing = uuid::Uuid::now_v7().to_string();
    let out = client(&h, home.path(), &["runs", "show", &missing]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("run_not_found"),
        "{}",
        describe(&out)
    );
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let out = client(&h, home.path(), &["run", "--provider", "warp-drive", "go"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("unknown_provider"),
        "{}",
        describe(&out)
    );
    let out = output(
        home.path(),
        &["runs", "list", "--url", &h.base, "--token", "wrong"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let out = output(
        home.path(),
        &["queue", "--url", "http://127.0.0.1:9", "--token", TOKEN],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("cannot reach the gateway"),
        "{}",
        describe(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_and_token_come_from_flags_then_environment_then_config_file() {
    let h = shared().await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("switchyard");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("url = \"{}\"\ntoken = \"{TOKEN}\"\n", h.base),
    )
    .unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = tokio::process::Command::from(command(home.path(), args));
        for (k, v) in env {
            command.env(k, v);
        }
        async move {
            tokio::time::timeout(DEADLINE, command.stdin(Stdio::null()).output())
                .await
                .unwrap()
                .unwrap()
        }
    };
    // The file alone is enough.
    let out = run(&[], &["apps", "list", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The environment beats the file…
    let out = run(&[("SWITCHYARD_TOKEN", "not-the-token")], &["apps", "list"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let out = run(
        &[("SWITCHYARD_URL", "http://127.0.0.1:9")],
        &["apps", "list"],
    )
    .await;
    assert!(
        text(&out.stderr).contains("$SWITCHYARD_URL"),
        "{}",
        describe(&out)
    );
    // …and the flags beat the environment.
    let out = run(
        &[
            ("SWITCHYARD_TOKEN", "not-the-token"),
            ("SWITCHYARD_URL", "http://127.0.0.1:9"),
        ],
        &["apps", "list", "--url", &h.base, "--token", TOKEN],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

/// A `switchyard` command on a pseudo-terminal (its stdin, stdout and stderr).
fn pty(config_home: &std::path::Path, args: &[String]) -> rexpect::session::PtySession {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = command(config_home, &args);
    command.env("TERM", "xterm");
    rexpect::session::spawn_command(command, Some(PTY_TIMEOUT_MS)).expect("spawn on a pty")
}

/// Waits (blocking) for the pty's process to exit; its exit code.
fn exit_code(session: &mut rexpect::session::PtySession) -> i32 {
    let _ = session.exp_eof();
    match session.process().wait().expect("wait") {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("switchyard did not exit normally: {other:?}"),
    }
}

fn run_args(h: &Harness, script: Value) -> Vec<String> {
    [
        "run",
        "--url",
        &h.base,
        "--token",
        TOKEN,
        "--provider",
        "scripted",
        "--options-json",
        &json!({"script": script}).to_string(),
        "--follow",
        "go",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn gate_script() -> Value {
    json!([
        {"humanLoop": {"prompt": "Deploy to prod?", "kind": "command", "details": {"command": "deploy --prod"}}},
        {"message": {"text": "after the gate"}}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_asked_inline_on_a_terminal_and_approved() {
    let h = Harness::start(1, 1).await;
    let home = tempfile::tempdir().unwrap();
    let args = run_args(&h, gate_script());
    let path = home.path().to_owned();
    let seen = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        let before = p
            .exp_string("approval needed (command): Deploy to prod?")
            .unwrap();
        p.exp_string("command: deploy --prod").unwrap();
        p.exp_string("[y]es / [n]o:").unwrap();
        p.send_line("y").unwrap();
        p.exp_string("approved (by a human)").unwrap();
        p.exp_string("after the gate").unwrap();
        p.exp_string("succeeded").unwrap();
        (before, exit_code(&mut p))
    })
    .await
    .unwrap();
    assert_eq!(seen.1, 0);
    // On a terminal the output has colour.
    assert!(
        seen.0.contains("\u{1b}["),
        "no colour on a terminal: {:?}",
        seen.0
    );
    let (_, runs) = h.get("/api/runs?limit=1").await;
    let run_id = runs["runs"][0]["runId"].as_str().unwrap().to_owned();
    let requests = h.wait_requests(&run_id, "", |r| r.len() == 1).await;
    assert_eq!(requests[0]["decision"], "approve", "{requests:?}");
    assert_eq!(requests[0]["resolvedBy"], "human", "{requests:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_asked_inline_on_a_terminal_and_denied() {
    let h = Harness::start(1, 1).await;
    let home = tempfile::tempdir().unwrap();
    let args = run_args(&h, gate_script());
    let path = home.path().to_owned();
    let code = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        p.exp_string("[y]es / [n]o:").unwrap();
        p.send_line("maybe").unwrap();
        p.exp_string("answer y to approve or n to deny").unwrap();
        p.send_line("n").unwrap();
        p.exp_string("denied (by a human)").unwrap();
        p.exp_string("succeeded").unwrap();
        exit_code(&mut p)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let (_, runs) = h.get("/api/runs?limit=1").await;
    let run_id = runs["runs"][0]["runId"].as_str().unwrap().to_owned();
    let requests = h.wait_requests(&run_id, "", |r| r.len() == 1).await;
    assert_eq!(requests[0]["decision"], "deny", "{requests:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_twice_detaches_and_in_follow_detaches_with_a_cursor_that_resumes() {
    let mut h = Harness::start(1, 1).await;
    let home = tempfile::tempdir().unwrap();
    let sleepy = json!([
        {"message": {"text": "working on it"}},
        {"sleepMs": 120000},
        {"message": {"text": "never said"}}
    ]);

    // `run --follow`: Ctrl-C stops the run, rendering goes on to its end, exit 12.
    let args = run_args(&h, sleepy.clone());
    let path = home.path().to_owned();
    let code = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        p.exp_string("working on it").unwrap();
        p.send_control('c').unwrap();
        p.exp_string("stopping run").unwrap();
        p.exp_string("stopped").unwrap();
        exit_code(&mut p)
    })
    .await
    .unwrap();
    assert_eq!(code, 12);

    // `follow`: Ctrl-C detaches (exit 13) and says how to come back.
    let run_id = h.start_scripted(sleepy).await;
    let args: Vec<String> = ["follow", &run_id, "--url", &h.base, "--token", TOKEN]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let path = home.path().to_owned();
    let (code, hint) = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        p.exp_string("working on it").unwrap();
        p.send_control('c').unwrap();
        p.exp_string("Follow it again: ").unwrap();
        let hint = p.read_line().unwrap();
        (exit_code(&mut p), hint)
    })
    .await
    .unwrap();
    assert_eq!(code, 13);
    let cursor = hint
        .split("--cursor ")
        .nth(1)
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|| panic!("no cursor in {hint:?}"));
    let (status, _) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, 200);
    let (status, body) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    // Resumed from the hint's cursor: the rest only, then the run's outcome.
    let out = client(&h, home.path(), &["follow", &run_id, "--cursor", &cursor]).await;
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("working on it"), "{}", describe(&out));
    assert!(stdout.contains("stopped"), "{}", describe(&out));

    // `run --follow`, when the stop cannot go through (no control-plane to take it):
    // the run goes on, the user is told, and a second Ctrl-C detaches.
    let args = run_args(
        &h,
        json!([{"message": {"text": "working on it"}}, {"sleepMs": 120000}]),
    );
    let path = home.path().to_owned();
    let mut p = tokio::task::spawn_blocking(move || {
        let mut p = pty(&path, &args);
        p.exp_string("working on it").unwrap();
        p
    })
    .await
    .unwrap();
    // The control-plane is gone before the Ctrl-C, not while the stop is on its way.
    let gone = switchyard_platform::service::ServiceHandle::new(
        "control-plane",
        None,
        tokio::spawn(async { Ok(()) }),
    );
    let control_plane = std::mem::replace(&mut h.control_plane.handle, gone);
    h.control_plane.shutdown.cancel();
    tokio::time::timeout(DEADLINE, control_plane.wait())
        .await
        .expect("the control-plane stopped in time")
        .expect("the control-plane stopped cleanly");
    let (code, shown) = tokio::task::spawn_blocking(move || {
        p.send_control('c').unwrap();
        let shown = p.exp_string("Ctrl-C again to detach").unwrap();
        p.exp_string("could not stop the run").unwrap();
        p.send_control('c').unwrap();
        p.exp_string("detached from run").unwrap();
        (exit_code(&mut p), shown)
    })
    .await
    .unwrap();
    assert_eq!(code, 13, "{shown}");
    h.shutdown().await;
}

/// A TCP proxy the test can cut: every connection open at the cut is dropped, later
/// ones go through again.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u32>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = tokio::sync::watch::channel(0u32);
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            connections,
            task,
        }
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_from_a_cursor_survives_a_cut_connection_without_a_duplicate_line() {
    let h = shared().await;
    let home = tempfile::tempdir().unwrap();
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "line-1"}},
            {"message": {"text": "line-2"}},
            {"humanLoop": {"prompt": "go on?", "kind": "permission"}},
            {"message": {"text": "line-3"}},
            {"message": {"text": "line-4"}}
        ]))
        .await;
    // A cursor after line-1, as a client that read that far would have.
    let first = h
        .read_until(&run_id, None, |e| {
            e["type"] == "message.completed" && e["data"]["text"] == "line-1"
        })
        .await;
    let cursor = first.last().unwrap().id.clone().unwrap();

    let proxy = Proxy::start(h.gateway_addr()).await;
    let proxy_url = format!("http://{}", proxy.addr);
    let mut follow = tokio::process::Command::from(command(
        home.path(),
        &[
            "follow", &run_id, "--cursor", &cursor, "--url", &proxy_url, "--token", TOKEN,
        ],
    ));
    let mut child = follow
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    // Read until the run waits at its gate, then cut the connection under the CLI.
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let gate = line.contains("approval needed");
            lines.push(line);
            if gate {
                break;
            }
        }
    })
    .await
    .expect("the CLI showed the gate");
    proxy.cut();
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rest = tokio::time::timeout(DEADLINE, async {
        let mut rest = Vec::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("the CLI ended in time");
    lines.extend(rest);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}\n--- stderr\n{stderr}");
    assert!(
        proxy.connections.load(Ordering::SeqCst) >= 2,
        "it reconnected: {stderr}"
    );
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(
        stderr.contains(&format!("switchyard approve {run_id} --request")),
        "the non-interactive hint: {stderr}"
    );
    assert!(!all.contains("line-1"), "before the cursor: {all}");
    for line in ["line-2", "line-3", "line-4"] {
        assert_eq!(
            lines.iter().filter(|l| l.as_str() == line).count(),
            1,
            "{line} once:\n{all}"
        );
    }
    // Every line at most once: nothing of the stream was shown twice.
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        assert!(seen.insert(line.as_str()), "{line:?} twice:\n{all}");
    }
}
