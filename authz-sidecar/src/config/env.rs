//! The environment on top of the file: the platform's variables (`IAM_URL`, `REDIS_URL`,
//! `REDIS_PASSWORD`, `JWT_SECRET`, ...) and the secrets that are only ever read from the environment or from a
//! file it names.

use super::{Config, ConfigError, LogFormat};

/// A secret from `NAME`, or from the file that `NAME_FILE` names (a mounted Kubernetes
/// Secret, which keeps it out of the process environment); both at once is refused.
fn secret_from_env(env: &dyn Env, name: &str, file_var: &'static str) -> Result<Option<String>, ConfigError> {
    let direct = env.var(name);
    let Some(path) = env.var(file_var) else { return Ok(direct) };
    if direct.is_some() {
        return Err(ConfigError::Invalid { field: file_var, reason: format!("{name} is set too; use one") });
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::Invalid { field: file_var, reason: format!("cannot read {path}: {e}") })?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
}

/// The HMAC secret as bytes: from `JWT_SECRET_FILE` the file's bytes (a text file's trailing
/// newline dropped), from `JWT_SECRET` the value's bytes; either may be written
/// `base64:<standard base64>` for a secret that is not text. A value that cannot be used is an
/// error naming the variable, never ignored.
fn hmac_secret(env: &dyn Env) -> Result<Option<Vec<u8>>, ConfigError> {
    let direct = env.var_raw("JWT_SECRET");
    let (field, raw) = match (direct, env.var("JWT_SECRET_FILE")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "JWT_SECRET_FILE",
                reason: "JWT_SECRET is set too; use one".into(),
            });
        }
        (Some(v), None) => ("JWT_SECRET", v),
        (None, Some(path)) => {
            let bytes = std::fs::read(&path).map_err(|e| ConfigError::Invalid {
                field: "JWT_SECRET_FILE",
                reason: format!("cannot read {path}: {e}"),
            })?;
            // Text (a secret written with `echo`) loses its line end; other bytes are kept exactly.
            let bytes = match std::str::from_utf8(&bytes) {
                Ok(text) => text.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
                Err(_) => bytes,
            };
            ("JWT_SECRET_FILE", bytes)
        }
        (None, None) => return Ok(None),
    };
    let Some(encoded) = raw.strip_prefix(b"base64:") else { return Ok(Some(raw)) };
    use base64::Engine as _;
    let text = std::str::from_utf8(encoded)
        .map_err(|_| ConfigError::Invalid { field, reason: "the base64: value is not text".into() })?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Some)
        .map_err(|e| ConfigError::Invalid { field, reason: format!("the base64: value does not decode ({e})") })
}

/// Every seed URL of `redis_url` with `password` in it (percent-encoded, as the redis crate
/// decodes it), so the URL itself never has to carry a Secret. A URL that already names a
/// password is refused rather than one of the two silently winning.
fn with_redis_password(redis_url: &str, password: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { field: "REDIS_PASSWORD", reason };
    let mut out = Vec::new();
    for seed in crate::backend::redis_conn::seeds(redis_url) {
        let mut url = reqwest::Url::parse(seed)
            .map_err(|e| invalid(format!("the Redis URL {} does not parse ({e})", super::redact_url(seed))))?;
        if url.password().is_some() {
            return Err(invalid(format!("the Redis URL {} carries a password too; use one", super::redact_url(seed))));
        }
        url.set_password(Some(password))
            .map_err(|()| invalid(format!("the Redis URL {seed} has no host to authenticate to")))?;
        out.push(url.to_string());
    }
    Ok(out.join(","))
}

/// Environment variables read on top of the file. Passed in (not read here) so tests are pure.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// The value's bytes, also when it is not UTF-8 (a secret); empty is unset.
    fn var_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.var(name).map(String::into_bytes)
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn var_raw(&self, name: &str) -> Option<Vec<u8>> {
        std::env::var_os(name).map(std::ffi::OsString::into_encoded_bytes).filter(|v| !v.is_empty())
    }
}

impl Config {
    pub(super) fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        if let Some(v) = env.var("IAM_URL") {
            self.iam_url = v;
        }
        if let Some(v) = env.var("REDIS_URL") {
            self.redis_url = v;
        }
        if let Some(password) = secret_from_env(env, "REDIS_PASSWORD", "REDIS_PASSWORD_FILE")? {
            self.redis_url = with_redis_password(&self.redis_url, &password)?;
        }
        if let Some(v) = env.var("REDIS_CLUSTER") {
            self.redis_cluster = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(ConfigError::Invalid {
                        field: "REDIS_CLUSTER",
                        reason: format!("{other:?} is not true or false"),
                    });
                }
            };
        }
        // HMAC secret and gRPC token, each from the environment or a file it names.
        if let Some(v) = hmac_secret(env)? {
            self.jwt_secret = Some(v);
        }
        self.grpc_token = secret_from_env(env, "SIDECAR_GRPC_TOKEN", "SIDECAR_GRPC_TOKEN_FILE")?;
        if let Some(v) = env.var("AUTHZ_GRPC_LISTEN") {
            self.grpc_listen =
                v.parse().map_err(|reason| ConfigError::Invalid { field: "AUTHZ_GRPC_LISTEN", reason })?;
        }
        if let Some(v) = env.var("AUTHZ_ADMIN_LISTEN") {
            self.admin_listen =
                v.parse().map_err(|e| ConfigError::Invalid { field: "AUTHZ_ADMIN_LISTEN", reason: format!("{e}") })?;
        }
        if let Some(v) = env.var("AUTHZ_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError::Invalid {
                        field: "AUTHZ_LOG_FORMAT",
                        reason: format!("{other:?} is not text or json"),
                    });
                }
            };
        }
        Ok(())
    }
}
