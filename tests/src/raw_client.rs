//! A client that sends a request exactly as written, the way an attacker would: the bypass
//! matrix needs request shapes that ordinary clients normalise away or cannot send.
//!
//! - [`h1`]: HTTP/1.1 over a plain TCP socket. Any path bytes (`..;`, `%2e`, `\`), any header
//!   names (underscores, repeats), a chunked body sent chunk by chunk, and chunked trailers.
//! - [`h2`]: HTTP/2 with prior knowledge (h2c) through the `h2` crate: DATA frames one by one
//!   and a trailing HEADERS frame (request trailers), on a stream of its own connection.
//!
//! A refused stream (Envoy resets an HTTP/2 stream it rejects, for example for a header with
//! an underscore) is a reply with status 0.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Pause between body chunks, so Envoy hands the filter separate body callbacks.
const CHUNK_GAP: Duration = Duration::from_millis(15);
const DEADLINE: Duration = Duration::from_secs(10);

/// A request as it goes on the wire.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    /// The request target, verbatim.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Body chunks, each sent on its own (HTTP/1.1: chunked encoding; HTTP/2: a DATA frame).
    pub body: Vec<Vec<u8>>,
    /// Request trailers (HTTP/1.1: after the last chunk; HTTP/2: a trailing HEADERS frame).
    pub trailers: Vec<(String, String)>,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct RawReply {
    /// 0 when the stream or connection was refused without a response.
    pub status: u16,
    /// Every header as received, repeats included (names lower case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The `error` code of a JSON denial body, if any.
    pub fn error(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Sends `req` over HTTP/1.1 on a fresh connection (`connection: close`).
pub async fn h1(addr: SocketAddr, req: &RawRequest) -> anyhow::Result<RawReply> {
    let mut sock = TcpStream::connect(addr).await.context("connecting")?;
    let mut head = format!("{} {} HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let chunked = !req.body.is_empty() || !req.trailers.is_empty();
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    if chunked {
        for chunk in &req.body {
            tokio::time::sleep(CHUNK_GAP).await;
            // The peer may already have answered and closed (a local denial): stop writing.
            if sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
                || sock.write_all(chunk).await.is_err()
                || sock.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        tokio::time::sleep(CHUNK_GAP).await;
        let mut tail = String::from("0\r\n");
        for (k, v) in &req.trailers {
            tail.push_str(&format!("{k}: {v}\r\n"));
        }
        tail.push_str("\r\n");
        let _ = sock.write_all(tail.as_bytes()).await;
    }
    let mut raw = Vec::new();
    match tokio::time::timeout(DEADLINE, sock.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => {}
        // A reset after a complete answer still leaves the answer.
        Ok(Err(_)) if !raw.is_empty() => {}
        Ok(Err(_)) => return Ok(RawReply::default()),
        Err(_) => anyhow::bail!("no answer within {DEADLINE:?}"),
    }
    Ok(parse_h1(&raw))
}

fn parse_h1(raw: &[u8]) -> RawReply {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return RawReply::default() };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let is_chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if is_chunked { dechunk(rest) } else { rest.to_vec() };
    RawReply { status, headers, body }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else { break };
        let start = eol + 2;
        let Some(chunk) = rest.get(start..start + size) else { break };
        out.extend_from_slice(chunk);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Sends `req` over HTTP/2 with prior knowledge on a fresh connection.
pub async fn h2(addr: SocketAddr, req: &RawRequest) -> anyhow::Result<RawReply> {
    let sock = TcpStream::connect(addr).await.context("connecting")?;
    let (client, conn) = h2::client::handshake(sock).await.context("h2 handshake")?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let reply = tokio::time::timeout(DEADLINE, h2_exchange(client, req)).await;
    driver.abort();
    match reply {
        Ok(Ok(r)) => Ok(r),
        // A stream reset (or a GOAWAY) instead of a response: refused.
        Ok(Err(e)) if e.downcast_ref::<h2::Error>().is_some() => Ok(RawReply::default()),
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!("no answer within {DEADLINE:?}"),
    }
}

async fn h2_exchange(client: h2::client::SendRequest<Bytes>, req: &RawRequest) -> anyhow::Result<RawReply> {
    let mut client = client.ready().await?;
    let mut builder = http::Request::builder().method(req.method.as_str()).uri(format!("http://gateway{}", req.path));
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder.body(()).context("building the request")?;
    let end_with_headers = req.body.is_empty() && req.trailers.is_empty();
    let (response, mut stream) = client.send_request(request, end_with_headers)?;
    for (i, chunk) in req.body.iter().enumerate() {
        tokio::time::sleep(CHUNK_GAP).await;
        let last = i + 1 == req.body.len() && req.trailers.is_empty();
        stream.reserve_capacity(chunk.len());
        // A stream already answered (a local denial) refuses more data: stop sending.
        if stream.send_data(Bytes::copy_from_slice(chunk), last).is_err() {
            break;
        }
    }
    if !req.trailers.is_empty() {
        tokio::time::sleep(CHUNK_GAP).await;
        let mut map = http::HeaderMap::new();
        for (k, v) in &req.trailers {
            map.append(http::HeaderName::from_bytes(k.as_bytes())?, http::HeaderValue::from_str(v)?);
        }
        let _ = stream.send_trailers(map);
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut body_stream = response.into_body();
    let mut body = Vec::new();
    while let Some(data) = body_stream.data().await {
        let data = data?;
        let _ = body_stream.flow_control().release_capacity(data.len());
        body.extend_from_slice(&data);
    }
    Ok(RawReply { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r = parse_h1(b"HTTP/1.1 403 Forbidden\r\nX-Trace-Id: a\r\nx-trace-id: b\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(r.status, 403);
        assert_eq!(r.all("x-trace-id"), vec!["a", "b"]);
        assert_eq!(r.body, b"{}");
        let r = parse_h1(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(r.body, b"abcde");
        assert_eq!(parse_h1(b"garbage").status, 0);
    }
}
