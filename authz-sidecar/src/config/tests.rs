//! Configuration parsing, environment overrides and validation errors.

use std::collections::HashMap;

use super::*;

struct MapEnv(HashMap<&'static str, &'static str>);
impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}

fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
    MapEnv(pairs.iter().copied().collect())
}

#[test]
fn env_overrides_file_and_secret_is_redacted() {
    let yaml = "iamUrl: http://file\nredisUrl: redis://file:6379\njwt:\n  clockSkew: 30s\n";
    let cfg = Config::from_yaml(
        yaml,
        "t",
        &env(&[
            ("IAM_URL", "http://env:8000"),
            ("JWT_SECRET", "0123456789abcdef-secret"),
            ("REDIS_URL", "redis://:pw@r:6379"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.iam_url, "http://env:8000");
    assert_eq!(cfg.jwt.clock_skew, Duration::from_secs(30));
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("0123456789abcdef-secret"), "{dbg}");
    assert!(!dbg.contains(":pw@"), "{dbg}");
}

#[test]
fn redis_password_goes_into_every_seed_and_never_into_logs() {
    let file = std::env::temp_dir().join(format!("authz-redis-password-{}", std::process::id()));
    std::fs::write(&file, "p@ss/wörd:1\n").unwrap();
    let path: &'static str = Box::leak(file.display().to_string().into_boxed_str());
    let yaml = "iamUrl: http://a\nredisUrl: redis://r1:6379/0\n";
    let cfg = Config::from_yaml(yaml, "t", &env(&[("REDIS_PASSWORD_FILE", path)])).unwrap();
    let info = redis::IntoConnectionInfo::into_connection_info(cfg.redis_url.as_str()).unwrap();
    assert_eq!(info.redis_settings().password(), Some("p@ss/wörd:1"), "{}", cfg.redacted_redis_url());
    assert!(!format!("{cfg:?}").contains("p%40ss"), "{cfg:?}");
    // A cluster's seeds all get it; the environment's REDIS_URL is the one amended.
    let cfg = Config::from_yaml(
        yaml,
        "t",
        &env(&[("REDIS_URL", "redis://a:1,redis://b:2"), ("REDIS_CLUSTER", "true"), ("REDIS_PASSWORD", "pw")]),
    )
    .unwrap();
    assert_eq!(cfg.redis_url, "redis://:pw@a:1,redis://:pw@b:2");
    // Two passwords, both ways of giving one, or no host: refused, without the secret.
    for (pairs, reason) in [
        (vec![("REDIS_URL", "redis://:other@r:1"), ("REDIS_PASSWORD", "pw")], "carries a password too"),
        (vec![("REDIS_PASSWORD", "pw"), ("REDIS_PASSWORD_FILE", path)], "REDIS_PASSWORD is set too"),
        (vec![("REDIS_URL", "redis+unix:///run/redis.sock"), ("REDIS_PASSWORD", "pw")], "no host"),
    ] {
        let err = Config::from_yaml(yaml, "t", &env(&pairs)).unwrap_err().to_string();
        assert!(err.contains(reason) && !err.contains("other"), "{pairs:?}: {err}");
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn errors_name_the_field() {
    let base = "iamUrl: http://a\nredisUrl: redis://r\n";
    let cases = [
        (format!("{base}bogus: 1\n"), "bogus"),
        (format!("{base}jwt:\n  clockSkew: soon\n"), "clockSkew"),
        ("redisUrl: redis://r\n".to_string(), "iamUrl"),
        ("iamUrl: ftp://a\nredisUrl: redis://r\n".to_string(), "iamUrl"),
        ("iamUrl: http://a\n".to_string(), "redisUrl"),
        (format!("{base}publicPaths: [health]\n"), "publicPaths"),
        (format!("{base}log:\n  format: xml\n"), "format"),
        (format!("{base}routes: []\n"), "routes"),
        (format!("{base}jwt:\n  hmacAlgorithms: [RS256]\n"), "hmacAlgorithms"),
    ];
    for (yaml, field) in cases {
        let err = Config::from_yaml(&yaml, "t", &env(&[])).unwrap_err().to_string();
        assert!(err.contains(field), "{yaml}: {err}");
    }
    let err = Config::from_yaml(base, "t", &env(&[("JWT_SECRET", "short")])).unwrap_err().to_string();
    assert!(err.contains("JWT_SECRET") && !err.contains("short"), "{err}");
}

#[test]
fn secret_from_a_file() {
    let base = "iamUrl: http://i\nredisUrl: redis://r:6379\n";
    let dir = std::env::temp_dir().join(format!("authz-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("JWT_SECRET");
    std::fs::write(&file, "0123456789abcdef-from-file\n").unwrap();
    let path: &'static str = Box::leak(file.display().to_string().into_boxed_str());
    let cfg = Config::from_yaml(base, "t", &env(&[("JWT_SECRET_FILE", path)])).unwrap();
    assert_eq!(cfg.jwt_secret.as_deref(), Some(&b"0123456789abcdef-from-file"[..]));
    let both = &env(&[("JWT_SECRET_FILE", path), ("JWT_SECRET", "0123456789abcdef-env")]);
    assert!(Config::from_yaml(base, "t", both).unwrap_err().to_string().contains("JWT_SECRET_FILE"));
    let missing = Config::from_yaml(base, "t", &env(&[("JWT_SECRET_FILE", "/nonexistent/secret")]));
    assert!(missing.unwrap_err().to_string().contains("JWT_SECRET_FILE"));
    // Random bytes: kept exactly, a trailing 0x0a included.
    let raw: Vec<u8> = (0u8..31).map(|i| i.wrapping_mul(151) ^ 0x80).chain([b'\n']).collect();
    std::fs::write(&file, &raw).unwrap();
    let cfg = Config::from_yaml(base, "t", &env(&[("JWT_SECRET_FILE", path)])).unwrap();
    assert_eq!(cfg.jwt_secret.as_deref(), Some(raw.as_slice()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_as_bytes_from_the_environment() {
    let base = "iamUrl: http://i\nredisUrl: redis://r:6379\n";
    // `base64:` for a secret that is not text (here 32 bytes 0x00..0x1f).
    let b64 = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let cfg = Config::from_yaml(base, "t", &env(&[("JWT_SECRET", b64)])).unwrap();
    assert_eq!(cfg.jwt_secret, Some((0u8..32).collect::<Vec<_>>()));
    let err = Config::from_yaml(base, "t", &env(&[("JWT_SECRET", "base64:not base64!")])).unwrap_err().to_string();
    assert!(err.contains("JWT_SECRET") && err.contains("base64"), "{err}");
    let short = Config::from_yaml(base, "t", &env(&[("JWT_SECRET", "base64:AAEC")])).unwrap_err().to_string();
    assert!(short.contains("at least 16 bytes"), "{short}");
    // Bytes that are not UTF-8 in the variable itself are used, not dropped.
    struct Raw;
    impl Env for Raw {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn var_raw(&self, name: &str) -> Option<Vec<u8>> {
            (name == "JWT_SECRET").then(|| vec![0xff; 24])
        }
    }
    let cfg = Config::from_yaml(base, "t", &Raw).unwrap();
    assert_eq!(cfg.jwt_secret, Some(vec![0xff; 24]));
}

#[test]
fn the_documented_example_parses() {
    let text = include_str!("../../config.example.yaml");
    let cfg = Config::from_yaml(text, "config.example.yaml", &env(&[])).unwrap();
    assert!(cfg.policy_file.is_some());
    assert_eq!(cfg.grpc_listen.0[0], crate::serve::listen::Listen::Unix("/run/authz/sidecar.sock".into()));
    assert_eq!(cfg.grpc_listen.0[1].port(), Some(9191));
    assert_eq!(cfg.admin_listen.port(), 9192);
    assert_eq!(cfg.jwks.min_refresh_interval, Duration::from_secs(10));
}

#[test]
fn loopback_by_default_and_a_token_off_it() {
    let base = "iamUrl: http://i\nredisUrl: redis://r:6379\n";
    let cfg = Config::from_yaml(base, "t", &env(&[])).unwrap();
    assert_eq!(cfg.grpc_listen.0[0].to_string(), "127.0.0.1:9191");
    assert!(cfg.admin_listen.ip().is_loopback());
    let open = format!("{base}grpcListen: 0.0.0.0:9191\n");
    let err = Config::from_yaml(&open, "t", &env(&[])).unwrap_err().to_string();
    assert!(err.contains("grpcListen") && err.contains("SIDECAR_GRPC_TOKEN"), "{err}");
    let token = "0123456789abcdef0123456789abcdef";
    let cfg = Config::from_yaml(&open, "t", &env(&[("SIDECAR_GRPC_TOKEN", token)])).unwrap();
    assert_eq!(cfg.grpc_token.as_deref(), Some(token));
    assert!(!format!("{cfg:?}").contains(token));
    let short = Config::from_yaml(&open, "t", &env(&[("SIDECAR_GRPC_TOKEN", "short")]));
    assert!(short.unwrap_err().to_string().contains("SIDECAR_GRPC_TOKEN"));
}

#[test]
fn redacts_urls() {
    assert_eq!(redact_url("redis://:pw@host:6379/0"), "redis://:***@host:6379/0");
    assert_eq!(redact_url("redis://u:pw@host"), "redis://u:***@host");
    assert_eq!(redact_url("redis://host"), "redis://host");
}

#[test]
fn one_key_source_at_most() {
    let base = "iamUrl: http://i\nredisUrl: redis://r:6379\n";
    let cfg = Config::from_yaml(base, "t", &env(&[])).unwrap();
    assert_eq!(cfg.key_source(), crate::credentials::keystore::KeySource::Url("http://i/.well-known/jwks.json".into()));
    let two = format!("{base}jwks:\n  url: https://a/keys\n  file: /k.json\n");
    assert!(Config::from_yaml(&two, "t", &env(&[])).unwrap_err().to_string().contains("at most one"));
    let bad = format!("{base}jwks:\n  discovery: idp.example\n");
    assert!(Config::from_yaml(&bad, "t", &env(&[])).unwrap_err().to_string().contains("`jwks`: discovery must be"));
    let broken = format!("{base}jwks:\n  inline: {{keys: [{{kty: oct, alg: RS256, k: c2VjcmV0}}]}}\n");
    assert!(Config::from_yaml(&broken, "t", &env(&[])).unwrap_err().to_string().contains("`jwks`: inline:"));
    let discovery = format!("{base}jwks:\n  discovery: https://idp.example\n");
    let cfg = Config::from_yaml(&discovery, "t", &env(&[])).unwrap();
    assert_eq!(cfg.key_source(), crate::credentials::keystore::KeySource::Discovery("https://idp.example".into()));
}

#[test]
fn providers_are_named_once_with_one_issuer_and_one_key_source() {
    let base = "iamUrl: http://i\nredisUrl: redis://r:6379\njwt:\n  issuers: [https://iam]\n";
    let provider = |body: &str| {
        format!("{base}providers:\n  - name: kubernetes\n    issuer: https://kubernetes.default.svc\n{body}")
    };
    let ok = provider(
        "    keys: {file: /var/run/k8s/jwks.json}\n    audiences: [gateway]\n    serviceClaim: /kubernetes.io/serviceaccount/name\n    claimToHeaders: [{claim: /kubernetes.io/namespace, header: x-service-namespace}]\n",
    );
    let cfg = Config::from_yaml(&ok, "t", &env(&[])).unwrap();
    let settings = cfg.shared_settings();
    assert_eq!(settings.providers[0].issuer, "https://kubernetes.default.svc");
    assert_eq!(cfg.provider_names(), ["default", "kubernetes"]);
    let err = |yaml: &str| Config::from_yaml(yaml, "t", &env(&[])).unwrap_err().to_string();
    assert_eq!(settings.providers[0].service_claim.as_deref(), Some("/kubernetes.io/serviceaccount/name"));
    assert!(err(&provider("")).contains("keys"), "keys are required");
    let reserved = provider("    keys: {file: /a}\n    claimToHeaders: [{claim: sub, header: x-internal-service}]\n");
    assert!(err(&reserved).contains("reserved"), "the service header comes from serviceClaim only");
    assert!(err(&provider("    keys: {file: /a, url: https://b}\n")).contains("exactly one"));
    assert!(err(&provider("    keys: {discovery: kubernetes}\n")).contains("http(s)"));
    let twice = format!("{ok}  - name: kubernetes\n    issuer: https://other\n    keys: {{file: /b}}\n");
    assert!(err(&twice).contains("listed twice"));
    let same_issuer =
        format!("{ok}  - name: other\n    issuer: https://kubernetes.default.svc\n    keys: {{file: /b}}\n");
    assert!(err(&same_issuer).contains("another provider's"));
    let default_issuer = format!("{base}providers:\n  - name: x\n    issuer: https://iam\n    keys: {{file: /b}}\n");
    assert!(err(&default_issuer).contains("another provider's"));
    let named_default = format!("{base}providers:\n  - name: default\n    issuer: https://x\n    keys: {{file: /b}}\n");
    assert!(err(&named_default).contains("jwt"));
}
