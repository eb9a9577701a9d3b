//! The fake model server: its three wire formats over plain HTTP, and whole agent turns
//! of the REAL CLIs (codex, claude, opencode) against it.
//!
//! The CLI tests need the pinned CLIs in `.local/providers/node_modules/.bin`
//! (`scripts/install-providers.sh`; CI installs them): a missing CLI fails the test.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use switchyard_platform::sse::client::Parser;
use switchyard_test_support::fake_model::{
    CUT_DELTAS, Decision, ERROR_MESSAGE_401, ERROR_MESSAGE_429, ERROR_MESSAGE_500, FINAL_ANSWER,
    FINAL_MARKER, FakeModel, PATCH_FILE, PATCH_LINE, Scenario, TEXT_ANSWER, TEXT_MARKER,
    TOOL_COMMAND, TOOL_FILE, Unreachable, WireApi,
};
use tokio::process::Command;

/// Bound on one CLI invocation; opencode needs ~3-5 s per turn alone, much more when the
/// two cores are shared with other tests.
const CLI_LIMIT: Duration = Duration::from_secs(150);
/// Bound on one plain HTTP exchange with the fake model.
const HTTP_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Plain HTTP: the wire formats
// ---------------------------------------------------------------------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_LIMIT)
        .build()
        .unwrap()
}

fn responses_body(prompt: &str, tool_result: bool) -> Value {
    let mut input = vec![json!({
        "type": "message", "role": "user",
        "content": [{ "type": "input_text", "text": prompt }]
    })];
    if tool_result {
        input.push(json!({
            "type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"
        }));
        input.push(json!({ "type": "function_call_output", "call_id": "c1", "output": "ok" }));
    }
    json!({
        "model": "fake-model", "stream": true, "input": input,
        "tools": [
            { "type": "function", "name": "exec_command", "parameters": {} },
            { "type": "custom", "name": "apply_patch" }
        ]
    })
}

fn chat_body(prompt: &str, tools: bool) -> Value {
    let tools = if tools {
        json!([{ "type": "function", "function": { "name": "bash", "parameters": {} } }])
    } else {
        json!([])
    };
    json!({
        "model": "fake-model", "stream": true,
        "messages": [
            { "role": "system", "content": "be nice" },
            { "role": "user", "content": [{ "type": "text", "text": prompt }] }
        ],
        "tools": tools
    })
}

fn messages_body(prompt: &str) -> Value {
    json!({
        "model": "claude-x", "stream": true, "max_tokens": 100,
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": prompt }] }],
        "tools": [{ "name": "Bash", "input_schema": {} }, { "name": "Write", "input_schema": {} }]
    })
}

/// POSTs `body` to `path` with an API key and returns status and body text.
async fn post(fm: &FakeModel, path: &str, body: &Value) -> (u16, String) {
    let response = client()
        .post(format!("{}{path}", fm.url()))
        .bearer_auth("test-key")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The JSON payloads of the events of an SSE body (`[DONE]` kept as a string).
fn sse_payloads(body: &str) -> Vec<Value> {
    Parser::default()
        .feed(body.as_bytes())
        .into_iter()
        .map(|event| {
            let data = event.expect("an event within the size limit").data;
            serde_json::from_str(&data).unwrap_or(Value::String(data))
        })
        .collect()
}

fn types(payloads: &[Value]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn responses_stream_a_shell_call_then_the_final_text() {
    let fm = FakeModel::start().await.unwrap();

    let (status, body) = post(&fm, "/v1/responses", &responses_body("make it", false)).await;
    assert_eq!(status, 200);
    let events = sse_payloads(&body);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let item = &events[2]["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    let arguments: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["cmd"], TOOL_COMMAND);

    let (_, body) = post(&fm, "/v1/responses", &responses_body("make it", true)).await;
    let events = sse_payloads(&body);
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, FINAL_ANSWER);
    assert_eq!(events.last().unwrap()["type"], "response.completed");

    let (_, body) = post(&fm, "/v1/responses", &responses_body("SCN_PATCH", false)).await;
    let done = sse_payloads(&body)
        .into_iter()
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap();
    assert_eq!(done["item"]["type"], "custom_tool_call");
    assert!(
        done["item"]["input"]
            .as_str()
            .unwrap()
            .contains(&format!("*** Add File: {PATCH_FILE}"))
    );

    let requests = fm.requests_for("/v1/responses");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].api, Some(WireApi::Responses));
    assert_eq!(requests[0].api_key(), Some("test-key"));
    assert_eq!(requests[0].header("Authorization"), Some("Bearer test-key"));
    assert_eq!(
        requests[0].decision,
        Decision::ToolCall {
            tool: "exec_command".into()
        }
    );
    assert_eq!(requests[1].decision, Decision::FinalText);
    assert_eq!(requests[1].tool_result_count(), 1);
    assert_eq!(requests[2].scenario, Some(Scenario::Patch));
    assert_eq!(requests[0].user_text(), "make it");
    assert_eq!(requests[0].tool_names(), ["exec_command", "apply_patch"]);
}

#[tokio::test]
async fn chat_completions_stream_tool_calls_and_answer_title_requests_with_text() {
    let fm = FakeModel::start().await.unwrap();

    let (status, body) = post(&fm, "/v1/chat/completions", &chat_body("go", true)).await;
    assert_eq!(status, 200);
    let chunks = sse_payloads(&body);
    assert_eq!(chunks.last().unwrap(), &Value::String("[DONE]".into()));
    let call = chunks
        .iter()
        .find_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/name"))
        .unwrap();
    assert_eq!(call, "bash");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
        .map(|a| a.as_str().unwrap())
        .collect();
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments["command"], TOOL_COMMAND);
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls")))
    );
    assert!(chunks.iter().any(|c| c.get("usage").is_some()));

    // Title generation offers no tools: plain text.
    let (_, body) = post(&fm, "/v1/chat/completions", &chat_body("go", false)).await;
    let text: String = sse_payloads(&body)
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content"))
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(text, TEXT_ANSWER);
    assert_eq!(fm.requests()[1].decision, Decision::Text);
}

#[tokio::test]
async fn messages_stream_tool_use_and_vendor_errors() {
    let fm = FakeModel::start().await.unwrap();

    let (status, body) = post(&fm, "/v1/messages?beta=true", &messages_body("go")).await;
    assert_eq!(status, 200);
    let events = sse_payloads(&body);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1]["content_block"]["name"], "Bash");
    assert_eq!(events[4]["delta"]["stop_reason"], "tool_use");
    let input: Value =
        serde_json::from_str(events[2]["delta"]["partial_json"].as_str().unwrap()).unwrap();
    assert_eq!(input["command"], TOOL_COMMAND);
    assert_eq!(fm.requests()[0].query.as_deref(), Some("beta=true"));

    let (status, body) = post(&fm, "/v1/messages", &messages_body("SCN_E401")).await;
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");

    let (status, body) = post(&fm, "/v1/messages", &messages_body("SCN_E429")).await;
    assert_eq!(status, 429);
    assert!(body.contains("rate_limit_error"));
    let (status, body) = post(&fm, "/v1/responses", &responses_body("SCN_E500", false)).await;
    assert_eq!(status, 500);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(fm.requests()[3].decision, Decision::Error(500));
}

#[tokio::test]
async fn error_scenarios_carry_their_status_and_message_on_every_wire_api() {
    let fm = FakeModel::start().await.unwrap();
    let cases = [
        ("SCN_E401", 401, ERROR_MESSAGE_401),
        ("SCN_E429", 429, ERROR_MESSAGE_429),
        ("SCN_E500", 500, ERROR_MESSAGE_500),
    ];
    for (marker, status, message) in cases {
        for (path, body) in [
            ("/v1/responses", responses_body(marker, false)),
            ("/v1/chat/completions", chat_body(marker, true)),
            ("/v1/messages", messages_body(marker)),
        ] {
            let (got, text) = post(&fm, path, &body).await;
            assert_eq!(got, status, "{marker} on {path}");
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["message"], message, "{marker} on {path}");
            let recorded = fm.requests().pop().unwrap();
            assert_eq!(recorded.decision, Decision::Error(status));
        }
    }
}

/// `SCN_CUT`: the start of a text answer and two deltas, then the body ends without the
/// events that finish a stream, on each wire API.
#[tokio::test]
async fn a_cut_stream_ends_mid_answer_without_its_finish() {
    let fm = FakeModel::start().await.unwrap();
    let cut_text = CUT_DELTAS.concat();

    let (status, body) = post(&fm, "/v1/chat/completions", &chat_body("SCN_CUT", true)).await;
    assert_eq!(status, 200);
    let chunks = sse_payloads(&body);
    let text: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str())
        .collect();
    assert_eq!(text, cut_text);
    assert_eq!(
        chunks.len(),
        3,
        "a role chunk and two content chunks: {chunks:?}"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.pointer("/choices/0/finish_reason") == Some(&Value::Null)),
        "no finish_reason: {chunks:?}"
    );
    assert!(!body.contains("[DONE]"), "{body}");
    assert_eq!(fm.requests().pop().unwrap().decision, Decision::Cut);

    let (_, body) = post(&fm, "/v1/responses", &responses_body("SCN_CUT", false)).await;
    let events = sse_payloads(&body);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta"
        ]
    );
    let text: String = events
        .iter()
        .filter_map(|e| e.get("delta")?.as_str())
        .collect();
    assert_eq!(text, cut_text);

    let (_, body) = post(&fm, "/v1/messages", &messages_body("SCN_CUT")).await;
    let events = sse_payloads(&body);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta"
        ]
    );
    assert!(!body.contains("message_stop"), "{body}");
    assert_eq!(fm.model_requests().len(), 3);
}

/// [`Unreachable`] refuses connections at once, and keeps its port while it lives.
#[tokio::test]
async fn an_unreachable_model_api_refuses_connections() {
    let unreachable = Unreachable::new().unwrap();
    assert!(unreachable.openai_url().ends_with("/v1"));
    let started = std::time::Instant::now();
    let error = client()
        .post(format!("{}/responses", unreachable.openai_url()))
        .json(&responses_body("hi", false))
        .send()
        .await
        .expect_err("nothing listens");
    assert!(error.is_connect(), "{error:?}");
    assert!(started.elapsed() < HTTP_LIMIT);
    let port: u16 = unreachable
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
        "the reserved port can be taken by another listener"
    );
}

#[tokio::test]
async fn requests_without_a_key_get_401_and_probes_200() {
    let fm = FakeModel::start().await.unwrap();

    for path in ["/v1/responses", "/v1/chat/completions", "/v1/messages"] {
        let response = client()
            .post(format!("{}{path}", fm.url()))
            .json(&messages_body("go"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    let response = client()
        .post(format!("{}/v1/messages", fm.url()))
        .header("x-api-key", "")
        .json(&messages_body("go"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let head = client().head(fm.url()).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    let missing = client()
        .get(format!("{}/v1/models", fm.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let decisions: Vec<Decision> = fm.requests().into_iter().map(|r| r.decision).collect();
    assert_eq!(
        decisions,
        [
            Decision::MissingKey,
            Decision::MissingKey,
            Decision::MissingKey,
            Decision::MissingKey,
            Decision::Probe,
            Decision::NotFound
        ]
    );
}

#[tokio::test]
async fn slow_empty_stall_and_hang() {
    let fm = FakeModel::start().await.unwrap();

    // SCN_SLOW:<deltas>x<millis>
    let started = std::time::Instant::now();
    let (_, body) = post(&fm, "/v1/messages", &messages_body("SCN_SLOW:4x100")).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    let text: String = sse_payloads(&body)
        .iter()
        .filter_map(|e| e.pointer("/delta/text"))
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(text, "tick0 tick1 tick2 tick3 ");

    let (_, body) = post(&fm, "/v1/responses", &responses_body("SCN_EMPTY", false)).await;
    assert_eq!(
        types(&sse_payloads(&body)),
        ["response.created", "response.completed"]
    );

    // Stall: headers and the first event, then nothing.
    let mut stalled = client()
        .post(format!("{}/v1/chat/completions", fm.url()))
        .bearer_auth("k")
        .json(&chat_body("SCN_STALL", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status().as_u16(), 200);
    let first = tokio::time::timeout(HTTP_LIMIT, stalled.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    let next = tokio::time::timeout(Duration::from_millis(700), stalled.chunk()).await;
    assert!(next.is_err(), "a stalled stream sent more: {next:?}");

    // Hang: no headers; stopping the server ends the request.
    let url = format!("{}/v1/responses", fm.url());
    let hanging = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth("k")
            .json(&responses_body("SCN_HANG", false))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let request = fm
        .wait_for_request(HTTP_LIMIT, |r| r.decision == Decision::Hang)
        .await
        .unwrap();
    assert_eq!(request.scenario, Some(Scenario::Hang));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hanging.is_finished(), "SCN_HANG answered");
    fm.stop();
    let ended = tokio::time::timeout(HTTP_LIMIT, hanging)
        .await
        .expect("the hanging request did not end when the server stopped")
        .unwrap();
    assert_ne!(ended.ok(), Some(200));
    // The stalled stream ended with the server too.
    let rest = tokio::time::timeout(HTTP_LIMIT, stalled.chunk()).await;
    assert!(rest.is_ok(), "the stalled stream outlived the server");
}

// ---------------------------------------------------------------------------------------
// The real CLIs
// ---------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The pinned CLI, or an error telling how to install it.
fn cli(program: &str) -> anyhow::Result<PathBuf> {
    let path = workspace_root()
        .join(".local/providers/node_modules/.bin")
        .join(program);
    if !path.exists() {
        bail!(
            "{program} is not installed at {}: run scripts/install-providers.sh \
             (CI installs the pinned CLIs)",
            path.display()
        );
    }
    Ok(path)
}

/// A temporary home for the CLI's state and a separate working directory.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("fake-model-cli-")
            .tempdir()
            .unwrap();
        for sub in ["home", "work", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A command with a clean environment (PATH, HOME, LANG, and TMPDIR inside the
    /// sandbox: opencode's runtime leaves files there), cwd = the work dir.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("LANG", "C.UTF-8")
            .current_dir(self.work());
        command
    }
}

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The stdout lines that are JSON.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the command in its own process group with stdin closed, bounded by [`CLI_LIMIT`];
/// whatever of the group is left afterwards is killed.
async fn run(mut command: Command) -> anyhow::Result<Outcome> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = command.spawn().context("spawn the CLI")?;
    let pid = child.id();
    let waited = tokio::time::timeout(CLI_LIMIT, child.wait_with_output()).await;
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let output = match waited {
        Ok(output) => output.context("wait for the CLI")?,
        Err(_) => bail!("the CLI did not finish within {CLI_LIMIT:?}"),
    };
    Ok(Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn api_key() -> String {
    format!("fake-key-{}", uuid::Uuid::new_v4().simple())
}

/// `codex exec --json` (quiet, no retries) against the fake model, in a fresh sandbox.
async fn codex(fm: &FakeModel, sandbox: &Sandbox, key: &str, args: &[&str]) -> Outcome {
    let program = cli("codex").unwrap();
    let config = format!(
        "model = \"fake-model\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
         name = \"Fake local\"\nbase_url = \"{}\"\nenv_key = \"FAKE_API_KEY\"\n\
         wire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n\
         stream_idle_timeout_ms = 5000\n",
        fm.openai_url()
    );
    std::fs::write(sandbox.home().join("config.toml"), config).unwrap();
    let mut command = sandbox.command(&program);
    command
        .env("CODEX_HOME", sandbox.home())
        .env("FAKE_API_KEY", key)
        .args(["exec"])
        .args(args)
        .args([
            "--json",
            "--skip-git-repo-check",
            "--disable",
            "plugins",
            "--disable",
            "apps",
            "-c",
            "analytics.enabled=false",
            "-c",
            "check_for_update_on_startup=false",
        ]);
    run(command).await.unwrap()
}

async fn codex_prompt(fm: &FakeModel, sandbox: &Sandbox, key: &str, prompt: &str) -> Outcome {
    codex(fm, sandbox, key, &["-s", "workspace-write", prompt]).await
}

/// `claude -p --output-format stream-json --verbose` against the fake model.
async fn claude(fm: &FakeModel, sandbox: &Sandbox, key: &str, prompt: &str) -> Outcome {
    let program = cli("claude").unwrap();
    let mut command = sandbox.command(&program);
    command
        .env("ANTHROPIC_BASE_URL", fm.url())
        .env("ANTHROPIC_API_KEY", key)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("API_TIMEOUT_MS", "30000")
        .args([
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            // The default mode denies a shell redirect into the cwd in `-p`.
            "--permission-mode",
            "acceptEdits",
        ]);
    run(command).await.unwrap()
}

/// `opencode run --format json` against the fake model (provider `fake`, model
/// `fake/fake-model`, also the small model for titles).
async fn opencode(fm: &FakeModel, sandbox: &Sandbox, key: &str, prompt: &str) -> Outcome {
    let program = cli("opencode").unwrap();
    let home = sandbox.home();
    let xdg = [
        ("XDG_CONFIG_HOME", home.join(".config")),
        ("XDG_DATA_HOME", home.join(".local/share")),
        ("XDG_CACHE_HOME", home.join(".cache")),
        ("XDG_STATE_HOME", home.join(".local/state")),
    ];
    for (_, dir) in &xdg {
        std::fs::create_dir_all(dir).unwrap();
    }
    let config = json!({
        "provider": { "fake": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Fake local",
            "options": { "baseURL": "{env:FAKE_BASE_URL}", "apiKey": "{env:FAKE_API_KEY}" },
            "models": { "fake-model": {
                "name": "Fake Model", "tool_call": true,
                "limit": { "context": 128000, "output": 4096 }
            }}
        }},
        "model": "fake/fake-model",
        "small_model": "fake/fake-model",
        "autoupdate": false,
        "share": "disabled"
    });
    let config_dir = home.join(".config/opencode");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("opencode.json"), config.to_string()).unwrap();

    let mut command = sandbox.command(&program);
    command
        .envs(xdg)
        .env("FAKE_API_KEY", key)
        .env("FAKE_BASE_URL", fm.openai_url())
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_SHARE", "1")
        .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        .args(["run", "--format", "json", prompt]);
    run(command).await.unwrap()
}

/// Checks of the default scenario common to every CLI.
fn assert_tool_turn(fm: &FakeModel, sandbox: &Sandbox, outcome: &Outcome, key: &str, tool: &str) {
    assert_eq!(outcome.code, Some(0), "{outcome}");
    let created = std::fs::read_to_string(sandbox.work().join(TOOL_FILE))
        .unwrap_or_else(|err| panic!("{TOOL_FILE} was not created ({err}): {outcome}"));
    assert_eq!(created, "hello from fake model\n");
    assert!(outcome.stdout.contains(FINAL_MARKER), "{outcome}");

    let requests = fm.model_requests();
    assert!(
        requests.iter().all(|r| r.api_key() == Some(key)),
        "a model request without the key: {requests:?}"
    );
    let decisions: Vec<&Decision> = requests.iter().map(|r| &r.decision).collect();
    assert!(
        decisions.contains(&&Decision::ToolCall { tool: tool.into() }),
        "{decisions:?}"
    );
    let last = requests.last().unwrap();
    assert_eq!(last.decision, Decision::FinalText, "{decisions:?}");
    assert!(
        last.body_text().contains("hello from fake model"),
        "the tool output did not reach the model"
    );
}

fn assert_failed_with_401(fm: &FakeModel, outcome: &Outcome) {
    assert!(
        outcome.code != Some(0),
        "the CLI succeeded on a 401: {outcome}"
    );
    assert!(outcome.stdout.contains("401"), "{outcome}");
    assert!(
        fm.model_requests()
            .iter()
            .any(|r| r.decision == Decision::Error(401)),
        "{:?}",
        fm.requests()
    );
}

fn assert_text_answer(fm: &FakeModel, sandbox: &Sandbox, outcome: &Outcome) {
    assert_eq!(outcome.code, Some(0), "{outcome}");
    assert!(outcome.stdout.contains(TEXT_MARKER), "{outcome}");
    assert!(!sandbox.work().join(TOOL_FILE).exists());
    assert!(
        fm.model_requests()
            .iter()
            .all(|r| r.decision == Decision::Text),
        "{:?}",
        fm.model_requests()
    );
}

// --- codex ------------------------------------------------------------------------------

#[tokio::test]
async fn codex_runs_the_shell_tool_then_answers() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let key = api_key();
    let outcome = codex_prompt(&fm, &sandbox, &key, "Create hello.txt please").await;
    assert_tool_turn(&fm, &sandbox, &outcome, &key, "exec_command");
    let requests = fm.requests_for("/v1/responses");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(requests[0].header("session-id").is_some());
    let completed = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "agent_message")
        .unwrap();
    assert_eq!(completed["item"]["text"], FINAL_ANSWER);
}

#[tokio::test]
async fn codex_text_then_resume_sends_the_earlier_turn() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let key = api_key();
    let outcome = codex_prompt(&fm, &sandbox, &key, "SCN_TEXT say hi").await;
    assert_text_answer(&fm, &sandbox, &outcome);
    let thread_id = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "thread.started")
        .and_then(|e| e["thread_id"].as_str().map(str::to_owned))
        .unwrap();

    let resumed = codex(
        &fm,
        &sandbox,
        &key,
        // `exec resume` takes no `-s` and would fall back to a read-only sandbox.
        &[
            "resume",
            "-c",
            "sandbox_mode=\"workspace-write\"",
            &thread_id,
            "SCN_TOOL now create the file",
        ],
    )
    .await;
    assert_eq!(resumed.code, Some(0), "{resumed}");
    assert!(sandbox.work().join(TOOL_FILE).exists(), "{resumed}");
    let first_of_resume = &fm.requests_for("/v1/responses")[1];
    let user_text = first_of_resume.user_text();
    assert!(user_text.contains("SCN_TEXT say hi"), "{user_text}");
    assert!(first_of_resume.body_text().contains(TEXT_MARKER));
    assert_eq!(first_of_resume.scenario, Some(Scenario::ToolThenText));
}

#[tokio::test]
async fn codex_fails_on_401() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = codex_prompt(&fm, &sandbox, &api_key(), "SCN_E401 go").await;
    assert_failed_with_401(&fm, &outcome);
    assert!(
        outcome.events().iter().any(|e| e["type"] == "turn.failed"),
        "{outcome}"
    );
}

#[tokio::test]
async fn codex_applies_the_patch() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = codex_prompt(&fm, &sandbox, &api_key(), "SCN_PATCH go").await;
    assert_eq!(outcome.code, Some(0), "{outcome}");
    let patched = std::fs::read_to_string(sandbox.work().join(PATCH_FILE)).unwrap();
    assert_eq!(patched.trim_end(), PATCH_LINE);
    assert!(
        outcome
            .events()
            .iter()
            .any(|e| e["item"]["type"] == "file_change"),
        "{outcome}"
    );
    assert!(outcome.stdout.contains(FINAL_MARKER), "{outcome}");
}

// --- claude -----------------------------------------------------------------------------

#[tokio::test]
async fn claude_runs_the_shell_tool_then_answers() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let key = api_key();
    let outcome = claude(&fm, &sandbox, &key, "Create hello.txt please").await;
    assert_tool_turn(&fm, &sandbox, &outcome, &key, "Bash");
    let result = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "result")
        .unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], FINAL_ANSWER);
    let first = &fm.requests_for("/v1/messages")[0];
    assert_eq!(first.header("x-api-key"), Some(key.as_str()));
    assert!(first.header("anthropic-version").is_some());
}

#[tokio::test]
async fn claude_answers_text() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = claude(&fm, &sandbox, &api_key(), "SCN_TEXT say hi").await;
    assert_text_answer(&fm, &sandbox, &outcome);
}

#[tokio::test]
async fn claude_fails_on_401() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = claude(&fm, &sandbox, &api_key(), "SCN_E401 go").await;
    assert_failed_with_401(&fm, &outcome);
    let result = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "result")
        .unwrap();
    assert_eq!(result["is_error"], true);
    assert_eq!(result["api_error_status"], 401);
}

#[tokio::test]
async fn claude_writes_the_patch_file() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = claude(&fm, &sandbox, &api_key(), "SCN_PATCH go").await;
    assert_eq!(outcome.code, Some(0), "{outcome}");
    let patched = std::fs::read_to_string(sandbox.work().join(PATCH_FILE)).unwrap();
    assert_eq!(patched.trim_end(), PATCH_LINE);
    assert!(outcome.stdout.contains(FINAL_MARKER), "{outcome}");
}

// --- opencode ---------------------------------------------------------------------------

#[tokio::test]
async fn opencode_runs_the_shell_tool_then_answers() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let key = api_key();
    let outcome = opencode(&fm, &sandbox, &key, "Create hello.txt please").await;
    assert_tool_turn(&fm, &sandbox, &outcome, &key, "bash");
    // The title request offers no tools and gets plain text.
    assert!(
        fm.model_requests()
            .iter()
            .any(|r| r.tool_names().is_empty() && r.decision == Decision::Text),
        "{:?}",
        fm.model_requests()
    );
    let text = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "text")
        .unwrap();
    assert_eq!(text["part"]["text"], FINAL_ANSWER);
}

#[tokio::test]
async fn opencode_answers_text() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = opencode(&fm, &sandbox, &api_key(), "SCN_TEXT say hi").await;
    assert_text_answer(&fm, &sandbox, &outcome);
}

#[tokio::test]
async fn opencode_fails_on_401() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = opencode(&fm, &sandbox, &api_key(), "SCN_E401 go").await;
    assert_failed_with_401(&fm, &outcome);
    assert!(
        outcome.events().iter().any(|e| e["type"] == "error"),
        "{outcome}"
    );
}

// --- empty streams ----------------------------------------------------------------------

#[tokio::test]
async fn codex_completes_an_empty_turn_without_a_message() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = codex_prompt(&fm, &sandbox, &api_key(), "SCN_EMPTY go").await;
    assert_eq!(outcome.code, Some(0), "{outcome}");
    let events = outcome.events();
    assert!(
        events.iter().any(|e| e["type"] == "turn.completed"),
        "{outcome}"
    );
    assert!(
        !events.iter().any(|e| e["item"]["type"] == "agent_message"),
        "{outcome}"
    );
    assert_eq!(fm.model_requests()[0].decision, Decision::Empty);
}

#[tokio::test]
async fn claude_ends_an_empty_turn_with_an_empty_result() {
    let fm = FakeModel::start().await.unwrap();
    let sandbox = Sandbox::new();
    let outcome = claude(&fm, &sandbox, &api_key(), "SCN_EMPTY go").await;
    assert_eq!(outcome.code, Some(0), "{outcome}");
    let result = outcome
        .events()
        .into_iter()
        .find(|e| e["type"] == "result")
        .unwrap();
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "");
    // Claude nudges itself once ("no visible output"); the marker still holds.
    let requests = fm.model_requests();
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.decision == Decision::Empty));
}

#[test]
fn a_missing_cli_fails_with_the_install_hint() {
    let err = cli("no-such-agent-cli").unwrap_err().to_string();
    assert!(err.contains("scripts/install-providers.sh"), "{err}");
}
