//! Durations a start request, an app or an execution profile may set, checked where
//! they enter: a wrong type or an out-of-range value is refused, naming the field,
//! rather than replaced by a default further down (the manager and the executors
//! ignore what they cannot use) or taken as is (a huge value overflows a deadline).
//!
//! | key | where | range (ms) |
//! |---|---|---|
//! | `timeoutMs` | app / profile defaults, `providerOptions` | 1 – [`MAX_DURATION_MS`] |
//! | `runTimeoutMs` | `providerOptions` | 1 – max |
//! | `humanLoopTimeoutMs`, `handshakeTimeoutMs`, `firstOutputTimeoutMs`, `inactivityTimeoutMs` | `providerOptions` | 0 (no limit) – max |
//! | `streamIdleTimeoutMs` (codex), `apiTimeoutMs` (claude) | `providerOptions` | 1 – max |
//!
//! `null` in `providerOptions` means "not set", as everywhere else.

use serde_json::{Map, Value};
use switchyard_contracts::api::RuntimeDefaults;

/// The longest duration accepted: 7 days, the age at which `RUN_EVENTS` drops a run's
/// history (a run that outlives its history cannot be replayed or projected).
pub(crate) const MAX_DURATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// The duration keys of `providerOptions`, and whether 0 (which disables that limit) is
/// a value.
pub(crate) const PROVIDER_OPTION_DURATIONS: [(&str, bool); 8] = [
    ("timeoutMs", false),
    ("runTimeoutMs", false),
    ("humanLoopTimeoutMs", true),
    ("handshakeTimeoutMs", true),
    ("firstOutputTimeoutMs", true),
    ("inactivityTimeoutMs", true),
    ("streamIdleTimeoutMs", false),
    ("apiTimeoutMs", false),
];

/// A duration that is not one; the message names the field as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` must be a whole number of milliseconds from {min} to {MAX_DURATION_MS} (7 days){zero}; got {got}",
    min = if *zero_allowed { 0 } else { 1 },
    zero = if *zero_allowed { ", 0 for no limit" } else { "" })]
pub(crate) struct InvalidDuration {
    pub(crate) field: String,
    zero_allowed: bool,
    got: String,
}

/// Checks the duration keys of `options`; `prefix` is where they sit in the body
/// (`providerOptions`, `runtimeDefaults.providerOptions` …).
pub(crate) fn check_provider_options(
    options: &Map<String, Value>,
    prefix: &str,
) -> Result<(), InvalidDuration> {
    for (key, zero_allowed) in PROVIDER_OPTION_DURATIONS {
        match options.get(key) {
            None | Some(Value::Null) => {}
            Some(value) => check(value.as_u64(), value, zero_allowed, || {
                format!("{prefix}.{key}")
            })?,
        }
    }
    Ok(())
}

/// Checks the durations of app or profile defaults (`timeoutMs` and the provider
/// options); `prefix` is where the defaults sit in the body.
pub(crate) fn check_defaults(
    defaults: &RuntimeDefaults,
    prefix: &str,
) -> Result<(), InvalidDuration> {
    if let Some(ms) = defaults.timeout_ms {
        check(Some(ms), &Value::from(ms), false, || {
            format!("{prefix}.timeoutMs")
        })?;
    }
    check_provider_options(
        &defaults.provider_options,
        &format!("{prefix}.providerOptions"),
    )
}

fn check(
    ms: Option<u64>,
    value: &Value,
    zero_allowed: bool,
    field: impl FnOnce() -> String,
) -> Result<(), InvalidDuration> {
    match ms {
        Some(0) if !zero_allowed => {}
        Some(ms) if ms <= MAX_DURATION_MS => return Ok(()),
        _ => {}
    }
    Err(InvalidDuration {
        field: field(),
        zero_allowed,
        got: describe(value),
    })
}

/// The offending value in a few words (a number as written, the kind of anything
/// else: a string is the caller's text and could be long).
fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string().chars().take(32).collect(),
        Value::String(_) => "a string".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn bounds_types_and_zero() {
        let ok = |v: Value| check_provider_options(&options(v), "providerOptions");
        assert!(ok(json!({"timeoutMs": 1, "inactivityTimeoutMs": 0})).is_ok());
        assert!(ok(json!({"timeoutMs": MAX_DURATION_MS, "other": "x"})).is_ok());
        assert!(ok(json!({"timeoutMs": null})).is_ok());
        for bad in [
            json!({"timeoutMs": 0}),
            json!({"runTimeoutMs": MAX_DURATION_MS + 1}),
            json!({"handshakeTimeoutMs": -1}),
            json!({"apiTimeoutMs": "5"}),
            json!({"firstOutputTimeoutMs": 2.5}),
        ] {
            assert!(ok(bad.clone()).is_err(), "{bad}");
        }
        let err = ok(json!({"timeoutMs": -5})).unwrap_err();
        assert_eq!(err.field, "providerOptions.timeoutMs");
        let message = err.to_string();
        assert!(
            message.contains("`providerOptions.timeoutMs`") && message.ends_with("got -5"),
            "{message}"
        );
        let err = ok(json!({"inactivityTimeoutMs": "soon"})).unwrap_err();
        assert!(
            err.to_string().contains("0 for no limit; got a string"),
            "{err}"
        );
    }

    #[test]
    fn defaults_name_their_place() {
        let defaults = RuntimeDefaults {
            timeout_ms: Some(u64::MAX),
            ..Default::default()
        };
        let err = check_defaults(&defaults, "executionProfiles.fast").unwrap_err();
        assert_eq!(err.field, "executionProfiles.fast.timeoutMs");
        let defaults = RuntimeDefaults {
            provider_options: options(json!({"runTimeoutMs": 0})),
            ..Default::default()
        };
        let err = check_defaults(&defaults, "runtimeDefaults").unwrap_err();
        assert_eq!(err.field, "runtimeDefaults.providerOptions.runTimeoutMs");
    }
}
