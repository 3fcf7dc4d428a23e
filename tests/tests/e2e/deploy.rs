//! What is deployed is what is tested: every shipped Envoy config passes `envoy --mode
//! validate`, the gateway's own limits (the auth endpoints' per-client rate limit) hold, and the Kubernetes
//! manifests are valid, hardened (checkov), consistent with each other and carry the configs
//! the tests run.

use authz_e2e::paths;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_rs256, user_claims};
use serde::Deserialize as _;

use super::client::{bearer, get};

#[path = "deploy/production.rs"]
mod production;

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

    auth_endpoints_are_limited_per_client(&stack).await;
}

/// The auth service's endpoints (`/auth/login` ...) allow each client bursts of 5, then 429
/// until tokens refill (one per 6 s: 10 a minute), while another client still signs in;
/// `/auth/verify` (nginx asks it for every request it serves) and other routes are not limited.
pub async fn auth_endpoints_are_limited_per_client(stack: &Stack) {
    let login = |from: [u8; 4]| {
        let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap();
        let url = stack.gateway_url("/auth/login");
        async move {
            let body = serde_json::json!({"email": "alice@lab.example", "password": "wrong"});
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    };
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(login([127, 0, 0, 1]).await);
    }
    assert!(flood[..5].iter().all(|s| *s != 429), "the first five reach the auth service: {flood:?}");
    assert!(flood[5..].iter().all(|s| *s == 429), "{flood:?}");
    assert_ne!(login([127, 0, 0, 2]).await, 429, "another client still signs in");
    let auth = bearer(&sign_rs256(&user_claims("u-rl", "rl@lab.example", &["user"]), Some(DEV_KID)).unwrap());
    for _ in 0..30 {
        assert_eq!(get(stack, "/auth/verify", &[("authorization", &auth)]).await.status, 200);
    }
    for _ in 0..10 {
        assert_eq!(get(stack, "/api/tools/x", &[("authorization", &auth)]).await.status, 200);
    }
}

/// Every object in `k8s/`, with the file it came from.
pub fn manifests() -> Vec<(String, serde_yaml::Value)> {
    let dir = paths::workspace().join("k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if !value.is_null() {
                out.push((file.file_name().unwrap().to_string_lossy().into_owned(), value));
            }
        }
    }
    out
}

fn tool(name: &str) -> std::path::PathBuf {
    let path = paths::workspace().join(".tools/k8s-venv/bin").join(name);
    assert!(path.exists(), "{} missing: run scripts/setup.sh", path.display());
    path
}

/// `k8s/` passes `kubernetes-validate --strict`, and `k8s/` and `docker/` pass `checkov` with no
/// failed check (a skip only with a written reason).
#[test]
fn k8s_manifests_validate_and_pass_checkov() {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(paths::workspace().join("k8s"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    let out = std::process::Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict:\n{text}");

    // The manifests, and the Dockerfiles of the images they run.
    for (dir, framework, at_least) in [("k8s", "kubernetes", 100), ("docker", "dockerfile", 30)] {
        let out = std::process::Command::new(tool("checkov"))
            .args(["-d", dir, "--framework", framework, "--compact", "--skip-download", "-o", "json"])
            .current_dir(paths::workspace())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stderr)));
        let summary = &report["summary"];
        assert_eq!(summary["failed"], 0, "checkov {dir}: failed checks:\n{:#}", report["results"]["failed_checks"]);
        assert!(summary["passed"].as_u64().is_some_and(|n| n > at_least), "checkov {dir}: {summary}");
        for skipped in report["results"]["skipped_checks"].as_array().into_iter().flatten() {
            let reason = skipped["check_result"]["suppress_comment"].as_str().unwrap_or("");
            assert!(reason.len() > 20, "checkov {dir}: a skip without a written reason: {skipped}");
        }
    }
}

/// What the ConfigMaps carry is generated from `envoy/` and the example policy, and it works:
/// Envoy validates it, the sidecar validates its configuration and policy.
#[test]
fn k8s_config_is_the_tested_config() {
    let committed = std::fs::read_to_string(paths::workspace().join(authz_e2e::k8s::CONFIG_FILE)).unwrap();
    let generated = authz_e2e::k8s::config_file().unwrap();
    assert!(
        committed == generated,
        "{} is not what envoy/ and the policy generate: run `cargo run -p authz-e2e --bin gen-k8s`",
        authz_e2e::k8s::CONFIG_FILE
    );
    let data = |name: &str, key: &str| -> String {
        let (_, cm) = manifests()
            .into_iter()
            .find(|(_, v)| v["kind"] == "ConfigMap" && v["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"));
        cm["data"][key].as_str().unwrap_or_else(|| panic!("ConfigMap {name} has no {key}")).to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    // The pod's wasm path is the init container's; here, the local build.
    let envoy = data("authz-envoy", "envoy.yaml")
        .replace(authz_e2e::k8s::WASM_PATH, &paths::filter_wasm().unwrap().display().to_string());
    let envoy_path = dir.path().join("envoy.yaml");
    std::fs::write(&envoy_path, envoy).unwrap();
    let (ok, out) = validate(&envoy_path);
    assert!(ok, "the ConfigMap's envoy.yaml does not validate:\n{out}");

    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, data("authz-sidecar", "policy.yaml")).unwrap();
    assert_eq!(
        data("authz-sidecar", "policy.yaml"),
        std::fs::read_to_string(paths::workspace().join("authz-sidecar/policy.example.yaml")).unwrap()
    );
    let sidecar = data("authz-sidecar", "sidecar.yaml")
        .replace("/etc/authz/policy/policy.yaml", &policy_path.display().to_string());
    let sidecar_path = dir.path().join("sidecar.yaml");
    std::fs::write(&sidecar_path, sidecar).unwrap();
    let out = std::process::Command::new(paths::sidecar().unwrap())
        .arg("--config")
        .arg(&sidecar_path)
        .arg("validate")
        .env("IAM_URL", "http://auth-service:8000")
        .env("REDIS_URL", "redis://redis:6379")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Secrets the manifests use but must not contain (created by the operator, see
/// k8s/40-gateway.yaml): name and the keys they must hold.
const EXTERNAL_SECRETS: &[(&str, &[&str])] = &[("authz-jwt", &["JWT_SECRET"]), ("authz-redis", &["REDIS_PASSWORD"])];

pub fn str_of(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn seq(v: &serde_yaml::Value) -> &[serde_yaml::Value] {
    v.as_sequence().map_or(&[], Vec::as_slice)
}

fn labels_match(selector: &serde_yaml::Value, labels: &serde_yaml::Value) -> bool {
    selector.as_mapping().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Selectors match labels; every ConfigMap, Secret, ServiceAccount, named port and scale
/// target a manifest refers to exists.
#[test]
fn k8s_cross_references() {
    let all = manifests();
    let find = |kind: &str, name: &str| all.iter().find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name);
    let workloads: Vec<&serde_yaml::Value> =
        all.iter().map(|(_, v)| v).filter(|v| matches!(str_of(&v["kind"]), "Deployment" | "StatefulSet")).collect();
    assert!(workloads.len() >= 2);
    for (file, v) in &all {
        let kind = str_of(&v["kind"]);
        if kind != "Namespace" {
            assert_eq!(v["metadata"]["namespace"], "authz-gateway", "{file}: {kind} outside the namespace");
        }
    }
    for w in &workloads {
        let name = str_of(&w["metadata"]["name"]);
        let pod = &w["spec"]["template"];
        assert!(labels_match(&w["spec"]["selector"]["matchLabels"], &pod["metadata"]["labels"]), "{name}: selector");
        let spec = &pod["spec"];
        let sa = str_of(&spec["serviceAccountName"]);
        assert!(find("ServiceAccount", sa).is_some(), "{name}: no ServiceAccount {sa}");
        let containers: Vec<&serde_yaml::Value> =
            seq(&spec["containers"]).iter().chain(seq(&spec["initContainers"])).collect();
        let ports: Vec<&str> = containers.iter().flat_map(|c| seq(&c["ports"])).map(|p| str_of(&p["name"])).collect();
        let volumes: Vec<&str> = seq(&spec["volumes"]).iter().map(|v| str_of(&v["name"])).collect();
        let claims: Vec<&str> =
            seq(&w["spec"]["volumeClaimTemplates"]).iter().map(|c| str_of(&c["metadata"]["name"])).collect();
        for c in &containers {
            for probe in ["readinessProbe", "livenessProbe"] {
                let port = &c[probe]["httpGet"]["port"];
                if let Some(p) = port.as_str() {
                    assert!(ports.contains(&p), "{name}: {probe} names port {p}");
                }
            }
            for m in seq(&c["volumeMounts"]) {
                let v = str_of(&m["name"]);
                assert!(volumes.contains(&v) || claims.contains(&v), "{name}: mount of unknown volume {v}");
            }
            for e in seq(&c["env"]) {
                assert!(
                    e["valueFrom"].is_null() || e["valueFrom"]["secretKeyRef"].is_null(),
                    "{name}: secrets go in files"
                );
            }
        }
        for v in seq(&spec["volumes"]) {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                let (_, map) = find("ConfigMap", cm).unwrap_or_else(|| panic!("{name}: no ConfigMap {cm}"));
                for item in seq(&v["configMap"]["items"]) {
                    let key = str_of(&item["key"]);
                    assert!(!map["data"][key].is_null(), "{name}: ConfigMap {cm} has no key {key}");
                }
            }
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                let keys: Vec<&str> = match find("Secret", secret) {
                    Some((_, s)) => s["data"].as_mapping().into_iter().flatten().map(|(k, _)| str_of(k)).collect(),
                    None => EXTERNAL_SECRETS
                        .iter()
                        .find(|(n, _)| *n == secret)
                        .unwrap_or_else(|| panic!("{name}: Secret {secret} is neither in k8s/ nor documented"))
                        .1
                        .to_vec(),
                };
                for item in seq(&v["secret"]["items"]) {
                    let key = str_of(&item["key"]);
                    assert!(keys.contains(&key), "{name}: Secret {secret} has no key {key}");
                }
            }
        }
    }
    let pods_of = |selector: &serde_yaml::Value| -> Vec<&serde_yaml::Value> {
        workloads
            .iter()
            .copied()
            .filter(|w| labels_match(selector, &w["spec"]["template"]["metadata"]["labels"]))
            .collect()
    };
    for (file, v) in &all {
        let name = str_of(&v["metadata"]["name"]);
        match str_of(&v["kind"]) {
            "Service" => {
                let pods = pods_of(&v["spec"]["selector"]);
                assert_eq!(pods.len(), 1, "{file}: Service {name} selects {} workloads", pods.len());
                let ports: Vec<&str> = seq(&pods[0]["spec"]["template"]["spec"]["containers"])
                    .iter()
                    .flat_map(|c| seq(&c["ports"]))
                    .map(|p| str_of(&p["name"]))
                    .collect();
                for p in seq(&v["spec"]["ports"]) {
                    let target = str_of(&p["targetPort"]);
                    assert!(ports.contains(&target), "{file}: Service {name} targets unknown port {target}");
                }
            }
            "NetworkPolicy" => {
                let selector = &v["spec"]["podSelector"]["matchLabels"];
                if !selector.is_null() {
                    assert!(!pods_of(selector).is_empty(), "{file}: NetworkPolicy {name} selects nothing");
                }
                for rule in seq(&v["spec"]["ingress"]) {
                    for from in seq(&rule["from"]) {
                        let sel = &from["podSelector"]["matchLabels"];
                        if !sel.is_null() {
                            assert!(!pods_of(sel).is_empty(), "{file}: NetworkPolicy {name} admits no pod");
                        }
                    }
                }
            }
            "PodDisruptionBudget" => {
                assert!(!pods_of(&v["spec"]["selector"]["matchLabels"]).is_empty(), "{file}: PDB {name}");
            }
            "HorizontalPodAutoscaler" => {
                let target = &v["spec"]["scaleTargetRef"];
                assert!(find(str_of(&target["kind"]), str_of(&target["name"])).is_some(), "{file}: HPA {name}");
            }
            _ => {}
        }
    }
}
