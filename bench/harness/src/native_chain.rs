//! (b+): the peer a platform would build from Envoy's own filters instead of our filter, doing
//! the hit path's whole job for the benchmark's policy (see [`native_chain_block`]).

use crate::variants::{jwt_provider, with_filter_block_and_access_log};

/// The gateway template with our filter replaced by the native chain, its access log kept.
pub fn template(gateway: &str, jwks_json: &str) -> anyhow::Result<String> {
    with_filter_block_and_access_log(&access_log_with_identity(gateway)?, &native_chain_block(jwks_json))
}

/// Client-sent headers our filter removes on every request (`authz_core::headers`): the
/// identity headers it sets, the lease header, and the method and URL override headers. Our
/// filter removes every `x-user-*`; `header_mutation` does the same with a prefix match.
fn removed_headers() -> Vec<&'static str> {
    let mut names = vec![authz_core::headers::X_INTERNAL_SERVICE, authz_core::headers::X_QUOTA_LEASE];
    names.extend_from_slice(authz_core::headers::DEFAULT_OVERRIDE_HEADERS);
    names
}

/// Envoy's own filters doing the job of our hit path, for the benchmark's policy (the
/// stack's: `/health` public; `/auth/verify` needs a token; the rest of `/auth` public;
/// `/quota/v1/leases` service tokens only; anything else any valid token):
///
/// - `header_mutation`: removes every `x-user-*` (prefix), `x-internal-service`,
///   `x-quota-lease` and the override headers, and sets `x-trace-id` from Envoy's
///   `x-request-id` (ours keeps a well-formed client trace id or a `traceparent`'s);
/// - `jwt_authn` with `jwt_cache_config`: RS256, issuer and audience as ours, the token
///   removed after verification (as ours), `sub`, `email`, `roles` to `x-user-id`,
///   `x-user-email`, `x-user-roles` (an array claim arrives as base64 of its JSON, where ours
///   joins it with commas), the payload as dynamic metadata for RBAC;
/// - `rbac`: the rules above. RBAC's policies are OR'ed, not first-match, so each rule
///   excludes the paths of the rules before it. What RBAC cannot express of our policy
///   language: `bind` (a path segment that must be one of a claim's values), `maxAuthAge`
///   (a claim compared with the clock), sessions, action tokens, quota and API keys; prefix
///   rules match on segment boundaries only as an exact-or-`prefix/` pair.
pub fn native_chain_block(jwks_json: &str) -> String {
    const IDENTITY_CLAIMS: &[(&str, &str)] =
        &[("sub", "x-user-id"), ("email", "x-user-email"), ("roles", "x-user-roles")];
    const METADATA: &str = "                  payload_in_metadata: jwt_payload\n";
    let mut removals = String::from("                - remove_on_match: { key_matcher: { prefix: x-user- } }\n");
    for name in removed_headers() {
        removals.push_str(&format!("                - remove: {name}\n"));
    }
    let jwt_principal = |claim: &str| {
        format!(
            "                    - metadata: {{ filter: envoy.filters.http.jwt_authn, path: [{{ key: jwt_payload }}, {{ key: {claim} }}], value: {{ present_match: true }} }}\n"
        )
    };
    let under = |prefix: &str| {
        format!(
            "{{ or_rules: {{ rules: [{{ url_path: {{ path: {{ exact: {prefix} }} }} }}, {{ url_path: {{ path: {{ prefix: {prefix}/ }} }} }}] }} }}"
        )
    };
    format!(
        "          - name: envoy.filters.http.header_mutation
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
{removals}                - append:
                    header: {{ key: x-trace-id, value: \"%REQ(x-request-id)%\" }}
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
{platform}                # The lease API's rule passes the token on (ours: `forwardCredential`);
                # `forward` is per provider in jwt_authn, so the same issuer twice.
{platform_forward}              rules:
              - match: {{ path: /health }}
              - match: {{ path: /auth/verify }}
                requires: {{ provider_name: platform }}
              - match: {{ prefix: /auth }}
              - match: {{ prefix: /quota/v1/leases }}
                requires: {{ provider_name: platform_forward }}
              - match: {{ prefix: / }}
                requires: {{ provider_name: platform }}
          - name: envoy.filters.http.rbac
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  health:
                    permissions: [{{ url_path: {{ path: {{ exact: /health }} }} }}]
                    principals: [{{ any: true }}]
                  auth-verify:
                    permissions: [{{ url_path: {{ path: {{ exact: /auth/verify }} }} }}]
                    principals:
{sub}                  auth-service:
                    permissions:
                    - and_rules:
                        rules:
                        - {auth}
                        - not_rule: {{ url_path: {{ path: {{ exact: /auth/verify }} }} }}
                    principals: [{{ any: true }}]
                  quota-leases:
                    permissions: [{leases}]
                    principals:
{svc}                  default-authenticated:
                    permissions:
                    - not_rule:
                        or_rules:
                          rules:
                          - url_path: {{ path: {{ exact: /health }} }}
                          - {auth}
                          - {leases}
                    principals:
{sub}",
        platform = jwt_provider("platform", jwks_json, IDENTITY_CLAIMS, true, METADATA),
        platform_forward = jwt_provider(
            "platform_forward",
            jwks_json,
            IDENTITY_CLAIMS,
            true,
            &format!("{METADATA}                  forward: true\n"),
        ),
        sub = jwt_principal("sub"),
        svc = jwt_principal("svc"),
        auth = under("/auth"),
        leases = under("/quota/v1/leases"),
    )
}

/// The access log of `gateway` naming the identity too (the native chain has no decision
/// record of ours to carry it).
fn access_log_with_identity(gateway: &str) -> anyhow::Result<String> {
    const HEADERS: &str = "additional_request_headers_to_log: [x-trace-id, \":method\"]";
    anyhow::ensure!(gateway.contains(HEADERS), "the gateway template's access log changed");
    Ok(gateway.replace(HEADERS, "additional_request_headers_to_log: [x-trace-id, \":method\", x-user-id]"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use authz_e2e::stack::Mode;

    use crate::variants::{Filter, envoy_setup};

    /// The native chain (b+) really does the hit path's job on the benchmark's policy, in a
    /// real Envoy, so the comparison is with a peer that does the same work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_native_chain_does_the_hit_paths_job() {
        use authz_e2e::stack::{Options, Stack};
        use authz_e2e::tokens::{DEV_KID, sign_rs256, user_claims};
        let mut opts = Options::test(Mode::Wasm).unwrap();
        opts.gateway = false;
        let mut stack = Stack::start(opts).await.unwrap();
        let all: serde_json::Value =
            reqwest::get(format!("{}/.well-known/jwks.json", stack.auth.url())).await.unwrap().json().await.unwrap();
        let keys: Vec<&serde_json::Value> =
            all["keys"].as_array().into_iter().flatten().filter(|k| k["kid"] == DEV_KID).collect();
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        let gateway = std::fs::read_to_string(authz_e2e::paths::workspace().join("envoy/gateway.yaml")).unwrap();
        let (mode, template) = envoy_setup(Filter::NativeChain, &gateway, &jwks, Path::new("unused")).unwrap();
        stack.opts.mode = mode;
        stack.opts.envoy_template = template;
        stack.start_sidecar().await.unwrap();
        stack.start_envoy().await.unwrap();

        let user = format!(
            "Bearer {}",
            sign_rs256(&user_claims("u-1", "u1@lab.example", &["scientist", "admin"]), Some(DEV_KID)).unwrap()
        );
        let mut service_claims = user_claims("svc-tes", "tes@lab.example", &[]);
        service_claims["svc"] = serde_json::json!("tes");
        let service = format!("Bearer {}", sign_rs256(&service_claims, Some(DEV_KID)).unwrap());
        let client = reqwest::Client::new();
        let get = |path: &str, auth: Option<&str>| {
            let mut req = client
                .get(stack.gateway_url(path))
                .header("x-user-id", "forged")
                .header("x-user-anything", "forged")
                .header("x-internal-service", "forged")
                .header("x-http-method-override", "DELETE");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            req.send()
        };
        let r = get("/api/tools/x", Some(&user)).await.unwrap();
        assert_eq!(r.status(), 200);
        let seen: serde_json::Value = r.json().await.unwrap();
        let h = &seen["headers"];
        assert_eq!(
            (&h["x-user-id"], &h["x-user-email"]),
            (&serde_json::json!("u-1"), &serde_json::json!("u1@lab.example"))
        );
        // An array claim: Envoy writes it as base64 of its JSON (ours: "scientist,admin").
        assert_eq!(h["x-user-roles"], "WyJzY2llbnRpc3QiLCJhZG1pbiJd", "{h}");
        for gone in ["x-user-anything", "x-internal-service", "x-http-method-override", "authorization"] {
            assert!(h[gone].is_null(), "{gone} reached the upstream: {h}");
        }
        assert!(h["x-trace-id"].as_str().is_some_and(|t| t.len() == 36), "{h}");
        assert_eq!(get("/api/tools/x", None).await.unwrap().status(), 401);
        assert_eq!(get("/health", None).await.unwrap().status(), 200);
        assert_eq!(get("/auth/verify", None).await.unwrap().status(), 401);
        assert_eq!(get("/auth/verify", Some(&user)).await.unwrap().status(), 200);
        let login = get("/auth/login", None).await.unwrap().status();
        assert!(login != 401 && login != 403, "the auth service's endpoints are public: {login}");
        let lease = "/quota/v1/leases/none/release";
        let post = |auth: &str| client.post(stack.gateway_url(lease)).header("authorization", auth).send();
        assert_eq!(post(&user).await.unwrap().status(), 403, "a user is refused on the lease API");
        assert_eq!(post(&service).await.unwrap().status(), 404, "a service reaches the lease API (no such lease)");
        // Each request reached the sidecar's audit service.
        let start = std::time::Instant::now();
        loop {
            let metrics = stack.sidecar_metrics().await.unwrap_or_default();
            let entries = metrics
                .lines()
                .find(|l| l.starts_with("authz_access_log_entries_total"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            if entries >= 9.0 {
                break;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(5), "{entries} access log entries");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
