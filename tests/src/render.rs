//! Fills `${NAME}` placeholders in the Envoy templates under `envoy/`.
//!
//! Deliberately strict: a placeholder without a value is an error, so a forgotten variable
//! never reaches Envoy as literal text. Envoy's own `%REQ(...)%` syntax is left alone.

use std::collections::BTreeMap;

/// Replaces every `${NAME}` (NAME = `[A-Z0-9_]+`) with `vars[NAME]`.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end =
            after.find('}').ok_or_else(|| anyhow::anyhow!("unterminated placeholder near {:?}", &rest[start..]))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            anyhow::bail!("bad placeholder name {name:?}");
        }
        let value = vars.get(name).ok_or_else(|| anyhow::anyhow!("no value for placeholder ${{{name}}}"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A string as a YAML double-quoted scalar (JSON string syntax is valid YAML).
pub fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_refuses_missing() {
        let vars = BTreeMap::from([("A", "1".to_string()), ("B_2", "x".to_string())]);
        assert_eq!(render("a=${A} b=${B_2} %REQ(x)%", &vars).unwrap(), "a=1 b=x %REQ(x)%");
        assert!(render("${C}", &vars).is_err());
        assert!(render("${a}", &vars).is_err());
        assert!(render("${A", &vars).is_err());
        assert_eq!(yaml_string("{\"k\": \"v\"}"), "\"{\\\"k\\\": \\\"v\\\"}\"");
    }
}
