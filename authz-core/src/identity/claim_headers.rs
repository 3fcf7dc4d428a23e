//! `claimToHeaders`: claims projected onto request headers for the upstream, beyond the fixed
//! identity headers. A value that is not a string, number, boolean or list of strings, or that
//! holds a control character, a comma inside a list item, or is over 1024 bytes, is not sent
//! (the header is left out, never filled with a partial value). Every mapped name is stripped
//! from client requests (`SharedSettings::strip_rules`), so a client cannot supply it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Identity;
use crate::headers::is_safe_value;

/// One mapping: the claim's value goes in `header`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

/// Names a mapping may not use: the request's framing and routing, the credential headers,
/// and the gateway's own identity headers.
const RESERVED: &[&str] = &[
    "authorization",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "te",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-api-key",
    "x-action-token",
    "x-trace-id",
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-internal-service",
    "x-quota-lease",
];

impl ClaimHeader {
    /// A configuration error: the header name must be a lower-case token that is not reserved.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.header;
        let token = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !token {
            return Err(format!("header {name:?} must be lower-case letters, digits and '-'"));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(format!("header {name:?} is reserved"));
        }
        if self.claim.is_empty() {
            return Err(format!("header {name:?} names no claim"));
        }
        Ok(())
    }

    /// The header value for `id`, if the claim has a value that may be sent.
    pub fn value(&self, id: &Identity) -> Option<String> {
        let text = match id.claim(&self.claim)?.into_owned() {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => {
                let parts: Option<Vec<&str>> =
                    items.iter().map(|i| i.as_str().filter(|s| is_safe_value(s, true))).collect();
                parts?.join(",")
            }
            Value::Null | Value::Object(_) => return None,
        };
        is_safe_value(&text, false).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    fn id(extra: serde_json::Value) -> Identity {
        let mut c: Claims = serde_json::from_value(serde_json::json!({"sub": "u", "exp": 10})).unwrap();
        if let serde_json::Value::Object(m) = extra {
            c.extra.extend(m);
        }
        Identity::from_claims(c).unwrap()
    }

    #[test]
    fn values_that_may_be_sent_and_those_that_may_not() {
        let m = |claim: &str| ClaimHeader { claim: claim.into(), header: "x-claim".into() };
        let who = id(serde_json::json!({
            "lab": "l1", "level": 3, "staff": true, "groups": ["a", "b"], "bad": "x\ny",
            "long": "a".repeat(1025), "nested": {"k": 1}, "mixed": ["a", 1], "comma": ["a,b"],
        }));
        let cases = [
            ("lab", Some("l1")),
            ("level", Some("3")),
            ("staff", Some("true")),
            ("groups", Some("a,b")),
            ("sub", Some("u")),
            ("bad", None),
            ("long", None),
            ("nested", None),
            ("mixed", None),
            ("comma", None),
            ("absent", None),
        ];
        for (claim, want) in cases {
            assert_eq!(m(claim).value(&who).as_deref(), want, "{claim}");
        }
    }

    #[test]
    fn names_are_checked() {
        let h = |header: &str| ClaimHeader { claim: "c".into(), header: header.into() };
        assert!(h("x-user-lab").validate().is_ok());
        for bad in ["X-Lab", "x_lab", "", "-x", "authorization", "x-user-id", "host", "x lab"] {
            assert!(h(bad).validate().is_err(), "{bad}");
        }
    }
}
