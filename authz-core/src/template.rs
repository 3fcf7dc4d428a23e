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
    /// The literal text every matching path starts with (up to the first wildcard), checked
    /// first: most rules of a large policy are rejected by one `starts_with`.
    literal_prefix: String,
    /// Literal segments match regardless of ASCII case (parameters keep the path's case).
    fold_case: bool,
}

/// `s` without the prefix `p`, comparing ASCII case-insensitively when `fold`.
pub(crate) fn strip_prefix_folded<'a>(s: &'a str, p: &str, fold: bool) -> Option<&'a str> {
    if !fold {
        return s.strip_prefix(p);
    }
    let head = s.as_bytes().get(..p.len())?;
    // Only ASCII letters are folded, so equal bytes keep `p.len()` on a char boundary.
    if head.eq_ignore_ascii_case(p.as_bytes()) { s.get(p.len()..) } else { None }
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
        let mut literal_prefix = String::from("/");
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Segment::Literal(l) => {
                    literal_prefix.push_str(l);
                    if i + 1 < segments.len() {
                        literal_prefix.push('/');
                    }
                }
                _ => break,
            }
        }
        Ok(Self { segments, literal_prefix, fold_case: false })
    }

    /// Makes literal segments match regardless of ASCII case.
    pub fn set_fold_case(&mut self, fold: bool) {
        self.fold_case = fold;
    }

    /// Whether `path` (without query) matches, without allocating.
    pub fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| {})
    }

    /// The captured parameters when `path` (without query) matches.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let mut params = Vec::new();
        self.walk(path, |name, value| params.push((name, value))).then_some(params)
    }

    fn walk<'s, 'p>(&'s self, path: &'p str, mut on_param: impl FnMut(&'s str, &'p str)) -> bool {
        let fold = self.fold_case;
        let bare = self.literal_prefix.trim_end_matches('/');
        let is_bare = if fold { path.eq_ignore_ascii_case(bare) } else { path == bare };
        if strip_prefix_folded(path, &self.literal_prefix, fold).is_none() && !is_bare {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else { return false };
        // A trailing slash is the same resource.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = (!rest.is_empty()).then(|| rest.split('/')).into_iter().flatten();
        for seg in &self.segments {
            if *seg == Segment::Rest {
                return true;
            }
            let Some(part) = parts.next() else { return false };
            match seg {
                Segment::Literal(l) if !(l == part || fold && l.eq_ignore_ascii_case(part)) => return false,
                Segment::Param(_) if part.is_empty() => return false,
                Segment::Param(name) => on_param(name, part),
                _ => {}
            }
        }
        parts.next().is_none()
    }

    /// Parameter names, to validate `bind` keys against.
    /// The literal text every matching path starts with (up to the first parameter).
    pub fn literal_prefix(&self) -> &str {
        &self.literal_prefix
    }

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
