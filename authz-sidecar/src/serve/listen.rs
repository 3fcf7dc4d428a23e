//! Where the gRPC server listens, and what a listener's callers are trusted with.
//!
//! The gRPC services hand out the keys the filters verify with (HMAC secrets included), answer
//! `Check` (an oracle for tokens and API keys) and grant quota leases, so who can reach them
//! matters. A listener is one of:
//! - a Unix domain socket (`unix:/run/authz/sidecar.sock`): reachable only by processes that
//!   may open the file (mode 0660), the way Envoy and the sidecar share a pod or a host;
//! - a TCP address: loopback without a token, any address only with `SIDECAR_GRPC_TOKEN`,
//!   which every call must then carry (`authorization: Bearer <token>` in its metadata, as
//!   Envoy's `grpc_service.initial_metadata` and the filter's `sidecarToken` send it).
//!
//! Symmetric keys go only to authenticated callers: over a Unix socket, or over TCP with the
//! token. Loopback TCP without a token gets the public keys only.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// One listener address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// Whether a caller on this listener has proven who it is (see the module docs).
    pub fn authenticated(&self, token_configured: bool) -> bool {
        matches!(self, Listen::Unix(_)) || token_configured
    }

    /// The TCP port, if any (tests and logs).
    pub fn port(&self) -> Option<u16> {
        match self {
            Listen::Tcp(a) => Some(a.port()),
            Listen::Unix(_) => None,
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a Unix socket needs an absolute path (unix:/run/authz/sidecar.sock)"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Listen::Tcp).map_err(|e| format!("{s:?} is neither host:port nor unix:/path ({e})"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `grpcListen`: one address or a list of them (for example the pod's Unix socket for Envoy
/// and a loopback port for operators' tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners(pub Vec<Listen>);

impl Default for Listeners {
    fn default() -> Self {
        Self(vec![Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9191)))])
    }
}

impl FromStr for Listeners {
    type Err = String;

    /// A comma-separated list (the `AUTHZ_GRPC_LISTEN` form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(Listen::from_str);
        let list = list.collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err("no listener given".into());
        }
        Ok(Self(list))
    }
}

impl<'de> Deserialize<'de> for Listeners {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let text = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => s,
            OneOrMany::Many(v) => v.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Refuses a TCP listener off loopback when no token authenticates its callers.
pub fn check_exposure(listeners: &Listeners, token_configured: bool) -> Result<(), String> {
    for l in &listeners.0 {
        if let Listen::Tcp(addr) = l
            && !addr.ip().is_loopback()
            && !token_configured
        {
            return Err(format!(
                "{addr} is not a loopback address and gRPC callers would be unauthenticated: listen on a \
                 Unix socket (unix:/path) or loopback, or set SIDECAR_GRPC_TOKEN (or SIDECAR_GRPC_TOKEN_FILE) \
                 so every call must carry it"
            ));
        }
    }
    Ok(())
}

/// Compares a call's `authorization` metadata with the token in constant time.
pub fn token_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
    let expected = token.as_bytes();
    if value.len() != expected.len() {
        return false;
    }
    value.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_lists() {
        let l: Listeners = "unix:/run/a.sock, 127.0.0.1:9191".parse().unwrap();
        assert_eq!(l.0[0], Listen::Unix("/run/a.sock".into()));
        assert_eq!(l.0[1].port(), Some(9191));
        assert!("unix:relative.sock".parse::<Listen>().is_err());
        assert!("nonsense".parse::<Listen>().is_err());
        assert!("".parse::<Listeners>().is_err());
        assert_eq!(Listeners::default().0[0].to_string(), "127.0.0.1:9191");
    }

    #[test]
    fn off_loopback_needs_a_token() {
        let open: Listeners = "0.0.0.0:9191".parse().unwrap();
        assert!(check_exposure(&open, false).unwrap_err().contains("SIDECAR_GRPC_TOKEN"));
        assert!(check_exposure(&open, true).is_ok());
        let local: Listeners = "127.0.0.1:9191,[::1]:9191,unix:/tmp/s".parse().unwrap();
        assert!(check_exposure(&local, false).is_ok());
    }

    #[test]
    fn trust_per_listener() {
        assert!(Listen::Unix("/s".into()).authenticated(false));
        let tcp: Listen = "127.0.0.1:1".parse().unwrap();
        assert!(!tcp.authenticated(false));
        assert!(tcp.authenticated(true));
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches(Some(b"Bearer s3cret-token"), "s3cret-token"));
        assert!(!token_matches(Some(b"Bearer s3cret-tokeN"), "s3cret-token"));
        assert!(!token_matches(Some(b"s3cret-token"), "s3cret-token"));
        assert!(!token_matches(Some(b"Bearer s3cret"), "s3cret-token"));
        assert!(!token_matches(None, "s3cret-token"));
    }
}
