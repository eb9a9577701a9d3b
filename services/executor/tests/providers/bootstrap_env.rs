//! `scripts/bootstrap-local-provider-env.sh`: run with `HOME` set to a temporary
//! directory holding sample CLI configurations, then the env file it wrote is read back
//! with the executor's own parser.

use secrecy::ExposeSecret as _;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use switchyard_executor::test_support::Credentials;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bootstrap-local-provider-env.sh")
}

fn run_script(home: &Path, args: &[&str]) -> Output {
    let output = std::process::Command::new("bash")
        .arg(script())
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .output()
        .expect("run the bootstrap script");
    assert!(
        output.status.success(),
        "the script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every name and value of the env file, as the executor reads it.
fn read_back(path: &Path, names: &[&str]) -> HashMap<String, String> {
    let credentials = Credentials::load(Some(path), &HashMap::new(), &Default::default())
        .expect("the executor parses it");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    credentials
        .resolve(&names)
        .expect("every expected name has a value")
        .into_iter()
        .map(|(k, v)| (k, v.expose_secret().to_owned()))
        .collect()
}

#[test]
fn the_env_file_is_written_from_all_three_cli_configurations() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write(
        &home.join(".codex/auth.json"),
        r#"{"OPENAI_API_KEY": "sk-codex-auth-1234", "tokens": null}"#,
    );
    write(
        &home.join(".claude/settings.json"),
        r#"{"model": "opus", "env": {"ANTHROPIC_API_KEY": "sk-ant-it's-$HOME", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "CLAUDE_CODE_MAX_RETRIES": 0, "DISABLE_TELEMETRY": true}}"#,
    );
    write(
        &home.join(".config/opencode/opencode.json"),
        r#"{"$schema": "https://opencode.ai/config.json", "provider": {
            "my-proxy": {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "http://10.0.0.1:8080/v1", "apiKey": "sk-proxy \"quoted\" value"}},
            "anthropic": {"options": {"apiKey": "sk-ant-from-opencode"}},
            "nokey": {"models": {}}
        }}"#,
    );
    let out = home.join("custom/provider-env");
    let output = run_script(home, &["--out", out.to_str().unwrap()]);

    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let values = read_back(
        &out,
        &[
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CODE_MAX_RETRIES",
            "DISABLE_TELEMETRY",
            "MY_PROXY_API_KEY",
            "MY_PROXY_BASE_URL",
        ],
    );
    assert_eq!(values["OPENAI_API_KEY"], "sk-codex-auth-1234");
    // opencode's anthropic key comes later and wins (with a note).
    assert_eq!(values["ANTHROPIC_API_KEY"], "sk-ant-from-opencode");
    assert_eq!(values["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
    assert_eq!(values["CLAUDE_CODE_MAX_RETRIES"], "0");
    assert_eq!(values["DISABLE_TELEMETRY"], "true");
    assert_eq!(values["MY_PROXY_API_KEY"], "sk-proxy \"quoted\" value");
    assert_eq!(values["MY_PROXY_BASE_URL"], "http://10.0.0.1:8080/v1");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("NOKEY"), "{text}");

    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in ["sk-codex-auth-1234", "sk-ant-", "sk-proxy", "10.0.0.1"] {
        assert!(
            !printed.contains(secret),
            "the script printed a value: {printed}"
        );
    }
    assert!(
        printed.contains("ANTHROPIC_API_KEY from ~/.config/opencode/opencode.json overrides"),
        "{printed}"
    );
    assert!(printed.contains("wrote 7 variable(s)"), "{printed}");
}

#[test]
fn missing_files_are_skipped_with_a_note_and_the_default_path_is_used() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write(&home.join(".claude/settings.json"), "{not json");
    let output = run_script(home, &[]);
    let out = home.join(".local/provider-env");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let credentials = Credentials::load(Some(&out), &HashMap::new(), &Default::default()).unwrap();
    assert!(!credentials.is_configured(&["OPENAI_API_KEY".into()]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("~/.codex/auth.json not found, skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("~/.claude/settings.json is not readable JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("opencode.json not found, skipped"),
        "{stderr}"
    );

    // A positional path works too, and an existing file is replaced whole.
    write(
        &home.join(".codex/auth.json"),
        r#"{"OPENAI_API_KEY": "sk-second-run-99"}"#,
    );
    run_script(home, &[out.to_str().unwrap()]);
    let values = read_back(&out, &["OPENAI_API_KEY"]);
    assert_eq!(values["OPENAI_API_KEY"], "sk-second-run-99");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// `codex login` with a ChatGPT account leaves `tokens` and no key: the script says so,
/// naming the file, and copies none of the login's tokens anywhere.
#[test]
fn a_codex_chatgpt_login_is_named_and_never_copied() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write(
        &home.join(".codex/auth.json"),
        r#"{"OPENAI_API_KEY": null, "tokens": {"id_token": "eyJ-id-token-secret", "access_token": "eyJ-access-secret", "refresh_token": "rt-refresh-secret", "account_id": "acct-1"}, "last_refresh": "2026-01-01T00:00:00Z"}"#,
    );
    write(
        &home.join(".claude/settings.json"),
        r#"{"env": {"ANTHROPIC_API_KEY": "sk-ant-with-login"}}"#,
    );
    let out = home.join(".local/provider-env");
    let output = run_script(home, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "warning: ~/.codex/auth.json holds a ChatGPT login (`tokens`) and no OPENAI_API_KEY"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("wrote 1 variable(s) to .local/provider-env: ANTHROPIC_API_KEY"),
        "the summary names what was written: {stderr}"
    );
    let credentials = Credentials::load(Some(&out), &HashMap::new(), &Default::default()).unwrap();
    assert!(!credentials.is_configured(&["OPENAI_API_KEY".into()]));
    let written = std::fs::read_to_string(&out).unwrap();
    let printed = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    for secret in [
        "eyJ-id-token-secret",
        "eyJ-access-secret",
        "rt-refresh-secret",
    ] {
        assert!(!written.contains(secret), "a token was written: {written}");
        assert!(!printed.contains(secret), "a token was printed: {printed}");
    }
}
