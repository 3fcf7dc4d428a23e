//! The subset must read what `envoy-types` (the full schema) writes, and vice versa.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::service::auth::v3 as full;
use envoy_types::pb::envoy::r#type::v3 as ty;
use prost::Message;

use super::*;

#[test]
fn check_request_reads_in_full_schema() {
    let ours = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress { address: "203.0.113.7".into(), port_value: 40000 }),
                }),
            }),
            destination: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress { address: "10.0.0.1".into(), port_value: 8080 }),
                }),
            }),
            request: Some(Request {
                time: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
                http: Some(HttpRequest {
                    id: "r1".into(),
                    method: "GET".into(),
                    headers: [("authorization".to_string(), "Bearer t".to_string())].into(),
                    path: "/api/tools/x?y=1".into(),
                    host: "gw".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    raw_body: b"{\"x\":1}".to_vec(),
                }),
            }),
            context_extensions: [("route".to_string(), "tools".to_string())].into(),
        }),
    };
    let theirs = full::CheckRequest::decode(ours.encode_to_vec().as_slice()).unwrap();
    let attrs = theirs.attributes.unwrap();
    let source = attrs.source.unwrap().address.unwrap().address.unwrap();
    let envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sock) = source else {
        panic!("not a socket address: {source:?}")
    };
    assert_eq!(
        (sock.address.as_str(), sock.port_specifier),
        (
            "203.0.113.7",
            Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(40000))
        )
    );
    assert!(attrs.destination.is_some_and(|d| d.address.is_some()));
    let request = attrs.request.unwrap();
    assert_eq!(request.time.map(|t| t.seconds), Some(1_700_000_000));
    let http = request.http.unwrap();
    assert_eq!(http.method, "GET");
    assert_eq!(http.path, "/api/tools/x?y=1");
    assert_eq!(http.host, "gw");
    assert_eq!(http.id, "r1");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.headers["authorization"], "Bearer t");
    assert_eq!(http.raw_body, b"{\"x\":1}");
    assert_eq!(attrs.context_extensions["route"], "tools");
}

fn header(k: &str, v: &str) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue { key: k.into(), value: v.into(), ..Default::default() }),
        append_action: core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

#[test]
fn check_responses_read_in_subset() {
    let ok = full::CheckResponse {
        status: Some(envoy_types::pb::google::rpc::Status { code: 0, ..Default::default() }),
        http_response: Some(full::check_response::HttpResponse::OkResponse(full::OkHttpResponse {
            headers: vec![header("x-user-id", "u1")],
            headers_to_remove: vec!["x-user-roles".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let got = CheckResponse::decode(ok.encode_to_vec().as_slice()).unwrap();
    let Some(HttpResponse::OkResponse(r)) = got.http_response else { panic!("not ok") };
    let h = r.headers[0].header.as_ref().unwrap();
    assert_eq!((h.key.as_str(), h.value_str().as_ref()), ("x-user-id", "u1"));
    assert_eq!(r.headers[0].append_action, 2);
    assert_eq!(r.headers_to_remove, vec!["x-user-roles"]);

    let denied = full::CheckResponse {
        status: Some(envoy_types::pb::google::rpc::Status { code: 7, message: "denied".into(), ..Default::default() }),
        http_response: Some(full::check_response::HttpResponse::DeniedResponse(full::DeniedHttpResponse {
            status: Some(ty::HttpStatus { code: ty::StatusCode::Unauthorized as i32 }),
            headers: vec![header("www-authenticate", "Bearer")],
            body: "{}".into(),
        })),
        dynamic_metadata: Some(envoy_types::pb::google::protobuf::Struct {
            fields: [(
                "reason".to_string(),
                envoy_types::pb::google::protobuf::Value {
                    kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue("token_expired".into())),
                },
            )]
            .into(),
        }),
    };
    let got = CheckResponse::decode(denied.encode_to_vec().as_slice()).unwrap();
    let record = crate::audit::decode(&got.dynamic_metadata).unwrap();
    assert_eq!(record["reason"], "token_expired");
    assert_eq!(got.status.unwrap().code, 7);
    let Some(HttpResponse::DeniedResponse(d)) = got.http_response else { panic!("not denied") };
    assert_eq!(d.status.unwrap().code, 401);
    assert_eq!(d.body, "{}");
    assert_eq!(d.headers[0].header.as_ref().unwrap().key, "www-authenticate");
}
