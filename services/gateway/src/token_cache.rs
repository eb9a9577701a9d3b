//! The answers the control-plane gave about issued tokens, kept for
//! `gateway.token_cache_secs` so that a client's every request does not cost a lookup.
//! It is filled and emptied through [`crate::revocation::Revocations`], which orders
//! those changes against the control-plane's notices.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::Principal;

/// Recently resolved tokens, keyed by the token's SHA-256 (the plaintext is not kept),
/// each trusted for `ttl`, at most `max_entries` of them.
pub(crate) struct TokenCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Principal> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((principal, at)) if at.elapsed() < self.ttl => Some(principal.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: [u8; 32], principal: Principal) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                // Still full of live entries: start over rather than track recency; the
                // cost is one control-plane lookup per active token.
                entries.clear();
            }
        }
        entries.insert(key, (principal, Instant::now()));
    }

    /// Drops every answer about the principal (all of its tokens).
    pub(crate) fn forget_principal(&self, principal_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (principal, _)| principal.id != principal_id);
    }

    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn developer(id: &str) -> Principal {
        Principal {
            id: id.to_owned(),
            role: Role::Developer,
            apps: vec!["a".parse().unwrap()],
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(30), 3);
        for i in 0..10 {
            cache.insert(TokenCache::key(&format!("sy_{i}")), developer("p"));
            assert!(cache.len() <= 3, "{}", cache.len());
        }
        assert!(cache.get(&TokenCache::key("sy_9")).is_some());
        assert!(!cache.is_empty());
        let off = TokenCache::new(Duration::ZERO, 3);
        off.insert(TokenCache::key("sy_1"), developer("p"));
        assert!(off.is_empty());
    }
}
