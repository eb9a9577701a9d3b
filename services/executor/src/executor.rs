//! What every task of the executor shares: its identity and settings, the NATS client
//! and event log, the providers it offers, the slot table of the runs it owns, and the
//! task tracker its shutdown waits on.

use crate::hosting::RunHosts;
use crate::providers::ProviderRegistry;
use crate::runs::Runs;
use crate::settings::ExecutorSettings;
use chrono::{DateTime, Utc};
use switchyard_contracts::ExecutorId;
use switchyard_platform::events::EventLog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Executor {
    pub(crate) id: ExecutorId,
    pub(crate) settings: ExecutorSettings,
    pub(crate) client: async_nats::Client,
    pub(crate) log: EventLog,
    pub(crate) providers: ProviderRegistry,
    pub(crate) runs: Runs,
    /// Run supervisors and their providers, run host watchers, control loops and
    /// dispatch handlers: the drain is over when it is empty.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the HTTP server stops (ends open SSE streams).
    pub(crate) http_stop: CancellationToken,
    pub(crate) started_at: DateTime<Utc>,
    /// How runs are detached into run hosts; `None` runs every run in-process.
    pub(crate) hosts: Option<RunHosts>,
}
