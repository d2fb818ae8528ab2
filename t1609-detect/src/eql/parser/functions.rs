//! Function calls of the EQL subset: `startsWith`, `endsWith`, `stringContains` (and
//! their `~` forms) and `length(field) <op> n`.

use super::{Lit, Parser, describe, err_at, field, kind_at};
use crate::eql::{
    ast::{Cmp, EqlError, EqlErrorKind, Field, Kind, Node, StrTest},
    lexer::{Tok, Token},
};

impl Parser {
    /// `startsWith(field, "a", ...)` and the like, or `length(field) <op> n`: `t` is the
    /// name's token.
    pub(super) fn function(&mut self, t: &Token, name: &str) -> Result<Node, EqlError> {
        self.next(); // (
        let (base, ci) = match name.strip_suffix('~') {
            Some(b) => (b, true),
            None => (name, false),
        };
        let supported = ["startsWith", "endsWith", "stringContains", "length"];
        if !supported.contains(&base) {
            return Err(kind_at(
                t,
                EqlErrorKind::Unsupported,
                format!(
                    "unsupported function `{name}`; expected one of startsWith, endsWith, stringContains, length (and ~ forms)"
                ),
            ));
        }
        if base == "length" && ci {
            return Err(err_at(t, "`length` has no `~` form".into()));
        }
        let ft = self.next();
        let field = match &ft.tok {
            Tok::Ident(s) => field(&ft, s)?,
            other => {
                return Err(err_at(
                    &ft,
                    format!(
                        "expected a field as first argument of `{name}`, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        if !matches!(field.kind(), Kind::Str | Kind::StrArray) {
            return Err(err_at(
                &ft,
                format!(
                    "`{name}` needs a string field; `{}` is not one",
                    field.name()
                ),
            ));
        }
        if base == "length" {
            return self.length(field);
        }
        // startsWith(field, "a", "b", ...): any of the strings.
        let mut tests = Vec::new();
        loop {
            let c = self.next();
            match c.tok {
                Tok::Comma => {
                    let (lit, lt) = self.literal()?;
                    let Lit::Str(s) = lit else {
                        return Err(err_at(
                            &lt,
                            format!("expected a string argument to `{name}`"),
                        ));
                    };
                    let s = if ci { s.to_lowercase() } else { s };
                    tests.push(match base {
                        "startsWith" => StrTest::StartsWith(s, ci),
                        "endsWith" => StrTest::EndsWith(s, ci),
                        _ => StrTest::Contains(s, ci),
                    });
                }
                Tok::RParen => break,
                ref other => {
                    return Err(err_at(
                        &c,
                        format!(
                            "expected `,` or `)` in `{name}(...)`, found {}",
                            describe(other)
                        ),
                    ));
                }
            }
        }
        if tests.is_empty() {
            return Err(err_at(
                t,
                format!("`{name}` needs a string argument after the field"),
            ));
        }
        let mut nodes: Vec<Node> = tests.into_iter().map(|s| Node::Str(field, s)).collect();
        Ok(if nodes.len() == 1 {
            nodes.pop().unwrap_or(Node::Const(false))
        } else {
            Node::Or(nodes)
        })
    }

    /// The rest of `length(field) <op> n`, after the field.
    fn length(&mut self, field: Field) -> Result<Node, EqlError> {
        let c = self.next();
        if c.tok != Tok::RParen {
            return Err(err_at(
                &c,
                format!(
                    "expected `)` after length's argument, found {}",
                    describe(&c.tok)
                ),
            ));
        }
        let o = self.next();
        let cmp = match o.tok {
            Tok::Op("==") => Cmp::Eq,
            Tok::Op("!=") => Cmp::Ne,
            Tok::Op("<") => Cmp::Lt,
            Tok::Op("<=") => Cmp::Le,
            Tok::Op(">") => Cmp::Gt,
            Tok::Op(">=") => Cmp::Ge,
            ref other => {
                return Err(err_at(
                    &o,
                    format!(
                        "expected a comparison after `length(...)`, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        let (lit, lt) = self.literal()?;
        let Lit::Num(n) = lit else {
            return Err(err_at(
                &lt,
                "expected a number to compare `length(...)` with".into(),
            ));
        };
        Ok(Node::Length(field, cmp, n))
    }
}
