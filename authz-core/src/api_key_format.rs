//! An optional shape for API keys, checked before any introspection: junk is refused where it
//! arrives (in the filter, with no callout; in the sidecar, with no call to the auth service).
//!
//! The platform's keys have a known form (a prefix, a length, an alphabet); a key that does
//! not have it cannot be active, so asking the auth service about it only lets an anonymous
//! client turn the gateway into an amplifier against the auth service.

use serde::{Deserialize, Serialize};

/// Characters a key may consist of (after its prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alphabet {
    /// `A-Z a-z 0-9 - _` (base64url without padding).
    Base64url,
    /// `0-9 a-f A-F`.
    Hex,
    /// `A-Z a-z 0-9`.
    Alphanumeric,
}

impl Alphabet {
    fn allows(self, b: u8) -> bool {
        match self {
            Alphabet::Base64url => b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            Alphabet::Hex => b.is_ascii_hexdigit(),
            Alphabet::Alphanumeric => b.is_ascii_alphanumeric(),
        }
    }
}

/// `apiKeyFormat`: every field optional; an empty format accepts any key the credential
/// parser accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyFormat {
    /// The key starts with this text (`ak_live_`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Length bounds of the whole key, prefix included.
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub max_length: Option<usize>,
    /// The alphabet of the part after the prefix.
    #[serde(default)]
    pub alphabet: Option<Alphabet>,
}

impl ApiKeyFormat {
    /// Whether `key` has the configured shape.
    pub fn accepts(&self, key: &str) -> bool {
        if self.min_length.is_some_and(|n| key.len() < n) || self.max_length.is_some_and(|n| key.len() > n) {
            return false;
        }
        let rest = match &self.prefix {
            Some(p) => match key.strip_prefix(p.as_str()) {
                Some(rest) => rest,
                None => return false,
            },
            None => key,
        };
        self.alphabet.is_none_or(|a| !rest.is_empty() && rest.bytes().all(|b| a.allows(b)))
    }

    /// A configuration error, if the bounds contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        if let (Some(min), Some(max)) = (self.min_length, self.max_length)
            && min > max
        {
            return Err(format!("minLength {min} is greater than maxLength {max}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let f = ApiKeyFormat {
            prefix: Some("ak_".into()),
            min_length: Some(10),
            max_length: Some(40),
            alphabet: Some(Alphabet::Base64url),
        };
        assert!(f.accepts("ak_0123456789abcdef"));
        assert!(!f.accepts("xx_0123456789abcdef"), "prefix");
        assert!(!f.accepts("ak_012"), "too short");
        assert!(!f.accepts(&format!("ak_{}", "a".repeat(40))), "too long");
        assert!(!f.accepts("ak_0123456789+/=="), "alphabet");
        assert!(ApiKeyFormat::default().accepts("anything at all"));
        let hex = ApiKeyFormat { alphabet: Some(Alphabet::Hex), ..ApiKeyFormat::default() };
        assert!(hex.accepts("deadBEEF01") && !hex.accepts("deadbeefg") && !hex.accepts(""));
        let bad = ApiKeyFormat { min_length: Some(5), max_length: Some(4), ..ApiKeyFormat::default() };
        assert!(bad.validate().is_err());
    }
}
