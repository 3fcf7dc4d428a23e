//! A TCP proxy that can break the connections through it on command: a test stand-in for the
//! network between Envoy and the sidecar (in a pod, the loopback; across hosts, anything).
//!
//! Two faults, both without touching either process:
//! - [`FaultProxy::reset_all`]: every open connection is torn down with a TCP reset, as a
//!   restarted node or a connection-tracking flush would; new connections work at once.
//! - [`FaultProxy::stall`] / [`FaultProxy::resume`]: nothing moves in either direction, on open
//!   and new connections alike, but nothing closes either, as with a hung peer or a network
//!   partition. Only timeouts and keepalives can notice. Resuming lets the held bytes through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    pub addr: SocketAddr,
    stalled: watch::Sender<bool>,
    resets: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0: any) and forwards every connection to `upstream`.
    pub async fn spawn(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stalled, _) = watch::channel(false);
        let (resets, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stall_rx, reset_rx, count) = (stalled.subscribe(), resets.subscribe(), Arc::clone(&accepted));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let (stall_rx, mut reset_rx) = (stall_rx.clone(), reset_rx.clone());
                reset_rx.mark_unchanged();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pump(client, server, stall_rx, reset_rx).await;
                    }
                });
            }
        });
        Ok(Self { addr, stalled, resets, accepted, task })
    }

    /// Resets every connection open now (new ones are unaffected).
    pub fn reset_all(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Holds every byte in both directions, closing nothing, until [`FaultProxy::resume`].
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Connections accepted so far (a reconnect shows as one more).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes or a reset is ordered; holds still while stalled.
async fn pump(
    mut a: TcpStream,
    mut b: TcpStream,
    mut stalled: watch::Receiver<bool>,
    mut resets: watch::Receiver<u64>,
) {
    let (mut from_a, mut from_b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        if *stalled.borrow_and_update() {
            tokio::select! {
                changed = stalled.changed() => if changed.is_err() { return } else { continue },
                changed = resets.changed() => if changed.is_err() { return } else { break },
            }
        }
        tokio::select! {
            r = a.read(&mut from_a) => match r {
                Ok(n) if n > 0 => if b.write_all(&from_a[..n]).await.is_err() { return },
                _ => return,
            },
            r = b.read(&mut from_b) => match r {
                Ok(n) if n > 0 => if a.write_all(&from_b[..n]).await.is_err() { return },
                _ => return,
            },
            changed = stalled.changed() => if changed.is_err() { return },
            changed = resets.changed() => if changed.is_err() { return } else { break },
        }
    }
    // A reset, not a close: SO_LINGER 0 makes dropping the sockets send RST to both peers.
    let _ = a.set_zero_linger();
    let _ = b.set_zero_linger();
}
