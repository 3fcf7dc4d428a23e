//! The input of a Rego rule: OPA-Envoy's document, field for field as OPA-Envoy builds it from
//! the `CheckRequest` (`attributes` in protojson's names, `parsed_path`, `parsed_query`,
//! `parsed_body`, `truncated_body`, `version`), plus our `identity`.
//!
//! - `attributes.request.http.headers` holds the request's headers after the gateway removed the
//!   client-sent identity headers (so a policy never reads a forged `x-user-id`), with the
//!   pseudo-headers (`:authority`, `:method`, `:path`, `:scheme`) as Envoy sends them. The
//!   credential headers are there, as in OPA-Envoy, unless the policy file sets
//!   `regoHideCredentials` (audit records never carry them either way).
//! - `parsed_path`: the path without its query, leading slashes trimmed, split on `/`, each
//!   segment percent-decoded (Go's `url.Parse` then `strings.Split`, as OPA-Envoy does); a
//!   trailing slash gives a last empty segment.
//! - `parsed_query`: every parameter as a list of its values, `+` and escapes decoded.
//! - `parsed_body`: a JSON body, when the route sends its body (compute routes); absent else.
//! - `identity` (ours): absent before authentication (public rules with `rego`); else the
//!   caller, its provider and issuer, and `claims`: the whole verified claim set.

use authz_core::Identity;
use serde_json::{Map, Value as Json, json};

/// What the `CheckRequest` says about the request beyond its headers.
#[derive(Debug, Default, Clone)]
pub struct Attributes {
    pub source: Option<(String, u32)>,
    pub destination: Option<(String, u32)>,
    /// Unix seconds and nanoseconds (`attributes.request.time`; the sidecar's clock if absent).
    pub time: Option<(i64, i32)>,
    pub id: String,
    pub host: String,
    pub scheme: String,
    pub protocol: String,
}

/// The credential headers `regoHideCredentials` leaves out.
const CREDENTIALS: [&str; 3] = ["authorization", "x-api-key", "x-action-token"];

/// The input document.
pub fn build(
    attrs: &Attributes,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    identity: Option<&Identity>,
    hide_credentials: bool,
) -> Json {
    let mut h = Map::new();
    for (k, v) in headers {
        if k.starts_with(':') || (hide_credentials && CREDENTIALS.contains(&k.as_str())) {
            continue;
        }
        h.entry(k.clone())
            .and_modify(|old| *old = json!(format!("{},{v}", old.as_str().unwrap_or(""))))
            .or_insert(json!(v));
    }
    for (k, v) in
        [(":authority", attrs.host.as_str()), (":method", method), (":path", path), (":scheme", &attrs.scheme)]
    {
        if !v.is_empty() {
            h.insert(k.to_string(), json!(v));
        }
    }
    let (path_part, query) = path.split_once('?').unwrap_or((path, ""));
    let peer = |p: &Option<(String, u32)>| match p {
        Some((address, port)) => json!({"address": {"socketAddress": {"address": address, "portValue": port}}}),
        None => json!({}),
    };
    let (secs, nanos) = attrs.time.unwrap_or_else(now);
    let mut http = json!({
        "id": attrs.id, "method": method, "headers": h, "path": path,
        "host": attrs.host, "scheme": attrs.scheme, "protocol": attrs.protocol,
    });
    if !body.is_empty() {
        http["body"] = json!(String::from_utf8_lossy(body));
        http["size"] = json!(body.len());
    }
    let mut input = json!({
        "attributes": {
            "source": peer(&attrs.source),
            "destination": peer(&attrs.destination),
            "request": {"time": rfc3339(secs, nanos), "http": http},
        },
        "parsed_path": parsed_path(path_part),
        "parsed_query": parsed_query(query),
        "truncated_body": false,
        "version": {"encoding": "protojson", "ext_authz": "v3"},
    });
    if let Ok(parsed) = serde_json::from_slice::<Json>(body)
        && !body.is_empty()
    {
        input["parsed_body"] = parsed;
    }
    if let Some(id) = identity {
        input["identity"] = json!({
            "user_id": id.user_id, "email": id.email, "roles": id.roles, "scopes": id.scopes,
            "service": id.service, "provider": id.provider.as_deref().unwrap_or(authz_core::provider::DEFAULT),
            "issuer": id.issuer, "claims": claims(id),
        });
    }
    input
}

fn now() -> (i64, i32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), i32::try_from(d.subsec_nanos()).unwrap_or(0))
}

/// The verified claim set: the typed claims back under their names, then every other one.
fn claims(id: &Identity) -> Json {
    let mut c: Map<String, Json> = id.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    c.insert("sub".into(), json!(id.user_id));
    let typed = [
        ("iss", id.issuer.clone().map(Json::from)),
        ("email", id.email.clone().map(Json::from)),
        ("jti", id.token_id.clone().map(Json::from)),
        ("sid", id.session_id.clone().map(Json::from)),
        ("svc", id.service.clone().filter(|_| id.provider.is_none()).map(Json::from)),
        ("action", id.action.clone().map(Json::from)),
        ("auth_time", id.auth_time.map(Json::from)),
        ("iat", id.issued_at.map(Json::from)),
        ("endpoint_permissions", id.endpoint_permissions.clone().map(Json::from)),
        ("aud", (!id.audiences.is_empty()).then(|| json!(id.audiences))),
        ("roles", (!id.roles.is_empty()).then(|| json!(id.roles))),
        ("scope", (!id.scopes.is_empty()).then(|| json!(id.scopes.join(" ")))),
        ("exp", (id.expires_at > 0).then_some(json!(id.expires_at))),
    ];
    for (k, v) in typed {
        if let Some(v) = v {
            c.entry(k.to_string()).or_insert(v);
        }
    }
    Json::Object(c)
}

fn unescape(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// OPA-Envoy's `parsed_path`.
pub fn parsed_path(path: &str) -> Json {
    let decoded = unescape(path, false);
    json!(decoded.trim_start_matches('/').split('/').collect::<Vec<_>>())
}

/// OPA-Envoy's `parsed_query`.
pub fn parsed_query(query: &str) -> Json {
    let mut q: Map<String, Json> = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let values = q.entry(unescape(k, true)).or_insert_with(|| json!([]));
        if let Some(list) = values.as_array_mut() {
            list.push(json!(unescape(v, true)));
        }
    }
    Json::Object(q)
}

/// RFC 3339 in UTC with nanoseconds, as protojson writes a `Timestamp`.
fn rfc3339(secs: i64, nanos: i32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let frac = if nanos > 0 { format!(".{nanos:09}") } else { String::new() };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_parsed_as_opa_envoy_parses_them() {
        assert_eq!(parsed_path("/"), json!([""]));
        assert_eq!(parsed_path("/api/tools"), json!(["api", "tools"]));
        assert_eq!(parsed_path("/api/tools/"), json!(["api", "tools", ""]));
        assert_eq!(parsed_path("//api/a%20b"), json!(["api", "a b"]));
        assert_eq!(parsed_path("/a%2Fb"), json!(["a", "b"]), "Go's url.Parse decodes %2F before the split");
        assert_eq!(
            parsed_query("a=1&b=x+y&a=2&c&d=%41"),
            json!({"a": ["1", "2"], "b": ["x y"], "c": [""], "d": ["A"]})
        );
        assert_eq!(parsed_query(""), json!({}));
    }

    #[test]
    fn the_document_has_opa_envoys_shape() {
        let attrs = Attributes {
            source: Some(("10.0.0.7".into(), 52000)),
            destination: Some(("10.0.0.1".into(), 8080)),
            time: Some((1_700_000_000, 5)),
            id: "t1".into(),
            host: "gw.example".into(),
            scheme: "https".into(),
            protocol: "HTTP/1.1".into(),
        };
        let headers = vec![
            ("authorization".to_string(), "Bearer x".to_string()),
            ("accept".to_string(), "a".to_string()),
            ("accept".to_string(), "b".to_string()),
        ];
        let body = br#"{"name": "t"}"#;
        let input = build(&attrs, "POST", "/api/x?y=1", &headers, body, None, false);
        let http = &input["attributes"]["request"]["http"];
        assert_eq!(http["headers"]["authorization"], "Bearer x");
        assert_eq!(http["headers"]["accept"], "a,b");
        assert_eq!(http["headers"][":authority"], "gw.example");
        assert_eq!(http["headers"][":method"], "POST");
        assert_eq!((http["host"].as_str(), http["size"].as_u64()), (Some("gw.example"), Some(13)));
        assert_eq!(input["attributes"]["source"]["address"]["socketAddress"]["address"], "10.0.0.7");
        assert_eq!(input["attributes"]["destination"]["address"]["socketAddress"]["portValue"], 8080);
        assert_eq!(input["attributes"]["request"]["time"], "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            (input["parsed_path"].clone(), input["parsed_query"]["y"][0].clone()),
            (json!(["api", "x"]), json!("1"))
        );
        assert_eq!(input["parsed_body"]["name"], "t");
        assert_eq!(input["version"]["ext_authz"], "v3");
        assert!(input.get("identity").is_none(), "before authentication: no identity");
        let hidden = build(&attrs, "GET", "/", &headers, b"", None, true);
        assert!(hidden["attributes"]["request"]["http"]["headers"].get("authorization").is_none());
        assert!(hidden.get("parsed_body").is_none());
    }

    #[test]
    fn the_identity_carries_the_whole_claim_set() {
        let c: authz_core::claims::Claims = serde_json::from_value(json!({
            "sub": "u1", "iss": "https://iam", "aud": ["gw"], "exp": 2_000_000_000u64, "iat": 1_700_000_000u64,
            "roles": ["admin"], "scope": "a b", "labs": ["l1"], "email": "u@lab.example",
        }))
        .unwrap();
        let id = Identity::from_claims(c).unwrap();
        let input = build(&Attributes::default(), "GET", "/", &[], b"", Some(&id), false);
        let claims = &input["identity"]["claims"];
        assert_eq!(
            (claims["sub"].as_str(), claims["iss"].as_str(), claims["scope"].as_str()),
            (Some("u1"), Some("https://iam"), Some("a b"))
        );
        assert_eq!((claims["exp"].as_u64(), claims["labs"][0].as_str()), (Some(2_000_000_000), Some("l1")));
        assert_eq!((claims["aud"][0].as_str(), claims["roles"][0].as_str()), (Some("gw"), Some("admin")));
        assert_eq!(input["identity"]["provider"], "default");
    }
}
