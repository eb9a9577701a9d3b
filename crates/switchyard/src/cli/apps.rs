//! `apps register|list|show`.

use super::client::{Client, percent_encode};
use super::exit::Exit;
use super::output::{self, Table, or_dash};
use super::settings::ClientArgs;
use anyhow::Context as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use switchyard_contracts::api::{AppList, AppView, RegisterAppRequest};

/// Register apps and read them back
#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Register (or replace) an app from a TOML or JSON file with the registration body
    #[command(after_help = "\
The file holds the body of POST /api/apps/register, in JSON or in TOML (by its
extension; otherwise JSON is tried first), e.g. demo.toml:

  appId = \"demo\"
  [runtimeDefaults]
  provider = \"scripted\"
  timeoutMs = 60000
  [executionProfiles.fast.providerOptions]
  budget = { maxTurns = 20 }")]
    Register(RegisterArgs),
    /// List the apps
    List(ListArgs),
    /// Show one app: runtime defaults and execution profiles
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The registration file (.toml or .json)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The app's id
    #[arg(value_name = "APP")]
    pub app: String,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

/// Reads a registration body: TOML for `.toml`, JSON for `.json`, else whichever parses
/// (JSON first). Unknown keys are refused here, naming the key, as the API would.
pub fn read_registration(path: &Path) -> anyhow::Result<RegisterAppRequest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let from_toml = |text: &str| {
        toml::from_str::<RegisterAppRequest>(text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid registration: {e}", path.display()))
    };
    let from_json = |text: &str| {
        serde_json::from_str::<RegisterAppRequest>(text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid registration: {e}", path.display()))
    };
    match extension.as_deref() {
        Some("toml") => from_toml(&text),
        Some("json") => from_json(&text),
        _ => from_json(&text).or_else(|json_error| {
            from_toml(&text).map_err(|toml_error| {
                anyhow::anyhow!("{json_error:#} (as JSON); {toml_error:#} (as TOML)")
            })
        }),
    }
}

pub async fn register(client: &Client, args: &RegisterArgs) -> anyhow::Result<Exit> {
    let request = read_registration(&args.file)?;
    let body: Value = client.post("/api/apps/register", &request).await?;
    if args.json {
        output::json(&body)?;
    } else {
        let app: AppView = serde_json::from_value(body)
            .context("the gateway's app is not what the API describes")?;
        println!("registered app {}", app.app_id);
    }
    Ok(Exit::Success)
}

pub async fn list(client: &Client, args: &ListArgs) -> anyhow::Result<Exit> {
    let body: Value = client.get("/api/apps").await?;
    if args.json {
        output::json(&body)?;
        return Ok(Exit::Success);
    }
    let list: AppList = serde_json::from_value(body)
        .context("the gateway's app list is not what the API describes")?;
    let mut table = Table::new(&["APP", "NAME", "PROVIDER", "MODEL", "PROFILES", "UPDATED"]);
    for app in &list.apps {
        table.row(vec![
            app.app_id.clone(),
            app.name.clone(),
            or_dash(app.runtime_defaults.provider.as_deref()),
            or_dash(app.runtime_defaults.model.as_deref()),
            app.execution_profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            output::time(&app.updated_at),
        ]);
    }
    if table.is_empty() {
        println!("no apps");
    } else {
        table.print()?;
    }
    Ok(Exit::Success)
}

pub async fn show(client: &Client, args: &ShowArgs) -> anyhow::Result<Exit> {
    let body: Value = client
        .get(&format!("/api/apps/{}", percent_encode(&args.app)))
        .await?;
    if args.json {
        output::json(&body)?;
        return Ok(Exit::Success);
    }
    let app: AppView =
        serde_json::from_value(body).context("the gateway's app is not what the API describes")?;
    output::fields(&[
        ("app", Some(app.app_id.clone())),
        ("name", Some(app.name.clone())),
        ("created", Some(output::time(&app.created_at))),
        ("updated", Some(output::time(&app.updated_at))),
    ])?;
    println!("runtime defaults:");
    print_indented(&serde_json::to_value(&app.runtime_defaults)?)?;
    for (name, profile) in &app.execution_profiles {
        println!("profile {name}:");
        print_indented(&serde_json::to_value(profile)?)?;
    }
    Ok(Exit::Success)
}

fn print_indented(value: &Value) -> anyhow::Result<()> {
    for line in serde_json::to_string_pretty(value)?.lines() {
        println!("  {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_files_give_the_same_registration() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("demo.toml");
        std::fs::write(
            &toml_path,
            "appId = \"demo\"\n[runtimeDefaults]\nprovider = \"scripted\"\ntimeoutMs = 60000\n\
             [executionProfiles.fast.providerOptions]\nbudget = { maxTurns = 20 }\n",
        )
        .unwrap();
        let json_path = dir.path().join("demo.json");
        std::fs::write(
            &json_path,
            r#"{"appId":"demo","runtimeDefaults":{"provider":"scripted","timeoutMs":60000},
               "executionProfiles":{"fast":{"providerOptions":{"budget":{"maxTurns":20}}}}}"#,
        )
        .unwrap();
        let from_toml = read_registration(&toml_path).unwrap();
        assert_eq!(from_toml, read_registration(&json_path).unwrap());
        assert_eq!(from_toml.runtime_defaults.timeout_ms, Some(60_000));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "appId = \"x\"\nruntimeDefault = {}\n").unwrap();
        let error = read_registration(&path).unwrap_err().to_string();
        assert!(error.contains("runtimeDefault"), "{error}");
        assert!(error.contains("bad.toml"), "{error}");
    }
}
