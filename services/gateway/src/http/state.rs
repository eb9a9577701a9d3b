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
}
