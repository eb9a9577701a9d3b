//! What every request handler can reach: the service's shared state.

use crate::config::ControlPlaneSettings;
use crate::control::RunControl;
use crate::runs::Runs;
use async_nats::jetstream;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// The shared state behind one `Arc`: axum clones the state for each request, and
/// cloning the fields one by one (the NATS client among them) cost more than a lookup.
pub(crate) type AppState = Arc<Shared>;

pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) js: jetstream::Context,
    pub(crate) runs: Arc<Runs>,
    pub(crate) control: Arc<RunControl>,
    pub(crate) settings: Arc<ControlPlaneSettings>,
    /// Bound on one read of NATS state for a request (the provider registry).
    pub(crate) nats_timeout: Duration,
}
