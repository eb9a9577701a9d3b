//! A TCP proxy between the adapter and `opencode serve` that cuts the event stream
//! while the server lives on — what a dropped connection or a proxy's timeout does in
//! production. Everything goes through it (the adapter's base URL is the proxy, see
//! `api::ROUTE`); only connections that carry `GET /event` are cut.
//!
//! A cut closes the adapter's side of each event connection but keeps the server's side
//! open and read, so the test can see what the server said while the adapter was not
//! listening ([`EventProxy::overheard`]) — the point at which to let it back in. New
//! subscriptions pass, wait, or are refused, as the [`Gate`] says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What happens to a new `GET /event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Passed on to the server.
    Open,
    /// Held (the adapter waits for the answer) until the gate opens.
    Hold,
    /// The connection is closed without an answer.
    Refuse,
}

#[derive(Debug)]
struct Shared {
    /// The server's port, known once the adapter picked it.
    target: OnceLock<u16>,
    gate: watch::Sender<Gate>,
    /// The client sides of the live event connections, by connection number; a
    /// connection that ends on its own leaves, so a late cut finds nothing to cut.
    events: Mutex<HashMap<u64, CancellationToken>>,
    /// Numbers the connections.
    connections: AtomicU64,
    /// `GET /event` requests seen.
    subscriptions: AtomicU32,
    /// What the server sent on cut event connections since the last cut.
    overheard: watch::Sender<String>,
}

pub(super) struct EventProxy {
    shared: Arc<Shared>,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl EventProxy {
    pub(super) async fn start() -> EventProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target: OnceLock::new(),
            gate: watch::Sender::new(Gate::Open),
            events: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            subscriptions: AtomicU32::new(0),
            overheard: watch::Sender::new(String::new()),
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(connection(shared.clone(), client));
                }
            }
        });
        EventProxy { shared, port, task }
    }

    /// The hook for `api::ROUTE`: the adapter connects to the proxy instead of the
    /// server.
    pub(super) fn route(&self) -> Arc<dyn Fn(u16) -> u16 + Send + Sync> {
        let shared = self.shared.clone();
        let port = self.port;
        Arc::new(move |server| {
            shared.target.get_or_init(|| server);
            port
        })
    }

    /// Sets the gate for new subscriptions, then cuts the live event connections;
    /// returns how many were cut.
    pub(super) fn cut(&self, then: Gate) -> usize {
        self.shared.gate.send_replace(then);
        self.shared.overheard.send_replace(String::new());
        let cut = std::mem::take(&mut *self.events());
        for connection in cut.values() {
            connection.cancel();
        }
        cut.len()
    }

    pub(super) fn open(&self) {
        self.shared.gate.send_replace(Gate::Open);
    }

    pub(super) fn subscriptions(&self) -> u32 {
        self.shared.subscriptions.load(Ordering::SeqCst)
    }

    /// Waits until the server said `needle` on a cut connection (after the last cut).
    pub(super) async fn overheard(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let mut overheard = self.shared.overheard.subscribe();
        let heard = overheard.wait_for(|text| text.contains(needle));
        match tokio::time::timeout(timeout, heard).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "the server did not say {needle:?} within {timeout:?} after the cut; it said: {}",
                self.shared.overheard.borrow().as_str()
            )),
        }
    }

    fn events(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.shared.events()
    }
}

impl Shared {
    fn events(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for EventProxy {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.events().values() {
            connection.cancel();
        }
    }
}

/// Relays one client connection; a cut closes the client side and keeps reading the
/// server's.
async fn connection(shared: Arc<Shared>, client: TcpStream) {
    let Some(&target) = shared.target.get() else {
        return;
    };
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let cut = CancellationToken::new();
    let id = shared.connections.fetch_add(1, Ordering::SeqCst);
    let upward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            // A request head is written in one go; an SSE subscription is the last
            // request of its connection.
            if buf[..n].windows(10).any(|w| w == b"GET /event") {
                shared.subscriptions.fetch_add(1, Ordering::SeqCst);
                let mut gate = shared.gate.subscribe();
                let Ok(gate) = gate.wait_for(|gate| *gate != Gate::Hold).await else {
                    return Ok(());
                };
                if *gate == Gate::Refuse {
                    return Ok(());
                }
                shared.events().insert(id, cut.clone());
            }
            upstream_write.write_all(&buf[..n]).await?;
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = upstream_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            client_write.write_all(&buf[..n]).await?;
        }
    };
    let was_cut = tokio::select! {
        _ = upward => false,
        _ = downward => false,
        _ = cut.cancelled() => true,
    };
    drop(client_read);
    drop(client_write);
    if !was_cut {
        shared.events().remove(&id);
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = upstream_read.read(&mut buf).await
        && n > 0
    {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        shared.overheard.send_modify(|heard| heard.push_str(&text));
    }
}
