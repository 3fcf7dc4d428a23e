//! Path templates: `/api/lims/labs/{lab}/**`. Segments are literals, `{name}` (one segment,
//! captured), `*` (one segment) or a final `**` (the rest, possibly nothing).

/// One template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Any,
    Rest,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(t: &str) -> Result<Self, String> {
        let rest = t.strip_prefix('/').ok_or_else(|| format!("{t:?} must start with '/'"))?;
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let seg = match *p {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("{t:?}: `**` may only end a template")),
                "*" => Segment::Any,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    let name = &p[1..p.len() - 1];
                    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!("{t:?}: bad parameter name {name:?}"));
                    }
                    Segment::Param(name.to_string())
                }
                p if p.contains(['{', '}', '*']) => return Err(format!("{t:?}: bad segment {p:?}")),
                p => Segment::Literal(p.to_string()),
            };
            segments.push(seg);
        }
        Ok(Self { segments })
    }

    /// The captured parameters when `path` (without query) matches.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let rest = path.strip_prefix('/')?;
        let mut parts = if rest.is_empty() { Vec::new() } else { rest.split('/').collect::<Vec<_>>() };
        // A trailing slash is the same resource.
        if parts.last() == Some(&"") {
            parts.pop();
        }
        let mut params = Vec::new();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Rest => return Some(params),
                _ if i >= parts.len() => return None,
                Segment::Literal(l) if l != parts[i] => return None,
                Segment::Literal(_) | Segment::Any => {}
                Segment::Param(name) if parts[i].is_empty() => {
                    let _ = name;
                    return None;
                }
                Segment::Param(name) => params.push((name.as_str(), parts[i])),
            }
            i += 1;
        }
        (i == parts.len()).then_some(params)
    }

    /// Parameter names, to validate `bind` keys against.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(n.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_captures() {
        let t = PathTemplate::parse("/api/lims/labs/{lab}/**").unwrap();
        assert_eq!(t.captures("/api/lims/labs/l1/samples/9"), Some(vec![("lab", "l1")]));
        assert_eq!(t.captures("/api/lims/labs/l1"), Some(vec![("lab", "l1")]));
        assert_eq!(t.captures("/api/lims/labs/"), None);
        assert_eq!(t.captures("/api/lims/labs"), None);
        assert_eq!(t.captures("/api/lims/labsx/l1"), None);
        let t = PathTemplate::parse("/api/tools/*/run").unwrap();
        assert!(t.captures("/api/tools/x/run").is_some());
        assert!(t.captures("/api/tools/x/run/").is_some());
        assert!(t.captures("/api/tools/x/run/more").is_none());
        assert!(t.captures("/api/tools/run").is_none());
        assert_eq!(PathTemplate::parse("/**").unwrap().captures("/anything/at/all"), Some(vec![]));
        for bad in ["api", "/a/**/b", "/a/{}", "/a/{b-c}", "/a/x*"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
