//! Shell-style glob: `*` (any run, `/` included), `?` (one char), `[abc]`, `[a-z]`,
//! `[!x]` / `[^x]`, and `\` to escape. Case-sensitive; the whole value must match.

pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    // Backtrack point: (pattern index after '*', value index it was tried at).
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, vi));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    vi += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(&p, pi, v[vi])
                        && ok
                    {
                        pi = next;
                        vi += 1;
                        continue;
                    } else if class(&p, pi, v[vi]).is_none() && v[vi] == '[' {
                        // Unterminated class: a literal '['.
                        pi += 1;
                        vi += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == v[vi] {
                        pi += 2;
                        vi += 1;
                        continue;
                    }
                }
                c => {
                    if c == v[vi] {
                        pi += 1;
                        vi += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sv)) => {
                pi = sp;
                vi = sv + 1;
                star = Some((sp, sv + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`. Returns (matched, index
/// after `]`), or `None` when the class is unterminated.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let ch = p[i];
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::glob_match as g;

    #[test]
    fn basics() {
        assert!(g("*", ""));
        assert!(g("*", "anything/at all"));
        assert!(g("*/gitlab-runner", "/usr/bin/gitlab-runner"));
        assert!(!g("*/gitlab-runner", "/usr/bin/gitlab-runner2"));
        assert!(g(
            "kubectl exec * -- /healthz*",
            "kubectl exec web-0 -- /healthz --quick"
        ));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("[Jj]enkins*", "jenkins-agent"));
        assert!(g("[!0-9]x", "ax"));
        assert!(!g("[!0-9]x", "5x"));
        assert!(g("x\\*y", "x*y"));
        assert!(!g("x\\*y", "xzy"));
        assert!(g("*a*b*c*", "zzazzbzzczz"));
        assert!(!g("*a*b*c*", "zzazzczzbzz"));
        assert!(g("[", "["));
        assert!(g("datadog-*", "datadog-agent"));
    }
}
