//! The sidecar on its own terms: its admin and health endpoints, what it keeps in Redis, and
//! what it never writes to a log.

use authz_e2e::stack::Stack;
use authz_e2e::tokens::{DEV_KID, OTHER_PRIVATE_PEM, sign_rs256, sign_with, user_claims};
use sha2::{Digest, Sha256};

use super::client::{bearer, get};

/// `/healthz`, `/readyz`, `/metrics` and gRPC health answer as documented.
pub async fn admin_and_health(stack: &Stack) {
    let admin = format!("http://127.0.0.1:{}", stack.ports.sidecar_admin);
    let r = stack.client.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = stack.client.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (ready["keys"]["ready"].as_bool(), ready["redis"]["ready"].as_bool()),
        (Some(true), Some(true)),
        "{ready}"
    );
    let metrics = stack.client.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in
        ["authz_checks_total", "authz_identity_cache_total", "authz_jwks_fetches_total", "authz_control_subscribers"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }

    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", stack.ports.sidecar_grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "envoy.service.auth.v3.Authorization".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

/// Verified identities are shared through Redis under the token's SHA-256; refused tokens are
/// never stored; no key or value holds a raw token.
pub async fn redis_identity_cache(stack: &Stack) {
    let claims = user_claims("u-cache", "c@lab.example", &["user"]);
    let good = sign_rs256(&claims, Some(DEV_KID)).unwrap();
    let bad = sign_with(&claims, Some(DEV_KID), OTHER_PRIVATE_PEM).unwrap();
    assert_eq!(get(stack, "/api/tools/c", &[("authorization", &bearer(&good))]).await.status, 200);
    assert_eq!(get(stack, "/api/tools/c", &[("authorization", &bearer(&bad))]).await.status, 401);

    let client = redis::Client::open(format!("redis://127.0.0.1:{}", stack.ports.redis)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("authz:*").query_async(&mut conn).await.unwrap();
    let good_key = format!("authz:id:{}", hex::encode(Sha256::digest(good.as_bytes())));
    let bad_key = format!("authz:id:{}", hex::encode(Sha256::digest(bad.as_bytes())));
    assert!(keys.contains(&good_key), "{keys:?}");
    assert!(!keys.contains(&bad_key), "a refused token was cached");
    let value: String = redis::cmd("GET").arg(&good_key).query_async(&mut conn).await.unwrap();
    let id: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(id["user_id"], "u-cache");
    let ttl: i64 = redis::cmd("TTL").arg(&good_key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 900, "ttl {ttl} bounded by the token's exp");
    for k in &keys {
        let v: Option<String> = redis::cmd("GET").arg(k).query_async(&mut conn).await.unwrap_or(None);
        assert!(!k.contains(&good) && !v.unwrap_or_default().contains(&good), "raw token stored in Redis");
    }
}

/// Neither Envoy nor the sidecar ever logged a credential or the HMAC secret. Every JWT
/// starts with `eyJ` (base64 of `{"`), so its absence covers every token the tests used.
pub fn no_secrets_in_logs(stack: &Stack) {
    let logs = format!("{}\n{}", stack.envoy_log(), stack.sidecar_log());
    assert!(!logs.contains("eyJ"), "a token appears in the logs");
    assert!(!logs.contains("demo-api-key"), "an API key appears in the logs");
    assert!(!logs.contains(authz_e2e::tokens::DEV_JWT_SECRET), "JWT_SECRET appears in the logs");
}
