//! Hostile input: a JWT attack corpus sent through the filter (via Envoy) and straight to the
//! sidecar (`Check`). Every case must be refused with the right status, none may crash a VM.

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{self, DEV_KID, DEV_PRIVATE_PEM, OTHER_PRIVATE_PEM, sign_kid, sign_rs256, user_claims};
use base64::Engine as _;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::client::{bearer, get};

const DEV_PUBLIC_PEM: &str = include_str!("../../fixtures/dev-rsa-public.pem");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> Value {
    user_claims("u-mallory", "mallory@lab.example", &["admin"])
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

/// `header.payload` signed with `key` under `alg`, whatever the header says.
fn signed(header: &Value, payload: &[u8], alg: Algorithm, key: &EncodingKey) -> String {
    let msg = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

fn rsa(pem: &str) -> EncodingKey {
    authz_core::crypto::ensure_provider();
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// A token the dev key signs, with a header of our choosing.
fn dev_signed(header: Value, payload: &Value) -> String {
    signed(&header, payload.to_string().as_bytes(), Algorithm::RS256, &rsa(DEV_PRIVATE_PEM))
}

/// The corpus: (name, `Authorization` value).
pub fn corpus() -> Vec<(String, String)> {
    let now = tokens::now();
    let c = claims();
    let payload = c.to_string();
    let valid = sign_rs256(&c, Some(DEV_KID)).unwrap();
    let (head, rest) = valid.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let other_sig = sign_rs256(&user_claims("u-other", "o@lab.example", &[]), Some(DEV_KID)).unwrap();
    let other_sig = other_sig.rsplit('.').next().unwrap().to_string();
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, token: String| cases.push((name.to_string(), format!("Bearer {token}")));

    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        add(&format!("alg {alg}, no signature"), format!("{h}.{}.", b64(payload.as_bytes())));
        add(&format!("alg {alg}, a signature"), format!("{h}.{}.{sig}", b64(payload.as_bytes())));
    }
    let hmac_with_public = EncodingKey::from_secret(DEV_PUBLIC_PEM.as_bytes());
    add(
        "HS256 keyed with the RSA public key, kid dev-1",
        signed(&json!({"alg": "HS256", "kid": DEV_KID}), payload.as_bytes(), Algorithm::HS256, &hmac_with_public),
    );
    add(
        "HS256 keyed with the RSA public key, no kid",
        signed(&json!({"alg": "HS256"}), payload.as_bytes(), Algorithm::HS256, &hmac_with_public),
    );
    for kid in ["../../../../etc/passwd", "dev-1' OR '1'='1", "dev-1\u{0}", "/dev/null", &"k".repeat(4096)] {
        let shown: String = kid.escape_debug().take(40).collect();
        add(&format!("kid {shown}"), dev_signed(json!({"alg": "RS256", "kid": kid}), &c));
    }
    add("kid of an EC key, RS256", dev_signed(json!({"alg": "RS256", "kid": "dev-es256"}), &c));
    add("kid of an RSA key, ES256 header", dev_signed(json!({"alg": "ES256", "kid": DEV_KID}), &c));
    let attacker = rsa(OTHER_PRIVATE_PEM);
    let jwk = json!({"kty": "RSA", "n": "attacker", "e": "AQAB"});
    for (name, header) in [
        ("embedded jwk", json!({"alg": "RS256", "jwk": jwk})),
        ("jku header", json!({"alg": "RS256", "jku": "https://evil.example/jwks.json"})),
        ("x5u header", json!({"alg": "RS256", "x5u": "https://evil.example/cert.pem"})),
        ("embedded jwk with the dev kid", json!({"alg": "RS256", "kid": DEV_KID, "jwk": jwk})),
    ] {
        add(name, signed(&header, payload.as_bytes(), Algorithm::RS256, &attacker));
    }
    add("unknown crit", dev_signed(json!({"alg": "RS256", "kid": DEV_KID, "crit": ["exp-ext"], "exp-ext": 1}), &c));
    add("empty signature", format!("{head}.{body}."));
    add("a foreign signature", format!("{head}.{body}.{other_sig}"));
    add("two segments", format!("{head}.{body}"));
    add("four segments", format!("{valid}.{sig}"));
    add("five segments", format!("{valid}.{sig}.{sig}"));
    add("padding", format!("{head}==.{body}.{sig}"));
    add("standard base64 characters", format!("{}.{body}.{sig}", head.replace('-', "+").replace('_', "/") + "+/"));
    add("spaces inside", format!("{head}. {body}.{sig}"));
    add("non-UTF-8 header", format!("{}.{body}.{sig}", b64(&[0xff, 0xfe, 0x7b, 0x22])));
    add("non-UTF-8 payload", dev_signed_raw(&[0xc3, 0x28, 0xa0, 0xa1]));
    for (name, p) in [
        ("payload an array", "[]"),
        ("payload a number", "123"),
        ("payload a string", "\"x\""),
        ("payload null", "null"),
    ] {
        add(name, dev_signed_raw(p.as_bytes()));
    }
    let dup = format!(
        r#"{{"sub":"u-mallory","sub":"u-admin","iss":"{}","aud":"{}","exp":{},"iat":{}}}"#,
        tokens::ISSUER,
        tokens::AUDIENCE,
        now + 600,
        now
    );
    add("duplicate sub", dev_signed_raw(dup.as_bytes()));
    add("a 64 KiB token", format!("{head}.{}.{sig}", "A".repeat(64 * 1024)));
    add("expired", sign_kid(&with(c.clone(), "exp", json!(now - 3600)), DEV_KID).unwrap());
    add("not yet valid", sign_kid(&with(c.clone(), "nbf", json!(now + 3600)), DEV_KID).unwrap());
    add("issued in the future", sign_kid(&with(c.clone(), "iat", json!(now + 3600)), DEV_KID).unwrap());
    let mut no_exp = c.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    add("no exp", sign_kid(&no_exp, DEV_KID).unwrap());
    add("wrong iss", sign_kid(&with(c.clone(), "iss", json!("https://evil.example")), DEV_KID).unwrap());
    add("wrong aud", sign_kid(&with(c.clone(), "aud", json!("someone-else")), DEV_KID).unwrap());
    add("exp a string", sign_kid(&with(c.clone(), "exp", json!("tomorrow")), DEV_KID).unwrap());
    for (name, value) in [
        ("scheme Token", format!("Token {valid}")),
        ("scheme Basic", "Basic dXNlcjpwdw==".to_string()),
        ("no scheme", valid.clone()),
        ("two tokens", format!("Bearer {valid} {valid}")),
        ("Bearer then a comma", format!("Bearer {valid},")),
        ("empty Bearer", "Bearer ".to_string()),
    ] {
        cases.push((name.to_string(), value));
    }
    cases
}

/// Signed by the dev key with a normal header, over a raw (possibly broken) payload.
fn dev_signed_raw(payload: &[u8]) -> String {
    signed(&json!({"alg": "RS256", "kid": DEV_KID, "typ": "JWT"}), payload, Algorithm::RS256, &rsa(DEV_PRIVATE_PEM))
}

/// The sidecar's verdict on `authorization`: the HTTP status it would answer, and the code.
async fn sidecar_verdict(grpc: u16, authorization: &str) -> (u16, String) {
    let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let http = HttpRequest {
        method: "GET".into(),
        path: "/api/tools/x".into(),
        headers: [("authorization".to_string(), authorization.to_string())].into(),
        ..Default::default()
    };
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    };
    match client.check(req).await {
        Ok(resp) => match resp.into_inner().http_response {
            Some(HttpResponse::OkResponse(_)) => (200, String::new()),
            Some(HttpResponse::DeniedResponse(d)) => {
                let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
                let status = d.status.map_or(403, |s| u16::try_from(s.code).unwrap_or(0));
                (status, body["error"].as_str().unwrap_or("").to_string())
            }
            _ => (0, String::new()),
        },
        Err(s) if s.code() == tonic::Code::Unavailable => (503, String::new()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attack_corpus_through_filter_and_sidecar() {
    let stack = Stack::start(Options::test(Mode::Wasm).unwrap()).await.unwrap();
    let cases = corpus();
    assert!(cases.len() >= 51, "{} cases", cases.len());
    let mut report = Vec::new();
    for (name, authorization) in &cases {
        let r = get(&stack, "/api/tools/x", &[("authorization", authorization)]).await;
        let (direct, direct_code) = sidecar_verdict(stack.ports.sidecar_grpc, authorization).await;
        report.push(format!("{name}: filter {} {:?}, sidecar {direct} {direct_code:?}", r.status, r.error()));
        // Envoy refuses a header over its limit before any filter (431); everything else is
        // the filter's or the sidecar's 401.
        let big = name.contains("64 KiB");
        let expected_filter = if big { 431 } else { 401 };
        assert_eq!(r.status, expected_filter, "{name} through the filter: {}", r.json);
        assert_eq!(direct, 401, "{name} at the sidecar");
        if big {
            assert_eq!(direct_code, "token_too_large", "{name} at the sidecar");
        } else {
            assert!(!r.error().is_empty(), "{name}: a refusal names its reason: {}", r.json);
            // One pipeline (authz-core) in both places: the same reason.
            assert_eq!(r.error(), direct_code, "{name}: filter and sidecar disagree");
        }
    }
    eprintln!("{}", report.join("\n"));
    // No VM crashed: a valid token still passes on fresh connections, and Envoy logged no
    // wasm failure.
    let ok = bearer(&sign_rs256(&claims(), Some(DEV_KID)).unwrap());
    for _ in 0..10 {
        assert_eq!(get(&stack, "/api/tools/x", &[("authorization", &ok)]).await.status, 200);
    }
    let log = stack.envoy_log();
    for bad in ["panicked", "Function: proxy_on", "wasm log authz: panic", "VM failed"] {
        assert!(!log.contains(bad), "Envoy log shows {bad:?}");
    }
}
