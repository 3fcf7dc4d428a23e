//! A bounded cache of verified identities, keyed by a SHA-256 digest of the token.
//!
//! The filter keeps one per Envoy worker (single-threaded, so no locking). Entries live until
//! the token's `exp` and never longer; when full, expired entries go first, then an arbitrary
//! one (cheap and good enough: the hot set re-enters on its next request).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The cache key: never the raw token, so a heap dump or a log of keys reveals no credential.
pub type TokenDigest = [u8; 32];

/// Digest of a credential, for cache keys (SHA-256: collision-resistant, so no two tokens
/// can share an identity).
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires_at: u64,
}

/// A size-bounded map from token digest to a value that expires at a fixed time.
#[derive(Debug)]
pub struct TokenCache<V> {
    map: HashMap<TokenDigest, Entry<V>>,
    capacity: usize,
}

impl<V> TokenCache<V> {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self { map: HashMap::with_capacity(capacity.min(4096)), capacity }
    }

    /// The value for `key` if present and not expired at `now`; an expired entry is removed.
    pub fn get(&mut self, key: &TokenDigest, now: u64) -> Option<&V> {
        let expired = self.map.get(key)?.expires_at <= now;
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// Stores `value` until `expires_at`. Already-expired values are not stored.
    pub fn insert(&mut self, key: TokenDigest, value: V, expires_at: u64, now: u64) {
        if self.capacity == 0 || expires_at <= now {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.map.retain(|_, e| e.expires_at > now);
            if self.map.len() >= self.capacity
                && let Some(victim) = self.map.keys().next().copied()
            {
                self.map.remove(&victim);
            }
        }
        self.map.insert(key, Entry { value, expires_at });
    }

    pub fn remove(&mut self, key: &TokenDigest) -> Option<V> {
        self.map.remove(key).map(|e| e.value)
    }

    /// Drops every entry (keys or configuration changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bounds() {
        let mut c = TokenCache::new(2);
        let (a, b, d) = (digest("a"), digest("b"), digest("d"));
        c.insert(a, 1, 100, 10);
        assert_eq!(c.get(&a, 99), Some(&1));
        assert_eq!(c.get(&a, 100), None, "gone at exp");
        assert!(c.is_empty());
        c.insert(a, 1, 100, 10);
        c.insert(b, 2, 50, 10);
        c.insert(d, 3, 100, 60); // b expired at 60: evicted first
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&b, 60), None);
        assert_eq!(c.get(&d, 60), Some(&3));
        c.insert(digest("e"), 4, 100, 60); // full of live entries: one goes
        assert_eq!(c.len(), 2);
        c.insert(digest("f"), 5, 5, 10); // already expired: ignored
        assert_eq!(c.get(&digest("f"), 10), None);
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = TokenCache::new(0);
        c.insert(digest("a"), 1, 100, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(digest("")[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
