//! Idempotent starts: `POST /api/runs/start` with an `Idempotency-Key` header. A client
//! that did not get the answer (a timeout, a 503, a dropped connection) retries with the
//! same key and gets the answer of the start that went through — the same `runId` —
//! instead of a second run.
//!
//! The key is stored with the run it started, with a SHA-256 of the request body, and
//! belongs to the principal that sent it. For [`WINDOW`] after the start, the same key
//! with the same body answers the original `202` (with `Idempotent-Replayed: true`), and
//! with another body 422 `idempotency_key_reused`; after it the key starts a new run.
//! Only accepted starts are remembered: a refused one may be retried with the same key.
//! A retry racing the first attempt waits for its transaction (a lock on the key).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use switchyard_contracts::api::StartRunRequest;

/// How long a key answers with the run it started.
pub(crate) const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Request header carrying the key.
pub(crate) const HEADER: &str = "idempotency-key";
/// Response header set on an answer that replays an earlier start.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A start's key and the fingerprint of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyKey {
    pub(crate) key: String,
    pub(crate) fingerprint: Vec<u8>,
}

impl IdempotencyKey {
    pub(crate) fn new(key: String, request: &StartRunRequest) -> Result<Self, serde_json::Error> {
        Ok(Self {
            key,
            fingerprint: fingerprint(request)?,
        })
    }
}

/// `1..=255` visible ASCII characters (what a UUID, a ULID or any token is made of).
pub(crate) fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// SHA-256 of the request in a canonical form (object keys sorted at every level), so a
/// retry whose client serialises the same request with its keys in another order is
/// still the same request.
pub(crate) fn fingerprint(request: &StartRunRequest) -> Result<Vec<u8>, serde_json::Error> {
    let value = crate::json::to_value("a start request", request)?;
    let mut hasher = Sha256::new();
    canonical(&value, &mut hasher);
    Ok(hasher.finalize().to_vec())
}

fn canonical(value: &Value, out: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.update(b"{");
            for key in keys {
                out.update(Value::String(key.clone()).to_string().as_bytes());
                out.update(b":");
                if let Some(v) = map.get(key) {
                    canonical(v, out);
                }
                out.update(b",");
            }
            out.update(b"}");
        }
        Value::Array(items) => {
            out.update(b"[");
            for item in items {
                canonical(item, out);
                out.update(b",");
            }
            out.update(b"]");
        }
        scalar => out.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> StartRunRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_fingerprint_ignores_key_order_and_sees_every_value() {
        let a = request(
            json!({"prompt": "p", "providerOptions": {"a": 1, "b": {"x": [1, 2], "y": 2}}}),
        );
        let b = request(
            json!({"providerOptions": {"b": {"y": 2, "x": [1, 2]}, "a": 1}, "prompt": "p"}),
        );
        assert_eq!(fingerprint(&a).unwrap(), fingerprint(&b).unwrap());
        let c = request(
            json!({"prompt": "p", "providerOptions": {"a": 1, "b": {"x": [2, 1], "y": 2}}}),
        );
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&c).unwrap());
        let d = request(
            json!({"prompt": "q", "providerOptions": {"a": 1, "b": {"x": [1, 2], "y": 2}}}),
        );
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&d).unwrap());
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(is_valid_key("0190f5c2-0000-7000-8000-000000000000"));
        assert!(is_valid_key(&"k".repeat(MAX_KEY_LEN)));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
        assert!(!is_valid_key("with space"));
        assert!(!is_valid_key("ctl\u{7f}"));
        assert!(!is_valid_key("é"));
    }
}
