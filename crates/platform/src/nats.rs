//! NATS: connecting (with a server version check), following the connection's
//! lifecycle, and provisioning the JetStream resources defined in the repository's
//! `nats/` directory.
//!
//! The JSON files are embedded at compile time so that the definitions an operator
//! applies with the NATS CLI and the ones the services apply are the same bytes.

mod connection;

pub use connection::{ConnectionState, ConnectionWatch, NatsConnection};

use crate::config::{ExposeSecret, NatsConfig};
use async_nats::jetstream::{self, consumer, kv, stream};
use serde_json::Value;
use std::time::Duration;

pub const RUN_COMMANDS_STREAM_JSON: &str = include_str!("../../../nats/streams/RUN_COMMANDS.json");
pub const RUN_EVENTS_STREAM_JSON: &str = include_str!("../../../nats/streams/RUN_EVENTS.json");
pub const EXECUTOR_MANAGER_CONSUMER_JSON: &str =
    include_str!("../../../nats/consumers/RUN_COMMANDS.executor-manager.json");
pub const PROJECTOR_CONSUMER_JSON: &str =
    include_str!("../../../nats/consumers/RUN_EVENTS.control-plane-projector.json");
pub const EXECUTORS_KV_JSON: &str = include_str!("../../../nats/kv/EXECUTORS.json");

/// Oldest server with the JetStream features Switchyard uses (per-subject expected
/// sequence, direct get, consumer filter semantics).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The seed itself is never part of the message.
    #[error(
        "nats.nkey_seed is not a valid nkey seed (expected the `SU…` seed of a user key, \
         as `nk -gen user` prints it): {reason}"
    )]
    InvalidSeed { reason: String },
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "NATS server at {url} is version {version}, but Switchyard needs 2.10 or newer with \
         JetStream. Run scripts/dev-deps.sh to start a pinned local server, or point \
         SWITCHYARD_NATS__URL at a newer one"
    )]
    TooOld { url: String, version: String },
    #[error(
        "NATS server at {url} does not answer JetStream requests (start it with -js): {source}"
    )]
    NoJetStream {
        url: String,
        #[source]
        source: async_nats::jetstream::context::AccountError,
    },
    #[error("NATS definition {name} is not valid: {source}")]
    Definition {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{kind} {name} exists with a different configuration (differs in: {fields}) and could \
         not be updated: {source}; fix or delete it with the NATS CLI (see nats/README.md)"
    )]
    Drift {
        kind: &'static str,
        name: String,
        fields: String,
        #[source]
        source: async_nats::Error,
    },
    #[error(
        "the NATS server refused to create {name}: its JetStream store limit has no room for \
         the stream's max_bytes ({max_bytes} bytes, nats/streams/{name}.json). Give the server \
         more disk or raise `jetstream {{ max_file_store }}` in its config (unset, it is 75% \
         of the disk free when the server started)"
    )]
    NoRoom { name: &'static str, max_bytes: i64 },
    #[error("JetStream request for {name} failed: {source}")]
    Api {
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Connects, checks the server version and that JetStream is enabled. For code that
/// holds state a reconnect invalidates, [`NatsConnection::open`] also watches the
/// connection.
pub async fn connect(
    config: &NatsConfig,
    client_name: &str,
) -> Result<async_nats::Client, NatsError> {
    connect_checked(connect_options(config, client_name).await?, config).await
}

/// The options every Switchyard client connects with.
async fn connect_options(
    config: &NatsConfig,
    client_name: &str,
) -> Result<async_nats::ConnectOptions, NatsError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        .request_timeout(Some(config.request_timeout()))
        // Reconnect quickly after a NATS restart; the default backoff grows to seconds.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(2_000))
        });
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
    }
    if let Some(seed) = &config.nkey_seed {
        // async-nats only logs a seed it cannot parse and connects without it, which the
        // server then refuses with a bare "authorization violation": say what is wrong.
        let seed = seed.expose_secret().trim();
        check_seed(seed)?;
        options = options.nkey(seed.to_owned());
    }
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?;
    }
    Ok(options)
}

/// Connects with `options` and checks the server version and that JetStream answers.
async fn connect_checked(
    options: async_nats::ConnectOptions,
    config: &NatsConfig,
) -> Result<async_nats::Client, NatsError> {
    let client = options
        .connect(config.url.as_str())
        .await
        .map_err(|source| NatsError::Connect {
            url: config.url.clone(),
            source,
        })?;
    let version = client.server_info().version;
    if !version_at_least(&version, MIN_SERVER_VERSION) {
        return Err(NatsError::TooOld {
            url: config.url.clone(),
            version,
        });
    }
    let js = jetstream::new(client.clone());
    js.query_account()
        .await
        .map_err(|source| NatsError::NoJetStream {
            url: config.url.clone(),
            source,
        })?;
    Ok(client)
}

/// A user seed (`SU…`) that decodes to a key pair.
fn check_seed(seed: &str) -> Result<(), NatsError> {
    let pair = nkeys::KeyPair::from_seed(seed).map_err(|error| NatsError::InvalidSeed {
        // nkeys' messages describe the encoding problem, not the seed's content.
        reason: error.to_string(),
    })?;
    if !pair.public_key().starts_with('U') {
        return Err(NatsError::InvalidSeed {
            reason: "the seed is not a user key's".to_owned(),
        });
    }
    Ok(())
}

/// `true` when `version` ("2.10.3", "v2.12.0-beta") is at least `min` (major, minor).
pub fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// Which resources a service needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resources {
    pub run_commands: bool,
    pub run_events: bool,
    pub executor_manager_consumer: bool,
    pub projector_consumer: bool,
    pub executors_kv: bool,
}

impl Resources {
    pub const ALL: Resources = Resources {
        run_commands: true,
        run_events: true,
        executor_manager_consumer: true,
        projector_consumer: true,
        executors_kv: true,
    };
}

/// Creates or verifies the resources. Safe to run concurrently from several services:
/// a create that loses a race is followed by a verification of what the winner made.
pub async fn provision(js: &jetstream::Context, what: Resources) -> Result<(), NatsError> {
    if what.run_commands || what.executor_manager_consumer {
        ensure_stream(js, "RUN_COMMANDS", RUN_COMMANDS_STREAM_JSON).await?;
    }
    if what.run_events || what.projector_consumer {
        ensure_stream(js, "RUN_EVENTS", RUN_EVENTS_STREAM_JSON).await?;
    }
    if what.executor_manager_consumer {
        ensure_consumer(
            js,
            "RUN_COMMANDS",
            "executor-manager",
            EXECUTOR_MANAGER_CONSUMER_JSON,
        )
        .await?;
    }
    if what.projector_consumer {
        ensure_consumer(
            js,
            "RUN_EVENTS",
            "control-plane-projector",
            PROJECTOR_CONSUMER_JSON,
        )
        .await?;
    }
    if what.executors_kv {
        ensure_kv(js, EXECUTORS_KV_JSON).await?;
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(name: &'static str, json: &str) -> Result<T, NatsError> {
    serde_json::from_str(json).map_err(|source| NatsError::Definition { name, source })
}

/// Top-level keys of `desired` whose values differ in `actual`. Only keys the
/// definition file sets are compared: the server fills in many defaults of its own.
fn differing_fields(desired_json: &str, actual: &Value) -> Vec<String> {
    let Ok(Value::Object(desired)) = serde_json::from_str::<Value>(desired_json) else {
        return Vec::new();
    };
    desired
        .iter()
        .filter(|(key, _)| *key != "description")
        .filter(|(key, want)| !values_match(want, actual.get(key.as_str())))
        .map(|(key, _)| key.clone())
        .collect()
}

fn values_match(want: &Value, got: Option<&Value>) -> bool {
    match (want, got) {
        // The server reports "unlimited" as -1 or omits it; treat 0/-1/absent alike where
        // the definition asks for unlimited.
        (Value::Number(n), None) => n.as_i64().is_some_and(|v| v <= 0),
        (Value::Number(n), Some(Value::Number(m))) => {
            n == m || (n.as_i64().is_some_and(|v| v <= 0) && m.as_i64().is_some_and(|v| v <= 0))
        }
        (Value::Bool(false), None) => true,
        (want, Some(got)) => want == got,
        _ => false,
    }
}

/// Stream options newer than the oldest supported server, with the version that knows
/// each. An older server drops such a field (2.10 silently, 2.11 with a warning) and
/// never reports it back, so there it is neither sent nor compared: the stream works
/// without it (for `allow_atomic`, the event log appends one event at a time).
const NEWER_STREAM_FIELDS: &[(&str, (u64, u64))] = &[("allow_atomic", (2, 12))];

/// The definition as the server at `version` understands it.
fn definition_for_server(json: &str, version: &str) -> String {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(json) else {
        return json.to_owned();
    };
    let before = fields.len();
    fields.retain(|key, _| {
        NEWER_STREAM_FIELDS
            .iter()
            .all(|(field, min)| key != field || version_at_least(version, *min))
    });
    if fields.len() == before {
        json.to_owned()
    } else {
        Value::Object(fields).to_string()
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &'static str,
    json: &'static str,
) -> Result<stream::Stream, NatsError> {
    let json = &definition_for_server(json, &js.client().server_info().version);
    let desired: stream::Config = parse(name, json)?;
    let api = |source: async_nats::Error| NatsError::Api {
        name: name.to_owned(),
        source,
    };
    let mut existing = match js.get_stream(name).await {
        Ok(s) => s,
        Err(e) if is_stream_not_found(&e) => match js.create_stream(desired.clone()).await {
            Ok(s) => return Ok(s),
            // Another service created it first: verify below. If nobody did, the
            // server refused it (e.g. no room for its `max_bytes`): say why.
            Err(refused) => match js.get_stream(name).await {
                Ok(s) => s,
                Err(_) if is_out_of_storage(&refused) => {
                    return Err(NatsError::NoRoom {
                        name,
                        max_bytes: desired.max_bytes,
                    });
                }
                Err(_) => return Err(api(refused.into())),
            },
        },
        Err(e) => return Err(api(e.into())),
    };
    let info = existing.info().await.map_err(|e| api(e.into()))?;
    let actual = serde_json::to_value(&info.config).unwrap_or(Value::Null);
    let fields = differing_fields(json, &actual);
    if fields.is_empty() {
        return Ok(existing);
    }
    tracing::warn!(stream = name, differs = ?fields, "stream config differs from nats/ definition; updating");
    js.update_stream(desired)
        .await
        .map_err(|source| NatsError::Drift {
            kind: "stream",
            name: name.to_owned(),
            fields: fields.join(", "),
            source: source.into(),
        })?;
    js.get_stream(name).await.map_err(|e| api(e.into()))
}

fn is_out_of_storage(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED
    )
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

async fn ensure_consumer(
    js: &jetstream::Context,
    stream_name: &'static str,
    name: &'static str,
    json: &'static str,
) -> Result<(), NatsError> {
    let desired: consumer::pull::Config = parse(name, json)?;
    let api = |source: async_nats::Error| NatsError::Api {
        name: format!("{stream_name}/{name}"),
        source,
    };
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| api(e.into()))?;
    match stream.consumer_info(name).await {
        Ok(info) => {
            let actual = serde_json::to_value(&info.config).unwrap_or(Value::Null);
            let fields = differing_fields(json, &actual);
            if fields.is_empty() {
                return Ok(());
            }
            tracing::warn!(consumer = name, differs = ?fields, "consumer config differs from nats/ definition; updating");
            stream
                .update_consumer(desired)
                .await
                .map(|_| ())
                .map_err(|source| NatsError::Drift {
                    kind: "consumer",
                    name: format!("{stream_name}/{name}"),
                    fields: fields.join(", "),
                    source: source.into(),
                })
        }
        Err(_) => stream
            .get_or_create_consumer(name, desired)
            .await
            .map(|_: consumer::PullConsumer| ())
            .map_err(|e| api(e.into())),
    }
}

#[derive(serde::Deserialize)]
struct KvDefinition {
    bucket: String,
    #[serde(default)]
    description: String,
    history: i64,
    #[serde(with = "nanos")]
    max_age: Duration,
    storage: stream::StorageType,
    num_replicas: usize,
}

mod nanos {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_nanos)
    }
}

async fn ensure_kv(js: &jetstream::Context, json: &'static str) -> Result<kv::Store, NatsError> {
    let def: KvDefinition = parse("EXECUTORS", json)?;
    let api = |source: async_nats::Error| NatsError::Api {
        name: def.bucket.clone(),
        source,
    };
    if let Ok(store) = js.get_key_value(&def.bucket).await {
        let mut stream = js
            .get_stream(format!("KV_{}", def.bucket))
            .await
            .map_err(|e| api(e.into()))?;
        let info = stream.info().await.map_err(|e| api(e.into()))?;
        let mut fields = Vec::new();
        if info.config.max_age != def.max_age {
            fields.push("max_age");
        }
        if info.config.max_messages_per_subject != def.history {
            fields.push("history");
        }
        if info.config.storage != def.storage {
            fields.push("storage");
        }
        if fields.is_empty() {
            return Ok(store);
        }
        return Err(NatsError::Drift {
            kind: "kv bucket",
            name: def.bucket.clone(),
            fields: fields.join(", "),
            source: "presence buckets are not updated in place; delete it (nats kv del --force) and restart".into(),
        });
    }
    js.create_key_value(kv::Config {
        bucket: def.bucket.clone(),
        description: def.description.clone(),
        history: def.history,
        max_age: def.max_age,
        storage: def.storage,
        num_replicas: def.num_replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| api(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_at_least("2.10.0", (2, 10)));
        assert!(version_at_least("v2.12.8", (2, 10)));
        assert!(version_at_least("3.0.0-beta", (2, 10)));
        assert!(!version_at_least("2.9.10", (2, 10)));
        assert!(!version_at_least("garbage", (2, 10)));
    }

    #[test]
    fn only_a_user_seed_passes_the_seed_check() {
        let user = nkeys::KeyPair::new_user();
        assert!(check_seed(&user.seed().unwrap()).is_ok());
        for bad in [
            String::new(),
            "SUNOTASEED".to_owned(),
            user.public_key(),
            nkeys::KeyPair::new_account().seed().unwrap(),
        ] {
            let error = check_seed(&bad).unwrap_err().to_string();
            assert!(error.contains("nats.nkey_seed"), "{error}");
            assert!(bad.is_empty() || !error.contains(&bad), "{error}");
        }
    }

    #[test]
    fn every_definition_parses() {
        let _: stream::Config = parse("a", RUN_COMMANDS_STREAM_JSON).unwrap();
        let _: stream::Config = parse("b", RUN_EVENTS_STREAM_JSON).unwrap();
        let _: consumer::pull::Config = parse("c", EXECUTOR_MANAGER_CONSUMER_JSON).unwrap();
        let _: consumer::pull::Config = parse("d", PROJECTOR_CONSUMER_JSON).unwrap();
        let _: KvDefinition = parse("e", EXECUTORS_KV_JSON).unwrap();
    }

    #[test]
    fn options_an_older_server_does_not_know_are_left_out() {
        let old: stream::Config =
            serde_json::from_str(&definition_for_server(RUN_EVENTS_STREAM_JSON, "2.11.4")).unwrap();
        assert!(!old.allow_atomic_publish);
        assert!(old.allow_direct);
        let new: stream::Config =
            serde_json::from_str(&definition_for_server(RUN_EVENTS_STREAM_JSON, "2.12.8")).unwrap();
        assert!(new.allow_atomic_publish);
        assert_eq!(
            definition_for_server(RUN_COMMANDS_STREAM_JSON, "2.10.0"),
            RUN_COMMANDS_STREAM_JSON
        );
    }

    #[test]
    fn only_fields_the_definition_sets_are_compared() {
        let actual = serde_json::json!({"name": "X", "max_age": 5, "extra": true, "max_msgs": -1});
        assert!(differing_fields(r#"{"name":"X","max_age":5,"max_msgs":0}"#, &actual).is_empty());
        assert_eq!(
            differing_fields(r#"{"name":"X","max_age":6}"#, &actual),
            vec!["max_age"]
        );
    }
}
