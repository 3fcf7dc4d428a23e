//! Revoked credentials, checked on every request (cache hits included).
//!
//! Four kinds, as the auth service publishes them (see the README's revocation contract): one
//! token (`jti`), one session (`sid`), every token of a user issued before a time (`sub` +
//! `before`), and one API key (SHA-256 of the key, hex). Each carries `expires_at`, after which
//! no token it could match is still valid, so the set prunes itself.

use std::collections::HashMap;

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
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    tokens: HashMap<String, u64>,
    sessions: HashMap<String, u64>,
    /// `sub` → (latest `before`, expiry).
    users: HashMap<String, (u64, u64)>,
    api_keys: HashMap<String, u64>,
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, r: &Revocation) {
        match r {
            Revocation::Token { jti, expires_at } => upsert(&mut self.tokens, jti, *expires_at),
            Revocation::Session { sid, expires_at } => upsert(&mut self.sessions, sid, *expires_at),
            Revocation::User { sub, before, expires_at } => {
                let e = self.users.entry(sub.clone()).or_insert((0, 0));
                e.0 = e.0.max(*before);
                e.1 = e.1.max(*expires_at);
            }
            Revocation::ApiKey { sha256, expires_at } => {
                upsert(&mut self.api_keys, &sha256.to_ascii_lowercase(), *expires_at)
            }
        }
    }

    /// True when `id` must be refused. A token without `iat` is refused when its user was
    /// logged out everywhere: it cannot prove it is newer.
    pub fn is_revoked(&self, id: &Identity) -> bool {
        if self.is_empty() {
            return false;
        }
        id.token_id.as_ref().is_some_and(|j| self.tokens.contains_key(j))
            || id.session_id.as_ref().is_some_and(|s| self.sessions.contains_key(s))
            || self.users.get(&id.user_id).is_some_and(|(before, _)| id.issued_at.is_none_or(|iat| iat < *before))
    }

    /// True when the API key with this SHA-256 is revoked.
    pub fn is_api_key_revoked(&self, sha256: &[u8; 32]) -> bool {
        !self.api_keys.is_empty() && self.api_keys.contains_key(&hex(sha256))
    }

    /// Drops facts that can no longer match a valid credential.
    pub fn prune(&mut self, now: u64) {
        self.tokens.retain(|_, e| *e > now);
        self.sessions.retain(|_, e| *e > now);
        self.users.retain(|_, (_, e)| *e > now);
        self.api_keys.retain(|_, e| *e > now);
    }

    /// Every fact, for a snapshot.
    pub fn to_vec(&self) -> Vec<Revocation> {
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

    pub fn len(&self) -> usize {
        self.tokens.len() + self.sessions.len() + self.users.len() + self.api_keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn upsert(map: &mut HashMap<String, u64>, key: &str, expires_at: u64) {
    let e = map.entry(key.to_string()).or_insert(0);
    *e = (*e).max(expires_at);
}

fn hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
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
