//! The policy file's Rego modules, as OPA-Envoy users bring them.
//!
//! - **Syntax per module**: read as Rego v1 (what OPA 1.x reads); a module that is not v1 but
//!   is valid v0 (the syntax of most published material: `allow { ... }`, `deny[msg] { ... }`)
//!   is read as v0, as OPA before 1.0 read it. A module that imports `rego.v1` is v1 only.
//! - **Builtins**: every optional group of the engine that builds here (see the workspace's
//!   `regorus` features), plus `io.jwt.*` and `crypto.sha256` implemented over our own code
//!   (`jwt_builtins`).
//! - **Load-time checks**: a call to a function that is neither a builtin, ours, nor defined
//!   in the modules refuses the policy with the module, line and name, at start-up, in
//!   `validate` and on hot reload (the last good policy stays): otherwise every request on its
//!   route would be answered `policy_error`.

use std::collections::{BTreeMap, BTreeSet};

use regorus::Engine;
use serde_json::Value as Json;

#[path = "jwt_builtins.rs"]
mod jwt_builtins;

/// Engines holding the same modules, one per concurrent evaluation: an evaluation takes a free
/// one (no clone of the engine per request, measured at most of a decision's cost), and only
/// when all are busy clones one for itself.
pub struct Engines {
    pool: Vec<std::sync::Mutex<Engine>>,
    /// Cloned (under a brief lock) when every engine of the pool is busy.
    template: std::sync::Mutex<Engine>,
}

impl Engines {
    pub fn new(engine: Engine) -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let pool = (0..n).map(|_| std::sync::Mutex::new(engine.clone())).collect();
        Self { pool, template: std::sync::Mutex::new(engine) }
    }

    /// Runs `f` with an engine of its own.
    pub fn with<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T, String>) -> Result<T, String> {
        for slot in &self.pool {
            if let Ok(mut engine) = slot.try_lock() {
                return f(&mut engine);
            }
        }
        let mut engine = self.template.lock().map_err(|_| "rego engine poisoned")?.clone();
        f(&mut engine)
    }
}

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleError {
    pub module: String,
    pub reason: String,
}

/// The engine holding every module, each in its own syntax, with our builtins.
pub fn load(modules: &BTreeMap<String, String>) -> Result<Engine, ModuleError> {
    let mut engine = Engine::new();
    // A builtin that errs (a malformed argument) makes its expression undefined, as in OPA.
    engine.set_strict_builtin_errors(false);
    jwt_builtins::register(&mut engine)
        .map_err(|e| ModuleError { module: String::new(), reason: format!("registering builtins: {e}") })?;
    for (name, source) in modules {
        add_module(&mut engine, name, source).map_err(|reason| ModuleError { module: name.clone(), reason })?;
    }
    check_calls(&engine)?;
    Ok(engine)
}

/// A rule's decision: OPA-Envoy's boolean, or its object form (`allowed`, `headers`,
/// `response_headers_to_add`, `request_headers_to_remove`, `http_status`, `body`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegoDecision {
    pub allowed: bool,
    /// Allowed: added to the request to the upstream; denied: sent to the client.
    pub headers: Vec<(String, String)>,
    /// Allowed: added to the response to the client.
    pub response_headers: Vec<(String, String)>,
    /// Allowed: removed from the request to the upstream.
    pub remove: Vec<String>,
    /// Denied: the status (else 403) and the body (else the gateway's JSON denial).
    pub status: Option<u16>,
    pub body: Option<String>,
}

impl RegoDecision {
    /// The decision `value` makes; else the kind of value it is (`a string`, ...), for the
    /// load-time check and the evaluation error alike.
    pub fn of(value: &regorus::Value) -> Result<Self, String> {
        if *value == regorus::Value::Undefined {
            return Ok(Self::default());
        }
        let kind = |k: &str| Err(k.to_string());
        let o = match serde_json::to_value(value) {
            Ok(Json::Bool(allowed)) => return Ok(Self { allowed, ..Self::default() }),
            Ok(Json::Object(o)) => o,
            Ok(Json::String(_)) => return kind("a string"),
            Ok(Json::Number(_)) => return kind("a number"),
            Ok(Json::Array(_)) => return kind("an array or a set"),
            Ok(Json::Null) => return kind("null"),
            Err(_) => return kind("a value that is not JSON"),
        };
        let allowed = match o.get("allowed") {
            Some(Json::Bool(b)) => *b,
            Some(_) => return kind("an object whose `allowed` is not a boolean"),
            None => return kind("an object without `allowed`"),
        };
        // A header a policy sets must be one HTTP can carry (names lower-cased, values without
        // control characters); anything else is left out rather than sent broken.
        let pairs = |key: &str| -> Vec<(String, String)> {
            let Some(Json::Object(h)) = o.get(key) else { return Vec::new() };
            h.iter()
                .filter_map(|(k, v)| {
                    let value = match v {
                        Json::String(s) => s.clone(),
                        Json::Array(items) => items.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","),
                        other => other.to_string(),
                    };
                    let name = k.to_ascii_lowercase();
                    let token =
                        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                    (token && authz_core::headers::is_safe_value(&value, false)).then_some((name, value))
                })
                .collect()
        };
        let remove = o
            .get("request_headers_to_remove")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        let status = o.get("http_status").and_then(Json::as_u64).and_then(|s| u16::try_from(s).ok());
        Ok(Self {
            allowed,
            headers: pairs("headers"),
            response_headers: pairs("response_headers_to_add"),
            remove,
            status: status.filter(|s| (300..600).contains(s)),
            body: o.get("body").and_then(Json::as_str).map(str::to_string),
        })
    }
}

/// Which syntax a module is written in: `v1`, else `v0` when it parses as such.
fn add_module(engine: &mut Engine, name: &str, source: &str) -> Result<(), String> {
    engine.set_rego_v0(false);
    let v1 = match engine.add_policy(name.to_string(), source.to_string()) {
        Ok(_) => return Ok(()),
        Err(e) => e.to_string(),
    };
    let declares_v1 = source.lines().any(|l| l.trim() == "import rego.v1");
    let mut probe = Engine::new();
    probe.set_rego_v0(true);
    if declares_v1 || probe.add_policy(name.to_string(), source.to_string()).is_err() {
        return Err(v1);
    }
    engine.set_rego_v0(true);
    let added = engine.add_policy(name.to_string(), source.to_string()).map(|_| ()).map_err(|e| e.to_string());
    engine.set_rego_v0(false);
    added
}

/// The dotted path of a reference (`Var`, `RefDot`, `RefBrack` with a string), if it is one.
fn path_of(expr: &Json) -> Option<String> {
    if let Some(v) = expr.get("Var") {
        return v["value"].as_str().map(str::to_string);
    }
    if let Some(r) = expr.get("RefDot") {
        let field = r["field"].get(1)?.as_str()?;
        return Some(format!("{}.{field}", path_of(&r["refr"])?));
    }
    if let Some(r) = expr.get("RefBrack") {
        let index = r["index"].get("String")?["value"].as_str()?;
        return Some(format!("{}.{index}", path_of(&r["refr"])?));
    }
    None
}

/// Every `Call` under `node`: the called path and its line.
fn calls(node: &Json, out: &mut Vec<(String, u64)>) {
    match node {
        Json::Object(map) => {
            if let Some(call) = map.get("Call")
                && let Some(name) = path_of(&call["fcn"])
            {
                out.push((name, call["span"]["line"].as_u64().unwrap_or(0)));
            }
            for v in map.values() {
                calls(v, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| calls(v, out)),
        _ => {}
    }
}

/// Refuses a call that nothing defines.
fn check_calls(engine: &Engine) -> Result<(), ModuleError> {
    let ast: Json = engine
        .get_ast_as_json()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| ModuleError { module: String::new(), reason: "the modules cannot be inspected".into() })?;
    let modules = ast.as_array().cloned().unwrap_or_default();
    // Functions the modules define, by full path.
    let mut defined = BTreeSet::new();
    for m in &modules {
        let package = path_of(&m["ast"]["package"]["refr"]).unwrap_or_default();
        for rule in m["ast"]["rules"].as_array().into_iter().flatten() {
            let head = &rule["Spec"]["head"];
            if let Some(name) = head.get("Func").and_then(|f| path_of(&f["refr"])) {
                defined.insert(format!("data.{package}.{name}"));
            }
        }
    }
    let builtins = regorus::unstable::BUILTINS.keys().copied().collect::<BTreeSet<&str>>();
    for m in &modules {
        let file = m["source"]["file"].as_str().unwrap_or("").to_string();
        let package = path_of(&m["ast"]["package"]["refr"]).unwrap_or_default();
        let aliases: BTreeSet<String> = m["ast"]["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| match i["as"].as_str() {
                Some(alias) => Some(alias.to_string()),
                None => path_of(&i["refr"]).and_then(|p| p.rsplit('.').next().map(str::to_string)),
            })
            .collect();
        let mut found = Vec::new();
        calls(&m["ast"]["rules"], &mut found);
        for (name, line) in found {
            let known = name == "print"
                || builtins.contains(name.as_str())
                || jwt_builtins::NAMES.iter().any(|(n, _)| *n == name)
                || defined.contains(&name)
                || defined.contains(&format!("data.{package}.{name}"))
                // Through an import (`import data.lib` then `lib.f(x)`): resolved by the engine.
                || name.split('.').next().is_some_and(|first| aliases.contains(first));
            if !known {
                return Err(ModuleError { module: file, reason: format!("line {line}: unknown function {name}") });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(source: &str) -> Result<Engine, ModuleError> {
        load(&BTreeMap::from([("m.rego".to_string(), source.to_string())]))
    }

    #[test]
    fn v1_and_v0_modules_are_both_read_each_in_its_own_syntax() {
        let v1 = "package a\nimport rego.v1\ndefault allow := false\nallow if input.x == 1\n";
        let v0 =
            "package b\ndefault allow = false\nallow { input.x == 1 }\ndeny[msg] { msg := \"no\"; input.x == 2 }\n";
        let mut e = load(&BTreeMap::from([("a.rego".into(), v1.into()), ("b.rego".into(), v0.into())])).unwrap();
        e.set_input(regorus::Value::from(serde_json::json!({"x": 1})));
        assert_eq!(e.eval_rule("data.a.allow".into()).unwrap(), regorus::Value::from(true));
        assert_eq!(e.eval_rule("data.b.allow".into()).unwrap(), regorus::Value::from(true));
        // A module that says it is v1 is held to it.
        let err = one("package c\nimport rego.v1\nallow { true }\n").unwrap_err();
        assert_eq!(err.module, "m.rego");
    }

    #[test]
    fn a_call_to_a_function_nothing_defines_is_refused_with_its_line() {
        let err = one("package a\nallow if {\n  input.x == 1\n  nosuch.fn(input.y)\n}\n").unwrap_err();
        assert_eq!(err, ModuleError { module: "m.rego".into(), reason: "line 4: unknown function nosuch.fn".into() });
        // Builtins of every group, ours, and the module's own functions are known.
        let ok = "package a\nf(x) := x + 1\nallow if {\n  f(1) == 2\n  regex.match(\"^a\", \"ab\")\n  \
                  net.cidr_contains(\"10.0.0.0/8\", \"10.1.2.3\")\n  time.now_ns() > 0\n  glob.match(\"a.*\", [\".\"], \"a.b\")\n  \
                  urlquery.encode(\"a b\") == \"a+b\"\n  base64.encode(\"x\") != \"\"\n  count(io.jwt.decode(input.t)) == 3\n  \
                  crypto.sha256(\"\") != \"\"\n  data.a.f(2) == 3\n  print(\"x\")\n}\n";
        one(ok).unwrap();
        // http.send would answer undefined here: refused instead.
        assert!(one("package a\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"})\n").is_err());
    }
}
