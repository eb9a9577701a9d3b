//! The provider registry: every provider the platform knows, and where it can run right
//! now, read from the executors' presence records in the `EXECUTORS` bucket.
//!
//! The bucket is read on each request rather than watched: the registry is asked for
//! rarely, and a direct read cannot serve a stale cache. A record whose heartbeat is
//! older than the bucket's TTL belongs to an executor that died without withdrawing it
//! (the server expires it a little later), so it does not count.

use async_nats::jetstream::{self, context::GetStreamErrorKind, kv};
use futures::TryStreamExt as _;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_contracts::api::{
    ProviderExecutor, ProviderList, ProviderUnavailable, ProviderView,
};
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{ExecutorId, ProviderName, subjects};

/// Freshness window when the bucket has no TTL of its own (it should: nats/kv).
const FALLBACK_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("cannot read the {bucket} bucket: {message}")]
    Nats {
        bucket: &'static str,
        message: String,
    },
    #[error("reading the {bucket} bucket took longer than {timeout:?}")]
    TimedOut {
        bucket: &'static str,
        timeout: Duration,
    },
}

fn nats_error(e: &dyn std::fmt::Display) -> RegistryError {
    RegistryError::Nats {
        bucket: subjects::EXECUTORS_BUCKET,
        message: e.to_string(),
    }
}

/// The registry as of now, bounded by `timeout`.
pub(crate) async fn list(
    js: &jetstream::Context,
    timeout: Duration,
    default_provider: ProviderName,
) -> Result<ProviderList, RegistryError> {
    let presences = tokio::time::timeout(timeout, live_presences(js))
        .await
        .map_err(|_| RegistryError::TimedOut {
            bucket: subjects::EXECUTORS_BUCKET,
            timeout,
        })??;
    Ok(registry(&presences, default_provider))
}

/// The presence records of live executors, bounded by `timeout`.
pub(crate) async fn live(
    js: &jetstream::Context,
    timeout: Duration,
) -> Result<Vec<ExecutorPresence>, RegistryError> {
    tokio::time::timeout(timeout, live_presences(js))
        .await
        .map_err(|_| RegistryError::TimedOut {
            bucket: subjects::EXECUTORS_BUCKET,
            timeout,
        })?
}

/// The presence records of live executors. No bucket means no executor ever announced
/// itself (or NATS lost the in-memory bucket and nobody re-created it yet).
async fn live_presences(js: &jetstream::Context) -> Result<Vec<ExecutorPresence>, RegistryError> {
    let stream_name = format!("KV_{}", subjects::EXECUTORS_BUCKET);
    let ttl = match js.get_stream(&stream_name).await {
        Ok(stream) => stream.cached_info().config.max_age,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js_error)
                if js_error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                return Ok(Vec::new());
            }
            _ => return Err(nats_error(&e)),
        },
    };
    let ttl = if ttl.is_zero() { FALLBACK_TTL } else { ttl };
    let store = js
        .get_key_value(subjects::EXECUTORS_BUCKET)
        .await
        .map_err(|e| nats_error(&e))?;
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| nats_error(&e))?
        .try_collect()
        .await
        .map_err(|e| nats_error(&e))?;
    let oldest = chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or_default();
    let mut live = Vec::with_capacity(keys.len());
    for key in keys {
        // Deleted between listing and reading: the executor just left.
        let Some(entry) = store
            .entry(key.as_str())
            .await
            .map_err(|e| nats_error(&e))?
        else {
            continue;
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            continue;
        }
        match decode(&key, &entry.value) {
            Some(presence) if presence.heartbeat_at >= oldest => live.push(presence),
            Some(presence) => tracing::debug!(
                executor_id = %presence.executor_id,
                heartbeat_at = %presence.heartbeat_at,
                "ignoring a presence record older than the bucket's TTL"
            ),
            None => {}
        }
    }
    Ok(live)
}

/// One record, or `None` (logged) for anything that is not a valid record of the
/// executor its key names: one misbehaving writer must not break the registry.
fn decode(key: &str, value: &[u8]) -> Option<ExecutorPresence> {
    if key.parse::<ExecutorId>().is_err() {
        tracing::warn!(key, "ignoring a presence key that cannot be an executor id");
        return None;
    }
    match serde_json::from_slice::<ExecutorPresence>(value) {
        Ok(presence) if presence.executor_id == *key => Some(presence),
        Ok(presence) => {
            tracing::warn!(
                key,
                executor_id = %presence.executor_id,
                "ignoring a presence record whose executor id differs from its key"
            );
            None
        }
        Err(error) => {
            tracing::warn!(key, %error, "ignoring a presence value that is not a valid record");
            None
        }
    }
}

/// Every known provider with the live executors it is installed on. Executors may
/// list a provider under an alias; they count for its canonical name.
pub(crate) fn registry(
    presences: &[ExecutorPresence],
    default_provider: ProviderName,
) -> ProviderList {
    let providers = ProviderName::ALL
        .into_iter()
        .map(|provider| {
            // By executor id: sorted output, and one entry per executor even when it
            // lists the provider under both its names.
            let mut installed_on: BTreeMap<&ExecutorId, (Option<String>, Option<bool>)> =
                BTreeMap::new();
            let mut unavailable: BTreeMap<&ExecutorId, Option<String>> = BTreeMap::new();
            for presence in presences {
                for availability in &presence.providers {
                    if ProviderName::parse(&availability.name) != Some(provider) {
                        continue;
                    }
                    if !availability.installed {
                        unavailable
                            .entry(&presence.executor_id)
                            .or_insert_with(|| availability.problem.clone());
                        continue;
                    }
                    let slot = installed_on.entry(&presence.executor_id).or_default();
                    slot.0 = slot.0.take().or_else(|| availability.version.clone());
                    slot.1 = match (slot.1, availability.credentials_configured) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (None, None) => None,
                    };
                }
            }
            let credentials = installed_on.values().map(|(_, c)| *c).collect::<Vec<_>>();
            let unavailable = unavailable
                .into_iter()
                // One that has it under its other name can run it after all.
                .filter(|(executor_id, _)| !installed_on.contains_key(executor_id))
                .map(|(executor_id, problem)| ProviderUnavailable {
                    executor_id: (*executor_id).clone(),
                    problem,
                })
                .collect();
            ProviderView {
                name: provider.as_str().to_owned(),
                aliases: provider.aliases().iter().map(|a| (*a).to_owned()).collect(),
                installed: !installed_on.is_empty(),
                credentials_configured: credentials_configured(&credentials),
                executors: installed_on
                    .into_iter()
                    .map(|(executor_id, (version, _))| ProviderExecutor {
                        executor_id: (*executor_id).clone(),
                        version,
                    })
                    .collect(),
                unavailable,
            }
        })
        .collect();
    ProviderList {
        providers,
        default_provider: default_provider.as_str().to_owned(),
    }
}

/// `true` if any executor says so, `false` if every one says it has none, unknown
/// otherwise (including when no executor has the provider at all).
fn credentials_configured(per_executor: &[Option<bool>]) -> Option<bool> {
    if per_executor.contains(&Some(true)) {
        Some(true)
    } else if !per_executor.is_empty() && per_executor.iter().all(|c| *c == Some(false)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contracts::presence::ProviderAvailability;

    fn presence(
        id: &str,
        providers: &[(&str, bool, Option<&str>, Option<bool>)],
    ) -> ExecutorPresence {
        ExecutorPresence {
            executor_id: id.parse().unwrap(),
            version: "test".into(),
            capacity: 1,
            active: 0,
            draining: false,
            providers: providers
                .iter()
                .map(
                    |(name, installed, version, credentials)| ProviderAvailability {
                        name: (*name).into(),
                        installed: *installed,
                        version: version.map(str::to_owned),
                        problem: (!*installed).then(|| "not found".to_owned()),
                        credentials_configured: *credentials,
                        credential_variables: Vec::new(),
                    },
                )
                .collect(),
            started_at: chrono::Utc::now(),
            heartbeat_at: chrono::Utc::now(),
        }
    }

    fn view<'a>(list: &'a ProviderList, name: &str) -> &'a ProviderView {
        list.providers.iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn every_known_provider_is_listed_even_without_executors() {
        let list = registry(&[], ProviderName::CodexAppServer);
        let names: Vec<_> = list.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["codex-app-server", "claude-code", "opencode", "scripted"]
        );
        assert!(
            list.providers
                .iter()
                .all(|p| !p.installed && p.executors.is_empty())
        );
        assert!(
            list.providers
                .iter()
                .all(|p| p.credentials_configured.is_none())
        );
        assert_eq!(view(&list, "codex-app-server").aliases, ["codex-cli"]);
    }

    #[test]
    fn aliases_count_for_the_canonical_name_once_per_executor() {
        let list = registry(
            &[
                presence(
                    "b",
                    &[
                        ("codex-cli", true, Some("0.169.0"), None),
                        ("codex-app-server", true, None, Some(false)),
                    ],
                ),
                presence("a", &[("codex-app-server", true, None, None)]),
                presence("c", &[("codex-app-server", false, Some("x"), Some(true))]),
            ],
            ProviderName::CodexAppServer,
        );
        let codex = view(&list, "codex-app-server");
        assert!(codex.installed);
        let executors: Vec<_> = codex
            .executors
            .iter()
            .map(|e| (e.executor_id.as_str(), e.version.as_deref()))
            .collect();
        assert_eq!(executors, [("a", None), ("b", Some("0.169.0"))]);
        // "a" cannot tell: unknown overall (the uninstalled "c" does not count).
        assert_eq!(codex.credentials_configured, None);
        let unavailable: Vec<_> = codex
            .unavailable
            .iter()
            .map(|u| (u.executor_id.as_str(), u.problem.as_deref()))
            .collect();
        assert_eq!(unavailable, [("c", Some("not found"))], "with its reason");
    }

    #[test]
    fn an_executor_that_has_a_provider_under_one_name_is_not_listed_as_lacking_it() {
        let list = registry(
            &[presence(
                "b",
                &[
                    ("codex-cli", false, None, None),
                    ("codex-app-server", true, None, None),
                ],
            )],
            ProviderName::CodexAppServer,
        );
        let codex = view(&list, "codex-app-server");
        assert!(codex.installed);
        assert!(codex.unavailable.is_empty(), "{:?}", codex.unavailable);
    }

    #[test]
    fn credentials_are_true_if_any_false_if_all_say_so() {
        assert_eq!(
            credentials_configured(&[Some(false), Some(true), None]),
            Some(true)
        );
        assert_eq!(
            credentials_configured(&[Some(false), Some(false)]),
            Some(false)
        );
        assert_eq!(credentials_configured(&[Some(false), None]), None);
        assert_eq!(credentials_configured(&[]), None);
    }

    #[test]
    fn garbage_records_are_ignored() {
        let good = serde_json::to_vec(&presence("exec-1", &[])).unwrap();
        assert!(decode("exec-1", &good).is_some());
        assert!(decode("exec-2", &good).is_none(), "key and id differ");
        assert!(decode("exec-1", b"{not json").is_none());
        assert!(decode("a.b", &good).is_none());
    }
}
