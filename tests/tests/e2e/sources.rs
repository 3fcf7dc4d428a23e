//! Where keys, secrets and tokens come from, and what reaches the upstream, each on a stack of
//! its own and in both modes: a binary HMAC secret in a file, claims mapped to headers, tokens
//! in cookies, keys found by OpenID Connect discovery.

use std::sync::atomic::Ordering;

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_JWT_SECRET, sign_kid};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::client::{bearer, get};
use super::identity::{claims, with};

/// A random 32-byte HMAC secret (not text) in `JWT_SECRET_FILE`: tokens signed with those bytes
/// pass, in the filter (which receives the secret over the control stream) and in the sidecar.
async fn binary_hmac_secret(mode: Mode) {
    let secret: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(97).wrapping_add(0x81)).collect();
    assert!(std::str::from_utf8(&secret).is_err(), "not text");
    let mut opts = Options::test(mode).unwrap();
    opts.hmac_secret_file = Some(secret.clone());
    let stack = Stack::start(opts).await.unwrap();
    let sign = |key: &[u8]| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("u-bin"), &EncodingKey::from_secret(key)).unwrap()
    };
    let r = get(&stack, "/api/tools/b", &[("authorization", &bearer(&sign(&secret)))]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-bin")), "{}", r.json);
    let r = get(&stack, "/api/tools/b", &[("authorization", &bearer(&sign(DEV_JWT_SECRET.as_bytes())))]).await;
    assert_eq!((r.status, r.error()), (401, "token_bad_signature"));
}

/// `claimToHeaders`: a claim reaches the upstream as its header, and a client's own copy of
/// that header never does (in both modes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_to_headers_in_both_modes() {
    for mode in [Mode::Wasm, Mode::ExtAuthz] {
        let mut opts = Options::test(mode).unwrap();
        opts.jwt_extra =
            "  claimToHeaders: [{claim: lab, header: x-user-lab}, {claim: groups, header: x-user-groups}]\n".into();
        let stack = Stack::start(opts).await.unwrap();
        let with_lab = with(with(claims("u-lab"), "lab", json!("l7")), "groups", json!(["bio", "chem"]));
        let t = bearer(&sign_kid(&with_lab, "dev-1").unwrap());
        let r = get(&stack, "/api/tools/c", &[("authorization", &t), ("x-user-lab", "l-spoofed")]).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.json);
        assert_eq!(r.upstream("x-user-lab").as_str(), Some("l7"), "{mode:?}: {}", r.json);
        assert_eq!(r.upstream("x-user-groups").as_str(), Some("bio,chem"), "{mode:?}");
        let t = bearer(&sign_kid(&claims("u-nolab"), "dev-1").unwrap());
        let r = get(&stack, "/api/tools/c", &[("authorization", &t), ("x-user-lab", "l-spoofed")]).await;
        assert_eq!(r.status, 200);
        assert!(r.upstream("x-user-lab").is_null(), "{mode:?}: a client's copy is stripped: {}", r.json);
    }
}

/// `tokenSources`: a token in a cookie (the browser front ends) is verified like a bearer
/// token, and the upstream gets the other cookies but not that one (in both modes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_tokens_in_both_modes() {
    for mode in [Mode::Wasm, Mode::ExtAuthz] {
        let mut opts = Options::test(mode).unwrap();
        opts.jwt_extra = "  tokenSources: [{cookie: access_token}]\n".into();
        let stack = Stack::start(opts).await.unwrap();
        let t = sign_kid(&claims("u-cookie"), "dev-1").unwrap();
        let jar = format!("theme=dark; access_token={t}; lang=en");
        let r = get(&stack, "/api/tools/c", &[("cookie", &jar)]).await;
        assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-cookie")), "{mode:?}: {}", r.json);
        assert_eq!(r.upstream("cookie").as_str(), Some("theme=dark; lang=en"), "{mode:?}: the token cookie stays here");
        let r = get(&stack, "/api/tools/c", &[("cookie", &format!("access_token={t}"))]).await;
        assert_eq!(r.status, 200);
        assert!(r.upstream("cookie").is_null(), "{mode:?}: {}", r.json);
        let r = get(&stack, "/api/tools/c", &[("cookie", "access_token=not.a.token")]).await;
        assert_eq!((r.status, r.error()), (401, "token_malformed"), "{mode:?}");
    }
}

/// Keys found by OpenID Connect discovery (the stand-in serves a discovery document of the
/// usual shape naming its JWKS): tokens verify in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_by_openid_connect_discovery() {
    for mode in [Mode::Wasm, Mode::ExtAuthz] {
        let mut opts = Options::test(mode).unwrap();
        opts.jwks_discovery = true;
        let stack = Stack::start(opts).await.unwrap();
        let t = sign_kid(&claims("u-oidc"), "dev-1").unwrap();
        let r = get(&stack, "/api/tools/o", &[("authorization", &bearer(&t))]).await;
        assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-oidc")), "{mode:?}: {}", r.json);
        assert!(stack.auth.state.calls.jwks.load(Ordering::Relaxed) > 0, "the jwks_uri was fetched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_hmac_secret_in_both_modes() {
    binary_hmac_secret(Mode::Wasm).await;
    binary_hmac_secret(Mode::ExtAuthz).await;
}
