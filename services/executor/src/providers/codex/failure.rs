//! Failure classification of a codex turn: from the `error` notifications and the
//! failed turn's `error` to one reason of the closed set.
//!
//! Codex retries every HTTP failure (401 included) up to `request_max_retries` /
//! `stream_max_retries`, announcing each retry as an `error` with `willRetry: true`,
//! then fails the turn with the last error. The HTTP status is in `codexErrorInfo`
//! (`{"httpConnectionFailed":{"httpStatusCode":401}}` and the other object forms) and
//! often in the text ("unexpected status 401 Unauthorized: …"); codex rewrites the
//! message of some 5xx ("We're currently experiencing high demand …"), so the status of
//! the retries counts too, and the detail names the status whenever one is known. A request that never reached the API (connection refused,
//! no DNS: "Reconnecting... waiting for network", "Connection failed: error sending
//! request", no status) is `provider_unreachable`; a stream that went silent until
//! codex's idle timeout ("idle timeout waiting for SSE") is `timeout`.

use super::protocol::{ErrorNotification, TurnError};
use crate::cli::names_connection_failure;
use serde_json::Value;
use switchyard_contracts::FailureReason;

/// The reason and a one-line detail for a turn that ended `failed`.
pub(crate) fn classify(
    turn_error: Option<&TurnError>,
    errors: &[ErrorNotification],
) -> (FailureReason, String) {
    let last_final = errors.iter().rev().find(|e| !e.will_retry);
    let last_any = errors.last();
    let primary = turn_error
        .or(last_final.map(|e| &e.error))
        .or(last_any.map(|e| &e.error));
    let Some(primary) = primary else {
        return (
            FailureReason::ProviderError,
            "the codex turn failed without an error message".to_owned(),
        );
    };
    let detail = match primary.additional_details.as_deref() {
        Some(details) if !details.is_empty() && !primary.message.contains(details) => {
            format!("{} ({details})", primary.message)
        }
        _ => primary.message.clone(),
    };
    // The final error first, then the retries from the newest.
    let all = std::iter::once(primary).chain(errors.iter().rev().map(|e| &e.error));
    let mut status = None;
    let mut kind = None;
    for error in all {
        status = status.or_else(|| http_status(error));
        kind = kind.or_else(|| info_kind(error));
    }
    // Codex answers a 500 with its own words ("We're currently experiencing high
    // demand …"): the status is left only in `codexErrorInfo`, and the server's own
    // message is dropped (codex 0.169 prints it nowhere, not even in its debug log).
    let withheld = kind.as_deref() == Some("internalServerError");
    let status = status.or(withheld.then_some(500));
    let detail = match status {
        Some(code) if !detail.contains(&code.to_string()) => {
            let note = if withheld {
                "; codex does not pass on the server's message"
            } else {
                ""
            };
            format!("the model API answered HTTP {code}: {detail}{note}")
        }
        _ => detail,
    };
    let reason = if primary.message.contains("Missing environment variable") {
        FailureReason::AuthMissing
    } else if status.is_none() && kind.is_none() && is_connection_failure(primary) {
        FailureReason::ProviderUnreachable
    } else if status.is_none() && is_idle_timeout(primary) {
        // A stream that started and went silent (codex's stream idle timeout applies
        // only once the headers arrived): the inactivity fault.
        FailureReason::Timeout
    } else {
        match (status, kind.as_deref()) {
            (Some(401 | 403), _) | (_, Some("unauthorized")) => FailureReason::AuthInvalid,
            (Some(429), _) | (_, Some("rateLimitExceeded" | "usageLimitExceeded")) => {
                FailureReason::RateLimited
            }
            _ => FailureReason::ProviderError,
        }
    };
    (reason, detail)
}

/// Whether the error says the request never reached the model API (and carries no
/// HTTP status that would say otherwise).
pub(crate) fn is_connection_failure(error: &TurnError) -> bool {
    http_status(error).is_none()
        && (names_connection_failure(&error.message)
            || error
                .additional_details
                .as_deref()
                .is_some_and(names_connection_failure))
}

/// Whether the error is codex's stream idle timeout ("idle timeout waiting for SSE"):
/// a stream that started and went silent.
pub(crate) fn is_idle_timeout(error: &TurnError) -> bool {
    let says = |text: &str| text.contains("idle timeout");
    says(&error.message) || error.additional_details.as_deref().is_some_and(says)
}

/// The HTTP status of an error: from `codexErrorInfo`'s object forms, else from the text.
fn http_status(error: &TurnError) -> Option<u16> {
    let from_info = match &error.codex_error_info {
        Some(Value::Object(map)) => map
            .values()
            .find_map(|inner| inner.get("httpStatusCode")?.as_u64())
            .and_then(|code| u16::try_from(code).ok()),
        _ => None,
    };
    from_info
        .or_else(|| status_in_text(&error.message))
        .or_else(|| status_in_text(error.additional_details.as_deref()?))
}

/// The string form of `codexErrorInfo` (`"unauthorized"`, `"rateLimitExceeded"` …);
/// `"other"` says nothing.
fn info_kind(error: &TurnError) -> Option<String> {
    match &error.codex_error_info {
        Some(Value::String(kind)) if kind != "other" => Some(kind.clone()),
        _ => None,
    }
}

/// `… status 401 …` in a message such as "unexpected status 401 Unauthorized: …".
fn status_in_text(text: &str) -> Option<u16> {
    text.match_indices("status ").find_map(|(at, marker)| {
        let digits: String = text[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse::<u16>()
            .ok()
            .filter(|code| (100..600).contains(code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(message: &str, info: Value, will_retry: bool) -> ErrorNotification {
        ErrorNotification {
            error: TurnError {
                message: message.to_owned(),
                codex_error_info: Some(info),
                additional_details: None,
            },
            will_retry,
        }
    }

    #[test]
    fn http_statuses_map_to_reasons() {
        let cases = [
            (401, FailureReason::AuthInvalid),
            (403, FailureReason::AuthInvalid),
            (429, FailureReason::RateLimited),
            (500, FailureReason::ProviderError),
            (503, FailureReason::ProviderError),
        ];
        for (code, expected) in cases {
            let last = error(
                "boom",
                json!({"httpConnectionFailed": {"httpStatusCode": code}}),
                false,
            );
            let (reason, detail) = classify(Some(&last.error), std::slice::from_ref(&last));
            assert_eq!(reason, expected, "status {code}");
            assert_eq!(detail, format!("the model API answered HTTP {code}: boom"));
        }
    }

    #[test]
    fn a_500_names_its_status_though_codex_rewrote_its_message() {
        let retry = error(
            "Reconnecting... 1/1",
            json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
            true,
        );
        let last = error(
            "We’re currently experiencing high demand, which may cause temporary errors.",
            json!("internalServerError"),
            false,
        );
        let (reason, detail) = classify(Some(&last.error), &[retry, last.clone()]);
        assert_eq!(reason, FailureReason::ProviderError);
        assert!(
            detail.starts_with("the model API answered HTTP 500: We’re currently"),
            "{detail}"
        );
        assert!(detail.contains("server's message"), "{detail}");
        // A message that names its status already is left as it is.
        let text = error(
            "unexpected status 502 Bad Gateway: upstream down",
            Value::Null,
            false,
        );
        assert_eq!(
            classify(None, &[text]).1,
            "unexpected status 502 Bad Gateway: upstream down"
        );
    }

    #[test]
    fn a_rewritten_message_is_classified_by_the_retries() {
        let retry = error(
            "Reconnecting... 1/1",
            json!({"responseStreamDisconnected": {"httpStatusCode": 429}}),
            true,
        );
        let last = error(
            "We're currently experiencing high demand, which may cause temporary errors.",
            json!("other"),
            false,
        );
        let (reason, _) = classify(Some(&last.error), &[retry, last.clone()]);
        assert_eq!(reason, FailureReason::RateLimited);
    }

    #[test]
    fn kinds_and_texts_classify_without_a_status_object() {
        let unauthorized = error("nope", json!("unauthorized"), false);
        assert_eq!(
            classify(None, &[unauthorized]).0,
            FailureReason::AuthInvalid
        );
        let limited = error("slow down", json!("usageLimitExceeded"), false);
        assert_eq!(classify(None, &[limited]).0, FailureReason::RateLimited);
        let text = error(
            "unexpected status 403 Forbidden: no access, url: http://x/v1/responses",
            Value::Null,
            false,
        );
        assert_eq!(classify(None, &[text]).0, FailureReason::AuthInvalid);
        let missing = error(
            "Missing environment variable: `OPENAI_API_KEY`.",
            json!("other"),
            false,
        );
        assert_eq!(classify(None, &[missing]).0, FailureReason::AuthMissing);
        let overloaded = error("busy", json!("serverOverloaded"), false);
        assert_eq!(
            classify(None, &[overloaded]).0,
            FailureReason::ProviderError
        );
        assert_eq!(classify(None, &[]).0, FailureReason::ProviderError);
    }

    #[test]
    fn a_request_that_never_reached_the_api_is_provider_unreachable() {
        let mut waiting = error(
            "Reconnecting... waiting for network",
            json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
            true,
        );
        waiting.error.additional_details = Some("Connection failed: error sending request".into());
        assert!(is_connection_failure(&waiting.error));
        let (reason, detail) = classify(None, std::slice::from_ref(&waiting));
        assert_eq!(reason, FailureReason::ProviderUnreachable);
        assert!(detail.contains("error sending request"), "{detail}");
        // An answer with a status reached the API, whatever the words.
        let refused = error(
            "unexpected status 502 Bad Gateway: upstream connection refused",
            Value::Null,
            false,
        );
        assert!(!is_connection_failure(&refused.error));
        assert_eq!(classify(None, &[refused]).0, FailureReason::ProviderError);
        let cut = error(
            "stream disconnected before completion: stream closed before response.completed",
            json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
            false,
        );
        assert!(!is_connection_failure(&cut.error));
        assert_eq!(classify(None, &[cut]).0, FailureReason::ProviderError);
    }

    #[test]
    fn a_stream_that_went_silent_is_a_timeout() {
        let idle = error(
            "stream disconnected before completion: idle timeout waiting for SSE",
            json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
            false,
        );
        assert_eq!(
            classify(None, std::slice::from_ref(&idle)).0,
            FailureReason::Timeout
        );
    }

    #[test]
    fn status_in_text_ignores_non_statuses() {
        assert_eq!(
            status_in_text("unexpected status 401 Unauthorized"),
            Some(401)
        );
        assert_eq!(status_in_text("status unknown; status 502"), Some(502));
        assert_eq!(status_in_text("status 12345"), None);
        assert_eq!(status_in_text("no code"), None);
    }
}
