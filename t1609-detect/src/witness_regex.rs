//! A string a regex matches, for example events: the shortest choice at each step
//! (first alternative, first character of a class, minimum repetitions).

use regex_syntax::hir::{Class, Hir, HirKind};

/// A string `pattern` matches, or `None` when it cannot be built (a class with nothing
/// printable, an excessive repetition).
pub(crate) fn sample(pattern: &str) -> Option<String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let mut out = String::new();
    walk(&hir, &mut out, 0)?;
    Some(out)
}

fn walk(h: &Hir, out: &mut String, depth: usize) -> Option<()> {
    if depth > 64 || out.len() > 4096 {
        return None;
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => out.push_str(std::str::from_utf8(&l.0).ok()?),
        HirKind::Class(Class::Unicode(c)) => {
            // Prefer a letter or digit: a path or argument rarely holds the others.
            let pick = c
                .ranges()
                .iter()
                .flat_map(|r| [r.start(), r.end()])
                .find(char::is_ascii_alphanumeric)
                .or_else(|| {
                    c.ranges()
                        .first()
                        .map(regex_syntax::hir::ClassUnicodeRange::start)
                })?;
            out.push(pick);
        }
        HirKind::Class(Class::Bytes(c)) => {
            let b = c.ranges().first()?.start();
            out.push(char::from(b).is_ascii().then_some(char::from(b))?);
        }
        HirKind::Repetition(r) => {
            for _ in 0..r.min {
                walk(&r.sub, out, depth + 1)?;
            }
        }
        HirKind::Capture(c) => walk(&c.sub, out, depth + 1)?,
        HirKind::Concat(v) => {
            for x in v {
                walk(x, out, depth + 1)?;
            }
        }
        HirKind::Alternation(v) => walk(v.first()?, out, depth + 1)?,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_match_their_regex() {
        for p in [
            r"^(?:.*[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{1,5})?/[^ ]+.*)$",
            r"(?i)^(?:/tmp/[a-z]+\.sh)$",
            r"x|yy",
            r"a+b?c{2,3}",
        ] {
            let s = super::sample(p).expect(p);
            assert!(regex::Regex::new(p).expect(p).is_match(&s), "{p}: {s:?}");
        }
    }
}
