//! Reconnect detection. Server-side state tied to a connection — pull requests, the
//! presence watch's consumer, an in-memory bucket after a server restart — does not
//! survive a NATS restart, and async-nats does not say so on those streams; loops that
//! hold such state use this to start over.

use std::sync::atomic::Ordering;
use std::time::Duration;

/// Notices when the client connected again (after a NATS restart, say).
pub(crate) struct Reconnects {
    client: async_nats::Client,
    seen: u64,
    // An interval, not a sleep per call: `wait` is raced against every watch entry,
    // and a fresh sleep each time would never fire while heartbeats stream in.
    ticks: tokio::time::Interval,
}

/// How often the connection counter is looked at.
const CONNECTION_POLL: Duration = Duration::from_millis(250);

impl Reconnects {
    pub(crate) fn new(client: async_nats::Client) -> Self {
        let seen = Self::connects(&client);
        let mut ticks = tokio::time::interval(CONNECTION_POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            client,
            seen,
            ticks,
        }
    }

    // A counter rather than the connection state: a reconnect can complete between
    // two looks at the state, but it always increments the counter.
    fn connects(client: &async_nats::Client) -> u64 {
        client.statistics().connects.load(Ordering::Relaxed)
    }

    /// Forgets reconnects so far: what the caller sets up next belongs to the current connection.
    pub(crate) fn catch_up(&mut self) {
        self.seen = Self::connects(&self.client);
    }

    /// Resolves once the client connected again since the last call (or catch-up).
    pub(crate) async fn wait(&mut self) {
        loop {
            self.ticks.tick().await;
            let now = Self::connects(&self.client);
            if now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

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
