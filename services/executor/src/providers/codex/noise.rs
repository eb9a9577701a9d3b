//! What codex prints on every start, whatever the run: kept out of a failure's
//! evidence (the stderr tail and the raw protocol lines), where it would only push out
//! the lines that say what went wrong. Each entry is a fragment of one such line of the
//! pinned codex.

/// Fragments of the lines that are noise.
const BENIGN: &[&str] = &[
    // stderr and a `configWarning` notification, when bubblewrap is not on PATH (codex
    // then sandboxes with the copy it bundles).
    "could not find bubblewrap on PATH",
    // stderr, when CODEX_HOME is below the system's temporary directory.
    "could not create PATH aliases",
    // A notification at every start: remote control is off.
    "\"method\":\"remoteControl/status/changed\"",
];

/// Whether `line` (of stderr or stdout) is start-up noise.
pub(crate) fn is_benign(line: &str) -> bool {
    BENIGN.iter().any(|fragment| line.contains(fragment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_lines_of_the_pinned_codex_are_noise_and_failures_are_not() {
        for noise in [
            "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries under temporary dir \"/tmp\"",
            "2026-12-07T20:45:32Z ERROR codex_app_server: Codex could not find bubblewrap on PATH. Install bubblewrap with your OS package manager.",
            r#"{"method":"configWarning","params":{"summary":"Codex could not find bubblewrap on PATH. Install bubblewrap","details":null}}"#,
            r#"{"method":"remoteControl/status/changed","params":{"status":"disabled"}}"#,
        ] {
            assert!(is_benign(noise), "{noise}");
        }
        for evidence in [
            r#"{"method":"error","params":{"error":{"message":"unexpected status 401 Unauthorized"}}}"#,
            r#"{"method":"configWarning","params":{"summary":"unknown key `foo` in config.toml"}}"#,
            "thread 'main' panicked at codex-rs/core/src/lib.rs",
        ] {
            assert!(!is_benign(evidence), "{evidence}");
        }
    }
}
