//! Identifiers that travel as strings, each a type of its own that is checked once,
//! where it enters (a request body, a path, a NATS message, a config file, a database
//! row), so that code holding one never checks it again.
//!
//! | type | accepted | where it ends up |
//! |---|---|---|
//! | [`AppId`], [`ProfileName`] | 1-64 of `[A-Za-z0-9_-]` | URLs, logs, metric labels, the apps header (comma-separated) |
//! | [`ExecutorId`], [`WorkerId`] | 1-128 of `[A-Za-z0-9_-]` | NATS subjects (`executors.<id>.dispatch`), KV keys |
//! | [`HumanLoopRequestId`] | 1-128 of `[A-Za-z0-9_-]` | the run's events, a reply's `requestId` |
//! | [`PrincipalId`], [`TokenId`] | a UUID | the principal header, `/api/principals/{id}`, `/api/tokens/{id}` |
//!
//! Run and conversation ids are [`crate::RunId`] (a UUID). An `Idempotency-Key` is a
//! client's key for a request, not an id of anything of ours, so it stays with the
//! control-plane that checks it. Provider item ids (`messageId`, `callId`) are labels
//! the agent CLIs choose and nothing looks them up, so they stay strings.
//!
//! Every string id decodes with serde's `try_from`, so a bad value fails decoding with
//! the [`InvalidId`] message; [`InvalidId::from_message`] recognises that message in a
//! decoder's error, so an HTTP service can answer in its own words and name the field.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The kinds of string id, each with its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    App,
    Profile,
    Executor,
    Worker,
    HumanLoopRequest,
}

impl IdKind {
    pub const ALL: [IdKind; 5] = [
        IdKind::App,
        IdKind::Profile,
        IdKind::Executor,
        IdKind::Worker,
        IdKind::HumanLoopRequest,
    ];

    /// Longest accepted id, in bytes (every accepted character is one byte).
    pub const fn max_len(self) -> usize {
        match self {
            // App ids and profile names end up in URLs, logs and metric labels.
            IdKind::App | IdKind::Profile => 64,
            // A NATS subject token or KV key can be longer; 128 keeps subjects short.
            IdKind::Executor | IdKind::Worker | IdKind::HumanLoopRequest => 128,
        }
    }

    /// What the id is, in words, with its article.
    pub const fn noun(self) -> &'static str {
        match self {
            IdKind::App => "an app id",
            IdKind::Profile => "an execution profile name",
            IdKind::Executor => "an executor id",
            IdKind::Worker => "a worker id",
            IdKind::HumanLoopRequest => "a human-loop request id",
        }
    }

    /// The rule, as a predicate to put after a field name.
    pub const fn rule(self) -> &'static str {
        match self {
            IdKind::App | IdKind::Profile => {
                "must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`"
            }
            IdKind::Executor | IdKind::Worker | IdKind::HumanLoopRequest => {
                "must be 1-128 characters of A-Z, a-z, 0-9, `_` and `-`"
            }
        }
    }

    /// Whether `text` is a valid id of this kind: the one place the rule is checked.
    pub fn accepts(self, text: &str) -> bool {
        (1..=self.max_len()).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    fn schema(self, description: &str) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_len(),
            "pattern": "^[A-Za-z0-9_-]+$",
            "description": description,
        })
    }
}

/// A string that is not a valid id of its kind. Its message names the kind and the
/// rule, never the rejected value (which may be anything a client sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId {
    kind: IdKind,
}

impl InvalidId {
    pub const fn new(kind: IdKind) -> Self {
        Self { kind }
    }

    pub const fn kind(self) -> IdKind {
        self.kind
    }

    /// The rule, to put after a field name: "`appId` must be …".
    pub const fn rule(self) -> &'static str {
        self.kind.rule()
    }

    /// The id error whose message is `message` (a decoder's error text without its
    /// position), if it is one.
    pub fn from_message(message: &str) -> Option<InvalidId> {
        IdKind::ALL
            .into_iter()
            .map(InvalidId::new)
            .find(|e| message == e.to_string())
    }
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.noun(), self.kind.rule())
    }
}

impl std::error::Error for InvalidId {}

/// A string id: its type, kind and the description its JSON Schema carries.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const KIND: IdKind = $kind;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(value: String) -> Result<Self, InvalidId> {
                if Self::KIND.accepts(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId::new(Self::KIND))
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;

            fn try_from(value: &str) -> Result<Self, InvalidId> {
                if Self::KIND.accepts(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(InvalidId::new(Self::KIND))
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Read-only access to the text (there is no `DerefMut`, so the rule holds).
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Equal ids hash and order as their strings, so maps keyed by the id can be
        // looked up with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                Self::KIND.schema($description)
            }
        }
    };
}

string_id!(
    /// An app's id (`appId`), chosen at registration.
    AppId,
    IdKind::App,
    "An app's id, chosen at registration."
);

string_id!(
    /// The name of one of an app's execution profiles (`executionProfile`).
    ProfileName,
    IdKind::Profile,
    "The name of one of an app's execution profiles."
);

string_id!(
    /// An executor's identity: a token of its dispatch subject and its key in the
    /// `EXECUTORS` presence bucket.
    ExecutorId,
    IdKind::Executor,
    "An executor's identity: a token of its dispatch subject and its presence key."
);

string_id!(
    /// An executor-manager worker's identity, named in `run.claimed` and dispatches.
    WorkerId,
    IdKind::Worker,
    "An executor-manager worker's identity."
);

string_id!(
    /// One human-loop request of a run, chosen by the executor that asks it.
    HumanLoopRequestId,
    IdKind::HumanLoopRequest,
    "One human-loop request of a run, chosen by the executor that asks it."
);

/// The text of a fresh id made of `prefix` and random hex digits (`hex_digits` of
/// them, at most 32). Valid for every kind whose prefix is.
fn fresh(prefix: &str, hex_digits: usize) -> String {
    let hex = Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &hex[..hex_digits.min(hex.len())])
}

impl ExecutorId {
    /// `exec-` and 8 random hex digits: the id of an executor that was not given one.
    pub fn generate() -> Self {
        Self(fresh("exec-", 8))
    }
}

impl WorkerId {
    /// `mgr-` and 8 random hex digits: the id of a manager that was not given one.
    pub fn generate() -> Self {
        Self(fresh("mgr-", 8))
    }
}

impl HumanLoopRequestId {
    /// `hl-` and 32 random hex digits: a new request of a run.
    pub fn generate() -> Self {
        Self(fresh("hl-", 32))
    }
}

/// A UUID id: the same on the wire and in its schema as a plain UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            JsonSchema,
        )]
        #[serde(transparent)]
        #[schemars(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_v4() -> Self {
                Self(Uuid::new_v4())
            }

            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A registered principal (a person or a program holding API tokens).
    PrincipalId
);

uuid_id!(
    /// One API token of a principal (never the token itself).
    TokenId
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const NAME_CHARS: &str = "must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`";

    #[test]
    fn string_ids_accept_their_rule_and_nothing_else() {
        for kind in IdKind::ALL {
            let longest = "a".repeat(kind.max_len());
            for good in ["a", "A-z_09", "exec-1", "hl-0a1b", longest.as_str()] {
                assert!(kind.accepts(good), "{kind:?} must accept {good:?}");
            }
            let too_long = "a".repeat(kind.max_len() + 1);
            for bad in [
                "",
                "a b",
                "a.b",
                "a,b",
                "*",
                ">",
                "é",
                "a\0",
                "a/b",
                too_long.as_str(),
            ] {
                assert!(!kind.accepts(bad), "{kind:?} must refuse {bad:?}");
            }
        }
        assert_eq!(IdKind::App.max_len(), 64);
        assert_eq!(IdKind::Executor.max_len(), 128);
    }

    #[test]
    fn each_type_parses_with_its_kind() {
        let long = "x".repeat(100);
        assert!(long.parse::<ExecutorId>().is_ok());
        assert!(long.parse::<WorkerId>().is_ok());
        assert!(long.parse::<HumanLoopRequestId>().is_ok());
        assert_eq!(
            long.parse::<AppId>(),
            Err(InvalidId::new(IdKind::App)),
            "an app id is at most 64 characters"
        );
        assert_eq!(
            long.parse::<ProfileName>(),
            Err(InvalidId::new(IdKind::Profile))
        );
        let app = AppId::try_from("team-a".to_owned()).unwrap();
        assert_eq!(app.as_str(), "team-a");
        assert_eq!(app.to_string(), "team-a");
        assert_eq!(app, "team-a");
        assert_eq!(String::from(app), "team-a");
    }

    #[test]
    fn serde_round_trips_and_refuses_bad_values_in_our_words() {
        let id: ExecutorId = serde_json::from_str("\"exec-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"exec-1\"");

        let error = serde_json::from_str::<AppId>("\"no such\"").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("an app id {NAME_CHARS}")),
            "{message}"
        );
        assert!(!message.contains("no such"), "{message} echoes the value");
        // Not a string at all is a shape error, not an id error.
        let error = serde_json::from_str::<AppId>("5").unwrap_err();
        assert!(InvalidId::from_message(&error.to_string()).is_none());
    }

    #[test]
    fn id_errors_are_recognised_from_their_message_only() {
        for kind in IdKind::ALL {
            let error = InvalidId::new(kind);
            assert_eq!(InvalidId::from_message(&error.to_string()), Some(error));
        }
        assert_eq!(
            InvalidId::from_message(&format!("an app id {NAME_CHARS}")).map(InvalidId::rule),
            Some(NAME_CHARS)
        );
        for other in [
            "",
            "an app id",
            "invalid type: integer `5`, expected a string",
            &format!("an app id {NAME_CHARS} at line 1 column 9"),
            &format!("a worker id {NAME_CHARS}"),
        ] {
            assert_eq!(InvalidId::from_message(other), None, "{other:?}");
        }
    }

    #[test]
    fn ids_work_as_map_keys_and_look_up_by_str() {
        let map: BTreeMap<ProfileName, u8> =
            serde_json::from_str(r#"{"fast": 1, "slow": 2}"#).unwrap();
        assert_eq!(map.get("fast"), Some(&1));
        assert!(serde_json::from_str::<BTreeMap<ProfileName, u8>>(r#"{"a b": 1}"#).is_err());
    }

    #[test]
    fn generated_ids_follow_their_rule_and_differ() {
        let (a, b) = (ExecutorId::generate(), ExecutorId::generate());
        assert!(a.starts_with("exec-") && a.len() == 13, "{a}");
        assert_ne!(a, b);
        let worker = WorkerId::generate();
        assert!(worker.starts_with("mgr-") && worker.len() == 12, "{worker}");
        let request = HumanLoopRequestId::generate();
        assert!(
            request.starts_with("hl-") && request.len() == 35,
            "{request}"
        );
        for text in [a.as_str(), worker.as_str(), request.as_str()] {
            assert!(IdKind::Executor.accepts(text), "{text}");
        }
    }

    #[test]
    fn uuid_ids_keep_the_uuid_wire_format() {
        let raw = "0190f5c2-0000-7000-8000-000000000001";
        let id: PrincipalId = serde_json::from_value(serde_json::json!(raw)).unwrap();
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(raw));
        assert_eq!(id.to_string(), raw);
        assert_eq!(raw.parse::<PrincipalId>().unwrap(), id);
        assert!("admin".parse::<TokenId>().is_err());
        assert!(serde_json::from_value::<TokenId>(serde_json::json!("nope")).is_err());
        assert_eq!(
            schemars::schema_for!(PrincipalId).to_value()["format"],
            serde_json::json!("uuid")
        );
    }

    #[test]
    fn schemas_state_the_rule() {
        let schema = schemars::schema_for!(AppId).to_value();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], 64);
        assert_eq!(schema["pattern"], "^[A-Za-z0-9_-]+$");
        assert_eq!(
            schemars::schema_for!(ExecutorId).to_value()["maxLength"],
            128
        );
    }
}
