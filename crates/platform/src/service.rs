//! The handle a started service returns, so that `main`, the all-in-one command and the
//! tests start services the same way.

use std::net::SocketAddr;
use tokio::task::JoinHandle;

/// A running service: its HTTP address (if it serves HTTP) and the task that ends
/// when the service has shut down.
pub struct ServiceHandle {
    pub name: &'static str,
    pub http_addr: Option<SocketAddr>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ServiceHandle {
    pub fn new(
        name: &'static str,
        http_addr: Option<SocketAddr>,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Self {
            name,
            http_addr,
            task,
        }
    }

    /// Waits until the service has stopped; a panic inside it becomes an error.
    pub async fn wait(self) -> anyhow::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(anyhow::anyhow!(
                "{} task ended abnormally: {join_error}",
                self.name
            )),
        }
    }

    /// Whether the service has stopped (its task completed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Aborts the service's task without a graceful shutdown (tests use it to simulate
    /// a crash of a service that runs in-process).
    pub fn abort(&self) {
        self.task.abort();
    }
}
