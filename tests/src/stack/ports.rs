//! Ports of a stack: the documented fixed ones (`make run`), or free ones for tests; and the
//! sidecar's address as the Envoy templates take it.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;

/// Ports of one stack.
#[derive(Debug, Clone)]
pub struct Ports {
    pub gateway: u16,
    pub envoy_admin: u16,
    /// Envoy's Prometheus stats for scrapers (`/stats/prometheus` only, not the admin API).
    pub envoy_stats: u16,
    pub sidecar_grpc: u16,
    pub sidecar_admin: u16,
    pub redis: u16,
    pub auth: u16,
}

impl Ports {
    /// The documented fixed ports (`make run`).
    pub fn fixed() -> Self {
        Self {
            gateway: 8080,
            envoy_admin: 9901,
            envoy_stats: 9902,
            sidecar_grpc: 9191,
            sidecar_admin: 9192,
            redis: 6380,
            auth: 8100,
        }
    }

    /// Free ephemeral ports (tests).
    pub fn ephemeral() -> anyhow::Result<Self> {
        Ok(Self {
            gateway: free_port()?,
            envoy_admin: free_port()?,
            envoy_stats: free_port()?,
            sidecar_grpc: free_port()?,
            sidecar_admin: free_port()?,
            redis: free_port()?,
            auth: 0,
        })
    }
}

/// Ports tests listen on come from here: below Linux's ephemeral range (32768-60999), where
/// the OS never puts an outgoing connection, so a port chosen now cannot be taken by a client
/// socket (the tests open thousands) before the process meant for it binds it.
const LISTEN_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port free right now, never handed out twice by this process.
pub fn free_port() -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let span = u64::from(LISTEN_PORTS.end - LISTEN_PORTS.start);
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = LISTEN_PORTS.start + u16::try_from(random % span).unwrap_or(0);
        let mut given = GIVEN.lock().map_err(|_| anyhow::anyhow!("port registry poisoned"))?;
        if given.contains(&port) || StdListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        return Ok(port);
    }
    anyhow::bail!("no free port in {LISTEN_PORTS:?}")
}

/// An Envoy address (YAML flow mapping) for a Unix socket: what `SIDECAR_ADDRESS` holds.
pub fn pipe_address(path: &Path) -> String {
    format!("{{ pipe: {{ path: {} }} }}", crate::render::yaml_string(&path.display().to_string()))
}

/// An Envoy address (YAML flow mapping) for a TCP address.
pub fn tcp_address(addr: SocketAddr) -> String {
    format!("{{ socket_address: {{ address: {}, port_value: {} }} }}", addr.ip(), addr.port())
}
