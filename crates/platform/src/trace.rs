//! The W3C trace context of a run (`traceparent`), so that one run can be followed
//! across the services' logs: the control-plane takes it from the start request (or
//! makes one), the run command carries it and its NATS headers repeat it, the
//! executor-manager passes it on in the dispatch, and every service logs its trace id
//! as `trace_id` on the run's span beside `run_id`.

use std::fmt;

/// The header name, in HTTP and in NATS headers alike.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent` (version 00 as written; later versions are read as 00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    parent_id: String,
    flags: u8,
}

impl TraceParent {
    /// Parses a header value as the W3C Trace Context spec says: lowercase hex fields,
    /// neither id all zeros, version `ff` invalid, version 00 exactly 55 characters.
    /// Anything else is `None` (the caller starts a new trace, as the spec asks).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let head = value.get(..55)?;
        let rest = &value[55..];
        let mut parts = head.split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if parts.next().is_some()
            || !hex(version, 2)
            || version == "ff"
            || !hex(trace_id, 32)
            || !hex(parent_id, 16)
            || !hex(flags, 2)
            || trace_id.bytes().all(|b| b == b'0')
            || parent_id.bytes().all(|b| b == b'0')
        {
            return None;
        }
        // Version 00 has nothing after the flags; a later version may add fields.
        if (version == "00" && !rest.is_empty()) || (!rest.is_empty() && !rest.starts_with('-')) {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// A new trace (random ids, not sampled).
    pub fn generate() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            parent_id: span_id(),
            flags: 0,
        }
    }

    /// The request's `traceparent` if it is valid, else a new trace (logged at debug:
    /// a client's malformed header is not the service's problem).
    pub fn from_header(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return Self::generate();
        };
        match std::str::from_utf8(value).ok().and_then(Self::parse) {
            Some(parent) => parent,
            None => {
                tracing::debug!("ignoring a malformed traceparent header; starting a new trace");
                Self::generate()
            }
        }
    }

    /// The same trace with a new parent id: what this service passes on.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            parent_id: span_id(),
            flags: self.flags,
        }
    }

    /// The 32 hex digits that name the trace: what the logs show as `trace_id`.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// The trace id of a `traceparent` carried by a message, for a log field; `None` when
/// it is absent or malformed.
pub fn trace_id_of(traceparent: Option<&str>) -> Option<String> {
    traceparent.and_then(TraceParent::parse).map(|t| t.trace_id)
}

fn span_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(16);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let parsed = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.to_string(), GOOD);
        let child = parsed.child();
        assert_eq!(child.trace_id(), parsed.trace_id());
        assert_ne!(child.to_string(), GOOD);
        assert_eq!(TraceParent::parse(&child.to_string()), Some(child));
        // A later version may carry more fields.
        assert!(TraceParent::parse(&format!("01{}-extra", &GOOD[2..])).is_some());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_missing_or_bad_header_starts_a_new_trace() {
        let made = TraceParent::from_header(None);
        assert_eq!(TraceParent::parse(&made.to_string()), Some(made.clone()));
        let other = TraceParent::from_header(Some(b"nonsense"));
        assert_ne!(made.trace_id(), other.trace_id());
        let kept = TraceParent::from_header(Some(GOOD.as_bytes()));
        assert_eq!(kept.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
