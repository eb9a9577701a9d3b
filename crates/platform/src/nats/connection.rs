//! The life of one NATS connection as the services need it: how often it has been
//! (re)established and whether it is up right now.
//!
//! Server-side state tied to a connection — pull requests, a KV watch's ordered
//! consumer, an in-memory bucket after a server restart, answers cached while updates
//! could not arrive — does not survive a reconnect, and async-nats does not say so on
//! those streams. Its event callback does say it: every successful (re)connect is an
//! `Event::Connected`. [`NatsConnection::open`] installs that callback and feeds a
//! `watch` channel, so that loops holding such state wait for a reconnect instead of
//! polling the client's statistics.

use super::{NatsError, connect_checked, connect_options};
use crate::config::NatsConfig;
use std::time::Duration;
use tokio::sync::watch;

/// A connected client and the watch of its connection.
#[derive(Debug, Clone)]
pub struct NatsConnection {
    pub client: async_nats::Client,
    pub lifecycle: ConnectionWatch,
}

/// The connection as the event callback last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionState {
    /// How many times the client has connected: 1 after the first connect, one more
    /// after each reconnect. Never decreases.
    pub generation: u64,
    /// Whether the client is connected now (false between a disconnect and the
    /// reconnect, and once the client is closed).
    pub connected: bool,
}

impl NatsConnection {
    /// Connects (checking the server version and that JetStream answers) with the
    /// connection's lifecycle watched. The watch starts at generation 1.
    pub async fn open(config: &NatsConfig, client_name: &str) -> Result<Self, NatsError> {
        let (sender, receiver) = watch::channel(ConnectionState {
            generation: 0,
            connected: false,
        });
        let options = connect_options(config, client_name)
            .await?
            .event_callback(move |event| {
                // Updated in the callback itself, not its future: async-nats calls the
                // callback from one task, in the order the events happened.
                record(&sender, &event);
                async {}
            });
        let client = connect_checked(options, config).await?;
        let mut lifecycle = ConnectionWatch {
            state: receiver,
            seen: FIRST_GENERATION,
        };
        // The first `Connected` was queued before `connect` returned; it is delivered by
        // async-nats' event task, so wait for it to be applied (a moment) so that
        // `state()` reports the connection up. Reconnect detection does not depend on
        // it: `seen` already counts the first connect.
        let applied = lifecycle
            .state
            .wait_for(|state| state.generation >= FIRST_GENERATION);
        if tokio::time::timeout(FIRST_EVENT_WAIT, applied)
            .await
            .is_err()
        {
            tracing::debug!("the first connect event has not been delivered yet");
        }
        lifecycle.catch_up();
        Ok(Self { client, lifecycle })
    }
}

/// The generation right after the first connect.
const FIRST_GENERATION: u64 = 1;
/// Bound on waiting for async-nats to deliver the first connect event.
const FIRST_EVENT_WAIT: Duration = Duration::from_secs(1);

/// async-nats' events as connection state. Events it cannot queue are dropped (a
/// bounded channel of 128 drained by one task running this callback without waiting),
/// so a burst of slow-consumer notices is the only way to lose one.
fn record(sender: &watch::Sender<ConnectionState>, event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => sender.send_modify(|state| {
            state.generation += 1;
            state.connected = true;
        }),
        async_nats::Event::Disconnected | async_nats::Event::Closed => {
            sender.send_if_modified(|state| std::mem::replace(&mut state.connected, false));
        }
        _ => {}
    }
}

/// Follows a connection's state. Each clone remembers on its own which generation it
/// has seen, so several loops can wait for reconnects independently.
#[derive(Debug, Clone)]
pub struct ConnectionWatch {
    state: watch::Receiver<ConnectionState>,
    /// The generation [`ConnectionWatch::reconnected`] compares against.
    seen: u64,
}

impl ConnectionWatch {
    /// The connection's state now.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// The connection's generation now (see [`ConnectionState::generation`]).
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Forgets reconnects so far: what the caller sets up next belongs to the current
    /// connection.
    pub fn catch_up(&mut self) {
        self.seen = self.seen.max(self.generation());
    }

    /// Resolves with the new generation once the client has connected again since this
    /// watch was created, last caught up or last resolved. Cancel-safe (it can be raced
    /// in a `select!` loop without missing a reconnect); never resolves once the client
    /// is gone.
    pub async fn reconnected(&mut self) -> u64 {
        loop {
            let now = self.state.borrow_and_update().generation;
            if now > self.seen {
                self.seen = now;
                return now;
            }
            if self.state.changed().await.is_err() {
                // The client and its connection are gone: there is no next connect.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_test_support::NatsServer;

    fn watch_of(sender: &watch::Sender<ConnectionState>) -> ConnectionWatch {
        ConnectionWatch {
            state: sender.subscribe(),
            seen: FIRST_GENERATION,
        }
    }

    async fn resolves(watch: &mut ConnectionWatch) -> Option<u64> {
        tokio::time::timeout(Duration::from_millis(50), watch.reconnected())
            .await
            .ok()
    }

    #[tokio::test]
    async fn only_a_new_connect_counts_as_a_reconnect() {
        let (sender, _) = watch::channel(ConnectionState {
            generation: 0,
            connected: false,
        });
        let mut watch = watch_of(&sender);
        // The first connect, delivered after `open` returned, is not a reconnect.
        record(&sender, &async_nats::Event::Connected);
        assert_eq!(
            watch.state(),
            ConnectionState {
                generation: 1,
                connected: true
            }
        );
        assert_eq!(resolves(&mut watch).await, None);
        record(&sender, &async_nats::Event::Disconnected);
        assert!(!watch.state().connected);
        assert_eq!(resolves(&mut watch).await, None, "a disconnect alone");
        record(&sender, &async_nats::Event::LameDuckMode);
        record(&sender, &async_nats::Event::Connected);
        assert_eq!(resolves(&mut watch).await, Some(2));
        assert_eq!(resolves(&mut watch).await, None, "reported once");
    }

    #[tokio::test]
    async fn catching_up_forgets_earlier_reconnects_and_clones_wait_on_their_own() {
        let (sender, _) = watch::channel(ConnectionState {
            generation: 1,
            connected: true,
        });
        let mut first = watch_of(&sender);
        let mut second = first.clone();
        record(&sender, &async_nats::Event::Connected);
        record(&sender, &async_nats::Event::Connected);
        first.catch_up();
        assert_eq!(resolves(&mut first).await, None);
        assert_eq!(resolves(&mut second).await, Some(3));
    }

    #[tokio::test]
    async fn a_reconnect_during_a_cancelled_wait_is_not_lost() {
        let (sender, _) = watch::channel(ConnectionState {
            generation: 1,
            connected: true,
        });
        let mut watch = watch_of(&sender);
        assert_eq!(resolves(&mut watch).await, None);
        record(&sender, &async_nats::Event::Connected);
        assert_eq!(resolves(&mut watch).await, Some(2));
    }

    #[tokio::test]
    async fn a_closed_connection_never_reports_a_reconnect() {
        let (sender, _) = watch::channel(ConnectionState {
            generation: 1,
            connected: true,
        });
        let mut watch = watch_of(&sender);
        record(&sender, &async_nats::Event::Closed);
        drop(sender);
        assert!(!watch.state().connected);
        assert_eq!(resolves(&mut watch).await, None);
    }

    async fn wait_for(
        watch: &ConnectionWatch,
        what: &str,
        condition: impl Fn(ConnectionState) -> bool,
    ) {
        let mut state = watch.state.clone();
        tokio::time::timeout(Duration::from_secs(20), state.wait_for(|s| condition(*s)))
            .await
            .unwrap_or_else(|_| panic!("the connection was never {what}: {:?}", watch.state()))
            .unwrap();
    }

    #[tokio::test]
    async fn a_nats_server_restart_is_one_new_generation() {
        let mut server = NatsServer::start().await.unwrap();
        let config = NatsConfig {
            url: server.url(),
            ..Default::default()
        };
        let connection = NatsConnection::open(&config, "lifecycle-test")
            .await
            .unwrap();
        let mut lifecycle = connection.lifecycle.clone();
        assert_eq!(
            lifecycle.state(),
            ConnectionState {
                generation: 1,
                connected: true
            }
        );

        server.kill().await;
        wait_for(&lifecycle, "down", |s| !s.connected).await;
        assert_eq!(
            lifecycle.generation(),
            1,
            "a disconnect is no new generation"
        );
        server.restart().await.unwrap();
        let generation = tokio::time::timeout(Duration::from_secs(20), lifecycle.reconnected())
            .await
            .expect("no reconnect reported after the server came back");
        assert_eq!(generation, 2);
        assert!(lifecycle.state().connected);
        // The client really is usable on the new connection.
        connection.client.flush().await.unwrap();

        server.kill().await;
        wait_for(&lifecycle, "down", |s| !s.connected).await;
        server.restart().await.unwrap();
        let generation = tokio::time::timeout(Duration::from_secs(20), lifecycle.reconnected())
            .await
            .expect("no reconnect reported after the second restart");
        assert_eq!(generation, 3);
    }
}
