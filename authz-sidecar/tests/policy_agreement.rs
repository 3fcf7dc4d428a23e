//! Property: the policy the filter evaluates (the sidecar's YAML, pushed as JSON and parsed
//! again inside the filter) gives exactly the sidecar's verdict, for generated policies,
//! identities and requests.

use authz_core::claims::{Claims, Scope};
use authz_core::routes::{Matched, PolicyDocument, RouteTable};
use authz_core::{Denial, Identity};
use proptest::prelude::*;
use serde_json::{Value, json};

const SEGMENTS: &[&str] = &["api", "lims", "labs", "tools", "l1", "l2", "x"];
const ROLES: &[&str] = &["admin", "user", "scientist"];
const LABS: &[&str] = &["l1", "l2", "l3"];

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

fn rule(i: usize) -> impl Strategy<Value = Value> {
    (
        0..3u8,
        prop::collection::vec(prop::sample::select(SEGMENTS), 1..4),
        prop::collection::vec(prop::sample::select(ROLES), 0..2),
        prop::sample::select(&["", "GET", "POST"][..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(kind, segs, roles, method, public, bind)| {
            let base = format!("/{}", segs.join("/"));
            let mut r = json!({"id": format!("r{i}")});
            match kind {
                0 => r["path"] = json!(base),
                1 => r["prefix"] = json!(base),
                _ => r["template"] = json!(format!("{base}/{{lab}}/**")),
            }
            if !method.is_empty() {
                r["methods"] = json!([method]);
            }
            if public && roles.is_empty() {
                r["public"] = json!(true);
            } else {
                if !roles.is_empty() {
                    r["rolesAnyOf"] = json!(roles);
                }
                if bind && kind == 2 {
                    r["bind"] = json!({"lab": "labs"});
                }
            }
            r
        })
}

fn policy() -> impl Strategy<Value = Value> {
    (prop::collection::vec(0..1usize, 0..8), any::<bool>()).prop_flat_map(|(n, deny)| {
        let rules: Vec<_> = (0..n.len()).map(rule).collect();
        rules.prop_map(
            move |routes| json!({"defaultAction": if deny { "deny" } else { "authenticated" }, "routes": routes}),
        )
    })
}

fn identity() -> impl Strategy<Value = Identity> {
    (prop::collection::vec(prop::sample::select(ROLES), 0..3), prop::collection::vec(prop::sample::select(LABS), 0..3))
        .prop_map(|(roles, labs)| {
            let mut c: Claims =
                serde_json::from_value(json!({"sub": "u", "exp": 10, "roles": roles})).unwrap_or_default();
            c.extra.insert("labs".into(), json!(labs));
            Identity::from_claims(c).unwrap_or_else(|_| unreachable!())
        })
}

/// A comparable verdict.
fn verdict(table: &RouteTable, method: &str, path: &str, id: &Identity) -> Result<String, (u16, &'static str)> {
    let deny = |d: Denial| (d.status, d.code);
    match table.find(method, path) {
        Matched::Public => Ok("public".into()),
        Matched::PublicRego(r) => Ok(format!("public after {}", r.id)),
        Matched::NoRule => Err((403, "no_matching_rule")),
        Matched::Protected(None) => Ok("default".into()),
        Matched::Protected(Some(r)) => {
            r.check(&Scope::default(), id, None, path, 0).map(|()| r.id.clone()).map_err(deny)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn filter_and_sidecar_agree(doc in policy(), id in identity(), method in prop::sample::select(&["GET", "POST", "DELETE"][..]), requests in prop::collection::vec(path(), 1..10)) {
        let yaml = serde_yaml::to_string(&doc).unwrap();
        // Sidecar: the YAML file.
        let known = authz_sidecar::policy::Known { public_paths: vec!["/health".to_string()], ..Default::default() };
        let sidecar = match authz_sidecar::policy::parse(&yaml, "generated", &known) {
            Ok(p) => p,
            // A generated policy may be invalid (e.g. a duplicate shape); both sides must refuse it.
            Err(_) => {
                let doc: Result<PolicyDocument, _> = serde_json::from_value(doc.clone());
                prop_assert!(doc.map(|d| RouteTable::from_document(vec!["/health".into()], vec![], d).is_err()).unwrap_or(true));
                return Ok(());
            }
        };
        // Filter: the JSON the sidecar pushes, parsed the way the filter does.
        let pushed: PolicyDocument = serde_json::from_str(&sidecar.json).unwrap();
        let filter = RouteTable::from_document(vec!["/health".into()], vec![], pushed).unwrap();
        for p in requests.iter().chain(std::iter::once(&"/health".to_string())) {
            prop_assert_eq!(verdict(&sidecar.table, method, p, &id), verdict(&filter, method, p, &id), "path {}", p);
        }
    }
}
