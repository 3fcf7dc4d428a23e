//! The manifests read as a platform engineer about to apply them: what a production cluster
//! needs that `kubernetes-validate` and checkov do not ask for.

use super::{manifests, seq, str_of};

fn find<'a>(all: &'a [(String, serde_yaml::Value)], kind: &str, name: &str) -> &'a serde_yaml::Value {
    all.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container<'a>(pod: &'a serde_yaml::Value, name: &str) -> &'a serde_yaml::Value {
    seq(&pod["containers"]).iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no container {name}"))
}

fn pre_stop_sleep(c: &serde_yaml::Value) -> u64 {
    c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0)
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied()
}

#[test]
fn the_gateway_scales_drains_spreads_and_can_be_scraped() {
    let all = manifests();
    let deployment = find(&all, "Deployment", "authz-gateway");
    // The HPA owns the replica count.
    let hpa = find(&all, "HorizontalPodAutoscaler", "authz-gateway");
    assert_eq!(str_of(&hpa["spec"]["scaleTargetRef"]["name"]), "authz-gateway");
    assert!(deployment["spec"]["replicas"].is_null(), "spec.replicas would fight the HPA on every apply");
    let pod = &deployment["spec"]["template"]["spec"];
    // Envoy's workers follow its CPU limit, not the node's CPUs.
    let envoy = container(pod, "envoy");
    let args: Vec<&str> = seq(&envoy["args"]).iter().map(str_of).collect();
    let cpu_limit = str_of(&envoy["resources"]["limits"]["cpu"]);
    assert_eq!(flag(&args, "--concurrency"), Some(cpu_limit), "envoy --concurrency must be its CPU limit");
    // Graceful rollouts: Envoy drains while its endpoint leaves the Service, the sidecar
    // outlives it, and the grace period covers both.
    let sidecar = container(pod, "sidecar");
    let (envoy_wait, sidecar_wait) = (pre_stop_sleep(envoy), pre_stop_sleep(sidecar));
    assert!(envoy_wait > 0 && sidecar_wait > envoy_wait, "preStop: envoy {envoy_wait}s, sidecar {sidecar_wait}s");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace > sidecar_wait, "terminationGracePeriodSeconds {grace} must exceed the sidecar's preStop");
    let drain = flag(&args, "--drain-time-s").and_then(|d| d.parse::<u64>().ok());
    assert_eq!(drain, Some(envoy_wait), "Envoy drains for as long as preStop waits");
    // Replicas spread over nodes.
    let spread = seq(&pod["topologySpreadConstraints"]);
    assert!(spread.iter().any(|s| s["topologyKey"] == "kubernetes.io/hostname"), "no spread across nodes");
    // Prometheus may reach the sidecar's metrics and Envoy's stats, and only those ports.
    let port = |c: &serde_yaml::Value, name: &str| {
        seq(&c["ports"]).iter().find(|p| p["name"] == name).and_then(|p| p["containerPort"].as_u64())
    };
    let (admin, stats) = (port(sidecar, "admin").unwrap(), port(envoy, "stats").unwrap());
    let scrape = find(&all, "NetworkPolicy", "gateway-from-monitoring");
    let ingress = seq(&scrape["spec"]["ingress"]);
    let allowed: Vec<u64> = ingress.iter().flat_map(|i| seq(&i["ports"])).filter_map(|p| p["port"].as_u64()).collect();
    assert_eq!(allowed, vec![admin, stats]);
    let monitoring = &ingress[0]["from"][0]["namespaceSelector"]["matchLabels"];
    assert_eq!(str_of(&monitoring["authz-gateway/monitoring"]), "true");
}

/// The Redis container's shell script (`sh -c`), its arguments as words, and its probe.
fn redis_script(all: &[(String, serde_yaml::Value)]) -> (String, String) {
    let redis = find(all, "StatefulSet", "redis");
    let c = container(&redis["spec"]["template"]["spec"], "redis");
    let command: Vec<&str> = seq(&c["command"]).iter().map(str_of).collect();
    assert_eq!(command, ["sh", "-c"]);
    let script = str_of(&seq(&c["args"])[0]).to_string();
    let probe: Vec<&str> = seq(&c["readinessProbe"]["exec"]["command"]).iter().map(str_of).collect();
    assert_eq!(&probe[..2], ["sh", "-c"]);
    assert_eq!(c["livenessProbe"]["exec"], c["readinessProbe"]["exec"]);
    (script, probe[2].to_string())
}

#[test]
fn redis_keeps_revocations_and_leases_under_its_memory_limit() {
    let all = manifests();
    let redis = find(&all, "StatefulSet", "redis");
    let c = container(&redis["spec"]["template"]["spec"], "redis");
    let (script, _) = redis_script(&all);
    let args: Vec<&str> = script.split_whitespace().collect();
    assert_eq!(flag(&args, "--maxmemory-policy"), Some("noeviction"), "revocations and leases must never be evicted");
    let maxmemory = flag(&args, "--maxmemory").and_then(|m| m.strip_suffix("mb")).and_then(|m| m.parse::<u64>().ok());
    assert!(maxmemory.is_some_and(|m| m < 1024), "maxmemory below the 1 GiB limit, with room for the AOF fork");
    assert_eq!(str_of(&c["resources"]["limits"]["memory"]), "1Gi");
    assert_eq!(flag(&args, "--appendonly"), Some("yes"));
    // The StatefulSet's Service is headless.
    let service = find(&all, "Service", str_of(&redis["spec"]["serviceName"]));
    assert_eq!(str_of(&service["spec"]["clusterIP"]), "None");
    // A voluntary eviction waits for an operator (one replica).
    let pdb = find(&all, "PodDisruptionBudget", "redis");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(0));
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], redis["spec"]["selector"]["matchLabels"]);
    // The audit stream is sized for it.
    let config = find(&all, "ConfigMap", "authz-sidecar");
    let sidecar: serde_yaml::Value = serde_yaml::from_str(str_of(&config["data"]["sidecar.yaml"])).unwrap();
    assert!(sidecar["audit"]["maxLen"].as_u64().is_some_and(|n| n <= 500_000), "{:?}", sidecar["audit"]);
}

/// The manifest's own Redis script and probe, run with Debian's redis-server and `sh` (the
/// image's are Alpine's; the script is POSIX sh), the Secret as the file the pod mounts: Redis
/// requires the password, does not show it in its command line, and the probe passes only
/// with it. The sidecar gets the same Secret as a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_requires_the_password_from_its_secret() {
    let all = manifests();
    let (script, probe) = redis_script(&all);
    let dir = tempfile::tempdir().unwrap();
    let (secret, data) = (dir.path().join("secret"), dir.path().join("data"));
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let password = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    std::fs::write(secret.join("REDIS_PASSWORD"), format!("{password}\n")).unwrap();
    let port = authz_e2e::stack::free_port().unwrap();
    let local = |text: &str| {
        text.replace("/etc/redis/secret", &secret.display().to_string())
            .replace("--dir /data", &format!("--dir {}", data.display()))
            .replace(
                "exec redis-server",
                &format!("exec {} --bind 127.0.0.1 --port {port}", authz_e2e::paths::redis_server().display()),
            )
            .replace("redis-cli", &format!("{} -p {port}", authz_e2e::paths::redis_cli().display()))
    };
    let mut server =
        tokio::process::Command::new("sh").arg("-c").arg(local(&script)).kill_on_drop(true).spawn().unwrap();
    let probe_passes = |probe: String| async move {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(probe).stderr(std::process::Stdio::null());
        cmd.status().await.unwrap().success()
    };
    let start = std::time::Instant::now();
    while !probe_passes(local(&probe)).await {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the readiness probe never passed");
        assert!(server.try_wait().unwrap().is_none(), "redis-server exited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = anonymous.get_multiplexed_async_connection().await.unwrap();
    let refused: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("NOAUTH")));
    let with = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}")).unwrap();
    let mut conn = with.get_multiplexed_async_connection().await.unwrap();
    let policy: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await.unwrap();
    assert_eq!(policy[1], "noeviction");
    let pid = server.id().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(password), "the password is in Redis's command line");
    // A wrong password fails the probe.
    std::fs::write(secret.join("REDIS_PASSWORD"), "wrong\n").unwrap();
    assert!(!probe_passes(local(&probe)).await, "the probe passed with a wrong password");
    let _ = server.kill().await;

    // The sidecar reads the same Secret as a file.
    let pod = &find(&all, "Deployment", "authz-gateway")["spec"]["template"]["spec"];
    let sidecar = container(pod, "sidecar");
    let env = seq(&sidecar["env"]).iter().find(|e| e["name"] == "REDIS_PASSWORD_FILE").expect("REDIS_PASSWORD_FILE");
    let file = std::path::Path::new(str_of(&env["value"]));
    let mount = seq(&sidecar["volumeMounts"])
        .iter()
        .find(|m| file.parent() == Some(std::path::Path::new(str_of(&m["mountPath"]))))
        .expect("REDIS_PASSWORD_FILE is not in a mounted volume");
    let volume = seq(&pod["volumes"]).iter().find(|v| v["name"] == mount["name"]).unwrap();
    let redis_volume = seq(&find(&all, "StatefulSet", "redis")["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == "password")
        .unwrap();
    assert_eq!(volume["secret"], redis_volume["secret"], "the sidecar and Redis read one Secret");
    assert!(!str_of(&seq(&sidecar["env"]).iter().find(|e| e["name"] == "REDIS_URL").unwrap()["value"]).contains('@'));
}

#[test]
fn every_upstream_is_named_in_its_own_namespace() {
    let all = manifests();
    let config = find(&all, "ConfigMap", "authz-envoy");
    let envoy: serde_yaml::Value = serde_yaml::from_str(str_of(&config["data"]["envoy.yaml"])).unwrap();
    let mut checked = 0;
    for cluster in seq(&envoy["static_resources"]["clusters"]).iter().filter(|c| c["type"] == "STRICT_DNS") {
        for endpoints in seq(&cluster["load_assignment"]["endpoints"]) {
            for lb in seq(&endpoints["lb_endpoints"]) {
                let host = str_of(&lb["endpoint"]["address"]["socket_address"]["address"]);
                // A bare service name resolves in the gateway's namespace, not the service's.
                assert!(
                    host.ends_with(".svc.cluster.local"),
                    "cluster {:?}: {host:?} is not namespace-qualified",
                    cluster["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "{checked} upstreams");
}

#[test]
fn compute_services_reach_the_lease_api_through_the_gateway_and_only_with_a_service_token() {
    let all = manifests();
    let config = find(&all, "ConfigMap", "authz-envoy");
    let envoy: serde_yaml::Value = serde_yaml::from_str(str_of(&config["data"]["envoy.yaml"])).unwrap();
    let listener = seq(&envoy["static_resources"]["listeners"]).iter().find(|l| l["name"] == "gateway").unwrap();
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let routes = seq(&hcm["route_config"]["virtual_hosts"][0]["routes"]);
    let lease = routes.iter().find(|r| r["name"] == "quota_leases").expect("no quota_leases route");
    assert_eq!(str_of(&lease["match"]["path_separated_prefix"]), "/quota/v1/leases");
    // Its cluster is the sidecar's admin port inside the pod.
    let cluster_name = str_of(&lease["route"]["cluster"]);
    let cluster = seq(&envoy["static_resources"]["clusters"]).iter().find(|c| c["name"] == cluster_name).unwrap();
    let address =
        &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    let pod = &find(&all, "Deployment", "authz-gateway")["spec"]["template"]["spec"];
    let admin =
        seq(&container(pod, "sidecar")["ports"]).iter().find(|p| p["name"] == "admin").unwrap()["containerPort"]
            .as_u64();
    assert_eq!((str_of(&address["address"]), address["port_value"].as_u64()), ("127.0.0.1", admin));
    // The shipped policy admits service tokens only there, and passes the token on for the
    // sidecar to check again.
    let sidecar = find(&all, "ConfigMap", "authz-sidecar");
    let policy: serde_yaml::Value = serde_yaml::from_str(str_of(&sidecar["data"]["policy.yaml"])).unwrap();
    let rule = seq(&policy["routes"]).iter().find(|r| r["prefix"] == "/quota/v1/leases").expect("no lease rule");
    assert_eq!((rule["serviceOnly"].as_bool(), rule["forwardCredential"].as_bool()), (Some(true), Some(true)));
    assert!(rule["public"].is_null() && rule["methods"].is_null(), "{rule:?}");
    // The mesh reaches it on the gateway's port, like every route.
    let mesh = find(&all, "NetworkPolicy", "gateway-from-mesh");
    assert_eq!(mesh["spec"]["ingress"][0]["ports"][0]["port"].as_u64(), Some(8080));
}

/// What `gen-k8s` refuses: a cluster value left out, or one naming a development host.
#[test]
fn the_generator_refuses_missing_and_development_values() {
    use authz_e2e::k8s::Values;
    let good = "JWT_ISSUER=https://auth.platform.org\nJWT_AUDIENCE=platform-gateway\n\
                IAM_URL=http://auth-service.platform.svc.cluster.local:8000\nPLATFORM_NAMESPACE=platform\n";
    let no_env = || -> authz_e2e::k8s::Env { Box::new(|_| None) };
    assert!(Values::parse(good, no_env()).is_ok());
    for name in authz_e2e::k8s::REQUIRED {
        let without: String =
            good.lines().filter(|l| !l.starts_with(&format!("{name}="))).map(|l| format!("{l}\n")).collect();
        let err = Values::parse(&without, no_env()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(name) && err.contains("no defaults"), "{name}: {err}");
    }
    for (name, value) in [
        ("JWT_ISSUER", "https://auth.dev.local"),
        ("JWT_ISSUER", "http://localhost:8000"),
        ("JWT_ISSUER", "http://127.0.0.1:8000"),
        ("JWT_ISSUER", "http://[::1]:8000"),
        ("JWT_ISSUER", "https://auth.example.com"),
        ("JWT_ISSUER", "https://idp.test"),
        ("IAM_URL", "http://auth.local:8000"),
        ("JWT_ISSUER", "not a url"),
        ("PLATFORM_NAMESPACE", "Platform_NS"),
    ] {
        let env = Box::new(move |n: &str| (n == name).then(|| value.to_string()));
        let err = Values::parse(good, env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(name), "{name}={value} was accepted: {err}");
    }
    // A comment after a value is not part of it.
    let commented = format!("{good}ROUTE_TIMEOUT=20   # seconds\n");
    assert_eq!(Values::parse(&commented, no_env()).unwrap().get("ROUTE_TIMEOUT").as_deref(), Some("20"));
    // The environment wins over the file.
    let env = Box::new(|n: &str| (n == "JWT_AUDIENCE").then(|| "other".to_string()));
    assert_eq!(Values::parse(good, env).unwrap().get("JWT_AUDIENCE").as_deref(), Some("other"));
}

/// The committed values are the ones the manifests use: the Deployment's `IAM_URL`, and the
/// issuer and audience the sidecar's ConfigMap carries.
#[test]
fn the_manifests_use_the_committed_cluster_values() {
    let values = authz_e2e::k8s::Values::load().unwrap();
    let all = manifests();
    let pod = &find(&all, "Deployment", "authz-gateway")["spec"]["template"]["spec"];
    let env = seq(&container(pod, "sidecar")["env"]).iter().find(|e| e["name"] == "IAM_URL").unwrap();
    assert_eq!(Some(str_of(&env["value"]).to_string()), values.get("IAM_URL"), "k8s/40-gateway.yaml vs cluster.env");
    let config = find(&all, "ConfigMap", "authz-sidecar");
    let sidecar: serde_yaml::Value = serde_yaml::from_str(str_of(&config["data"]["sidecar.yaml"])).unwrap();
    assert_eq!(sidecar["jwt"]["issuers"][0].as_str().map(String::from), values.get("JWT_ISSUER"));
    assert_eq!(sidecar["jwt"]["audiences"][0].as_str().map(String::from), values.get("JWT_AUDIENCE"));
}
