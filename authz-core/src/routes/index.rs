//! An index over a rule table's literal prefixes, so a large policy is not scanned rule by rule.
//!
//! Every rule has a literal text each path it matches starts with: an exact path, a prefix,
//! or a template's text up to its first parameter. A request path can only match the rules
//! whose literal is a prefix of it, so the rules are bucketed by their literal (one hash map
//! per distinct literal length) and a lookup probes each length once. The candidates come back
//! in table order, so "the first matching rule wins" is kept exactly.

use std::collections::HashMap;

/// Below this many rules a plain scan is as fast as the probes.
pub const MIN_RULES: usize = 24;

/// Literal bytes → positions of the rules with that literal, in table order.
type Bucket = HashMap<Box<[u8]>, Vec<u32>>;

#[derive(Debug, Default, Clone)]
pub struct PrefixIndex {
    /// (literal length, its bucket), shortest first.
    by_len: Vec<(usize, Bucket)>,
}

impl PrefixIndex {
    /// An index of rules whose literals are `literals` (in table order).
    pub fn build<'a>(literals: impl IntoIterator<Item = &'a str>) -> Self {
        let mut by_len: Vec<(usize, Bucket)> = Vec::new();
        for (pos, literal) in literals.into_iter().enumerate() {
            let len = literal.len();
            let slot = match by_len.iter().position(|(l, _)| *l == len) {
                Some(i) => i,
                None => {
                    by_len.push((len, HashMap::new()));
                    by_len.len() - 1
                }
            };
            // Keyed in lower case: a rule that folds case must be found for any case of its
            // literal (candidates are a superset; `Route::matches` decides).
            let positions = by_len[slot].1.entry(literal.to_ascii_lowercase().into_bytes().into()).or_default();
            positions.push(u32::try_from(pos).unwrap_or(u32::MAX));
        }
        by_len.sort_by_key(|(l, _)| *l);
        Self { by_len }
    }

    /// Positions of the rules that may match `path`, ascending.
    pub fn candidates(&self, path: &str) -> Vec<u32> {
        // Keys are lower case; most paths already are, and then nothing is allocated.
        let lower = if path.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(path.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        let bytes = lower.as_bytes();
        let mut out = Vec::new();
        for (len, map) in &self.by_len {
            let Some(head) = bytes.get(..*len) else { break };
            if let Some(positions) = map.get(head) {
                out.extend_from_slice(positions);
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_the_rules_whose_literal_starts_the_path_in_order() {
        let idx = PrefixIndex::build(["/api/tes", "/", "/api/tes/tasks", "/api/lims", "/api/tes"]);
        assert_eq!(idx.candidates("/api/tes/tasks/1"), vec![0, 1, 2, 4]);
        assert_eq!(idx.candidates("/api/lims"), vec![1, 3]);
        assert_eq!(idx.candidates("/other"), vec![1]);
        assert_eq!(idx.candidates(""), Vec::<u32>::new());
    }
}
