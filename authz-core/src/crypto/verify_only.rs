//! A `jsonwebtoken` crypto provider that only verifies, for the wasm filter.
//!
//! jsonwebtoken's own RustCrypto provider carries every signer (RSA private-key operations,
//! ECDSA signing, key generation helpers) and P-256/P-384 arithmetic, and the module carried
//! them into every V8 VM of Envoy although the filter signs nothing and verifies RSA and ECDSA
//! through Envoy's `verify_signature` (BoringSSL). This provider verifies what the VM must
//! verify itself: HS256/384/512 (`hmac`), PS256/384/512 and, should Envoy's verification be
//! unavailable, RS256/384/512 (`rsa`), and EdDSA over Ed25519 (`ed25519-dalek`). ES256/384
//! are refused here (`UnsupportedAlgorithm`): the filter then lets the sidecar decide
//! (`crate::token`). Signing is refused with an error, never a panic.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::AssociatedOid;
use rsa::traits::SignatureScheme;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The provider [`super::ensure_provider`] installs in the filter.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
    verifier_factory: new_verifier,
    // JWK thumbprints and keys derived from private keys are never asked for in the filter;
    // jsonwebtoken's placeholders answer those with a panic, so nothing here may call them.
    key_utils: KeyUtils::new_unimplemented(),
};

/// A verifier for `alg` with `key`, or why there is none.
pub fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let pss = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let DecodingKeyKind::SecretOrDer(secret) = key.kind() else {
                return Err(ErrorKind::InvalidKeyFormat.into());
            };
            let mac = match alg {
                Algorithm::HS256 => Keyed::Hs256(keyed(secret)?),
                Algorithm::HS384 => Keyed::Hs384(keyed(secret)?),
                _ => Keyed::Hs512(keyed(secret)?),
            };
            return Ok(Box::new(HmacVerifier { alg: *alg, mac }));
        }
        Algorithm::EdDSA => {
            let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
                return Err(ErrorKind::InvalidKeyFormat.into());
            };
            let point = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ErrorKind::InvalidEddsaKey)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&point).map_err(|_| ErrorKind::InvalidEddsaKey)?;
            return Ok(Box::new(EdDsaVerifier(key)));
        }
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => false,
        Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => true,
        // ES256/384 (and whatever jsonwebtoken adds later): not in this VM.
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    let public = match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => {
            RsaPublicKey::from_pkcs1_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?
        }
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?
        }
    };
    Ok(Box::new(RsaVerifier { alg: *alg, pss, public }))
}

/// The HMAC keyed once, when the verifier is made; each verification works on a copy.
#[derive(Clone)]
enum Keyed {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
}

struct HmacVerifier {
    alg: Algorithm,
    mac: Keyed,
}

fn keyed<M: hmac::digest::KeyInit>(secret: &[u8]) -> Result<M> {
    M::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

/// `Mac::verify_slice` compares in constant time.
fn verify_mac<M: Mac>(mut mac: M, msg: &[u8], tag: &[u8]) -> bool {
    mac.update(msg);
    mac.verify_slice(tag).is_ok()
}

impl signature::Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, msg: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let valid = match self.mac.clone() {
            Keyed::Hs256(m) => verify_mac(m, msg, tag),
            Keyed::Hs384(m) => verify_mac(m, msg, tag),
            Keyed::Hs512(m) => verify_mac(m, msg, tag),
        };
        if valid { Ok(()) } else { Err(signature::Error::new()) }
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct EdDsaVerifier(ed25519_dalek::VerifyingKey);

impl signature::Verifier<Vec<u8>> for EdDsaVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| signature::Error::new())?;
        // RFC 8032's checks, as jsonwebtoken's own verifier makes them.
        self.0.verify_strict(msg, &sig).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for EdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct RsaVerifier {
    alg: Algorithm,
    /// PSS (PS*), else PKCS#1 v1.5 (RS*).
    pss: bool,
    public: RsaPublicKey,
}

/// `sig` over `msg` with digest `D`, in the verifier's padding.
fn verify_rsa<D>(public: &RsaPublicKey, pss: bool, msg: &[u8], sig: &[u8]) -> bool
where
    D: Digest + AssociatedOid + hmac::digest::DynDigest + Send + Sync + 'static,
{
    let digest = D::digest(msg);
    if pss {
        Pss::new::<D>().verify(public, &digest, sig).is_ok()
    } else {
        Pkcs1v15Sign::new::<D>().verify(public, &digest, sig).is_ok()
    }
}

impl signature::Verifier<Vec<u8>> for RsaVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let valid = match self.alg {
            Algorithm::RS256 | Algorithm::PS256 => verify_rsa::<Sha256>(&self.public, self.pss, msg, sig),
            Algorithm::RS384 | Algorithm::PS384 => verify_rsa::<Sha384>(&self.public, self.pss, msg, sig),
            _ => verify_rsa::<Sha512>(&self.public, self.pss, msg, sig),
        };
        if valid { Ok(()) } else { Err(signature::Error::new()) }
    }
}

impl JwtVerifier for RsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    //! Signatures made by jsonwebtoken with aws-lc (the sidecar's backend), verified here.

    use super::*;
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::crypto::sign;
    use jsonwebtoken::jwk::{Jwk, JwkSet};

    const RSA_PEM: &str = include_str!("../../../tests/fixtures/dev-rsa-private.pem");

    fn check(alg: Algorithm, enc: &EncodingKey, dec: &DecodingKey) {
        let msg = b"eyJhbGciOiJ4In0.eyJzdWIiOiJ1In0";
        let sig = sign(msg, enc, alg).unwrap();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
        let v = new_verifier(&alg, dec).unwrap();
        assert_eq!(v.algorithm(), alg);
        assert!(v.verify(msg, &raw).is_ok(), "{alg:?}: a good signature");
        assert!(v.verify(b"eyJhbGciOiJ4In0.eyJzdWIiOiJ2In0", &raw).is_err(), "{alg:?}: another message");
        let mut bad = raw.clone();
        bad[0] ^= 1;
        assert!(v.verify(msg, &bad).is_err(), "{alg:?}: a changed signature");
        assert!(v.verify(msg, &raw[..raw.len() - 1].to_vec()).is_err(), "{alg:?}: a short signature");
        assert!(v.verify(msg, &Vec::new()).is_err(), "{alg:?}: no signature");
    }

    #[test]
    fn verifies_what_aws_lc_signs_and_refuses_the_rest() {
        crate::crypto::ensure_provider();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            check(
                alg,
                &EncodingKey::from_secret(b"a secret of some length"),
                &DecodingKey::from_secret(b"a secret of some length"),
            );
        }
        let enc = EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
        // The key as a JWKS carries it (n, e) and as DER (PKCS#1).
        let jwk = Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
        let from_jwk = DecodingKey::from_jwk(&jwk).unwrap();
        for alg in
            [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]
        {
            check(alg, &enc, &from_jwk);
        }
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}))
        .unwrap();
        let ed = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        assert!(new_verifier(&Algorithm::EdDSA, &ed).is_ok());
        // ES256/384 go to Envoy or the sidecar; a wrong key shape is an error, not a panic.
        assert!(new_verifier(&Algorithm::ES256, &ed).is_err());
        assert!(new_verifier(&Algorithm::EdDSA, &DecodingKey::from_secret(b"short")).is_err());
        assert!(new_verifier(&Algorithm::EdDSA, &from_jwk).is_err());
        assert!(new_verifier(&Algorithm::HS256, &from_jwk).is_err());
        assert!(new_verifier(&Algorithm::PS256, &DecodingKey::from_secret(b"not der")).is_err());
        assert!((PROVIDER.signer_factory)(&Algorithm::HS256, &EncodingKey::from_secret(b"k")).is_err());
    }

    /// RFC 8037, appendix A.4: the Ed25519 signature of A.1's key over the JWS signing input.
    #[test]
    fn rfc8037_ed25519_vector() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}))
        .unwrap();
        let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .unwrap();
        let v = new_verifier(&Algorithm::EdDSA, &key).unwrap();
        assert!(v.verify(input, &sig).is_ok());
        assert!(v.verify(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd", &sig).is_err());
    }
}
