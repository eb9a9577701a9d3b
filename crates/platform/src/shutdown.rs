//! Shutdown: one `CancellationToken` per process, cancelled on SIGINT or SIGTERM; and,
//! for services that drain (the executor), a second token cancelled on the second
//! signal, meaning "stop now".

use tokio_util::sync::CancellationToken;

/// A token that is cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub fn on_signal() -> CancellationToken {
    on_signals().graceful
}

/// The two stages of a shutdown: `graceful` begins it (finish what is in hand),
/// `immediate` cuts it short (stop what is still running).
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub graceful: CancellationToken,
    pub immediate: CancellationToken,
}

impl From<CancellationToken> for Signals {
    /// A graceful shutdown only: nothing ever asks for an immediate one.
    fn from(graceful: CancellationToken) -> Self {
        Self {
            graceful,
            immediate: CancellationToken::new(),
        }
    }
}

/// `graceful` is cancelled on the first SIGINT or SIGTERM, `immediate` on the second.
pub fn on_signals() -> Signals {
    let signals = Signals::default();
    let tokens = signals.clone();
    tokio::spawn(async move {
        // Listening from the start, so that a quick second signal is not missed.
        let mut listener = Listener::new();
        listener.next().await;
        tracing::info!("shutdown signal received");
        tokens.graceful.cancel();
        listener.next().await;
        tracing::info!("second shutdown signal received; stopping at once");
        tokens.immediate.cancel();
    });
    signals
}

/// SIGINT and SIGTERM, as one stream of "a signal came".
struct Listener {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Listener {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Self { unix }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = self.unix.as_mut() {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
