//! docker-compose.yml, checked without Docker (which cannot run where the tests run):
//! the file is parsed, its variables interpolated as compose does with the `.env` that
//! `scripts/compose-env.sh` writes, and then every name it relies on is checked
//! against the repository:
//!
//! * every Switchyard service runs a binary of the workspace that the Dockerfile
//!   builds, from a Dockerfile stage that exists;
//! * every `SWITCHYARD_*` variable it sets is a documented key of a section that
//!   service reads, and the whole environment loads and validates through the
//!   service's own config loader;
//! * every mounted file exists in the repository (or is the one a bootstrap script
//!   writes), and what a config names inside a container is mounted there;
//! * only the gateway publishes a port: the control-plane's and the executors' are not,
//!   and the executors' and the manager's listeners stay on loopback;
//! * every service has a healthcheck, calling that service's own health endpoint on
//!   the port it listens on, with a client its image has;
//! * no token or password has a literal value or a default in the file: each is a
//!   required variable that `scripts/compose-env.sh` generates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_platform::config::load_from;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// YAML merge keys and compose's variable interpolation.

/// Resolves YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`) everywhere, as compose does:
/// keys of the mapping itself win over merged ones, earlier merged mappings over later.
/// (Aliases are already expanded by the parser.)
fn merge_keys(value: Value) -> Value {
    match value {
        Value::Mapping(mapping) => {
            let mut own = Mapping::new();
            let mut merged: Vec<Mapping> = Vec::new();
            for (key, value) in mapping {
                if key.as_str() == Some("<<") {
                    match merge_keys(value) {
                        Value::Mapping(m) => merged.push(m),
                        Value::Sequence(items) => {
                            for item in items {
                                match item {
                                    Value::Mapping(m) => merged.push(m),
                                    other => panic!("`<<` of a non-mapping: {other:?}"),
                                }
                            }
                        }
                        other => panic!("`<<` of a non-mapping: {other:?}"),
                    }
                } else {
                    own.insert(key, merge_keys(value));
                }
            }
            for source in merged {
                for (key, value) in source {
                    if !own.contains_key(&key) {
                        own.insert(key, value);
                    }
                }
            }
            Value::Mapping(own)
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

/// One `${…}` or `$NAME` reference in a string of the compose file.
#[derive(Debug, Clone, PartialEq)]
enum Reference {
    /// `${NAME}` / `$NAME`.
    Plain(String),
    /// `${NAME:-default}` / `${NAME-default}`.
    Default(String, String),
    /// `${NAME:?message}` / `${NAME?message}`.
    Required(String),
}

impl Reference {
    fn name(&self) -> &str {
        match self {
            Reference::Plain(n) | Reference::Default(n, _) | Reference::Required(n) => n,
        }
    }
}

/// Interpolates `text` as compose does (`$$` is a literal `$`), looking variables up
/// with `lookup`; returns the result and the references it made. An unset required
/// variable is an error, like compose's.
fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Reference>), String> {
    let mut out = String::new();
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let reference = if let Some(body) = rest.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let inner = &body[..end];
            rest = &body[end + 1..];
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_end);
            let name = name.to_owned();
            if let Some(default) = op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
                Reference::Default(name, default.to_owned())
            } else if op.starts_with(":?") || op.starts_with('?') {
                Reference::Required(name)
            } else if op.is_empty() {
                Reference::Plain(name)
            } else {
                return Err(format!(
                    "unsupported interpolation ${{{inner}}} in {text:?}"
                ));
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = rest[..end].to_owned();
            rest = &rest[end..];
            Reference::Plain(name)
        };
        let value = lookup(reference.name()).filter(|v| !v.is_empty());
        match (&reference, value) {
            (_, Some(value)) => out.push_str(&value),
            // A default may itself refer to variables (`${A:-${B:-b}}`), as in compose.
            (Reference::Default(_, default), None) => {
                let (value, nested) = interpolate(default, lookup)?;
                out.push_str(&value);
                refs.extend(nested);
            }
            (Reference::Required(name), None) => {
                return Err(format!("required variable {name} is not set"));
            }
            (Reference::Plain(_), None) => {}
        }
        refs.push(reference);
    }
    out.push_str(rest);
    Ok((out, refs))
}

/// Where the `}` closing a `${` is in `body` (the text after the `${`), counting the
/// `${…}` nested in a default.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The references in `text`, whatever the variables' values.
fn references(text: &str) -> Vec<Reference> {
    interpolate(text, &|_| Some("x".to_owned()))
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

/// Interpolates every string of the document; returns it and every reference made.
fn interpolate_all(value: &Value, vars: &HashMap<String, String>) -> (Value, Vec<Reference>) {
    let mut refs = Vec::new();
    let value = interpolate_value(value, vars, &mut refs);
    (value, refs)
}

fn interpolate_value(
    value: &Value,
    vars: &HashMap<String, String>,
    refs: &mut Vec<Reference>,
) -> Value {
    match value {
        Value::String(s) => {
            let (text, mut found) =
                interpolate(s, &|name| vars.get(name).cloned()).unwrap_or_else(|e| panic!("{e}"));
            refs.append(&mut found);
            Value::String(text)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|item| interpolate_value(item, vars, refs))
                .collect(),
        ),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (k.clone(), interpolate_value(v, vars, refs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Environment keys that carry a secret, and values that embed one (a URL with a
/// password).
fn is_secret(key: &str, value: &str) -> bool {
    let key = key.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "SECRET", "SEED", "API_KEY"]
        .iter()
        .any(|word| key.contains(word))
        || (value.contains("://") && value.contains('@'))
}

/// Why a secret's raw value in the file is not acceptable, if it is not: it must come
/// from required variables only, with no default that would print a value here.
fn literal_secret_problem(key: &str, raw: &str) -> Option<String> {
    if !is_secret(key, raw) {
        return None;
    }
    let refs = references(raw);
    if refs.is_empty() {
        return Some(format!("{key} has a literal value"));
    }
    if let Some(r) = refs.iter().find(|r| !matches!(r, Reference::Required(_))) {
        return Some(format!(
            "{key} takes {} without requiring it (`${{{}:?…}}`): {r:?}",
            r.name(),
            r.name()
        ));
    }
    if raw.contains("://") && raw.contains('@') {
        // The password of a URL must be the variable, not text beside it.
        let userinfo = raw.split("://").nth(1)?.split('@').next()?;
        let password = userinfo.split_once(':').map_or("", |(_, p)| p);
        if !(password.starts_with("${") && password.ends_with('}')) {
            return Some(format!(
                "{key}: the URL's password is not a required variable"
            ));
        }
    }
    None
}

#[test]
fn a_default_may_refer_to_another_variable_as_in_compose() {
    let vars: HashMap<String, String> = [(
        "CONTROL_PLANE_PROVIDER_MODE".to_owned(),
        "scripted".to_owned(),
    )]
    .into();
    let lookup = |name: &str| vars.get(name).cloned();
    let text = "${SWITCHYARD_DEFAULT_PROVIDER:-${CONTROL_PLANE_PROVIDER_MODE:-codex-app-server}}";
    let (value, refs) = interpolate(text, &lookup).unwrap();
    assert_eq!(value, "scripted");
    assert_eq!(refs.len(), 2, "{refs:?}");
    let (value, _) = interpolate(text, &|_| None).unwrap();
    assert_eq!(value, "codex-app-server");
    let (value, _) = interpolate(text, &|name| {
        (name == "SWITCHYARD_DEFAULT_PROVIDER").then(|| "opencode".to_owned())
    })
    .unwrap();
    assert_eq!(value, "opencode");
    assert!(interpolate("${A:-${B}", &|_| None).is_err(), "unclosed");
}

#[test]
fn the_literal_secret_check_catches_defaults_and_literals() {
    assert!(
        literal_secret_problem("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "${T:-dev-admin-token}")
            .is_some()
    );
    assert!(literal_secret_problem("POSTGRES_PASSWORD", "switchyard").is_some());
    assert!(literal_secret_problem("SWITCHYARD_DATABASE__URL", "postgres://u:pw@db/x").is_some());
    assert!(
        literal_secret_problem("SWITCHYARD_DATABASE__URL", "postgres://u:pw${P:?x}@db/x").is_some()
    );
    assert!(literal_secret_problem("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "${T:?set T}").is_none());
    assert!(
        literal_secret_problem("SWITCHYARD_DATABASE__URL", "postgres://u:${P:?x}@db/x").is_none()
    );
    assert!(literal_secret_problem("RUST_LOG", "${RUST_LOG:-info}").is_none());
}

// ---------------------------------------------------------------------------------------
// The file, as compose would see it.

struct Compose {
    /// After merge keys and interpolation.
    doc: Value,
    /// After merge keys, before interpolation.
    raw: Value,
    refs: Vec<Reference>,
    /// What scripts/compose-env.sh wrote.
    env_file: HashMap<String, String>,
}

impl Compose {
    fn load() -> Compose {
        let dir = tempfile::tempdir().unwrap();
        let env_path = dir.path().join("compose.env");
        let status = Command::new("bash")
            .arg(repo().join("scripts/compose-env.sh"))
            .arg("--out")
            .arg(&env_path)
            // Only what the script generates: nothing inherited from this environment.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/compose-env.sh failed");
        let text = std::fs::read_to_string(&env_path).unwrap();
        let env_file: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let parsed: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
        let raw = merge_keys(parsed);
        let (doc, refs) = interpolate_all(&raw, &env_file);
        Compose {
            doc,
            raw,
            refs,
            env_file,
        }
    }

    fn services(&self) -> BTreeMap<String, &Value> {
        self.doc["services"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
            .collect()
    }

    fn raw_service(&self, name: &str) -> &Value {
        &self.raw["services"][name]
    }

    /// A service's environment (a mapping or a `KEY=value` list).
    fn environment(service: &Value) -> BTreeMap<String, String> {
        match &service["environment"] {
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => String::new(),
                        other => panic!("environment value {other:?}"),
                    };
                    (k.as_str().unwrap().to_owned(), value)
                })
                .collect(),
            Value::Sequence(items) => items
                .iter()
                .map(|i| {
                    let (k, v) = i.as_str().unwrap().split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
            Value::Null => BTreeMap::new(),
            other => panic!("environment {other:?}"),
        }
    }

    /// Switchyard's own services: those built from the repository's Dockerfile.
    fn is_switchyard(service: &Value) -> bool {
        service.get("build").is_some()
    }

    fn command(service: &Value) -> Vec<String> {
        service["command"]
            .as_sequence()
            .map(|c| c.iter().map(|a| a.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// What the repository offers.

/// The binaries of the workspace's crates: `[[bin]]` names, and the package name of a
/// crate with `src/main.rs`.
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for group in ["crates", "services"] {
        for entry in std::fs::read_dir(repo().join(group)).unwrap() {
            let dir = entry.unwrap().path();
            let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
                continue;
            };
            let manifest: toml::Table = toml::from_str(&text).unwrap();
            let package = manifest["package"]["name"].as_str().unwrap().to_owned();
            if dir.join("src/main.rs").exists() {
                bins.insert(package.clone());
            }
            for bin in manifest
                .get("bin")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
            {
                bins.insert(bin["name"].as_str().unwrap().to_owned());
            }
        }
    }
    bins
}

/// The Dockerfile's stages (`FROM … AS name`) and, for each, the packages its own
/// `apt-get install` lines name and the stage it is built `FROM`.
struct Dockerfile {
    text: String,
    stages: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let text = read("Dockerfile");
        // Instructions, with their `\` continuations joined and comments dropped.
        let mut instructions: Vec<String> = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    pending.push_str(part);
                    pending.push(' ');
                }
                None => {
                    pending.push_str(trimmed);
                    if !pending.trim().is_empty() {
                        instructions.push(std::mem::take(&mut pending));
                    }
                    pending.clear();
                }
            }
        }
        let mut stages: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        let mut current: Option<String> = None;
        for instruction in &instructions {
            let words: Vec<&str> = instruction.split_whitespace().collect();
            if words.first() == Some(&"FROM") {
                let base = words[1].to_owned();
                let name = match words.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
                    Some(i) => words[i + 1].to_owned(),
                    None => base.clone(),
                };
                stages.insert(name.clone(), (base, BTreeSet::new()));
                current = Some(name);
                continue;
            }
            let Some(stage) = &current else { continue };
            for command in instruction.split("&&") {
                let Some((_, packages)) = command.split_once("apt-get install") else {
                    continue;
                };
                for package in packages.split_whitespace().filter(|w| !w.starts_with('-')) {
                    stages.get_mut(stage).unwrap().1.insert(package.to_owned());
                }
            }
        }
        Dockerfile { text, stages }
    }

    /// Whether `package` is installed in `stage` or a stage it is built from.
    fn has_package(&self, stage: &str, package: &str) -> bool {
        let mut at = stage;
        for _ in 0..16 {
            let Some((base, packages)) = self.stages.get(at) else {
                return false;
            };
            if packages.contains(package) {
                return true;
            }
            at = base;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------
// The service configurations, through each service's own loader.

/// What the checks need from a loaded service configuration.
struct Loaded {
    /// The health listener's address.
    listen: SocketAddr,
    /// The sections the service reads (others' are ignored by its loader).
    sections: &'static [&'static str],
    /// The executor's credentials file, if any.
    credentials_env_file: Option<PathBuf>,
    /// The executor's provider-run API token is set.
    executor_api_on: bool,
}

fn load_service(binary: &str, env: &BTreeMap<String, String>) -> Loaded {
    let env: HashMap<String, String> = env.clone().into_iter().collect();
    fn fail<T>(binary: &str, e: impl std::fmt::Display) -> T {
        panic!("{binary}: its compose environment: {e}")
    }
    match binary {
        "switchyard-gateway" => {
            let c: switchyard_gateway::Config =
                load_from(None, env).unwrap_or_else(|e| fail(binary, e));
            c.validate().unwrap_or_else(|e| fail(binary, e));
            Loaded {
                listen: c.gateway.listen,
                sections: &["nats", "telemetry", "http", "gateway"],
                credentials_env_file: None,
                executor_api_on: false,
            }
        }
        "switchyard-control-plane" => {
            let c: switchyard_control_plane::Config =
                load_from(None, env).unwrap_or_else(|e| fail(binary, e));
            c.validate().unwrap_or_else(|e| fail(binary, e));
            Loaded {
                listen: c.control_plane.listen,
                sections: &["nats", "telemetry", "http", "database", "control_plane"],
                credentials_env_file: None,
                executor_api_on: false,
            }
        }
        "switchyard-executor-manager" => {
            let c: switchyard_executor_manager::Config =
                load_from(None, env).unwrap_or_else(|e| fail(binary, e));
            c.validate().unwrap_or_else(|e| fail(binary, e));
            Loaded {
                listen: c.executor_manager.listen,
                sections: &["nats", "telemetry", "http", "executor_manager"],
                credentials_env_file: None,
                executor_api_on: false,
            }
        }
        "switchyard-executor" => {
            let c: switchyard_executor::Config =
                load_from(None, env).unwrap_or_else(|e| fail(binary, e));
            c.validate().unwrap_or_else(|e| fail(binary, e));
            assert!(
                !c.executor.credentials_from_environment,
                "{binary}: the executor's own environment is not a credential store"
            );
            Loaded {
                listen: c.executor.listen,
                sections: &["nats", "telemetry", "http", "executor"],
                credentials_env_file: c.executor.credentials_env_file.clone(),
                executor_api_on: c.executor.api_token.is_some(),
            }
        }
        other => panic!("no config loader known for {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

#[test]
fn compose_names_only_what_exists_and_keeps_internal_listeners_and_secrets_in() {
    let compose = Compose::load();
    let services = compose.services();
    let binaries = workspace_binaries();
    let dockerfile = Dockerfile::load();
    let configuration_doc = read("docs/configuration.md");
    let declared_volumes: BTreeSet<String> = compose.doc["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let declared_secrets = compose.doc["secrets"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    let mut published: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut switchyard_binaries_seen = BTreeSet::new();
    let mut private_ports: Vec<(String, u16)> = Vec::new();

    assert!(services.len() >= 6, "{:?}", services.keys());
    for (name, service) in &services {
        // --- secrets: required variables only, never a value printed in the file.
        let raw_env = Compose::environment(compose.raw_service(name));
        for (key, raw) in &raw_env {
            if let Some(problem) = literal_secret_problem(key, raw) {
                panic!("{name}: {problem}");
            }
        }
        let env = Compose::environment(service);

        // --- published ports.
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let spec = match port {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Mapping(m) => m
                    .get("target")
                    .map(|t| format!("{}", t.as_u64().unwrap()))
                    .unwrap(),
                other => panic!("{name}: port {other:?}"),
            };
            let container_port: u16 = spec
                .rsplit(':')
                .next()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|e| panic!("{name}: port {spec}: {e}"));
            published
                .entry(name.clone())
                .or_default()
                .push(container_port);
        }
        assert!(
            service.get("expose").is_none(),
            "{name}: `expose` is not used"
        );

        // --- healthcheck.
        let health: Vec<String> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has no healthcheck"))
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert!(
            matches!(
                health.first().map(String::as_str),
                Some("CMD" | "CMD-SHELL")
            ) && health.len() > 1,
            "{name}: healthcheck {health:?}"
        );

        // --- bind mounts: the host side is in the repository.
        let mut mount_targets = BTreeMap::new();
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            let mut parts = spec.split(':');
            let source = parts.next().unwrap();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("{name}: volume {spec}"));
            if source.starts_with("./") || source.starts_with('/') {
                let path = repo().join(source);
                assert!(
                    path.exists(),
                    "{name}: mounts {source}, which is not in the repository"
                );
                assert!(
                    spec.ends_with(":ro"),
                    "{name}: a file from the repository is mounted read-only: {spec}"
                );
                mount_targets.insert(target.to_owned(), path);
            } else {
                assert!(
                    declared_volumes.contains(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        // A mounted NATS config's `include` names a file mounted beside it.
        for (target, source) in &mount_targets {
            let text = std::fs::read_to_string(source).unwrap_or_default();
            for line in text.lines() {
                if let Some(included) = line.trim().strip_prefix("include ") {
                    let included = included.trim().trim_matches('"');
                    let beside = Path::new(target).parent().unwrap().join(included);
                    let beside = beside.to_str().unwrap().replace("/./", "/");
                    assert!(
                        mount_targets.contains_key(&beside),
                        "{name}: {target} includes {included}, which is not mounted at {beside}"
                    );
                }
            }
        }
        let secrets: BTreeSet<String> = service["secrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        for secret in &secrets {
            assert!(
                declared_secrets.contains_key(secret.as_str()),
                "{name}: secret {secret} is not declared"
            );
        }

        if name == "nats" {
            // Every password the NATS config reads from its environment is set, and nothing else.
            let config = read("nats/auth/nats-server.conf");
            let wanted: BTreeSet<String> = config
                .split('$')
                .skip(1)
                .filter_map(|s| {
                    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
                    let n = &s[..end];
                    n.starts_with("SWITCHYARD_").then(|| n.to_owned())
                })
                .collect();
            let given: BTreeSet<String> = env
                .keys()
                .filter(|k| k.starts_with("SWITCHYARD_"))
                .cloned()
                .collect();
            assert_eq!(wanted, given, "nats: the passwords nats-server.conf reads");
            // Its healthcheck calls the monitoring port the mounted config opens, on loopback.
            let compose_conf = read("nats/compose/nats-server.conf");
            assert!(
                compose_conf.contains("http: \"127.0.0.1:8222\""),
                "{compose_conf}"
            );
            assert!(
                health
                    .iter()
                    .any(|a| a.starts_with("http://127.0.0.1:8222/healthz")),
                "{health:?}"
            );
            continue;
        }
        if !Compose::is_switchyard(service) {
            continue;
        }

        // --- the command is a binary of the workspace that the image has.
        let command = Compose::command(service);
        let binary = command
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"))
            .clone();
        assert!(
            binaries.contains(&binary),
            "{name}: {binary} is not a binary of the workspace ({binaries:?})"
        );
        assert!(
            dockerfile.text.contains(&format!("--bin {binary}")),
            "{name}: the Dockerfile does not build {binary}"
        );
        let target = service["build"]["target"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no build target"));
        assert!(
            dockerfile.stages.contains_key(target),
            "{name}: no Dockerfile stage {target}"
        );
        switchyard_binaries_seen.insert(binary.clone());

        // --- every SWITCHYARD_ variable is a documented key of a section it reads.
        let loaded = load_service(&binary, &env);
        for key in env.keys().filter(|k| k.starts_with("SWITCHYARD_")) {
            let path = key.trim_start_matches("SWITCHYARD_");
            let (section, rest) = path.split_once("__").unwrap_or_else(|| {
                panic!("{name}: {key} is no config key (SWITCHYARD_<SECTION>__<KEY>)")
            });
            let section = section.to_ascii_lowercase();
            assert!(
                loaded.sections.contains(&section.as_str()),
                "{name}: {key}: {binary} does not read [{section}]"
            );
            // `credentials.claude_code.base_url`: the last part is the key documented.
            let leaf = rest.rsplit("__").next().unwrap().to_ascii_lowercase();
            assert!(
                configuration_doc.contains(&format!("[{section}]"))
                    && configuration_doc.contains(&leaf),
                "{name}: {key} is not documented in docs/configuration.md"
            );
        }

        // --- health endpoint on the service's own listener, with a client the image has.
        let url = health
            .iter()
            .find(|a| a.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name}: the healthcheck calls no URL: {health:?}"));
        assert_eq!(
            url,
            &format!("http://127.0.0.1:{}/readyz", loaded.listen.port()),
            "{name}: the healthcheck calls another port than {binary} listens on"
        );
        let client = if health[0] == "CMD" {
            &health[1]
        } else {
            health[1].split_whitespace().next().unwrap()
        };
        assert!(
            dockerfile.has_package(target, client),
            "{name}: the healthcheck runs {client}, which the {target} image does not install"
        );

        // --- internal listeners.
        match binary.as_str() {
            "switchyard-control-plane" => private_ports.push((name.clone(), loaded.listen.port())),
            "switchyard-executor" | "switchyard-executor-manager" => {
                assert!(
                    loaded.listen.ip().is_loopback(),
                    "{name}: {binary} listens on {}",
                    loaded.listen
                );
                private_ports.push((name.clone(), loaded.listen.port()));
                assert!(
                    !loaded.executor_api_on,
                    "{name}: the provider-run API is on"
                );
            }
            _ => {}
        }

        // --- the executor's credentials file is mounted where its config says.
        if let Some(file) = &loaded.credentials_env_file {
            let secret = file
                .strip_prefix("/run/secrets")
                .unwrap_or_else(|_| {
                    panic!(
                        "{name}: credentials file {} is not a mounted secret",
                        file.display()
                    )
                })
                .to_str()
                .unwrap();
            assert!(
                secrets.contains(secret),
                "{name}: {} is not mounted (secrets: {secrets:?})",
                file.display()
            );
        }
        if binary == "switchyard-executor" {
            assert!(
                loaded.credentials_env_file.is_some(),
                "{name}: the executor has no credentials file"
            );
            assert_eq!(
                target, "executor",
                "{name}: the executor image has the agent CLIs"
            );
        }
    }

    // Every service binary is deployed.
    for binary in [
        "switchyard-gateway",
        "switchyard-control-plane",
        "switchyard-executor-manager",
        "switchyard-executor",
    ] {
        assert!(
            switchyard_binaries_seen.contains(binary),
            "no service runs {binary}"
        );
    }
    // Only the gateway publishes a port, and neither the control-plane's nor an
    // executor's (or manager's) listener is among them.
    assert_eq!(
        published.keys().collect::<Vec<_>>(),
        ["gateway"],
        "{published:?}"
    );
    for (service, port) in &private_ports {
        for (publisher, ports) in &published {
            assert!(
                !(publisher == service && ports.contains(port)),
                "{service} publishes its internal port {port}"
            );
        }
    }

    // The secret files compose mounts: in the repository, or written by the bootstrap
    // script at its default path.
    let bootstrap = read("scripts/bootstrap-local-provider-env.sh");
    for (name, secret) in &declared_secrets {
        let file = secret["file"]
            .as_str()
            .unwrap_or_else(|| panic!("secret {name:?} is not a file"));
        let relative = file.trim_start_matches("./");
        assert!(
            repo().join(relative).exists() || bootstrap.contains(&format!("out=\"{relative}\"")),
            "secret {name:?}: {file} is neither in the repository nor what a bootstrap script writes"
        );
    }

    // Every variable compose requires is one scripts/compose-env.sh writes, and it
    // writes nothing compose does not use.
    let required: BTreeSet<&str> = compose
        .refs
        .iter()
        .filter_map(|r| match r {
            Reference::Required(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let generated: BTreeSet<&str> = compose.env_file.keys().map(String::as_str).collect();
    assert_eq!(
        required, generated,
        "required variables vs scripts/compose-env.sh"
    );
    for value in compose.env_file.values() {
        assert!(
            value.len() >= 32 && value.chars().all(|c| c.is_ascii_hexdigit()),
            "a generated secret is 32+ hex characters"
        );
    }
}

/// compose-env.sh keeps what a file already has, so a second run changes no secret
/// (the database and NATS would no longer accept the services' passwords otherwise).
#[test]
fn compose_env_keeps_existing_values_and_writes_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(".env");
    std::fs::write(&out, "SWITCHYARD_ADMIN_TOKEN=mine-0123456789abcdef\n").unwrap();
    let run = || {
        let output = Command::new("bash")
            .arg(repo().join("scripts/compose-env.sh"))
            .arg("--out")
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            std::fs::read_to_string(&out).unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (first, said) = run();
    assert!(
        first.contains("SWITCHYARD_ADMIN_TOKEN=mine-0123456789abcdef\n"),
        "{first}"
    );
    assert_eq!(
        first.matches("SWITCHYARD_ADMIN_TOKEN=").count(),
        1,
        "{first}"
    );
    assert!(first.contains("SWITCHYARD_INTERNAL_TOKEN="), "{first}");
    // No value is printed.
    for line in first.lines().filter(|l| l.contains('=')) {
        let value = line.split_once('=').unwrap().1;
        assert!(!said.contains(value), "printed a value: {said}");
    }
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (second, said) = run();
    assert_eq!(first, second, "a second run changes nothing");
    assert!(said.contains("nothing changed"), "{said}");

    // A value from the environment that would break the URL or the file is refused,
    // named, and nothing is written.
    let fresh = dir.path().join("fresh.env");
    for bad in [
        "p@ss:word/0123456789abcdefgh",
        "short",
        "line\nbreak-0123456789abcdefgh",
    ] {
        let output = Command::new("bash")
            .arg(repo().join("scripts/compose-env.sh"))
            .arg("--out")
            .arg(&fresh)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHYARD_POSTGRES_PASSWORD", bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("SWITCHYARD_POSTGRES_PASSWORD"), "{said}");
        assert!(!said.contains(bad), "printed the value: {said}");
        assert!(!fresh.exists(), "{bad}: wrote {}", fresh.display());
    }
}
