//! Per-principal limits on SSE connections: how many may be open at once, so one token
//! cannot hold every connection (and every run feed) of a gateway, and how fast new ones
//! may be opened, so a reconnect loop cannot make the gateway look up runs and create
//! consumers without end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Counts open streams and recent openings per principal id.
#[derive(Clone)]
pub(crate) struct StreamQuota {
    max_per_principal: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
    openings: Arc<Mutex<HashMap<String, Bucket>>>,
    opens_per_minute: u32,
}

/// A token bucket: `opens_per_minute` tokens, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// The principal may not open another stream now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QuotaExceeded {
    #[error("too many concurrent streams ({max}) for this token")]
    Concurrent { max: usize },
    #[error("streams are opened too fast for this token (at most {per_minute} a minute)")]
    Rate { per_minute: u32 },
}

/// One open stream; dropping it (the SSE body ends or the client leaves) frees the slot.
pub(crate) struct StreamPermit {
    principal: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamQuota {
    /// `opens_per_minute` 0 disables the rate limit.
    pub(crate) fn new(max_per_principal: usize, opens_per_minute: u32) -> Self {
        Self {
            max_per_principal,
            open: Arc::default(),
            openings: Arc::default(),
            opens_per_minute,
        }
    }

    pub(crate) fn acquire(&self, principal: &str) -> Result<StreamPermit, QuotaExceeded> {
        self.take_opening(principal, Instant::now())?;
        self.take_slot(principal)
    }

    fn take_opening(&self, principal: &str, now: Instant) -> Result<(), QuotaExceeded> {
        if self.opens_per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.opens_per_minute);
        let mut openings = self.openings.lock().unwrap_or_else(PoisonError::into_inner);
        // Full buckets carry no information: drop them so the map stays small.
        if openings.len() > 10_000 {
            openings.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled_at).as_secs_f64() * capacity / 60.0
                    < capacity
            });
        }
        let bucket = openings.entry(principal.to_owned()).or_insert(Bucket {
            tokens: capacity,
            refilled_at: now,
        });
        let refill = now.duration_since(bucket.refilled_at).as_secs_f64() * capacity / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.refilled_at = now;
        if bucket.tokens < 1.0 {
            return Err(QuotaExceeded::Rate {
                per_minute: self.opens_per_minute,
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    fn take_slot(&self, principal: &str) -> Result<StreamPermit, QuotaExceeded> {
        // The lock guards a plain counter update and is never held across an await;
        // a poisoned map is still consistent, so keep using it.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(principal.to_owned()).or_insert(0);
        if *count >= self.max_per_principal {
            return Err(QuotaExceeded::Concurrent {
                max: self.max_per_principal,
            });
        }
        *count += 1;
        Ok(StreamPermit {
            principal: principal.to_owned(),
            open: self.open.clone(),
        })
    }

    /// Open streams of `principal`.
    #[cfg(test)]
    fn open_streams(&self, principal: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(principal).copied().unwrap_or(0)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            // Forget idle principals so the map only holds those with open streams.
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_principal_and_released_on_drop() {
        let quota = StreamQuota::new(2, 0);
        let a1 = quota.acquire("a").unwrap();
        let _a2 = quota.acquire("a").unwrap();
        assert!(quota.acquire("a").is_err());
        let _b = quota.acquire("b").unwrap();
        drop(a1);
        assert_eq!(quota.open_streams("a"), 1);
        let _a3 = quota.acquire("a").unwrap();
        assert!(quota.acquire("a").is_err());
    }

    #[test]
    fn idle_principals_are_forgotten() {
        let quota = StreamQuota::new(1, 0);
        drop(quota.acquire("a").unwrap());
        assert!(quota.open.lock().unwrap().is_empty());
    }

    #[test]
    fn openings_are_rate_limited_per_principal_and_refill_over_time() {
        let quota = StreamQuota::new(100, 60);
        let start = Instant::now();
        for _ in 0..60 {
            quota.take_opening("a", start).unwrap();
        }
        assert!(matches!(
            quota.take_opening("a", start),
            Err(QuotaExceeded::Rate { per_minute: 60 })
        ));
        // Another principal has its own budget.
        quota.take_opening("b", start).unwrap();
        // One token a second comes back.
        quota
            .take_opening("a", start + std::time::Duration::from_millis(1_100))
            .unwrap();
        assert!(
            quota
                .take_opening("a", start + std::time::Duration::from_millis(1_200))
                .is_err()
        );
    }
}
