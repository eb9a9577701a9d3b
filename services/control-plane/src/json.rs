//! Serialising what the control-plane publishes, stores and hashes. Every type it
//! serialises is plain data, so a failure is a bug; it is never turned into an empty
//! payload or a silent default. The caller gets the error, and it is logged here with
//! the stable field `failure = "serialization"` (and what was being serialised), which
//! a log query counts, and counted in `switchyard_serialization_failures_total`.

use serde::Serialize;
use serde_json::Value;

/// `value` as JSON bytes; `what` names it in the log line of a failure.
pub(crate) fn to_vec<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value).inspect_err(|e| failed(what, e))
}

/// `value` as a JSON value; `what` names it in the log line of a failure.
pub(crate) fn to_value<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Value, serde_json::Error> {
    serde_json::to_value(value).inspect_err(|e| failed(what, e))
}

fn failed(what: &'static str, error: &serde_json::Error) {
    switchyard_platform::metrics::serialization_failed();
    tracing::error!(failure = "serialization", what, %error, "could not serialise {what}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_failure_is_an_error_not_an_empty_payload() {
        // JSON object keys must be strings: a map keyed by tuples cannot be serialised.
        let unserialisable: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(to_vec("a test map", &unserialisable).is_err());
        assert!(to_value("a test map", &unserialisable).is_err());
        assert_eq!(to_vec("a number", &7).unwrap(), b"7");
    }
}
