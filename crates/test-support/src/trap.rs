//! A TCP listener the test owns, standing for an endpoint an attacker controls: it
//! records every connection and the bytes the client sent (headers, where a credential
//! would be), answers `503` and closes, so that a client sent there fails fast instead
//! of hanging. A security test points a run at it and asserts it was never contacted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// How long one connection is read from before the answer.
const READ_FOR: Duration = Duration::from_secs(2);
/// At most this much of a connection is kept.
const MAX_KEPT: usize = 64 * 1024;
const ANSWER: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// See the module documentation. Dropping it stops listening.
pub struct Trap {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    /// Listens on a free 127.0.0.1 port.
    pub async fn start() -> anyhow::Result<Trap> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let record = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let index = {
                    let mut all = record.lock().unwrap_or_else(PoisonError::into_inner);
                    all.push(Vec::new());
                    all.len() - 1
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + READ_FOR;
                    let mut buffer = [0_u8; 4096];
                    loop {
                        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer));
                        let Ok(Ok(n)) = read.await else { break };
                        if n == 0 {
                            break;
                        }
                        let mut all = record.lock().unwrap_or_else(PoisonError::into_inner);
                        let kept = &mut all[index];
                        let room = MAX_KEPT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buffer[..n.min(room)]);
                        if kept.windows(4).any(|w| w == b"\r\n\r\n") || kept.len() >= MAX_KEPT {
                            break;
                        }
                    }
                    let _ = stream.write_all(ANSWER).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Trap {
            addr,
            received,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Everything received so far, every connection's bytes one after the other.
    pub fn received(&self) -> String {
        let all = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until what was received satisfies `done`, at most `within`; whether it did.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done(&self.received()) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
