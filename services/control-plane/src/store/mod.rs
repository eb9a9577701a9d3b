//! SQL, one module per noun. Every statement is a `sqlx::query!` family macro, checked
//! at compile time against the schema of `migrations/` (through a live database, or
//! offline through the committed `.sqlx/` at the workspace root: see this crate's
//! README), and binds its values; nothing here builds SQL at run time. Ids stay raw in
//! rows and become their types through [`stored_id`]; closed-set columns are Postgres
//! enums mapped by [`columns`].

pub(crate) mod apps;
pub(crate) mod columns;
pub(crate) mod human_loop;
pub(crate) mod idempotency;
pub(crate) mod outbox;
pub(crate) mod principals;
pub(crate) mod reconcile;
pub(crate) mod runs;

use serde_json::Value;
use switchyard_contracts::InvalidId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database request failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored {what} could not be decoded: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An id column holds a value that breaks the id's rule (written around the
    /// service, since everything it writes was parsed first).
    #[error("stored {what} is not valid: {source}")]
    InvalidId {
        what: &'static str,
        #[source]
        source: InvalidId,
    },
}

impl StoreError {
    /// Postgres is unreachable or overloaded (as opposed to a rejected statement).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => crate::database::is_unavailable(e),
            StoreError::Corrupt { .. } | StoreError::InvalidId { .. } => false,
        }
    }
}

/// An id read back from a column, checked against its rule like any other input.
pub(crate) fn stored_id<T: TryFrom<String, Error = InvalidId>>(
    what: &'static str,
    value: String,
) -> Result<T, StoreError> {
    T::try_from(value).map_err(|source| StoreError::InvalidId { what, source })
}

/// [`stored_id`] for a nullable column.
pub(crate) fn stored_opt_id<T: TryFrom<String, Error = InvalidId>>(
    what: &'static str,
    value: Option<String>,
) -> Result<Option<T>, StoreError> {
    value.map(|v| stored_id(what, v)).transpose()
}

/// Postgres rejects NUL in `text` and `\u0000` in `jsonb`; event data written by
/// providers (raw output, evidence) may contain it, so it is replaced before storing.
pub(crate) fn clean_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// [`clean_text`] for every string (and key) of a JSON value.
pub(crate) fn clean_json(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(clean_text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (clean_text(&k), clean_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// True when a JSON value holds a NUL character anywhere (Postgres cannot store it).
pub(crate) fn json_contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains('\0') || json_contains_nul(v)),
        _ => false,
    }
}

/// A `u64` from the wire as a Postgres `bigint`, saturating (no real value comes close).
pub(crate) fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A Postgres `bigint` counter as a `u64` (negative values do not occur; they read as 0).
pub(crate) fn from_bigint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_replaced_everywhere() {
        let dirty = json!({"a\u{0}": ["x\u{0}y", 1, {"b": "\u{0}"}]});
        assert!(json_contains_nul(&dirty));
        let clean = clean_json(dirty);
        assert!(!json_contains_nul(&clean));
        assert_eq!(clean["a\u{FFFD}"][0], "x\u{FFFD}y");
        assert_eq!(clean_text("ok"), "ok");
    }

    #[test]
    fn stored_ids_are_checked_on_the_way_back() {
        use switchyard_contracts::AppId;
        let app: AppId = stored_id("app id", "team-a".to_owned()).unwrap();
        assert_eq!(app, "team-a");
        let error = stored_id::<AppId>("app id", "not an id".to_owned()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "stored app id is not valid: an app id must be 1-64 characters of A-Z, a-z, 0-9, \
             `_` and `-`"
        );
        assert!(!error.is_unavailable());
        assert_eq!(stored_opt_id::<AppId>("app id", None).unwrap(), None);
    }
}
