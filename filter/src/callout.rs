//! The `Check` callout to the sidecar: building the request and reading the answer.
//!
//! Pure functions over bytes, so every branch is unit-tested natively; `http.rs` only moves
//! their results through hostcalls.

use authz_proto::ext_authz::{
    Address, AttributeContext, CheckRequest, CheckResponse, HttpRequest, HttpResponse, Peer, Request, SocketAddress,
    Timestamp,
};
use prost::Message;

/// What the filter does with the sidecar's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutVerdict {
    /// Continue upstream after setting and removing these request headers, and add `response`
    /// to the response (a Rego decision's `response_headers_to_add`). `record` is the sidecar's
    /// audit record (an encoded `Struct`, possibly empty).
    Allow { set: Vec<(String, String)>, remove: Vec<String>, response: Vec<(String, String)>, record: Vec<u8> },
    /// Answer the client directly.
    Deny { status: u16, headers: Vec<(String, String)>, body: String, record: Vec<u8> },
    /// The sidecar could not be asked or did not answer sensibly: 503, never a pass.
    Unavailable,
}

/// Encodes a `CheckRequest` carrying the (already sanitised) request headers and, on compute
/// routes, the body. Repeated headers are joined with `,` as Envoy's own ext_authz client does.
/// `client` is Envoy's downstream remote address (`ip:port`, the `source.address` attribute),
/// which the sidecar's per-client limits key on, as with Envoy's own ext_authz; `local` the
/// address the request arrived on (`destination.address`) and `now` the time (Unix seconds),
/// as Envoy's ext_authz sends them (Rego's input).
pub struct Peers<'a> {
    pub client: Option<&'a str>,
    pub local: Option<&'a str>,
    pub now: u64,
}

pub fn build_check_request(headers: &[(String, Vec<u8>)], trace_id: &str, body: &[u8], peers: &Peers) -> Vec<u8> {
    let mut http = HttpRequest { id: trace_id.to_string(), raw_body: body.to_vec(), ..HttpRequest::default() };
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value);
        match name.as_str() {
            ":method" => http.method = value.into_owned(),
            ":path" => http.path = value.into_owned(),
            ":authority" => http.host = value.into_owned(),
            ":scheme" => http.scheme = value.into_owned(),
            n if n.starts_with(':') => {}
            n => {
                http.headers
                    .entry(n.to_string())
                    .and_modify(|v| {
                        v.push(',');
                        v.push_str(&value);
                    })
                    .or_insert_with(|| value.into_owned());
            }
        }
    }
    let peer = |c: &str| {
        // `1.2.3.4:5678` or `[::1]:5678`.
        let (host, port) = c.rsplit_once(':').unwrap_or((c, ""));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Peer {
            address: Some(Address {
                socket_address: Some(SocketAddress {
                    address: host.to_string(),
                    port_value: port.parse().unwrap_or(0),
                }),
            }),
        }
    };
    let time = Some(Timestamp { seconds: i64::try_from(peers.now).unwrap_or(i64::MAX), nanos: 0 });
    CheckRequest {
        attributes: Some(AttributeContext {
            source: peers.client.map(peer),
            destination: peers.local.map(peer),
            request: Some(Request { time, http: Some(http) }),
            ..AttributeContext::default()
        }),
    }
    .encode_to_vec()
}

/// Reads the sidecar's answer. `grpc_status` is the call's status (0 = OK): anything else,
/// or a body that does not decode, is `Unavailable`.
pub fn interpret(grpc_status: u32, body: Option<&[u8]>) -> CalloutVerdict {
    if grpc_status != 0 {
        return CalloutVerdict::Unavailable;
    }
    let Some(Ok(resp)) = body.map(CheckResponse::decode) else {
        return CalloutVerdict::Unavailable;
    };
    let code = resp.status.as_ref().map_or(0, |s| s.code);
    let pairs = |opts: &[authz_proto::ext_authz::HeaderValueOption]| -> Vec<(String, String)> {
        opts.iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| (h.key.to_ascii_lowercase(), h.value_str().into_owned()))
            .collect()
    };
    let record = resp.dynamic_metadata;
    match (code, resp.http_response) {
        (0, Some(HttpResponse::OkResponse(ok))) => {
            // The trace id's echo is Envoy's own (the route's `response_headers_to_add`).
            let mut response = pairs(&ok.response_headers_to_add);
            response.retain(|(k, _)| k != "x-trace-id");
            CalloutVerdict::Allow { set: pairs(&ok.headers), remove: ok.headers_to_remove, response, record }
        }
        (0, None) => CalloutVerdict::Allow { set: Vec::new(), remove: Vec::new(), response: Vec::new(), record },
        // An OK status with a denial body (or the reverse) is a broken server: fail closed.
        (0, Some(HttpResponse::DeniedResponse(_))) => CalloutVerdict::Unavailable,
        (_, Some(HttpResponse::DeniedResponse(d))) => {
            let status = d.status.as_ref().map(|s| s.code).filter(|c| (300..600).contains(c)).unwrap_or(403);
            CalloutVerdict::Deny {
                status: u16::try_from(status).unwrap_or(403),
                headers: pairs(&d.headers),
                body: d.body,
                record,
            }
        }
        // Envoy's own ext_authz answers a bare denial with 403; so do we.
        (_, _) => CalloutVerdict::Deny { status: 403, headers: Vec::new(), body: String::new(), record },
    }
}

#[cfg(test)]
mod tests {
    use authz_proto::ext_authz::{
        DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpStatus, OkHttpResponse, RpcStatus,
    };

    use super::*;

    fn hv(k: &str, v: &str) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(HeaderValue { key: k.into(), value: v.into(), raw_value: Vec::new() }),
            append_action: 2,
        }
    }

    #[test]
    fn request_carries_pseudo_headers_and_joins_repeats() {
        let headers = vec![
            (":method".to_string(), b"GET".to_vec()),
            (":path".to_string(), b"/api/tools/x".to_vec()),
            (":authority".to_string(), b"gw".to_vec()),
            ("x-api-key".to_string(), b"k".to_vec()),
            ("accept".to_string(), b"a".to_vec()),
            ("accept".to_string(), b"b".to_vec()),
        ];
        let req = CheckRequest::decode(
            build_check_request(&headers, "t1", b"{}", &Peers { client: Some("[::1]:4321"), local: None, now: 7 })
                .as_slice(),
        )
        .unwrap();
        let attrs = req.attributes.unwrap();
        let peer = attrs.source.unwrap().address.unwrap().socket_address.unwrap();
        assert_eq!((peer.address.as_str(), peer.port_value), ("::1", 4321));
        let http = attrs.request.unwrap().http.unwrap();
        assert_eq!(
            (http.method.as_str(), http.path.as_str(), http.host.as_str(), http.id.as_str()),
            ("GET", "/api/tools/x", "gw", "t1")
        );
        assert_eq!(http.headers["accept"], "a,b");
        assert_eq!(http.raw_body, b"{}");
        assert_eq!(http.headers["x-api-key"], "k");
        assert!(!http.headers.contains_key(":path"));
    }

    #[test]
    fn answers() {
        let ok = CheckResponse {
            status: Some(RpcStatus { code: 0, message: String::new() }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: vec![hv("X-User-Id", "u1")],
                headers_to_remove: vec!["x-user-roles".into()],
                response_headers_to_add: vec![hv("x-trace-id", "t"), hv("x-policy", "yes")],
            })),
            dynamic_metadata: b"rec".to_vec(),
        };
        assert_eq!(
            interpret(0, Some(&ok.encode_to_vec())),
            CalloutVerdict::Allow {
                set: vec![("x-user-id".into(), "u1".into())],
                remove: vec!["x-user-roles".into()],
                response: vec![("x-policy".into(), "yes".into())],
                record: b"rec".to_vec()
            }
        );
        let denied = CheckResponse {
            status: Some(RpcStatus { code: 16, message: String::new() }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: 401 }),
                headers: vec![hv("www-authenticate", "Bearer")],
                body: "{}".into(),
            })),
            dynamic_metadata: Vec::new(),
        };
        assert_eq!(
            interpret(0, Some(&denied.encode_to_vec())),
            CalloutVerdict::Deny {
                status: 401,
                headers: vec![("www-authenticate".into(), "Bearer".into())],
                body: "{}".into(),
                record: Vec::new(),
            }
        );
        let bare = CheckResponse {
            status: Some(RpcStatus { code: 7, message: String::new() }),
            http_response: None,
            dynamic_metadata: Vec::new(),
        };
        assert!(matches!(interpret(0, Some(&bare.encode_to_vec())), CalloutVerdict::Deny { status: 403, .. }));
        let confused = CheckResponse {
            status: Some(RpcStatus { code: 0, message: String::new() }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse::default())),
            dynamic_metadata: Vec::new(),
        };
        assert_eq!(interpret(0, Some(&confused.encode_to_vec())), CalloutVerdict::Unavailable);
        assert_eq!(interpret(14, None), CalloutVerdict::Unavailable, "UNAVAILABLE");
        assert_eq!(interpret(4, Some(&ok.encode_to_vec())), CalloutVerdict::Unavailable, "deadline");
        assert_eq!(interpret(0, None), CalloutVerdict::Unavailable);
        assert_eq!(interpret(0, Some(b"\xff\xff\xff")), CalloutVerdict::Unavailable);
    }
}
