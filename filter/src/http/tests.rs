//! The per-request state machine on a recording host: what is decided here, what waits for
//! the sidecar (and its body), and what the answer does.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use authz_core::settings::SharedSettings;
use authz_proto::authz::v1::{ControlEvent, KeySnapshot, PolicySnapshot, RevocationUpdate, control_event};
use authz_proto::ext_authz::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse, RpcStatus,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message;
use proxy_wasm::types::Action;

use super::Http;
use crate::config::Settings;
use crate::control::ControlState;
use crate::host::fake::FakeHost;
use crate::metrics::Metrics;
use crate::worker::{Shared, Worker};

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"filter-http-test-secret-0123456789";

fn shared() -> Shared {
    let settings = Settings::from_json(br#"{"sidecarCluster": "authz_sidecar", "maxComputeBodyBytes": 64}"#).unwrap();
    let mut w = Worker::new(settings, Metrics::default());
    let mut c = ControlState::default();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let k = base64_url(SECRET);
    let jwks = format!(r#"{{"keys": [{{"kty": "oct", "k": "{k}", "alg": "HS256"}}]}}"#);
    let settings = SharedSettings {
        public_paths: vec!["/health".into()],
        strip_headers: vec!["x-quota-lease".into()],
        ..Default::default()
    };
    let policy = r#"{"routes": [
        {"id": "tools", "prefix": "/api/tools"},
        {"id": "tes", "prefix": "/ga4gh/tes", "methods": ["POST"], "quota": {"resources": "tes"}}
    ]}"#;
    let events = [
        control_event::Event::Keys(KeySnapshot { version: 1, jwks_json: jwks, provider: String::new() }),
        control_event::Event::Policy(PolicySnapshot {
            version: "v1".into(),
            policy_json: policy.into(),
            settings_json: serde_json::to_string(&settings).unwrap(),
        }),
        control_event::Event::Revocations(RevocationUpdate {
            version: 1,
            full: true,
            revocations_json: vec![],
            received_unix_micros: 0,
        }),
    ];
    for e in events {
        assert!(c.apply(&mut w, ControlEvent { event: Some(e) }, now).is_empty());
    }
    Rc::new(RefCell::new(w))
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn token(sub: &str) -> String {
    let claims = serde_json::json!({"sub": sub, "exp": NOW + 600});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> (FakeHost, Http<FakeHost>) {
    let host = FakeHost::default();
    {
        let mut s = host.state();
        s.now = NOW;
        s.headers = vec![(":method".into(), method.into()), (":path".into(), path.into())];
        s.headers.extend(headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
    }
    (host.clone(), Http::new(host, Some(shared())))
}

fn ok_answer(user: &str) -> Vec<u8> {
    CheckResponse {
        status: Some(RpcStatus { code: 0, message: String::new() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![HeaderValueOption {
                header: Some(HeaderValue { key: "x-user-id".into(), value: user.into(), raw_value: vec![] }),
                ..Default::default()
            }],
            headers_to_remove: vec![],
            response_headers_to_add: vec![],
        })),
        dynamic_metadata: Vec::new(),
    }
    .encode_to_vec()
}

fn deny_answer(status: i32, code: &str) -> Vec<u8> {
    CheckResponse {
        status: Some(RpcStatus { code: 7, message: String::new() }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: status }),
            headers: vec![],
            body: format!(r#"{{"error": "{code}"}}"#),
        })),
        dynamic_metadata: Vec::new(),
    }
    .encode_to_vec()
}

fn answer(host: &FakeHost, http: &mut Http<FakeHost>, bytes: Vec<u8>) {
    let token = u32::try_from(host.state().calls.len()).unwrap();
    let len = bytes.len();
    host.state().grpc_response = Some(bytes);
    http.on_callout_response(token, 0, len);
}

#[test]
fn a_cached_token_is_decided_here_with_identity_headers_and_a_record() {
    let t = format!("Bearer {}", token("alice"));
    let (host, mut http) = request("GET", "/api/tools/x", &[("authorization", &t), ("x-user-id", "mallory")]);
    assert_eq!(http.on_headers(true), Action::Continue);
    assert_eq!(host.header("x-user-id"), ["alice"], "the client's value is gone, the verified one set");
    assert_eq!(host.header("x-trace-id").len(), 1);
    assert!(host.state().calls.is_empty(), "no callout");
    let record = host.state().properties.get(&vec!["authz_audit".to_string()]).cloned().unwrap();
    let fields = authz_proto::audit::decode(&record).unwrap();
    assert_eq!(
        (fields["decider"].as_str(), fields["rule"].as_str(), fields["user_id"].as_str()),
        ("filter", "tools", "alice")
    );
    // The body and trailers of an allowed request pass.
    assert_eq!(http.on_body(10, true), Action::Continue);
}

#[test]
fn a_refusal_here_is_a_local_reply() {
    let (host, mut http) = request("GET", "/api/tools/x", &[("authorization", "Bearer not.a.jwt")]);
    assert_eq!(http.on_headers(true), Action::Pause);
    let reply = host.state().reply.clone().unwrap();
    assert_eq!(reply.status, 401);
    assert!(String::from_utf8_lossy(&reply.body).contains("token_malformed"));
    // Nothing after a refusal passes.
    assert_eq!(http.on_body(10, true), Action::Pause);
}

#[test]
fn an_api_key_waits_for_the_sidecar_and_its_answer_releases_the_request() {
    let (host, mut http) = request("GET", "/api/tools/x", &[("x-api-key", "k-1"), ("x-user-id", "mallory")]);
    assert_eq!(http.on_headers(true), Action::Pause);
    let call = host.state().calls[0].clone();
    assert_eq!((call.cluster.as_str(), call.method.as_str()), ("authz_sidecar", "Check"));
    let sent = CheckRequest::decode(call.message.as_slice()).unwrap();
    let sent = sent.attributes.unwrap().request.unwrap().http.unwrap();
    assert_eq!(sent.headers.get("x-api-key").map(String::as_str), Some("k-1"));
    assert!(!sent.headers.contains_key("x-user-id"), "stripped before the callout");
    assert!(host.header("x-user-id").is_empty(), "stripped from the request while it waits");
    assert_eq!(http.on_body(3, false), Action::Pause, "held while pending");
    answer(&host, &mut http, ok_answer("key-owner"));
    assert!(host.state().resumed);
    assert_eq!(host.header("x-user-id"), ["key-owner"]);
    assert_eq!(http.on_body(3, true), Action::Continue);
}

#[test]
fn a_compute_request_holds_its_headers_until_the_body_arrives() {
    let t = format!("Bearer {}", token("alice"));
    let (host, mut http) = request("POST", "/ga4gh/tes/v1/tasks", &[("authorization", &t)]);
    assert_eq!(http.on_headers(false), Action::Pause);
    assert!(host.state().calls.is_empty(), "not sent before its body");
    host.state().body = br#"{"resources": {"cpu_cores": 2}}"#.to_vec();
    assert_eq!(http.on_body(10, false), Action::Pause);
    assert_eq!(http.on_trailers(), Action::Pause, "trailers end the body: sent now, still held");
    let sent = CheckRequest::decode(host.state().calls[0].message.as_slice()).unwrap();
    assert_eq!(sent.attributes.unwrap().request.unwrap().http.unwrap().raw_body.len(), 10);
    answer(&host, &mut http, deny_answer(403, "quota_exceeded"));
    assert_eq!(host.state().reply.as_ref().map(|r| r.status), Some(403));
    assert!(!host.state().resumed);
}

#[test]
fn a_body_over_the_limit_is_413_and_an_undispatchable_callout_503() {
    let t = format!("Bearer {}", token("alice"));
    let (host, mut http) = request("POST", "/ga4gh/tes/v1/tasks", &[("authorization", &t)]);
    assert_eq!(http.on_headers(false), Action::Pause);
    assert_eq!(http.on_body(65, false), Action::Pause);
    assert_eq!(host.state().reply.as_ref().map(|r| r.status), Some(413));
    let (host, mut http) = request("GET", "/api/tools/x", &[("x-api-key", "k-1")]);
    host.state().refuse_dispatch = true;
    assert_eq!(http.on_headers(true), Action::Pause);
    let reply = host.state().reply.clone().unwrap();
    assert_eq!(reply.status, 503);
    assert!(String::from_utf8_lossy(&reply.body).contains("authz_unavailable"));
    assert!(!host.state().warnings.is_empty());
}

#[test]
fn identity_names_are_stripped_from_trailers() {
    let (host, mut http) = request("GET", "/health", &[]);
    assert_eq!(http.on_headers(false), Action::Continue);
    host.state().trailers = vec![("x-user-id".into(), b"mallory".to_vec()), ("grpc-status".into(), b"0".to_vec())];
    assert_eq!(http.on_trailers(), Action::Continue);
    assert_eq!(host.state().trailers, vec![("grpc-status".to_string(), b"0".to_vec())]);
}
