//! RBAC/ABAC requirements of a route, judged against an authenticated identity with no I/O:
//! roles (any of / all of), scopes, claim conditions, path segments bound to claims (tenant and
//! lab isolation), service-only routes, and the token's own `endpoint_permissions`.
//!
//! Refusals are 403 with a stable code that says which requirement failed and never echoes a
//! claim value.

use crate::denial::codes;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::denial::Denial;
use crate::identity::Identity;
use crate::template::PathTemplate;

/// A condition on one claim: exactly one of `equals`, `oneOf`, `contains`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimCondition {
    pub claim: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// The claim is a list (or a string) containing this value.
    #[serde(default)]
    pub contains: Option<Value>,
}

impl ClaimCondition {
    pub fn validate(&self) -> Result<(), String> {
        let n = usize::from(self.equals.is_some())
            + usize::from(self.one_of.is_some())
            + usize::from(self.contains.is_some());
        if n != 1 {
            return Err(format!("claim condition on {:?} needs exactly one of equals, oneOf, contains", self.claim));
        }
        Ok(())
    }

    fn holds(&self, id: &Identity) -> bool {
        let Some(v) = id.claim(&self.claim) else { return false };
        if let Some(e) = &self.equals {
            return *v == *e;
        }
        if let Some(list) = &self.one_of {
            return list.contains(&v);
        }
        if let Some(c) = &self.contains {
            return match &*v {
                Value::Array(items) => items.contains(c),
                Value::String(s) => c.as_str().is_some_and(|c| s.split_ascii_whitespace().any(|x| x == c)),
                _ => false,
            };
        }
        false
    }
}

/// What a route requires of the identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    pub roles_any_of: Vec<String>,
    pub roles_all_of: Vec<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<ClaimCondition>,
    /// Path parameter → claim that must contain (or equal) its value.
    pub bind: BTreeMap<String, String>,
    pub service_only: bool,
}

impl Requirements {
    /// Checks `id`; `params` are the route template's captures.
    pub fn check(&self, id: &Identity, params: &[(&str, &str)]) -> Result<(), Denial> {
        if self.service_only && id.service.is_none() {
            return Err(Denial::forbidden(codes::SERVICE_ONLY, "this route is for services only"));
        }
        if !self.roles_any_of.is_empty() && !self.roles_any_of.iter().any(|r| id.roles.contains(r)) {
            return Err(Denial::forbidden(codes::MISSING_ROLE, "a required role is missing"));
        }
        if !self.roles_all_of.iter().all(|r| id.roles.contains(r)) {
            return Err(Denial::forbidden(codes::MISSING_ROLE, "a required role is missing"));
        }
        if !self.scopes.iter().all(|s| id.scopes.contains(s)) {
            return Err(Denial::forbidden(codes::MISSING_SCOPE, "a required scope is missing"));
        }
        if !self.claims.iter().all(|c| c.holds(id)) {
            return Err(Denial::forbidden(codes::CLAIM_MISMATCH, "a required claim condition is not met"));
        }
        for (param, claim) in &self.bind {
            let Some((_, value)) = params.iter().find(|(name, _)| name == param) else {
                return Err(Denial::forbidden(codes::TENANT_MISMATCH, "the resource is outside the caller's tenancy"));
            };
            let allowed = match id.claim(claim).as_deref() {
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
                Some(Value::String(s)) => s == value,
                _ => false,
            };
            if !allowed {
                return Err(Denial::forbidden(codes::TENANT_MISMATCH, "the resource is outside the caller's tenancy"));
            }
        }
        Ok(())
    }
}

/// A token that lists `endpoint_permissions` may only call matching paths (patterns are path
/// templates, e.g. `/api/tools/**`). Tokens without the claim are not restricted by it.
pub fn check_endpoint_permissions(id: &Identity, path: &str) -> Result<(), Denial> {
    let Some(patterns) = &id.endpoint_permissions else { return Ok(()) };
    let allowed = patterns.iter().any(|p| PathTemplate::parse(p).is_ok_and(|t| t.captures(path).is_some()));
    if allowed {
        Ok(())
    } else {
        Err(Denial::forbidden(codes::ENDPOINT_NOT_PERMITTED, "this token may not call this endpoint"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    fn identity(json: serde_json::Value) -> Identity {
        let mut c: Claims = serde_json::from_value(json).unwrap();
        c.exp = Some(10);
        Identity::from_claims(c).unwrap()
    }

    fn reqs(json: serde_json::Value) -> Requirements {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct R {
            #[serde(default)]
            roles_any_of: Vec<String>,
            #[serde(default)]
            roles_all_of: Vec<String>,
            #[serde(default)]
            scopes: Vec<String>,
            #[serde(default)]
            claims: Vec<ClaimCondition>,
            #[serde(default)]
            bind: BTreeMap<String, String>,
            #[serde(default)]
            service_only: bool,
        }
        let r: R = serde_json::from_value(json).unwrap();
        Requirements {
            roles_any_of: r.roles_any_of,
            roles_all_of: r.roles_all_of,
            scopes: r.scopes,
            claims: r.claims,
            bind: r.bind,
            service_only: r.service_only,
        }
    }

    #[test]
    fn every_requirement_kind() {
        use serde_json::json;
        let alice = identity(json!({
            "sub": "alice", "roles": ["user", "lab-admin"], "scope": "tasks:read tasks:write",
            "labs": ["l1", "l2"], "tenant": "t1", "tier": "gold", "groups": ["bio", "chem"]
        }));
        let svc = identity(json!({"sub": "svc-tes", "svc": "tes"}));
        type Case<'a> = (&'a str, serde_json::Value, &'a Identity, &'a [(&'a str, &'a str)], &'a str);
        let cases: Vec<Case> = vec![
            ("no requirements", json!({}), &alice, &[], "ok"),
            ("any of, one held", json!({"rolesAnyOf": ["admin", "lab-admin"]}), &alice, &[], "ok"),
            ("any of, none held", json!({"rolesAnyOf": ["admin"]}), &alice, &[], "missing_role"),
            ("all of, all held", json!({"rolesAllOf": ["user", "lab-admin"]}), &alice, &[], "ok"),
            ("all of, one missing", json!({"rolesAllOf": ["user", "admin"]}), &alice, &[], "missing_role"),
            ("scopes held", json!({"scopes": ["tasks:write"]}), &alice, &[], "ok"),
            ("scope missing", json!({"scopes": ["tasks:delete"]}), &alice, &[], "missing_scope"),
            ("equals", json!({"claims": [{"claim": "tier", "equals": "gold"}]}), &alice, &[], "ok"),
            (
                "equals, other value",
                json!({"claims": [{"claim": "tier", "equals": "silver"}]}),
                &alice,
                &[],
                "claim_mismatch",
            ),
            ("one of", json!({"claims": [{"claim": "tenant", "oneOf": ["t1", "t2"]}]}), &alice, &[], "ok"),
            ("one of, absent", json!({"claims": [{"claim": "nope", "oneOf": ["t1"]}]}), &alice, &[], "claim_mismatch"),
            ("contains", json!({"claims": [{"claim": "groups", "contains": "bio"}]}), &alice, &[], "ok"),
            (
                "contains, missing",
                json!({"claims": [{"claim": "groups", "contains": "phys"}]}),
                &alice,
                &[],
                "claim_mismatch",
            ),
            ("bind, own lab", json!({"bind": {"lab": "labs"}}), &alice, &[("lab", "l2")], "ok"),
            ("bind, other lab", json!({"bind": {"lab": "labs"}}), &alice, &[("lab", "l9")], "tenant_mismatch"),
            ("bind, string claim", json!({"bind": {"t": "tenant"}}), &alice, &[("t", "t1")], "ok"),
            ("bind, claim absent", json!({"bind": {"lab": "nolabs"}}), &alice, &[("lab", "l1")], "tenant_mismatch"),
            ("service only, user", json!({"serviceOnly": true}), &alice, &[], "service_only"),
            ("service only, service", json!({"serviceOnly": true}), &svc, &[], "ok"),
        ];
        for (name, r, who, params, want) in cases {
            let got = reqs(r).check(who, params).err().map_or("ok", |d| d.code);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn endpoint_permissions_restrict_only_tokens_that_carry_them() {
        use serde_json::json;
        let limited = identity(json!({"sub": "k", "endpoint_permissions": ["/api/tools/**", "/api/rag/query"]}));
        let free = identity(json!({"sub": "u"}));
        assert!(check_endpoint_permissions(&limited, "/api/tools/run/1").is_ok());
        assert!(check_endpoint_permissions(&limited, "/api/rag/query").is_ok());
        assert_eq!(check_endpoint_permissions(&limited, "/api/rag/ingest").unwrap_err().code, "endpoint_not_permitted");
        assert_eq!(check_endpoint_permissions(&limited, "/api/lims").unwrap_err().status, 403);
        assert!(check_endpoint_permissions(&free, "/anything").is_ok());
    }

    #[test]
    fn conditions_need_exactly_one_operator() {
        let c = |v: serde_json::Value| serde_json::from_value::<ClaimCondition>(v).unwrap().validate();
        assert!(c(serde_json::json!({"claim": "a", "equals": 1})).is_ok());
        assert!(c(serde_json::json!({"claim": "a"})).is_err());
        assert!(c(serde_json::json!({"claim": "a", "equals": 1, "contains": 2})).is_err());
    }
}
