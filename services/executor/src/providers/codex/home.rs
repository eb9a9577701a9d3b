//! The run's `CODEX_HOME`: a directory under the conversation's CLI state dir whose
//! `config.toml` is rewritten for every run. It also holds codex's threads
//! (`sessions/…/rollout-*.jsonl` plus SQLite state), which is why it lives as long as
//! the conversation: a follow-up run resumes its thread from here.
//!
//! The config names one model provider, `switchyard`, pointing at the operator's base
//! URL (`executor.credentials.codex-app-server.base_url`) with the API key taken from
//! the env var the run names (codex reads the variable itself; the value never touches
//! this file) and small retry knobs. Rewriting it for every run also undoes whatever an
//! earlier turn's agent may have written there. A `.codex/config.toml` in the workspace
//! is not read: codex only reads a project's config for projects this file trusts.

use super::options::CodexOptions;
use crate::cli::StateFiles;
use std::path::{Path, PathBuf};

/// The model provider id in `config.toml`.
pub(crate) const MODEL_PROVIDER: &str = "switchyard";
/// The home's directory name in the state directory.
const HOME_DIR: &str = "codex-home";

/// `<state>/codex-home`.
pub(crate) fn codex_home(state: &Path) -> PathBuf {
    state.join(HOME_DIR)
}

/// Creates the home and writes its `config.toml`.
pub(crate) async fn prepare(state: &StateFiles, options: &CodexOptions) -> std::io::Result<()> {
    state
        .write(
            Path::new(HOME_DIR).join("config.toml"),
            config_toml(options),
        )
        .await
}

/// The `config.toml` of a run.
pub(crate) fn config_toml(options: &CodexOptions) -> String {
    let mut toml = String::new();
    if let Some(model) = &options.model {
        toml.push_str(&format!("model = {}\n", quoted(model)));
    }
    toml.push_str(&format!("model_provider = {}\n", quoted(MODEL_PROVIDER)));
    toml.push_str("check_for_update_on_startup = false\n");
    toml.push_str("\n[analytics]\nenabled = false\n");
    toml.push_str(&format!("\n[model_providers.{MODEL_PROVIDER}]\n"));
    toml.push_str("name = \"Switchyard\"\n");
    toml.push_str(&format!("base_url = {}\n", quoted(&options.base_url)));
    toml.push_str(&format!("env_key = {}\n", quoted(options.api_key_env())));
    toml.push_str("wire_api = \"responses\"\n");
    toml.push_str(&format!(
        "request_max_retries = {}\n",
        options.request_max_retries
    ));
    toml.push_str(&format!(
        "stream_max_retries = {}\n",
        options.stream_max_retries
    ));
    toml.push_str(&format!(
        "stream_idle_timeout_ms = {}\n",
        options.stream_idle_timeout_ms
    ));
    toml
}

/// A TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_provider_key_env_and_retry_knobs() {
        let options = CodexOptions {
            model: Some("gpt-5.5".into()),
            base_url: "http://127.0.0.1:4000/v1".into(),
            credential_env: vec!["FAKE_KEY".into()],
            approval_policy: "untrusted".into(),
            sandbox: "workspace-write".into(),
            request_max_retries: 1,
            stream_max_retries: 2,
            stream_idle_timeout_ms: 3000,
        };
        let toml = config_toml(&options);
        assert!(toml.starts_with("model = \"gpt-5.5\"\nmodel_provider = \"switchyard\"\n"));
        assert!(toml.contains("[model_providers.switchyard]\n"));
        assert!(toml.contains("base_url = \"http://127.0.0.1:4000/v1\"\n"));
        assert!(toml.contains("env_key = \"FAKE_KEY\"\n"));
        assert!(toml.contains("wire_api = \"responses\"\n"));
        assert!(toml.contains(
            "request_max_retries = 1\nstream_max_retries = 2\nstream_idle_timeout_ms = 3000\n"
        ));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }
}
