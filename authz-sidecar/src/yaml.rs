//! YAML documents (the configuration and the policy file) with errors that name the nested
//! field at fault (`jwt.clockSkew`, `routes[0].rolesAnyOf`), not just the section.

use serde::de::DeserializeOwned;

/// A document that could not be read: the field path and the reason.
#[derive(Debug)]
pub struct YamlError {
    pub field: String,
    pub reason: String,
}

/// Parses `text` into `T`; an empty document means "all defaults".
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| YamlError { field: e.path().to_string(), reason: e.inner().to_string() })
}
