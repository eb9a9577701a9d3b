//! The per-principal limit on concurrent SSE connections, so one token cannot hold
//! every connection (and every run feed) of a gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts open streams per principal id.
#[derive(Clone)]
pub struct StreamQuota {
    max_per_principal: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// Every stream slot of the principal is taken.
#[derive(Debug, thiserror::Error)]
#[error("too many concurrent streams ({max}) for this token")]
pub struct QuotaExceeded {
    pub max: usize,
}

/// One open stream; dropping it (the SSE body ends or the client leaves) frees the slot.
pub struct StreamPermit {
    principal: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamQuota {
    pub fn new(max_per_principal: usize) -> Self {
        Self {
            max_per_principal,
            open: Arc::default(),
        }
    }

    pub fn acquire(&self, principal: &str) -> Result<StreamPermit, QuotaExceeded> {
        // The lock guards a plain counter update and is never held across an await;
        // a poisoned map is still consistent, so keep using it.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(principal.to_owned()).or_insert(0);
        if *count >= self.max_per_principal {
            return Err(QuotaExceeded {
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
    pub fn open_streams(&self, principal: &str) -> usize {
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
        let quota = StreamQuota::new(2);
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
        let quota = StreamQuota::new(1);
        drop(quota.acquire("a").unwrap());
        assert!(quota.open.lock().unwrap().is_empty());
    }
}
