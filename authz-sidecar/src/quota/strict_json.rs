//! JSON parsed strictly for decisions: an object that names a key twice is refused.
//!
//! RFC 8259 §4 leaves duplicate names to the parser, and parsers disagree: `serde_json` keeps
//! the last value, Go's `encoding/json` and Python's `json` keep the last, some streaming
//! parsers and hand-written TES servers keep the first. `{"gpu":"4","gpu":"0"}` could then be
//! charged 0 GPUs here and run 4 there, so a body the quota is charged from must have one
//! reading only.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as JSON, refusing duplicate keys anywhere in it.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A `serde_json::Value` seed whose objects refuse a repeated key.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(parse(br#"{"gpu":"4","gpu":"0"}"#).unwrap_err().to_string().contains("duplicate key \"gpu\""));
        assert!(parse(br#"{"resources":{"backend_parameters":{"gpu":"4","gpu":"0"}}}"#).is_err());
        assert!(parse(br#"{"executors":[{"image":"a","image":"b"}]}"#).is_err());
        assert!(parse(br#"{"a":1}{"a":2}"#).is_err());
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let text = br#"{"name":"t","resources":{"cpu_cores":2,"ram_gb":0.5,"preemptible":true,"zones":null},"tags":[1,-2,"x"]}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_slice::<Value>(text).unwrap());
        // Different keys that differ only in case are different keys.
        assert!(parse(br#"{"gpu":1,"GPU":2}"#).is_ok());
    }
}
