//! What every handler reaches: the gateway's shared parts, built once by
//! [`crate::start`].

use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::events::EventLog;

use super::quota::StreamQuota;
use crate::auth::Authenticator;
use crate::control_plane::ControlPlane;
use crate::health::HealthChecker;
use crate::hub::Hub;
use crate::portal::Portal;
use crate::revocation::Revocations;
use crate::session::Sessions;

/// Behind one `Arc`: axum clones the state for each request (the auth middleware once
/// more), and cloning these fields one by one (the NATS and HTTP clients, the URLs)
/// took more of a start request's CPU than the gateway's own work.
pub(crate) type AppState = Arc<Shared>;

pub(crate) struct Shared {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    /// Seals and opens browser session cookies.
    pub(crate) sessions: Sessions,
    pub(crate) portal: Portal,
    pub(crate) revocations: Revocations,
    pub(crate) control_plane: ControlPlane,
    pub(crate) health: HealthChecker,
    pub(crate) hub: Hub,
    pub(crate) log: EventLog,
    pub(crate) quota: StreamQuota,
    pub(crate) keep_alive: Duration,
    /// The `retry:` field every stream starts with.
    pub(crate) retry_frame: bytes::Bytes,
    pub(crate) sse: SseMetrics,
}

/// `switchyard_sse_streams_open` and `switchyard_sse_bytes_sent_total`.
#[derive(Clone)]
pub(crate) struct SseMetrics {
    pub(crate) open: switchyard_platform::metrics::Gauge,
    pub(crate) bytes: switchyard_platform::metrics::Counter,
}

impl SseMetrics {
    pub(crate) fn new(metrics: &switchyard_platform::metrics::Metrics) -> Self {
        metrics.describe_gauge(
            "switchyard_sse_streams_open",
            "Run event streams (SSE) open on this gateway.",
        );
        metrics.describe_counter(
            "switchyard_sse_bytes_sent_total",
            "Bytes of run event streams (SSE) handed to clients' connections.",
        );
        Self {
            open: metrics.gauge("switchyard_sse_streams_open", &[]),
            bytes: metrics.counter("switchyard_sse_bytes_sent_total", &[]),
        }
    }

    /// Counts a stream open until the returned guard is dropped.
    pub(crate) fn opened(&self) -> OpenStream {
        self.open.increment(1.0);
        OpenStream(self.clone())
    }
}

/// One open stream in `switchyard_sse_streams_open`.
pub(crate) struct OpenStream(SseMetrics);

impl OpenStream {
    pub(crate) fn sent(&self, bytes: usize) {
        self.0.bytes.increment(bytes as u64);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.decrement(1.0);
    }
}
