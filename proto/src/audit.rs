//! The decision record that travels with a request to Envoy's access log.
//!
//! One flat map of strings, encoded as a `google.protobuf.Struct` whose values are all
//! `string_value`s. The filter writes it as filter state (`wasm.authz_audit`); the sidecar
//! returns it as ext_authz `dynamic_metadata` (which Envoy's native ext_authz puts into the
//! access log's metadata, and which the filter forwards as its filter state unchanged). The
//! sidecar's access-log service reads it back from either place and completes the audit event
//! with what Envoy knows (status, latency, client address).
//!
//! The writer encodes by hand into one buffer: it runs on the filter's hot path, where a map
//! of owned strings per request would cost more than the record is worth.

use std::collections::BTreeMap;

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// The filter-state name the filter sets (Envoy prefixes `wasm.`).
pub const FILTER_STATE: &str = "authz_audit";
/// The same, as the access log names it.
pub const FILTER_STATE_LOGGED: &str = "wasm.authz_audit";
/// The dynamic-metadata namespace of Envoy's ext_authz filter.
pub const EXT_AUTHZ_NAMESPACE: &str = "envoy.filters.http.ext_authz";

/// Field names of the record (also the audit event's field names; see the README).
pub mod field {
    pub const TRACE_ID: &str = "trace_id";
    /// The trace id again when the client chose it (`X-Trace-Id` or `traceparent`), so a
    /// reader knows the value was not the gateway's: a client can give its events another
    /// request's trace id. Empty when the gateway made the id.
    pub const CLIENT_TRACE_ID: &str = "client_trace_id";
    pub const DECISION_ID: &str = "decision_id";
    /// `allow` or `deny`.
    pub const DECISION: &str = "decision";
    /// `ok`, `public`, or the denial's code.
    pub const REASON: &str = "reason";
    pub const RULE: &str = "rule";
    pub const POLICY_VERSION: &str = "policy_version";
    pub const USER_ID: &str = "user_id";
    pub const TENANT: &str = "tenant";
    pub const SERVICE: &str = "service";
    /// `bearer`, `api_key`, `none`, `invalid`.
    pub const CREDENTIAL: &str = "credential";
    pub const TOKEN_FINGERPRINT: &str = "token_fp";
    pub const QUOTA_LEASE: &str = "quota_lease";
    /// Who decided: `filter` or `sidecar`.
    pub const DECIDER: &str = "decider";
    // Added by the sidecar from Envoy's access-log entry.
    pub const TIME_MS: &str = "time_ms";
    pub const STATUS: &str = "status";
    pub const METHOD: &str = "method";
    pub const PATH: &str = "path";
    pub const ROUTE: &str = "route";
    pub const CLIENT: &str = "client";
    pub const USER_AGENT: &str = "user_agent";
    pub const LATENCY_MS: &str = "latency_ms";
}

/// Every field of an audit event, in the order of the README's schema (events are written and
/// printed in this order).
pub const EVENT_FIELDS: [&str; 22] = [
    field::TIME_MS,
    field::TRACE_ID,
    field::CLIENT_TRACE_ID,
    field::DECISION_ID,
    field::DECISION,
    field::STATUS,
    field::REASON,
    field::RULE,
    field::POLICY_VERSION,
    field::USER_ID,
    field::TENANT,
    field::SERVICE,
    field::METHOD,
    field::PATH,
    field::ROUTE,
    field::CLIENT,
    field::USER_AGENT,
    field::CREDENTIAL,
    field::TOKEN_FINGERPRINT,
    field::QUOTA_LEASE,
    field::LATENCY_MS,
    field::DECIDER,
];

/// Builds an encoded record. Empty values are left out.
#[derive(Default)]
pub struct RecordWriter {
    buf: Vec<u8>,
}

impl RecordWriter {
    pub fn with_capacity(n: usize) -> Self {
        Self { buf: Vec::with_capacity(n) }
    }

    /// Adds `key = value` (a `Struct.fields` map entry whose value is a `string_value`).
    pub fn put(&mut self, key: &str, value: &str) -> &mut Self {
        if value.is_empty() {
            return self;
        }
        let string_len = 1 + encoded_len_varint(value.len() as u64) + value.len();
        let value_len = 1 + encoded_len_varint(string_len as u64) + string_len;
        let key_len = 1 + encoded_len_varint(key.len() as u64) + key.len();
        let entry_len = key_len + value_len;
        // Struct.fields (1): map entry { key (1): string, value (2): Value { string_value (3) } }.
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint(entry_len as u64, &mut self.buf);
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint(key.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(key.as_bytes());
        encode_key(2, WireType::LengthDelimited, &mut self.buf);
        encode_varint(string_len as u64, &mut self.buf);
        encode_key(3, WireType::LengthDelimited, &mut self.buf);
        encode_varint(value.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// `google.protobuf.Struct`, string values only (others decode as empty).
#[derive(Clone, PartialEq, Message)]
struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, Value>,
}

#[derive(Clone, PartialEq, Message)]
struct Value {
    #[prost(string, tag = "3")]
    string_value: String,
}

/// Decodes a record (the filter state's bytes, or a `Struct` from elsewhere).
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, String>, prost::DecodeError> {
    Ok(Struct::decode(bytes)?.fields.into_iter().map(|(k, v)| (k, v.string_value)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_struct_compatible() {
        let mut w = RecordWriter::default();
        w.put(field::TRACE_ID, "t-1").put(field::USER_ID, "").put(field::REASON, &"x".repeat(300));
        let bytes = w.finish();
        let map = decode(&bytes).unwrap();
        assert_eq!(map.len(), 2, "empty values are left out");
        assert_eq!(map["trace_id"], "t-1");
        assert_eq!(map["reason"].len(), 300);
        // The same bytes are a valid google.protobuf.Struct.
        let full = <prost_types::Struct as Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(full.fields["trace_id"].kind, Some(prost_types::value::Kind::StringValue("t-1".into())),);
        assert!(decode(b"\xff\xff").is_err());
    }
}
