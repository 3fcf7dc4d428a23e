//! Matching and the identity requirements of route rules, table-driven.

use super::*;

fn spec(id: &str, json: serde_json::Value) -> RouteSpec {
    let mut v = json;
    v["id"] = id.into();
    serde_json::from_value(v).unwrap()
}

fn table() -> RouteTable {
    RouteTable::new(
        vec!["/health".into()],
        vec![],
        vec![
            spec("docs", serde_json::json!({"prefix": "/api/docs", "public": true})),
            spec("billing", serde_json::json!({"prefix": "/api/billing", "audiences": ["billing-api"]})),
            spec(
                "delete",
                serde_json::json!({"prefix": "/api/lims/samples", "methods": ["DELETE"], "action": "delete-sample"}),
            ),
            spec("admin", serde_json::json!({"path": "/api/admin", "maxAuthAge": "5m", "requireSession": true})),
            spec("lab", serde_json::json!({"template": "/api/lims/labs/{lab}/**", "bind": {"lab": "labs"}})),
        ],
    )
    .unwrap()
}

fn id_of(m: Matched<'_>) -> &str {
    match m {
        Matched::NoRule => "no rule",
        Matched::Public => "public",
        Matched::PublicRego(r) => &r.id,
        Matched::Protected(None) => "default",
        Matched::Protected(Some(r)) => &r.id,
    }
}

#[test]
fn matching() {
    let t = table();
    let cases = [
        ("GET", "/health", "public"),
        ("GET", "/health?x", "public"),
        ("GET", "/healthz", "default"),
        ("GET", "/api/docs/x", "public"),
        ("GET", "/api/docsx", "default"),
        ("POST", "/api/billing", "billing"),
        ("POST", "/api/billing/invoices", "billing"),
        ("DELETE", "/api/lims/samples/1", "delete"),
        ("GET", "/api/lims/samples/1", "default"),
        ("GET", "/api/admin", "admin"),
        ("GET", "/api/admin/x", "default"),
        ("GET", "/api/lims/labs/l1/samples", "lab"),
        ("GET", "/api/lims/labs", "default"),
        // Protected rules fold case and cover a suffixed last segment; public ones do neither.
        ("POST", "/API/Billing/x", "billing"),
        ("GET", "/api/ADMIN", "admin"),
        ("GET", "/api/admin.json", "admin"),
        ("GET", "/api/admin.json/x", "default"),
        ("POST", "/api/billing.xml", "billing"),
        ("GET", "/api/LIMS/labs/l1/x", "lab"),
        ("GET", "/api/DOCS/x", "default"),
        ("GET", "/api/docs.json", "default"),
    ];
    for (method, path, want) in cases {
        assert_eq!(id_of(t.find(method, path)), want, "{method} {path}");
    }
}

#[test]
fn case_sensitive_rules_match_exactly() {
    let t = RouteTable::new(
        vec![],
        vec![],
        vec![spec("exact", serde_json::json!({"prefix": "/api/Exact", "caseSensitive": true, "rolesAnyOf": ["x"]}))],
    )
    .unwrap();
    assert_eq!(id_of(t.find("GET", "/api/Exact/1")), "exact");
    assert_eq!(id_of(t.find("GET", "/api/exact/1")), "default");
    assert_eq!(id_of(t.find("GET", "/api/Exact.json")), "default");
}

#[test]
fn method_dependence() {
    let t = table();
    assert!(t.depends_on_method("/api/lims/samples/1?x"));
    assert!(!t.depends_on_method("/api/billing/x"));
}

#[test]
fn bad_rules_are_refused() {
    let cases = [
        serde_json::json!({"id": "a"}),
        serde_json::json!({"id": "a", "path": "/x", "prefix": "/x"}),
        serde_json::json!({"id": "a", "prefix": "x"}),
        serde_json::json!({"id": "a", "prefix": "/x", "maxAuthAge": "soon"}),
        serde_json::json!({"id": "a", "prefix": "/x", "public": true, "requireSession": true}),
        serde_json::json!({"id": "a", "prefix": "/x", "public": true, "rolesAnyOf": ["admin"]}),
        serde_json::json!({"id": "a", "template": "/x/{a}", "bind": {"b": "labs"}}),
        serde_json::json!({"id": "a", "prefix": "/x", "bind": {"a": "labs"}}),
        serde_json::json!({"id": "a", "template": "/x/**/y"}),
        serde_json::json!({"id": "a", "prefix": "/x", "claims": [{"claim": "c"}]}),
    ];
    for c in cases {
        let s: RouteSpec = serde_json::from_value(c.clone()).unwrap();
        assert!(Route::try_from(s).is_err(), "{c}");
    }
    let dup = vec![spec("a", serde_json::json!({"path": "/x"})), spec("a", serde_json::json!({"path": "/y"}))];
    assert!(RouteTable::new(vec![], vec![], dup).is_err());
    assert!(serde_json::from_value::<RouteSpec>(serde_json::json!({"id": "a", "path": "/x", "bogus": 1})).is_err());
}

fn identity(aud: &[&str], auth_time: Option<u64>) -> Identity {
    Identity {
        user_id: "u1".into(),
        email: None,
        roles: vec![],
        issuer: Some("iss".into()),
        token_id: None,
        session_id: None,
        audiences: aud.iter().map(|s| s.to_string()).collect(),
        auth_time,
        service: None,
        action: None,
        key_id: None,
        issued_at: None,
        scopes: vec![],
        endpoint_permissions: None,
        claims: Default::default(),
        expires_at: 0,
        provider: None,
    }
}

#[test]
fn requirements() {
    let t = table();
    let default_scope = Scope { issuers: vec!["iss".into()], audiences: vec!["platform".into()] };
    let route = |m, p| match t.find(m, p) {
        Matched::Protected(r) => {
            r.cloned().unwrap_or_else(|| Route::try_from(spec("default", serde_json::json!({"prefix": "/"}))).unwrap())
        }
        Matched::Public | Matched::PublicRego(_) | Matched::NoRule => panic!("not protected"),
    };
    let now = 10_000;
    let platform = identity(&["platform"], Some(now - 60));
    let billing = identity(&["billing-api"], Some(now - 60));
    let mut action = identity(&["platform"], None);
    action.action = Some("delete-sample".into());
    let mut other_action = action.clone();
    other_action.action = Some("delete-lab".into());
    let mut other_user = action.clone();
    other_user.user_id = "u2".into();
    let expired_err = TokenError::Expired;
    let code = |r: Result<(), Denial>| r.err().map_or("ok", |d| d.code);

    let billing_route = route("POST", "/api/billing");
    assert_eq!(code(billing_route.check(&default_scope, &billing, None, "/x", now)), "ok");
    assert_eq!(code(billing_route.check(&default_scope, &platform, None, "/x", now)), "token_wrong_audience");
    let default_route = route("GET", "/api/tools");
    assert_eq!(code(default_route.check(&default_scope, &billing, None, "/x", now)), "token_wrong_audience");
    assert_eq!(code(default_route.check(&default_scope, &platform, None, "/x", now)), "ok");

    let admin = route("GET", "/api/admin");
    assert!(admin.require_session);
    assert_eq!(code(admin.check(&default_scope, &platform, None, "/x", now)), "ok");
    assert_eq!(
        code(admin.check(&default_scope, &identity(&["platform"], Some(now - 301)), None, "/x", now)),
        "reauthentication_required"
    );
    assert_eq!(
        code(admin.check(&default_scope, &identity(&["platform"], None), None, "/x", now)),
        "reauthentication_required"
    );

    let delete = route("DELETE", "/api/lims/samples/1");
    assert_eq!(code(delete.check(&default_scope, &platform, None, "/x", now)), "action_token_required");
    assert_eq!(code(delete.check(&default_scope, &platform, Some(Ok(&action)), "/x", now)), "ok");
    assert_eq!(
        code(delete.check(&default_scope, &platform, Some(Ok(&other_action)), "/x", now)),
        "action_token_invalid"
    );
    assert_eq!(code(delete.check(&default_scope, &platform, Some(Ok(&other_user)), "/x", now)), "action_token_invalid");
    assert_eq!(
        code(delete.check(&default_scope, &platform, Some(Err(&expired_err)), "/x", now)),
        "action_token_invalid"
    );
}

#[test]
fn template_binding_through_the_route() {
    let t = table();
    let Matched::Protected(Some(route)) = t.find("GET", "/api/lims/labs/l2/samples") else { panic!("no rule") };
    let mut id = identity(&["platform"], None);
    id.claims.insert("labs".into(), serde_json::json!(["l1", "l2"]));
    let scope = Scope::default();
    assert!(route.check(&scope, &id, None, "/api/lims/labs/l2/samples", 0).is_ok());
    let d = route.check(&scope, &id, None, "/api/lims/labs/l3/samples", 0).unwrap_err();
    assert_eq!((d.status, d.code), (403, "tenant_mismatch"));
}

#[test]
fn deny_by_default_and_document_versions() {
    let doc: PolicyDocument = serde_json::from_value(serde_json::json!({
        "defaultAction": "deny",
        "routes": [{"id": "tools", "prefix": "/api/tools"}]
    }))
    .unwrap();
    let t = RouteTable::from_document(vec!["/health".into()], vec![], doc).unwrap();
    assert_eq!(id_of(t.find("GET", "/api/tools/x")), "tools");
    assert_eq!(id_of(t.find("GET", "/api/rag/x")), "no rule");
    assert_eq!(id_of(t.find("GET", "/health")), "public");
    assert!(serde_json::from_value::<PolicyDocument>(serde_json::json!({"defaultAction": "allow"})).is_err());
    assert_eq!(PolicyDocument::version_of("a").len(), 16);
    assert_ne!(PolicyDocument::version_of("a"), PolicyDocument::version_of("b"));
}

#[test]
fn first_matching_rule_wins() {
    let t = RouteTable::new(
        vec![],
        vec![],
        vec![
            spec("narrow", serde_json::json!({"prefix": "/api/lims/admin", "rolesAnyOf": ["admin"]})),
            spec("broad", serde_json::json!({"prefix": "/api/lims"})),
            spec("never", serde_json::json!({"prefix": "/api/lims/admin/x", "public": true})),
        ],
    )
    .unwrap();
    assert_eq!(id_of(t.find("GET", "/api/lims/admin/x")), "narrow", "an earlier rule shadows later ones");
    assert_eq!(id_of(t.find("GET", "/api/lims/samples")), "broad");
}

/// The prefix index of a large table picks exactly the rule a plain first-match scan picks,
/// over generated tables (paths, prefixes, templates with parameters and `**`, methods) and
/// generated request paths.
#[test]
fn the_prefix_index_agrees_with_a_plain_scan() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let words = ["api", "tes", "lims", "labs", "x", "tasks", "v1", ""];
    for round in 0..20 {
        let mut specs = Vec::new();
        for i in 0..(24 + next(60)) {
            let depth = 1 + next(4);
            let mut segs: Vec<String> = (0..depth).map(|_| words[next(words.len() - 1)].to_string()).collect();
            let kind = next(3);
            if kind == 2 {
                match next(3) {
                    0 => segs[next(depth)] = "{p}".into(),
                    1 => segs.push("**".into()),
                    _ => {}
                }
            }
            let path = format!("/{}", segs.join("/"));
            let mut json = match kind {
                0 => serde_json::json!({ "path": path }),
                1 => serde_json::json!({ "prefix": path }),
                _ => serde_json::json!({ "template": path }),
            };
            if next(4) == 0 {
                json["methods"] = serde_json::json!(["POST"]);
            }
            specs.push(spec(&format!("r{round}-{i}"), json));
        }
        let indexed = RouteTable::new(vec![], vec![], specs).unwrap();
        assert!(indexed.index.is_some());
        let mut plain = indexed.clone();
        plain.index = None;
        for _ in 0..300 {
            let depth = next(6);
            let path: String = (0..depth).map(|_| format!("/{}", words[next(words.len())])).collect();
            let path = if path.is_empty() { "/".to_string() } else { path };
            let method = if next(2) == 0 { "GET" } else { "POST" };
            let a = match indexed.find(method, &path) {
                Matched::Protected(r) => r.map(|r| r.id.clone()),
                other => Some(format!("{other:?}")),
            };
            let b = match plain.find(method, &path) {
                Matched::Protected(r) => r.map(|r| r.id.clone()),
                other => Some(format!("{other:?}")),
            };
            assert_eq!(a, b, "{method} {path}");
        }
    }
}

/// The claims a table reads: each condition's top-level claim (a pointer's first token) and
/// each `bind`'s claim, once each, sorted; typed claims are named too (harmless to keep).
#[test]
fn claims_read_by_the_rules() {
    assert_eq!(table().claims_read(), ["labs"]);
    let t = RouteTable::new(
        vec![],
        vec![],
        vec![
            spec(
                "k8s",
                serde_json::json!({"prefix": "/a", "claims": [
                    {"claim": "/kubernetes.io/namespace", "equals": "tes"}, {"claim": "tier", "oneOf": ["gold"]}
                ]}),
            ),
            spec("lab", serde_json::json!({"template": "/l/{lab}", "bind": {"lab": "labs"}, "claims": [{"claim": "tier", "equals": "x"}]})),
        ],
    )
    .unwrap();
    assert_eq!(t.claims_read(), ["kubernetes.io", "labs", "tier"]);
    assert!(RouteTable::new(vec![], vec![], vec![]).unwrap().claims_read().is_empty());
}
