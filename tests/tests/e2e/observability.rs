//! What operators plug in: the sidecar's Prometheus series, linted by Prometheus's own
//! `promtool`; the alert rules, checked and unit-tested by it; and the dashboard and alert
//! expressions in `observability/`, checked against the series a live stack really exports, so
//! a renamed metric cannot leave a dead panel or an alert that never fires.

use std::collections::BTreeSet;

use authz_e2e::paths;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::sign_kid;
use serde_json::{Value, json};

use super::client::{bearer, get};
use super::identity::claims;

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(paths::workspace().join("observability"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, installed by scripts/setup.sh)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The series names an exposition offers: every sample's name, and every family its `# TYPE`
/// line declares (with `_bucket`, `_sum`, `_count` for histograms).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The gateway's metric names a PromQL expression reads: identifiers starting `authz_` or
/// `envoy_`, outside label matchers (`{...}`) and grouping clauses (`by (...)`), where such
/// names are labels.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    for clause in ["by (", "without (", "on (", "ignoring ("] {
        while let Some(at) = plain.find(clause) {
            let end = plain[at..].find(')').map_or(plain.len(), |e| at + e + 1);
            plain.replace_range(at..end, " ");
        }
    }
    plain
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("authz_") || w.starts_with("envoy_"))
        .map(str::to_string)
        .collect()
}

/// Every query of the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(paths::workspace().join("observability/dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((panel["title"].as_str().unwrap_or("").to_string(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// Every alert's expression, with its name.
fn alert_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(paths::workspace().join("observability/alerts.yaml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((rule["alert"].as_str().unwrap().to_string(), rule["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yaml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yaml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    // Every alert has at least one unit test.
    let tests = std::fs::read_to_string(paths::workspace().join("observability/alerts.test.yaml")).unwrap();
    for (alert, _) in alert_expressions() {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no unit test in alerts.test.yaml");
    }
}

/// `k8s/monitoring/` is what `observability/` generates.
#[test]
fn monitoring_manifests_are_generated_from_observability() {
    for (name, text) in authz_e2e::k8s::monitoring_files().unwrap() {
        let path = paths::workspace().join(authz_e2e::k8s::MONITORING_DIR).join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == text, "{} is stale: run `cargo run -p authz-e2e --bin gen-k8s`", path.display());
    }
}

/// A live stack: the sidecar's `/metrics` lints clean with `promtool check metrics`, and every
/// series the dashboard and the alerts read is one the sidecar or Envoy exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_lint_clean_and_every_panel_and_alert_reads_a_live_series() {
    let mut opts = Options::test(Mode::Wasm).unwrap();
    opts.routes = json!([{"id": "account", "prefix": "/api/workbench/account", "requireSession": true}]);
    let stack = Stack::start(opts).await.unwrap();
    let t = bearer(&sign_kid(&claims("u-metrics"), "dev-1").unwrap());
    // Local decisions, a refusal, and callouts (a session check), so Envoy has seen the
    // sidecar cluster answer.
    for path in ["/api/tools/a", "/api/workbench/account/me"] {
        get(&stack, path, &[("authorization", &t)]).await;
        get(&stack, path, &[]).await;
    }
    let sidecar = stack.sidecar_metrics().await.unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&sidecar));
    assert!(ok && out.trim().is_empty(), "promtool check metrics on the sidecar's /metrics:\n{out}");
    let envoy_url = format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.envoy_stats);
    let envoy = stack.client.get(envoy_url).send().await.unwrap().text().await.unwrap();
    assert!(envoy.contains("authz_filter_allowed"), "Envoy's stats listener serves the filter's counters");
    let live: BTreeSet<String> = exported(&sidecar).into_iter().chain(exported(&envoy)).collect();
    let mut read = 0;
    for (what, expr) in dashboard_queries().into_iter().chain(alert_expressions()) {
        let names = metrics_in(&expr);
        assert!(!names.is_empty(), "{what}: no gateway series in {expr}");
        for name in names {
            assert!(live.contains(&name), "{what}: {name} is not exported by the sidecar or Envoy ({expr})");
            read += 1;
        }
    }
    assert!(read > 30, "{read}");
}

#[test]
fn the_expression_reader_tells_metrics_from_labels() {
    let e = r#"histogram_quantile(0.99, sum by (le, envoy_x) (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="authz_sidecar"}[5m]))) / sum(authz_filter_allowed)"#;
    let names: Vec<String> = metrics_in(e).into_iter().collect();
    assert_eq!(names, ["authz_filter_allowed", "envoy_cluster_upstream_rq_time_bucket"]);
}
