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

#[test]
fn redis_keeps_revocations_and_leases_under_its_memory_limit() {
    let all = manifests();
    let redis = find(&all, "StatefulSet", "redis");
    let c = container(&redis["spec"]["template"]["spec"], "redis");
    let args: Vec<&str> = seq(&c["args"]).iter().map(str_of).collect();
    assert_eq!(flag(&args, "--maxmemory-policy"), Some("noeviction"), "revocations and leases must never be evicted");
    let maxmemory = flag(&args, "--maxmemory").and_then(|m| m.strip_suffix("mb")).and_then(|m| m.parse::<u64>().ok());
    assert!(maxmemory.is_some_and(|m| m < 1024), "maxmemory below the 1 GiB limit, with room for the AOF fork");
    assert_eq!(str_of(&c["resources"]["limits"]["memory"]), "1Gi");
    // The StatefulSet's Service is headless.
    let service = find(&all, "Service", str_of(&redis["spec"]["serviceName"]));
    assert_eq!(str_of(&service["spec"]["clusterIP"]), "None");
    // The audit stream is sized for it.
    let config = find(&all, "ConfigMap", "authz-sidecar");
    let sidecar: serde_yaml::Value = serde_yaml::from_str(str_of(&config["data"]["sidecar.yaml"])).unwrap();
    assert!(sidecar["audit"]["maxLen"].as_u64().is_some_and(|n| n <= 500_000), "{:?}", sidecar["audit"]);
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
