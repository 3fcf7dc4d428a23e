//! What a compute request asks for: read from a GA4GH TES task body or from headers.
//!
//! Bad input is refused (400), never guessed at: a quota is only as good as the numbers it is
//! charged with, so a GPU count that does not parse must not become zero.

use authz_core::routes::ResourceSource;
use serde_json::Value;

/// Upper bound of any single amount, so sums in Redis can never overflow.
const MAX_AMOUNT: u64 = 1 << 32;

/// Requested resources. Memory is kept in MiB so fractional `ram_gb` values are charged exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    pub cpu_cores: u64,
    pub gpus: u64,
    pub memory_mb: u64,
}

/// How to read a TES task.
#[derive(Debug, Clone)]
pub struct TesFields {
    /// `resources.backend_parameters` key holding the GPU count.
    pub gpu_parameter: String,
    /// Cores charged when the task names none.
    pub default_cpu_cores: u32,
}

pub const HEADER_CPU: &str = "x-compute-cpu-cores";
pub const HEADER_GPUS: &str = "x-compute-gpus";
pub const HEADER_RAM_GB: &str = "x-compute-ram-gb";

/// Reads the resources of a request. The error is a short reason for the client.
pub fn read(
    source: ResourceSource,
    tes: &TesFields,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Resources, String> {
    match source {
        ResourceSource::Tes => from_tes(tes, body),
        ResourceSource::Headers => from_headers(headers),
    }
}

fn from_tes(tes: &TesFields, body: &[u8]) -> Result<Resources, String> {
    // Strictly: a key named twice could be read one way here and another by the TES server.
    let task = super::strict_json::parse(body).map_err(|e| format!("the body is not a JSON TES task: {e}"))?;
    let Value::Object(task) = task else { return Err("the body is not a JSON object".into()) };
    let resources = match task.get("resources") {
        None | Some(Value::Null) => {
            return Ok(Resources { cpu_cores: u64::from(tes.default_cpu_cores), ..Default::default() });
        }
        Some(Value::Object(r)) => r,
        Some(_) => return Err("`resources` is not an object".into()),
    };
    let cpu_cores = match resources.get("cpu_cores") {
        None | Some(Value::Null) => u64::from(tes.default_cpu_cores),
        Some(v) => whole(v, "resources.cpu_cores")?,
    };
    let memory_mb = match resources.get("ram_gb") {
        None | Some(Value::Null) => 0,
        Some(v) => gib_to_mib(v, "resources.ram_gb")?,
    };
    let gpus = match resources.get("backend_parameters") {
        None | Some(Value::Null) => 0,
        Some(Value::Object(params)) => match params.get(&tes.gpu_parameter) {
            None | Some(Value::Null) => 0,
            Some(v) => whole(v, "resources.backend_parameters.gpu")?,
        },
        Some(_) => return Err("`resources.backend_parameters` is not an object".into()),
    };
    Ok(Resources { cpu_cores, gpus, memory_mb })
}

fn from_headers(headers: &[(String, String)]) -> Result<Resources, String> {
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let cpu_cores = get(HEADER_CPU).map(|v| whole(&Value::String(v.into()), HEADER_CPU)).transpose()?.unwrap_or(1);
    let gpus = get(HEADER_GPUS).map(|v| whole(&Value::String(v.into()), HEADER_GPUS)).transpose()?.unwrap_or(0);
    let memory_mb =
        get(HEADER_RAM_GB).map(|v| gib_to_mib(&Value::String(v.into()), HEADER_RAM_GB)).transpose()?.unwrap_or(0);
    Ok(Resources { cpu_cores, gpus, memory_mb })
}

/// A whole, non-negative amount: a JSON integer or a string of digits (TES backend parameters
/// are strings).
fn whole(v: &Value, name: &str) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    n.filter(|n| *n <= MAX_AMOUNT).ok_or_else(|| format!("`{name}` must be a whole number between 0 and {MAX_AMOUNT}"))
}

/// GiB (a non-negative number, fractions allowed) to MiB, rounded up.
fn gib_to_mib(v: &Value, name: &str) -> Result<u64, String> {
    let gib = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    match gib {
        Some(g) if g.is_finite() && (0.0..=(MAX_AMOUNT as f64)).contains(&g) => {
            // In range by the check above, so the conversion cannot saturate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok((g * 1024.0).ceil() as u64)
        }
        _ => Err(format!("`{name}` must be a number of GiB between 0 and {MAX_AMOUNT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tes() -> TesFields {
        TesFields { gpu_parameter: "gpu".into(), default_cpu_cores: 1 }
    }

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn tes_task() {
        let task = serde_json::json!({"name": "x", "resources": {"cpu_cores": 4, "ram_gb": 1.5,
            "backend_parameters": {"gpu": "2"}}, "executors": []});
        assert_eq!(
            read(ResourceSource::Tes, &tes(), &[], &body(task)).unwrap(),
            Resources { cpu_cores: 4, gpus: 2, memory_mb: 1536 }
        );
        let bare = read(ResourceSource::Tes, &tes(), &[], br#"{"executors": []}"#).unwrap();
        assert_eq!(bare, Resources { cpu_cores: 1, gpus: 0, memory_mb: 0 });
        let numeric_gpu = serde_json::json!({"resources": {"backend_parameters": {"gpu": 1}}});
        assert_eq!(read(ResourceSource::Tes, &tes(), &[], &body(numeric_gpu)).unwrap().gpus, 1);
    }

    #[test]
    fn bad_tes_tasks_are_refused() {
        for bad in [
            &b""[..],
            b"[]",
            b"{not json",
            br#"{"resources": 3}"#,
            br#"{"resources": {"cpu_cores": -1}}"#,
            br#"{"resources": {"cpu_cores": 1.5}}"#,
            br#"{"resources": {"ram_gb": "lots"}}"#,
            br#"{"resources": {"ram_gb": -2}}"#,
            br#"{"resources": {"backend_parameters": {"gpu": "one"}}}"#,
            br#"{"resources": {"backend_parameters": {"gpu": "-1"}}}"#,
            br#"{"resources": {"backend_parameters": {"gpu": "99999999999999"}}}"#,
            br#"{"resources": {"backend_parameters": []}}"#,
        ] {
            assert!(read(ResourceSource::Tes, &tes(), &[], bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn headers() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            read(ResourceSource::Headers, &tes(), &h(&[(HEADER_GPUS, "3"), (HEADER_RAM_GB, "2")]), b"").unwrap(),
            Resources { cpu_cores: 1, gpus: 3, memory_mb: 2048 }
        );
        assert!(read(ResourceSource::Headers, &tes(), &h(&[(HEADER_GPUS, "x")]), b"").is_err());
    }
}
