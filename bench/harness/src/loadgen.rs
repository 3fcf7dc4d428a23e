//! The load generator: HTTP/1.1 keep-alive connections (hyper's client connection, no pool
//! logic in the way), closed loop for saturation and open loop for latency at a fixed rate.
//!
//! Open loop means requests are due on a fixed schedule whether or not earlier ones have
//! answered; a pacer thread (std sleeps, ~60 µs precision, unlike tokio's 1 ms timer) releases
//! each request's due time into a queue the connections take from, and latency is measured from
//! the due time, so a stalled server shows as latency instead of as fewer requests
//! ("coordinated omission" corrected, as wrk2 does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

/// The credentials requests carry, one per request (a header and its value).
pub struct Credentials {
    values: Vec<(HeaderName, HeaderValue)>,
    next: AtomicUsize,
    /// Each value is used once (the miss path); otherwise the pool is cycled.
    unique: bool,
}

impl Credentials {
    /// A pool cycled in order: after the first round every value has been seen before.
    pub fn pool(header: &str, values: &[String]) -> anyhow::Result<Arc<Self>> {
        Self::new(values.iter().map(|v| (header, v.as_str())), false)
    }

    /// Values used once each; a run stops early when they run out.
    pub fn unique(header: &str, values: &[String]) -> anyhow::Result<Arc<Self>> {
        Self::new(values.iter().map(|v| (header, v.as_str())), true)
    }

    /// A cycled pool of credentials in different headers (tokens and API keys mixed).
    pub fn mixed<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> anyhow::Result<Arc<Self>> {
        Self::new(pairs, false)
    }

    fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, unique: bool) -> anyhow::Result<Arc<Self>> {
        let values = pairs
            .into_iter()
            .map(|(h, v)| Ok((HeaderName::from_bytes(h.as_bytes())?, HeaderValue::from_str(v)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!values.is_empty(), "no credentials");
        Ok(Arc::new(Self { values, next: AtomicUsize::new(0), unique }))
    }

    fn take(&self) -> Option<(HeaderName, HeaderValue)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.unique { self.values.get(i).cloned() } else { self.values.get(i % self.values.len()).cloned() }
    }

    /// How many values remain for a unique run (`usize::MAX` for a pool).
    pub fn remaining(&self) -> usize {
        if self.unique { self.values.len().saturating_sub(self.next.load(Ordering::Relaxed)) } else { usize::MAX }
    }
}

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub credentials: Arc<Credentials>,
}

/// What one run measured.
pub struct RunResult {
    /// Requests answered with 2xx.
    pub ok: u64,
    /// Requests answered with anything else, or failed on the connection.
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds, from the due time (open loop) or the send (closed loop).
    pub latency: Histogram<u64>,
    /// The credentials ran out before the end (unique runs).
    pub exhausted: bool,
    /// Open loop: requests still queued when the run was cut off (the server was too slow).
    pub dropped: u64,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        self.latency.value_at_quantile(p) as f64 / 1000.0
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

struct Connection {
    sender: SendRequest<Empty<Bytes>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// One request; `Ok(true)` for a 2xx.
    async fn send(&mut self, target: &Target, (name, value): (HeaderName, HeaderValue)) -> anyhow::Result<bool> {
        self.sender.ready().await?;
        let req = Request::get(target.path.as_str())
            .header(http::header::HOST, "gateway.bench")
            .header(name, value)
            .body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        Ok(ok)
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// Sends one request, reconnecting once if the connection broke; counts the outcome.
async fn request(
    conn: &mut Option<Connection>,
    target: &Target,
    credential: (HeaderName, HeaderValue),
    counters: &Counters,
) {
    let outcome = match conn {
        Some(c) => c.send(target, credential).await,
        None => Err(anyhow::anyhow!("not connected")),
    };
    match outcome {
        Ok(true) => {
            counters.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            *conn = Connection::open(target.addr).await.ok();
        }
    }
}

/// As many requests as `connections` keep-alive connections can push for `duration`.
pub async fn closed_loop(target: &Target, connections: usize, duration: Duration) -> anyhow::Result<RunResult> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = target.clone();
        let counters = Arc::clone(&counters);
        let mut conn = Some(Connection::open(target.addr).await?);
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            while Instant::now() < deadline {
                let Some(credential) = target.credentials.take() else { return Ok::<_, anyhow::Error>((hist, true)) };
                let sent = Instant::now();
                request(&mut conn, &target, credential, &counters).await;
                hist.saturating_record(sent.elapsed().as_micros() as u64);
            }
            Ok((hist, false))
        }));
    }
    let mut latency = histogram()?;
    let mut exhausted = false;
    for t in tasks {
        let (h, ran_out) = t.await??;
        latency.add(&h)?;
        exhausted |= ran_out;
    }
    Ok(RunResult {
        ok: counters.ok.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latency,
        exhausted,
        dropped: 0,
    })
}

/// `rate` requests per second on a fixed schedule for `duration`, over up to `connections`
/// connections. Requests still queued 2 s after the end are dropped and counted.
pub async fn open_loop(
    target: &Target,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<RunResult> {
    anyhow::ensure!(rate > 0.0, "rate must be positive");
    let total = (rate * duration.as_secs_f64()) as u64;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let counters = Arc::new(Counters::default());
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Some(Connection::open(target.addr).await?));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let cutoff = start + duration + Duration::from_secs(2);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(due).is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let (target, rx, counters) = (target.clone(), Arc::clone(&rx), Arc::clone(&counters));
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            let (mut dropped, mut exhausted) = (0u64, false);
            loop {
                let due = { rx.lock().await.recv().await };
                let Some(due) = due else { break };
                if Instant::now() > cutoff {
                    dropped += 1;
                    continue;
                }
                let Some(credential) = target.credentials.take() else {
                    exhausted = true;
                    dropped += 1;
                    continue;
                };
                request(&mut conn, &target, credential, &counters).await;
                hist.saturating_record(due.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>((hist, dropped, exhausted))
        }));
    }
    let mut latency = histogram()?;
    let (mut dropped, mut exhausted) = (0, false);
    for t in tasks {
        let (h, d, e) = t.await??;
        latency.add(&h)?;
        dropped += d;
        exhausted |= e;
    }
    pacer.join().map_err(|_| anyhow::anyhow!("pacer thread panicked"))?;
    Ok(RunResult {
        ok: counters.ok.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed: start.elapsed().min(duration + Duration::from_secs(2)).max(duration),
        latency,
        exhausted,
        dropped,
    })
}
