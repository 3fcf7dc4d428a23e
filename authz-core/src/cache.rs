//! A bounded cache of verified identities, keyed by a keyed 128-bit hash of the token.
//!
//! The filter keeps one per Envoy worker (single-threaded, so no locking). Entries live until
//! the token's `exp` and never longer; when full, expired entries go first (looked for at most
//! once per second, so a full cache never costs a scan per request), then an arbitrary one
//! (cheap and good enough: the hot set re-enters on its next request).
//!
//! The in-memory key is SipHash-1-3 with 128-bit output under a random per-cache key: a PRF,
//! so without the key no one can make a token collide with a cached one (2^-128 per try),
//! and it costs a fraction of SHA-256 inside wasm, where it was the largest part of a hit.
//! Keys that leave the process (Redis, shared by replicas) stay SHA-256: [`digest`].

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};

/// A SHA-256 digest of a credential: never the raw token, so a heap dump or a log of keys
/// reveals no credential.
pub type TokenDigest = [u8; 32];

/// Digest of a credential, for keys shared between processes (SHA-256: collision-resistant,
/// so no two tokens can share an identity).
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A short, stable fingerprint of a credential for audit events and logs: the first 12 hex
/// digits of its SHA-256 (enough to correlate events, far too little to recover anything).
pub fn fingerprint(token: &str) -> String {
    Fingerprint::of(token).as_str().to_owned()
}

/// [`fingerprint`] held inline, as a cached identity keeps it: no allocation of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 12]);

impl Fingerprint {
    pub fn of(token: &str) -> Self {
        let mut hex = [0u8; 12];
        hex_into(&digest(token)[..6], &mut hex);
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long), without allocating: for the
/// fingerprint and for looking up a revoked API key by its digest on every API-key request.
pub(crate) fn hex_into<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

/// The in-memory key of a token (see the module docs).
pub type CacheKey = u128;

/// Makes [`CacheKey`]s under a random key drawn when it is created.
#[derive(Clone)]
pub struct Keyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret of the process.
        f.write_str("Keyer(..)")
    }
}

impl Keyer {
    /// A key from the process's random source (std's `RandomState`, seeded by the OS or, in
    /// wasm, by the host's `random_get`).
    pub fn random() -> Self {
        let state = std::collections::hash_map::RandomState::new();
        Self { k0: state.hash_one(0x5eed_u64), k1: state.hash_one(0xcafe_u64) }
    }

    pub fn key(&self, token: &str) -> CacheKey {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}

/// Cache keys are already keyed-PRF outputs: the map uses their low bits as they are instead
/// of hashing them again.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used for `CacheKey`; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires_at: u64,
}

/// A size-bounded map from token key to a value that expires at a fixed time.
#[derive(Debug)]
pub struct TokenCache<V> {
    keyer: Keyer,
    map: HashMap<CacheKey, Entry<V>, BuildHasherDefault<PassThrough>>,
    capacity: usize,
    /// When expired entries were last looked for (unix seconds).
    last_purge: u64,
}

impl<V> TokenCache<V> {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            keyer: Keyer::random(),
            map: HashMap::with_capacity_and_hasher(capacity.min(4096), BuildHasherDefault::default()),
            capacity,
            last_purge: 0,
        }
    }

    /// The key of `token` in this cache.
    pub fn key(&self, token: &str) -> CacheKey {
        self.keyer.key(token)
    }

    /// The value for `key` if present and not expired at `now`; an expired entry is removed.
    pub fn get(&mut self, key: &CacheKey, now: u64) -> Option<&V> {
        let expired = self.map.get(key)?.expires_at <= now;
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// Stores `value` until `expires_at`. Already-expired values are not stored.
    pub fn insert(&mut self, key: CacheKey, value: V, expires_at: u64, now: u64) {
        if self.capacity == 0 || expires_at <= now {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            if now > self.last_purge {
                self.last_purge = now;
                self.map.retain(|_, e| e.expires_at > now);
            }
            if self.map.len() >= self.capacity
                && let Some(victim) = self.map.keys().next().copied()
            {
                self.map.remove(&victim);
            }
        }
        self.map.insert(key, Entry { value, expires_at });
    }

    pub fn remove(&mut self, key: &CacheKey) -> Option<V> {
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
        let (a, b, d) = (c.key("a"), c.key("b"), c.key("d"));
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
        let e = c.key("e");
        c.insert(e, 4, 100, 60); // full of live entries: one goes
        assert_eq!(c.len(), 2);
        let f = c.key("f");
        c.insert(f, 5, 5, 10); // already expired: ignored
        assert_eq!(c.get(&f, 10), None);
    }

    #[test]
    fn a_full_cache_scans_for_expired_entries_at_most_once_a_second() {
        let mut c = TokenCache::new(2);
        let (a, b, d, e) = (c.key("a"), c.key("b"), c.key("d"), c.key("e"));
        c.insert(a, 1, 100, 10);
        c.insert(b, 2, 100, 10);
        c.insert(d, 3, 100, 20); // scan at 20 finds nothing expired: one live entry goes
        assert_eq!(c.len(), 2);
        c.insert(e, 4, 100, 20); // same second: no scan, one entry goes
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&e, 20), Some(&4));
    }

    #[test]
    fn keys_depend_on_the_token_and_on_the_cache() {
        let (c1, c2) = (TokenCache::<u8>::new(1), TokenCache::<u8>::new(1));
        assert_eq!(c1.key("tok"), c1.key("tok"));
        assert_ne!(c1.key("tok"), c1.key("tok2"));
        assert_ne!(c1.key("tok"), c2.key("tok"), "each cache draws its own key");
        assert_eq!(format!("{:?}", c1.keyer), "Keyer(..)");
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = TokenCache::new(0);
        let a = c.key("a");
        c.insert(a, 1, 100, 0);
        assert!(c.is_empty());
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(digest("")[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
