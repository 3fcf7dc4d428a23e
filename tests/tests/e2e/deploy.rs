//! What is deployed is what is tested: every shipped Envoy config passes `envoy --mode
//! validate`, and the gateway's own limits (the `/auth/*` rate limit) hold.

use authz_e2e::paths;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_rs256, user_claims};

use super::client::{bearer, get};

/// The Envoy configs in `envoy/` (every one a template the renderer fills).
const ENVOY_CONFIGS: &[&str] = &["gateway.yaml", "gateway-ext-authz.yaml"];

fn validate(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(paths::envoy().unwrap())
        .args(["--mode", "validate", "-c"])
        .arg(config)
        .args(["--log-level", "error"])
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_configs_validate_and_auth_is_rate_limited() {
    let stack = Stack::start(Options::test(Mode::Wasm).unwrap()).await.unwrap();
    let in_repo: Vec<String> = std::fs::read_dir(paths::workspace().join("envoy"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    for name in &in_repo {
        assert!(ENVOY_CONFIGS.contains(&name.as_str()), "envoy/{name} is not validated here: add it");
    }
    for name in ENVOY_CONFIGS {
        let rendered = stack.render_template(name).unwrap();
        let (ok, out) = validate(&rendered);
        assert!(ok, "envoy/{name} does not validate:\n{out}");
        // The check can fail: a misspelt field is refused.
        let broken = std::fs::read_to_string(&rendered).unwrap().replace("token_bucket:", "token_buckets:");
        let broken_path = stack.dir().join(format!("broken-{name}"));
        std::fs::write(&broken_path, broken).unwrap();
        assert!(!validate(&broken_path).0, "envoy/{name}: a misspelt field passed validation");
    }

    // /auth/* allows bursts of 5, then 429 until tokens refill (one per 6 s); other routes are
    // not limited.
    let auth = bearer(&sign_rs256(&user_claims("u-rl", "rl@lab.example", &["user"]), Some(DEV_KID)).unwrap());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&stack, "/auth/verify", &[("authorization", &auth)]).await.status);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    for _ in 0..10 {
        assert_eq!(get(&stack, "/api/tools/x", &[("authorization", &auth)]).await.status, 200);
    }
}
