//! The operator's hash list: files known by their sha256 or ELF build-id, with the tool
//! each one is. It names what content analysis cannot: static builds with their Go build
//! info removed, packed binaries, C tools that are not installed here.
//!
//! ```toml
//! [[hash]]
//! sha256 = "3f1a…"           # 64 hex digits, or:
//! # build_id = "gnu:8dba…"   # as `Verdict::build_id` prints it (gnu:<hex> or go:<text>)
//! tool = "docker"            # a known tool (`TOOLS`)
//! comment = "static docker 24.0.7 dropped under /tmp/.x"   # optional
//! ```
//!
//! Every error names the file, the line and the field.

use std::{
    collections::HashMap,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::tools::{self, ToolSpec};

/// A hash list problem; `line` is 1-based.
#[derive(Debug, thiserror::Error)]
pub enum HashListError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: field `{field}`: {message}", file.display())]
    Field {
        file: PathBuf,
        line: usize,
        field: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    hash: Vec<Spanned<EntryForm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryForm {
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    build_id: Option<Spanned<String>>,
    tool: Spanned<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "free text for people; accepted so that it is not an unknown key"
    )]
    comment: Option<String>,
}

/// Where a known hash came from, shown in verdicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Loaded hash lists: sha256 (lower-case hex) and build-id → tool.
#[derive(Debug, Default)]
pub struct HashList {
    pub(crate) sha256: HashMap<String, (&'static ToolSpec, Origin)>,
    pub(crate) build_id: HashMap<String, (&'static ToolSpec, Origin)>,
}

impl HashList {
    /// Loads and merges the given files, in order (a later entry for the same hash
    /// wins). Stops at the first bad file.
    pub fn load(files: &[PathBuf]) -> Result<HashList, HashListError> {
        let mut list = HashList::default();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|source| HashListError::Io {
                file: f.clone(),
                source,
            })?;
            list.add_toml(f, &text)?;
        }
        Ok(list)
    }

    /// Adds the entries of one file's text; `file` names it in errors and origins.
    pub fn add_toml(&mut self, file: &Path, text: &str) -> Result<(), HashListError> {
        let line_of = |r: Range<usize>| line_at(text, r.start);
        let form: FileForm = toml::from_str(text).map_err(|e| HashListError::Syntax {
            file: file.to_path_buf(),
            line: e.span().map_or(1, line_of),
            message: e.message().to_string(),
        })?;
        let field = |span: Range<usize>, field, message: String| HashListError::Field {
            file: file.to_path_buf(),
            line: line_of(span),
            field,
            message,
        };
        for entry in form.hash {
            let entry_line = line_of(entry.span());
            let e = entry.into_inner();
            let tool_name = e.tool.get_ref();
            let spec = tools::spec(tool_name).ok_or_else(|| {
                let known: Vec<&str> = tools::TOOLS.iter().map(|t| t.name).collect();
                field(
                    e.tool.span(),
                    "tool",
                    format!("unknown tool `{tool_name}` (known: {})", known.join(", ")),
                )
            })?;
            let origin = |span: Range<usize>| Origin {
                file: file.to_path_buf(),
                line: line_of(span),
            };
            match (e.sha256, e.build_id) {
                (Some(h), None) => {
                    let v = h.get_ref().trim();
                    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(field(
                            h.span(),
                            "sha256",
                            format!("`{v}` is not 64 hexadecimal digits"),
                        ));
                    }
                    self.sha256
                        .insert(v.to_ascii_lowercase(), (spec, origin(h.span())));
                }
                (None, Some(b)) => {
                    let v = b.get_ref().trim();
                    let ok = match v.split_once(':') {
                        Some(("gnu", hex)) => {
                            !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit())
                        }
                        Some(("go", id)) => !id.is_empty(),
                        _ => false,
                    };
                    if !ok {
                        return Err(field(
                            b.span(),
                            "build_id",
                            format!("`{v}` is not `gnu:<hex>` or `go:<id>`"),
                        ));
                    }
                    let v = match v.split_once(':') {
                        Some(("gnu", hex)) => format!("gnu:{}", hex.to_ascii_lowercase()),
                        _ => v.to_string(),
                    };
                    self.build_id.insert(v, (spec, origin(b.span())));
                }
                (Some(_), Some(b)) => {
                    return Err(field(
                        b.span(),
                        "build_id",
                        "give either `sha256` or `build_id` in one entry, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(HashListError::Field {
                        file: file.to_path_buf(),
                        line: entry_line,
                        field: "sha256",
                        message: "missing: each entry needs `sha256` or `build_id`".into(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.sha256.len() + self.build_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The 1-based line of byte `at`.
fn line_at(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "3f1aa0b0c1d2e3f40516273849a0b1c2d3e4f5061728394a5b6c7d8e9f00112a";

    fn load(text: &str) -> Result<HashList, HashListError> {
        let mut l = HashList::default();
        l.add_toml(Path::new("/etc/t1609/hashes.toml"), text)?;
        Ok(l)
    }

    #[test]
    fn good_list_loads() {
        let l = load(&format!(
            "# drops seen in the wild\n[[hash]]\nsha256 = \"{}\"\ntool = \"docker\"\ncomment = \"x\"\n\n[[hash]]\nbuild_id = \"gnu:ABCD\"\ntool = \"nsenter\"\n",
            H.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(l.len(), 2);
        let (t, o) = &l.sha256[H];
        assert_eq!(t.name, "docker");
        assert_eq!(o.line, 3);
        assert_eq!(o.to_string(), "/etc/t1609/hashes.toml:3");
        assert_eq!(l.build_id["gnu:abcd"].0.name, "nsenter");
        assert!(load("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[[hash]]\nsha256 = \"abc\"\ntool = \"docker\"\n",
                "/etc/t1609/hashes.toml:2: field `sha256`: `abc` is not 64 hexadecimal digits",
            ),
            (
                &format!("[[hash]]\nsha256 = \"{H}\"\n\ntool = \"dokcer\"\n"),
                "/etc/t1609/hashes.toml:4: field `tool`: unknown tool `dokcer` (known: docker,",
            ),
            (
                "\n[[hash]]\ntool = \"docker\"\n",
                "/etc/t1609/hashes.toml:2: field `sha256`: missing",
            ),
            (
                &format!("[[hash]]\nsha256 = \"{H}\"\nbuild_id = \"gnu:ab\"\ntool = \"docker\"\n"),
                "/etc/t1609/hashes.toml:3: field `build_id`: give either",
            ),
            (
                "[[hash]]\nbuild_id = \"sha1:ab\"\ntool = \"docker\"\n",
                "/etc/t1609/hashes.toml:2: field `build_id`: `sha1:ab` is not",
            ),
            (
                &format!("[[hash]]\nsha256 = \"{H}\"\ntool = \"docker\"\ncolour = \"red\"\n"),
                "/etc/t1609/hashes.toml:4: unknown field `colour`",
            ),
            ("[[hash]]\nsha256 = \n", "/etc/t1609/hashes.toml:2: "),
        ];
        for (text, want) in cases {
            let got = load(text).map(|_| ()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let e = HashList::load(&[PathBuf::from("/nonexistent/t1609-hashes.toml")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/t1609-hashes.toml: cannot read"),
            "{e}"
        );
    }
}
