//! Re-establishing NATS-backed loops (the presence watch, the fetch loops) after they
//! failed. Noticing a reconnect is the platform's
//! [`ConnectionWatch`](switchyard_platform::nats::ConnectionWatch).

use std::time::Duration;

/// Backoff between attempts to re-establish a NATS-backed loop (the presence watch, a
/// fetch loop) after it failed: quick at first, at most 5 s, jittered so workers do not
/// retry in step, and never giving up while the service runs.
pub(crate) fn reconnect_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}
