//! Routes that need no credential (`/health` and the like). Identity headers are still
//! stripped on them; only authentication is skipped.

/// Paths served without authentication: exact matches and prefixes, on the path without its
/// query string.
#[derive(Debug, Clone, Default)]
pub struct PublicRoutes {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl PublicRoutes {
    pub fn new(exact: Vec<String>, prefixes: Vec<String>) -> Self {
        Self { exact, prefixes }
    }

    pub fn is_public(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.exact.iter().any(|p| p == path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_path_without_query() {
        let r = PublicRoutes::new(vec!["/health".into()], vec!["/public/".into()]);
        assert!(r.is_public("/health"));
        assert!(r.is_public("/health?x=1"));
        assert!(!r.is_public("/healthz"));
        assert!(!r.is_public("/health/../api/tes"));
        assert!(r.is_public("/public/a"));
        assert!(!r.is_public("/api/tools"));
    }
}
