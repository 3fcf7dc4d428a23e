//! The seven configurations compared, each derived from the shipped gateway template so that
//! listener, routes, clusters and timeouts are the same; only the HTTP filter in front of the
//! router differs.

use std::path::Path;

use authz_e2e::render::yaml_string;
use authz_e2e::stack::Mode;

/// What sits in front of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nothing: the ceiling.
    None,
    /// Envoy's `jwt_authn`, RS256 with a local JWKS; with or without `jwt_cache_config`.
    JwtAuthn {
        cache: bool,
    },
    /// The peer a platform would build from Envoy's own filters to do our hit path's job
    /// ([`crate::native_chain`]): client identity headers removed and a trace id set
    /// (`header_mutation`), `jwt_authn` with its cache and `claim_to_headers`, the policy's
    /// rules as `rbac`, and the same gRPC access log to the sidecar's audit service.
    NativeChain,
    /// A wasm filter whose callbacks only return `Continue`: the floor of any wasm filter.
    NoopWasm,
    /// The same module reading all request headers and adding four: the floor of any wasm
    /// filter that authenticates and sets identity headers.
    HeadersWasm,
    /// Diagnostics: only reading the headers, only adding four.
    GetWasm,
    AddWasm,
    /// Our filter (`envoy/gateway.yaml` as shipped, audit included).
    Ours,
    /// The same, from another build of the module (`--baseline-wasm`): a change's before and
    /// after in one run, interleaved round by round.
    OursBaseline,
    /// Our filter without the audit trail (no access-log service, `audit: false`).
    OursNoAudit,
    /// Diagnostics: our filter writing its decision record, but no access log to carry it.
    OursRecordOnly,
    /// Envoy's native `ext_authz` to our sidecar (`envoy/gateway-ext-authz.yaml` as shipped).
    ExtAuthz,
}

/// Which credentials the load carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// A pool of RS256 tokens that fits every cache, cycled (hit path).
    TokenPool,
    /// A new RS256 token on every request (miss path: a verification each time).
    UniqueTokens,
    /// One API key on every request (our filter asks the sidecar each time).
    ApiKey,
}

#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub id: &'static str,
    /// Run only when named in `--only` (splits a cost into its parts).
    pub diagnostic: bool,
    pub name: &'static str,
    pub filter: Filter,
    pub load: Load,
}

/// Every variant, in report order. Three are not among the seven: `b0` is `jwt_authn`
/// without its cache, the native per-token verification cost the miss path is compared with;
/// `b+` is Envoy's own filters doing what our hit path does (the peer a user would compare
/// with); `c2` is the header traffic every authenticating wasm filter pays, which separates the
/// proxy-wasm ABI's cost from our logic's.
pub const VARIANTS: &[Variant] = &[
    v("a", "no auth filter", Filter::None, Load::TokenPool),
    v("b", "jwt_authn RS256, jwt_cache_config", Filter::JwtAuthn { cache: true }, Load::TokenPool),
    v("b0", "jwt_authn RS256, no cache", Filter::JwtAuthn { cache: false }, Load::TokenPool),
    v(
        "b+",
        "native chain: header_mutation + jwt_authn (cached, claim_to_headers) + rbac + gRPC access log",
        Filter::NativeChain,
        Load::TokenPool,
    ),
    v("c", "no-op wasm filter", Filter::NoopWasm, Load::TokenPool),
    v("c2", "wasm filter: read headers, add 4", Filter::HeadersWasm, Load::TokenPool),
    v("d", "our filter, hit path", Filter::Ours, Load::TokenPool),
    v("d0", "our filter, hit path, audit off", Filter::OursNoAudit, Load::TokenPool),
    v("e", "our filter, miss path (new token each request)", Filter::Ours, Load::UniqueTokens),
    v("f", "native ext_authz to our sidecar (cached)", Filter::ExtAuthz, Load::TokenPool),
    v("g", "our filter, sidecar callout each request (API key)", Filter::Ours, Load::ApiKey),
    Variant {
        diagnostic: true,
        ..v("d1", "our filter, hit path, decision record without access log", Filter::OursRecordOnly, Load::TokenPool)
    },
    Variant {
        diagnostic: true,
        ..v("d-base", "our filter, hit path, the --baseline-wasm build", Filter::OursBaseline, Load::TokenPool)
    },
    Variant { diagnostic: true, ..v("c2-get", "wasm filter: read headers only", Filter::GetWasm, Load::TokenPool) },
    Variant { diagnostic: true, ..v("c2-add", "wasm filter: add 4 headers only", Filter::AddWasm, Load::TokenPool) },
];

const fn v(id: &'static str, name: &'static str, filter: Filter, load: Load) -> Variant {
    Variant { id, diagnostic: false, name, filter, load }
}

const FILTER_START: &str = "          - name: authz\n";
const ROUTER_START: &str = "          - name: envoy.filters.http.router\n";

const ACCESS_LOG_START: &str = "          access_log:\n";
const ROUTE_CONFIG_START: &str = "          route_config:\n";

/// `gateway` (the text of `envoy/gateway.yaml`) with our filter replaced by `block`, and
/// without the audit access log (which needs our sidecar; the baselines have no audit).
pub fn with_filter_block(gateway: &str, block: &str) -> anyhow::Result<String> {
    let gateway = without_access_log(gateway)?;
    let start = gateway.find(FILTER_START).ok_or_else(|| anyhow::anyhow!("no authz filter in the gateway template"))?;
    let end = gateway.find(ROUTER_START).ok_or_else(|| anyhow::anyhow!("no router in the gateway template"))?;
    anyhow::ensure!(start < end, "the authz filter must come before the router");
    Ok(format!("{}{block}{}", &gateway[..start], &gateway[end..]))
}

/// The filter settings a variant needs beyond `envoy/filter.json`.
pub fn filter_settings(filter: Filter) -> serde_json::Map<String, serde_json::Value> {
    let pairs: &[(&str, serde_json::Value)] = match filter {
        Filter::OursNoAudit => &[("audit", serde_json::Value::Bool(false))],
        _ => &[],
    };
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Every key [`filter_settings`] may set (cleared between variants).
pub const VARIANT_FILTER_KEYS: &[&str] = &["audit"];

/// `gateway` without its `access_log` block (if it has one).
pub fn without_access_log(gateway: &str) -> anyhow::Result<String> {
    let Some(start) = gateway.find(ACCESS_LOG_START) else { return Ok(gateway.to_string()) };
    let end = gateway.find(ROUTE_CONFIG_START).ok_or_else(|| anyhow::anyhow!("no route_config in the template"))?;
    anyhow::ensure!(start < end, "access_log must come before route_config");
    Ok(format!("{}{}", &gateway[..start], &gateway[end..]))
}

/// One `jwt_authn` provider (under `providers:`): RS256 keys inline, our issuer and audience,
/// `claims` (claim, header) copied to headers.
pub(crate) fn jwt_provider(name: &str, jwks_json: &str, claims: &[(&str, &str)], cache: bool, extra: &str) -> String {
    let mut out = format!(
        "                {name}:
                  issuer: ${{JWT_ISSUER}}
                  audiences: [${{JWT_AUDIENCE}}]
                  local_jwks: {{ inline_string: {jwks} }}
{extra}                  claim_to_headers:
",
        jwks = yaml_string(jwks_json),
    );
    for (claim, header) in claims {
        out.push_str(&format!("                  - {{ header_name: {header}, claim_name: {claim} }}\n"));
    }
    if cache {
        out.push_str("                  jwt_cache_config: { jwt_cache_size: 4096 }\n");
    }
    out
}

/// The `jwt_authn` filter: RS256 keys inline, the same issuer and audience as ours, `sub`
/// forwarded as `x-user-id` (what our filter does, minus everything else).
pub fn jwt_authn_block(jwks_json: &str, cache: bool) -> String {
    format!(
        "          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
{provider}              rules:
              - match: {{ prefix: /api }}
                requires: {{ provider_name: platform }}
",
        provider = jwt_provider("platform", jwks_json, &[("sub", "x-user-id")], cache, ""),
    )
}

/// `gateway` with our filter replaced by `block`, its access log kept.
pub(crate) fn with_filter_block_and_access_log(gateway: &str, block: &str) -> anyhow::Result<String> {
    let start = gateway.find(FILTER_START).ok_or_else(|| anyhow::anyhow!("no authz filter in the gateway template"))?;
    let end = gateway.find(ROUTER_START).ok_or_else(|| anyhow::anyhow!("no router in the gateway template"))?;
    anyhow::ensure!(start < end, "the authz filter must come before the router");
    Ok(format!("{}{block}{}", &gateway[..start], &gateway[end..]))
}

/// The no-op wasm filter, loaded exactly as ours is (same runtime, same failure policy);
/// `mode` is its configuration (empty, or `headers`).
pub fn noop_block(wasm: &Path, mode: &str) -> String {
    format!(
        "          - name: noop
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: noop
                root_id: noop
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: noop
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {} }} }}
                configuration:
                  \"@type\": type.googleapis.com/google.protobuf.StringValue
                  value: \"{mode}\"
",
        wasm.display()
    )
}

/// The stack mode and (for baselines) the template text of a filter choice.
pub fn envoy_setup(
    filter: Filter,
    gateway: &str,
    jwks_json: &str,
    noop_wasm: &Path,
) -> anyhow::Result<(Mode, Option<String>)> {
    Ok(match filter {
        Filter::None => (Mode::Custom, Some(with_filter_block(gateway, "")?)),
        Filter::JwtAuthn { cache } => {
            (Mode::Custom, Some(with_filter_block(gateway, &jwt_authn_block(jwks_json, cache))?))
        }
        Filter::NativeChain => (Mode::Custom, Some(crate::native_chain::template(gateway, jwks_json)?)),
        Filter::NoopWasm => (Mode::Custom, Some(with_filter_block(gateway, &noop_block(noop_wasm, ""))?)),
        Filter::GetWasm => (Mode::Custom, Some(with_filter_block(gateway, &noop_block(noop_wasm, "get"))?)),
        Filter::AddWasm => (Mode::Custom, Some(with_filter_block(gateway, &noop_block(noop_wasm, "add"))?)),
        Filter::HeadersWasm => (Mode::Custom, Some(with_filter_block(gateway, &noop_block(noop_wasm, "headers"))?)),
        Filter::Ours | Filter::OursBaseline => (Mode::Wasm, None),
        // Our filter as shipped, minus the access log; the harness also sets `audit: false`.
        Filter::OursNoAudit | Filter::OursRecordOnly => (Mode::Custom, Some(without_access_log(gateway)?)),
        Filter::ExtAuthz => (Mode::ExtAuthz, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_authz_filter() {
        let gateway = std::fs::read_to_string(authz_e2e::paths::workspace().join("envoy/gateway.yaml")).unwrap();
        let bare = with_filter_block(&gateway, "").unwrap();
        assert!(!bare.contains("envoy.wasm.runtime.v8"));
        assert!(bare.contains("envoy.filters.http.router"));
        assert_eq!(gateway.matches("path_separated_prefix").count(), bare.matches("path_separated_prefix").count());
        let jwt = with_filter_block(&gateway, &jwt_authn_block("{\"keys\":[]}", true)).unwrap();
        assert!(jwt.contains("jwt_cache_config") && jwt.contains("${JWT_ISSUER}"));
        assert!(!jwt_authn_block("{}", false).contains("jwt_cache_config"));
        assert_eq!(gateway.matches("envoy.access_loggers.http_grpc").count(), 1);
        assert!(!without_access_log(&gateway).unwrap().contains("access_log"));
    }
}
