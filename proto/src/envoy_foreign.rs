//! Arguments and result of Envoy's `verify_signature` foreign function (Envoy's
//! `source/extensions/common/wasm/ext/verify_signature.proto`), callable from wasm through
//! `proxy_call_foreign_function`. Envoy verifies with BoringSSL (`EVP_DigestVerify`), so
//! ECDSA signatures must be DER-encoded, not JWS's raw `r || s` (`authz_core::spki`).

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VerifySignatureArguments {
    /// `sha256`, `sha384`, `sha512`.
    #[prost(string, tag = "1")]
    pub hash_function: String,
    /// DER SubjectPublicKeyInfo (or use `public_key_pem`).
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
    #[prost(string, tag = "5")]
    pub public_key_pem: String,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureResult`
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}
