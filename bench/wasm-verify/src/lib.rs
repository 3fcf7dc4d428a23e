//! A measurement, not product code: in `on_configure`, verify one RS256 and one ES256 JWS
//! signature `iterations` times with (a) `jsonwebtoken`'s pure-Rust backend compiled to wasm
//! and (b) Envoy's `verify_signature` foreign function (BoringSSL), and log the mean cost of
//! each as `WASM_VERIFY alg=... rust_us=... envoy_us=...`. The foreign function's cost
//! includes parsing the public key, which Envoy does on every call.

use std::time::SystemTime;

use authz_core::spki::ecdsa_raw_to_der;
use authz_proto::envoy_foreign::{VerifySignatureArguments, VerifySignatureResult};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/dev-rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/dev-rsa-public.pem");
const EC_PRIVATE: &str = include_str!("../../../tests/fixtures/dev-ec256-private.pem");
const EC_PUBLIC: &str = include_str!("../../../tests/fixtures/dev-ec256-public.pem");

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Bench));
}}

struct Bench;

impl Context for Bench {}

fn log(msg: &str) {
    let _ = hostcalls::log(LogLevel::Warn, msg);
}

fn micros_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

impl Bench {
    fn run(&self, iterations: u32, alg: Algorithm) -> Result<String, String> {
        let (enc, dec, public_pem) = match alg {
            Algorithm::ES256 => (
                EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).map_err(|e| e.to_string())?,
                DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).map_err(|e| e.to_string())?,
                EC_PUBLIC,
            ),
            _ => (
                EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).map_err(|e| e.to_string())?,
                DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).map_err(|e| e.to_string())?,
                RSA_PUBLIC,
            ),
        };
        let claims = serde_json::json!({"sub": "u-bench", "exp": 4_000_000_000u64, "roles": ["user"]});
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &enc).map_err(|e| e.to_string())?;
        let (message, sig_b64) = token.rsplit_once('.').ok_or("no signature")?;
        let raw_sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).map_err(|e| e.to_string())?;

        let start = self.get_current_time();
        for _ in 0..iterations {
            let ok = jsonwebtoken::crypto::verify(sig_b64, message.as_bytes(), &dec, alg).map_err(|e| e.to_string())?;
            if !ok {
                return Err("pure-Rust verification failed".into());
            }
        }
        let rust_us = micros_between(start, self.get_current_time()) / f64::from(iterations);

        let signature =
            if alg == Algorithm::ES256 { ecdsa_raw_to_der(&raw_sig).ok_or("bad ECDSA signature")? } else { raw_sig };
        let args = VerifySignatureArguments {
            hash_function: "sha256".into(),
            public_key_pem: public_pem.into(),
            signature,
            text: message.as_bytes().to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let start = self.get_current_time();
        for _ in 0..iterations {
            let out = hostcalls::call_foreign_function("verify_signature", Some(&args))
                .map_err(|e| format!("verify_signature: {e:?}"))?
                .ok_or("verify_signature returned nothing")?;
            let result = VerifySignatureResult::decode(out.as_slice()).map_err(|e| e.to_string())?;
            if !result.result {
                return Err(format!("verify_signature refused: {}", result.error));
            }
        }
        let envoy_us = micros_between(start, self.get_current_time()) / f64::from(iterations);
        Ok(format!("WASM_VERIFY alg={alg:?} iterations={iterations} rust_us={rust_us:.1} envoy_us={envoy_us:.1}"))
    }
}

impl RootContext for Bench {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let iterations = serde_json::from_slice::<serde_json::Value>(&config)
            .ok()
            .and_then(|v| v["iterations"].as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(200)
            .max(1);
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            match self.run(iterations, alg) {
                Ok(line) => log(&line),
                Err(e) => log(&format!("WASM_VERIFY alg={alg:?} error={e}")),
            }
        }
        log("WASM_VERIFY done");
        true
    }
}
