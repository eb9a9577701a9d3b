//! Telling gateways that a principal's access changed, so a revoked token or a
//! downgraded role stops working at once instead of when their token caches expire.
//!
//! The notice ([`PrincipalChanged`], principal id only) goes out on core NATS after the
//! change is committed: a gateway that then asks about the principal's token reads the
//! new state. Core NATS is at-most-once, and a failed publish is only logged — the
//! change itself is committed and the gateways' cache TTL bounds how long a missed
//! notice matters (see `docs/architecture.md`, "Access control").

use std::time::Duration;
use switchyard_contracts::PrincipalId;
use switchyard_contracts::principals::PrincipalChanged;
use switchyard_contracts::subjects::PRINCIPAL_CHANGED;

/// Publishes the notice and waits (at most `timeout`) until the server has it, so the
/// gateways have usually applied it by the time the admin's request is answered.
pub(crate) async fn announce(
    client: &async_nats::Client,
    principal_id: PrincipalId,
    timeout: Duration,
) {
    // A notice that cannot be serialised is logged (in `json`) and not sent: the gateways'
    // cache TTL bounds how long that matters, as for a lost notice.
    let Ok(payload) = crate::json::to_vec("a principal notice", &PrincipalChanged { principal_id })
    else {
        return;
    };
    let sent = tokio::time::timeout(timeout, async {
        client.publish(PRINCIPAL_CHANGED, payload.into()).await?;
        client.flush().await?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::debug!(principal = %principal_id, "principal change announced"),
        Ok(Err(e)) => tracing::warn!(
            principal = %principal_id, error = %e,
            "announcing a principal change failed; gateways notice it when their token cache expires"
        ),
        Err(_) => tracing::warn!(
            principal = %principal_id,
            "announcing a principal change timed out; gateways notice it when their token cache expires"
        ),
    }
}
