//! The claims of an identity beyond the typed ones (`labs`, `tier`, ...), for route rules.
//!
//! Every cached identity holds one (the filter keeps up to 200000 per worker). A token carries
//! a handful of such claims, and a `BTreeMap` allocates a whole node (room for eleven entries,
//! about 600 bytes here) for the first one, so they are kept as a vector sorted by name,
//! allocated to its exact length, and looked up by binary search. Serialised as a JSON object,
//! as the map was (the sidecar shares identities through Redis).

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimMap(Vec<(String, Value)>);

impl ClaimMap {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| &self.0[i].1)
    }

    /// Sets `name` (replacing an earlier value).
    pub fn insert(&mut self, name: String, value: Value) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name.as_str())) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Keeps only the claims `keep` names, in a vector of the exact length left.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
        self.0.shrink_to_fit();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<std::collections::BTreeMap<String, Value>> for ClaimMap {
    /// Already sorted and without duplicates; the vector gets the exact length.
    fn from(map: std::collections::BTreeMap<String, Value>) -> Self {
        Self(map.into_iter().collect())
    }
}

impl serde::Serialize for ClaimMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for ClaimMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::collections::BTreeMap::<String, Value>::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn looks_up_inserts_and_round_trips_as_an_object() {
        let map: std::collections::BTreeMap<String, Value> =
            serde_json::from_value(json!({"tier": "gold", "labs": ["l1", "l2"], "a": 1})).unwrap();
        let mut c = ClaimMap::from(map);
        assert_eq!(
            (c.get("labs"), c.get("tier"), c.get("a"), c.get("zz")),
            (Some(&json!(["l1", "l2"])), Some(&json!("gold")), Some(&json!(1)), None)
        );
        let mut kept = c.clone();
        kept.retain(|k| k == "labs" || k == "nope");
        assert_eq!((kept.len(), kept.get("labs")), (1, Some(&json!(["l1", "l2"]))));
        c.insert("b".into(), json!(true));
        c.insert("tier".into(), json!("platinum"));
        assert_eq!(c.len(), 4);
        assert_eq!(c.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b", "labs", "tier"]);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"a":1,"b":true,"labs":["l1","l2"],"tier":"platinum"}"#);
        assert_eq!(serde_json::from_str::<ClaimMap>(&text).unwrap(), c);
        assert!(ClaimMap::default().is_empty());
        // The exact length: no spare room in a cached identity.
        assert_eq!(ClaimMap::from(std::collections::BTreeMap::from([("x".to_string(), json!(1))])).0.capacity(), 1);
    }
}
