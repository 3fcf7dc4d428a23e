//! Revoked credentials, checked on every request (cache hits included).
//!
//! Four kinds, as the auth service publishes them (see the README's revocation contract): one
//! token (`jti`), one session (`sid`), every token of a user issued before a time (`sub` +
//! `before`), and one API key (SHA-256 of the key, hex). Each carries `expires_at`, after which
//! no token it could match is still valid, so the set prunes itself.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::identity::Identity;

/// One revocation fact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Revocation {
    Token {
        jti: String,
        expires_at: u64,
    },
    Session {
        sid: String,
        expires_at: u64,
    },
    /// Every token of `sub` whose `iat` is before `before` ("log out everywhere").
    User {
        sub: String,
        before: u64,
        expires_at: u64,
    },
    /// An API key, by the hex SHA-256 of the key.
    ApiKey {
        sha256: String,
        expires_at: u64,
    },
}

impl Revocation {
    /// `<kind>:<id>`: where the auth service stores this fact, after the configured prefix
    /// (the README's revocation contract).
    pub fn storage_suffix(&self) -> String {
        match self {
            Revocation::Token { jti, .. } => format!("token:{jti}"),
            Revocation::Session { sid, .. } => format!("session:{sid}"),
            Revocation::User { sub, .. } => format!("user:{sub}"),
            Revocation::ApiKey { sha256, .. } => format!("api_key:{sha256}"),
        }
    }

    pub fn expires_at(&self) -> u64 {
        match self {
            Revocation::Token { expires_at, .. }
            | Revocation::Session { expires_at, .. }
            | Revocation::User { expires_at, .. }
            | Revocation::ApiKey { expires_at, .. } => *expires_at,
        }
    }
}

/// The revocations in force.
///
/// Two layers, so that a copy stays cheap where copies are kept: the sidecar publishes a new
/// snapshot per fact while checks still read the one before, and copying 100000 facts per
/// fact cost it 4 ms of the propagation (`bench/revocation-propagation.sh --held 100000`).
/// A copy shares the large `base` and copies only `recent`. An insert goes straight into
/// `base` when nothing shares it (the filter's one set per VM: one layer, one lookup), else
/// into `recent`, which [`Self::compact`] folds into `base` once it is large.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    base: Arc<Layer>,
    recent: Layer,
}

/// `recent` holds at most this many facts after [`RevocationSet::compact`]: copying it is then
/// tens of microseconds, and folding it in (a copy of `base`) happens once per this many facts.
const RECENT_LIMIT: usize = 512;

#[derive(Debug, Clone, Default)]
struct Layer {
    tokens: HashMap<String, u64>,
    sessions: HashMap<String, u64>,
    /// `sub` → (latest `before`, expiry).
    users: HashMap<String, (u64, u64)>,
    api_keys: HashMap<String, u64>,
}

impl Layer {
    fn insert(&mut self, r: &Revocation) {
        match r {
            Revocation::Token { jti, expires_at } => upsert(&mut self.tokens, jti, *expires_at),
            Revocation::Session { sid, expires_at } => upsert(&mut self.sessions, sid, *expires_at),
            Revocation::User { sub, before, expires_at } => upsert_user(&mut self.users, sub, *before, *expires_at),
            Revocation::ApiKey { sha256, expires_at } => {
                upsert(&mut self.api_keys, &sha256.to_ascii_lowercase(), *expires_at)
            }
        }
    }

    fn is_revoked(&self, id: &Identity) -> bool {
        if self.is_empty() {
            return false;
        }
        id.token_id.as_ref().is_some_and(|j| self.tokens.contains_key(j))
            || id.session_id.as_ref().is_some_and(|s| self.sessions.contains_key(s))
            || self.users.get(&id.user_id).is_some_and(|(before, _)| id.issued_at.is_none_or(|iat| iat < *before))
    }

    fn prune(&mut self, now: u64) {
        self.tokens.retain(|_, e| *e > now);
        self.sessions.retain(|_, e| *e > now);
        self.users.retain(|_, (_, e)| *e > now);
        self.api_keys.retain(|_, e| *e > now);
    }

    /// Folds `other` in (an upsert of each fact: the later expiry and `before` win).
    fn absorb(&mut self, other: &Layer) {
        for (jti, e) in &other.tokens {
            upsert(&mut self.tokens, jti, *e);
        }
        for (sid, e) in &other.sessions {
            upsert(&mut self.sessions, sid, *e);
        }
        for (sub, (b, e)) in &other.users {
            upsert_user(&mut self.users, sub, *b, *e);
        }
        for (h, e) in &other.api_keys {
            upsert(&mut self.api_keys, h, *e);
        }
    }

    fn to_vec(&self) -> Vec<Revocation> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.tokens.iter().map(|(jti, e)| Revocation::Token { jti: jti.clone(), expires_at: *e }));
        out.extend(self.sessions.iter().map(|(sid, e)| Revocation::Session { sid: sid.clone(), expires_at: *e }));
        out.extend(self.users.iter().map(|(sub, (b, e))| Revocation::User {
            sub: sub.clone(),
            before: *b,
            expires_at: *e,
        }));
        out.extend(self.api_keys.iter().map(|(h, e)| Revocation::ApiKey { sha256: h.clone(), expires_at: *e }));
        out
    }

    /// Facts here that `other` does not name.
    fn not_in(&self, other: &Layer) -> usize {
        self.tokens.keys().filter(|k| !other.tokens.contains_key(*k)).count()
            + self.sessions.keys().filter(|k| !other.sessions.contains_key(*k)).count()
            + self.users.keys().filter(|k| !other.users.contains_key(*k)).count()
            + self.api_keys.keys().filter(|k| !other.api_keys.contains_key(*k)).count()
    }

    fn len(&self) -> usize {
        self.tokens.len() + self.sessions.len() + self.users.len() + self.api_keys.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, r: &Revocation) {
        match Arc::get_mut(&mut self.base) {
            Some(base) if self.recent.is_empty() => base.insert(r),
            _ => self.recent.insert(r),
        }
    }

    /// True once `recent` has grown past its limit: [`Self::compact`] is due. A holder of
    /// copies calls it off its latency path (after publishing the fact).
    pub fn needs_compaction(&self) -> bool {
        self.recent.len() > RECENT_LIMIT
    }

    /// Folds `recent` into `base` (copying `base` if a copy shares it).
    pub fn compact(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let recent = std::mem::take(&mut self.recent);
        Arc::make_mut(&mut self.base).absorb(&recent);
    }

    /// True when `id` must be refused. A token without `iat` is refused when its user was
    /// logged out everywhere: it cannot prove it is newer.
    pub fn is_revoked(&self, id: &Identity) -> bool {
        self.base.is_revoked(id) || self.recent.is_revoked(id)
    }

    /// True when the API key with this SHA-256 is revoked.
    pub fn is_api_key_revoked(&self, sha256: &[u8; 32]) -> bool {
        if self.base.api_keys.is_empty() && self.recent.api_keys.is_empty() {
            return false;
        }
        let mut buf = [0u8; 64];
        let key = crate::cache::hex_into(sha256, &mut buf);
        self.base.api_keys.contains_key(key) || self.recent.api_keys.contains_key(key)
    }

    /// Drops facts that can no longer match a valid credential (and folds the layers).
    pub fn prune(&mut self, now: u64) {
        self.compact();
        Arc::make_mut(&mut self.base).prune(now);
    }

    /// Every fact, for a snapshot.
    pub fn to_vec(&self) -> Vec<Revocation> {
        if self.recent.is_empty() {
            return self.base.to_vec();
        }
        let mut all = Layer::clone(&self.base);
        all.absorb(&self.recent);
        all.to_vec()
    }

    /// Distinct facts (one per credential, user or key named).
    pub fn len(&self) -> usize {
        self.base.len() + self.recent.not_in(&self.base)
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.recent.is_empty()
    }
}

fn upsert(map: &mut HashMap<String, u64>, key: &str, expires_at: u64) {
    let e = map.entry(key.to_string()).or_insert(0);
    *e = (*e).max(expires_at);
}

/// A user's latest `before` and expiry win.
fn upsert_user(map: &mut HashMap<String, (u64, u64)>, sub: &str, before: u64, expires_at: u64) {
    let e = map.entry(sub.to_string()).or_insert((0, 0));
    e.0 = e.0.max(before);
    e.1 = e.1.max(expires_at);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Distinct kinds in a list.
    fn kinds(revs: &[Revocation]) -> HashSet<&'static str> {
        revs.iter()
            .map(|r| match r {
                Revocation::Token { .. } => "token",
                Revocation::Session { .. } => "session",
                Revocation::User { .. } => "user",
                Revocation::ApiKey { .. } => "api_key",
            })
            .collect()
    }

    fn id(sub: &str, jti: &str, sid: &str, iat: Option<u64>) -> Identity {
        Identity {
            user_id: sub.into(),
            email: None,
            roles: vec![],
            issuer: None,
            token_id: Some(jti.into()),
            session_id: Some(sid.into()),
            audiences: vec![],
            auth_time: None,
            service: None,
            action: None,
            key_id: None,
            provider: None,
            issued_at: iat,
            scopes: vec![],
            endpoint_permissions: None,
            claims: Default::default(),
            expires_at: 0,
        }
    }

    /// A copy shares the facts so far; what is inserted after goes to the copy's recent layer
    /// and is not seen by the original, lookups and snapshots read both layers as one set, and
    /// compaction changes nothing a reader sees.
    #[test]
    fn copies_share_their_base_and_read_both_layers_as_one() {
        let mut held = RevocationSet::new();
        for i in 0..1000 {
            held.insert(&Revocation::Token { jti: format!("j{i}"), expires_at: 500 });
        }
        held.insert(&Revocation::User { sub: "u1".into(), before: 100, expires_at: 500 });
        let before = held.clone();
        let mut next = held;
        next.insert(&Revocation::Token { jti: "new".into(), expires_at: 500 });
        // The same user again with a later `before` and expiry, and a known token again.
        next.insert(&Revocation::User { sub: "u1".into(), before: 200, expires_at: 900 });
        next.insert(&Revocation::Token { jti: "j1".into(), expires_at: 800 });
        assert_eq!(next.recent.len(), 3, "inserted beside the shared base");
        assert!(next.is_revoked(&id("u9", "new", "s", Some(1))) && !before.is_revoked(&id("u9", "new", "s", Some(1))));
        assert!(next.is_revoked(&id("u1", "x", "s", Some(150))) && !before.is_revoked(&id("u1", "x", "s", Some(150))));
        assert!(next.is_revoked(&id("u9", "j999", "s", Some(1))), "the base is read too");
        assert_eq!((next.len(), before.len()), (1002, 1001));
        let facts = next.to_vec();
        assert_eq!(facts.len(), 1002);
        assert!(facts.contains(&Revocation::User { sub: "u1".into(), before: 200, expires_at: 900 }));
        assert!(facts.contains(&Revocation::Token { jti: "j1".into(), expires_at: 800 }));
        assert!(!next.needs_compaction());
        for i in 0..=RECENT_LIMIT {
            next.insert(&Revocation::Session { sid: format!("s{i}"), expires_at: 500 });
        }
        assert!(next.needs_compaction());
        next.compact();
        assert!(next.recent.is_empty() && next.to_vec().len() == facts.len() + RECENT_LIMIT + 1);
        assert!(next.is_revoked(&id("u1", "x", "s", Some(150))) && next.is_revoked(&id("u9", "x", "s7", Some(1))));
        assert_eq!(before.len(), 1001, "the copy kept its own base");
        // Pruned at 500: only what expires later stays (the user and the re-revoked token).
        next.prune(500);
        assert_eq!(next.len(), 2);
        // Nothing shares it now: an insert goes straight into the base.
        next.insert(&Revocation::Token { jti: "solo".into(), expires_at: 900 });
        assert!(next.recent.is_empty() && next.len() == 3);
    }

    #[test]
    fn each_kind_matches_what_it_names() {
        let mut set = RevocationSet::new();
        let a = id("u1", "j1", "s1", Some(100));
        assert!(!set.is_revoked(&a));
        let cases: Vec<(Revocation, Identity, bool)> = vec![
            (Revocation::Token { jti: "j1".into(), expires_at: 500 }, id("u1", "j1", "s9", Some(100)), true),
            (Revocation::Token { jti: "j1".into(), expires_at: 500 }, id("u1", "j2", "s9", Some(100)), false),
            (Revocation::Session { sid: "s1".into(), expires_at: 500 }, id("u1", "j3", "s1", Some(100)), true),
            (
                Revocation::User { sub: "u2".into(), before: 200, expires_at: 500 },
                id("u2", "j4", "s4", Some(150)),
                true,
            ),
            (
                Revocation::User { sub: "u2".into(), before: 200, expires_at: 500 },
                id("u2", "j5", "s5", Some(250)),
                false,
            ),
            (Revocation::User { sub: "u2".into(), before: 200, expires_at: 500 }, id("u2", "j6", "s6", None), true),
            (
                Revocation::User { sub: "u2".into(), before: 200, expires_at: 500 },
                id("u3", "j7", "s7", Some(150)),
                false,
            ),
        ];
        for (r, who, want) in cases {
            set.insert(&r);
            assert_eq!(set.is_revoked(&who), want, "{r:?} vs {who:?}");
        }
        let key = [0xab; 32];
        assert!(!set.is_api_key_revoked(&key));
        set.insert(&Revocation::ApiKey { sha256: "AB".repeat(32), expires_at: 500 });
        assert!(set.is_api_key_revoked(&key));
        set.prune(499);
        assert_eq!(set.len(), 4);
        set.prune(500);
        assert!(set.is_empty());
    }

    #[test]
    fn wire_format() {
        let r: Revocation = serde_json::from_str(r#"{"kind":"user","sub":"u","before":10,"expires_at":20}"#).unwrap();
        assert_eq!(r, Revocation::User { sub: "u".into(), before: 10, expires_at: 20 });
        assert!(serde_json::from_str::<Revocation>(r#"{"kind":"token","jti":"j","expires_at":1,"x":2}"#).is_err());
        assert!(serde_json::from_str::<Revocation>(r#"{"kind":"everything"}"#).is_err());
        let set = {
            let mut s = RevocationSet::new();
            s.insert(&r);
            s.insert(&Revocation::Token { jti: "j".into(), expires_at: 5 });
            s
        };
        assert_eq!(kinds(&set.to_vec()), ["user", "token"].into_iter().collect());
    }
}
