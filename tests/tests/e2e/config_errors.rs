//! A broken filter configuration makes Envoy refuse the plugin, naming the field.

use authz_e2e::stack::{Mode, Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_config_is_refused_with_the_field_name() {
    let mut opts = Options::test(Mode::Wasm).unwrap();
    opts.filter_config_override = Some(serde_json::json!({ "sidecarTimeout": "soon" }));
    let err = match Stack::start(opts).await {
        Ok(_) => panic!("Envoy accepted a broken filter configuration"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("sidecarTimeout"), "{err}");
}

/// `authz-sidecar validate` for users' CI: exit 0 with the policy version, or non-zero with the
/// reason; `check` explains a decision.
#[test]
fn sidecar_validate_and_check_commands() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(
        &config,
        format!("iamUrl: http://127.0.0.1:1\nredisUrl: redis://127.0.0.1:1\npolicyFile: {}\n", policy.display()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(authz_e2e::paths::sidecar().unwrap())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("IAM_URL")
            .env_remove("REDIS_URL")
            .env("JWT_SECRET", authz_e2e::tokens::DEV_JWT_SECRET)
            .output()
            .unwrap()
    };
    std::fs::write(&policy, "routes:\n  - id: admin\n    prefix: /api/admin\n    rolesAnyOf: [admin]\n").unwrap();
    let ok = run(&["validate"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 rules"));

    let claims = authz_e2e::tokens::user_claims("u1", "u1@lab.example", &["user"]);
    let token = authz_e2e::tokens::sign_hs256(&claims, authz_e2e::tokens::DEV_JWT_SECRET).unwrap();
    let out = run(&["check", "--token", &token, "--method", "GET", "--path", "/api/admin/x"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["code"].as_str(), v["rule"].as_str()),
        (Some("deny"), Some("missing_role"), Some("admin"))
    );
    assert_eq!(out.status.code(), Some(1));

    std::fs::write(&policy, "routes:\n  - id: admin\n    prefix: /api/admin\n    rolesAnyOf: admin\n").unwrap();
    let bad = run(&["validate"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("routes[0].rolesAnyOf"), "{err}");
}
