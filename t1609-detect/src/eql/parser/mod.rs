//! Recursive-descent parser for the EQL subset. Every error names its line and column
//! within the query and what was expected.

mod functions;

use super::{
    ast::{Cmp, EqlError, EqlErrorKind, Field, Kind, Node, Pattern, StrTest},
    lexer::{Tok, Token, lex},
};

/// Parses `process where <condition>`.
pub fn parse_query(src: &str) -> Result<Node, EqlError> {
    // Sequences carry syntax of their own (`with maxspan=1s`) that the lexer refuses:
    // name them before lexing the rest.
    let head = src.trim_start();
    for kw in ["sequence", "sample"] {
        if head.starts_with(kw)
            && !head[kw.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            let at = src.len() - head.len();
            let line = src[..at].matches('\n').count() + 1;
            let column = src[..at]
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                + 1;
            return Err(EqlError {
                line,
                column,
                message: format!(
                    "`{kw}` queries are not supported; expected `process where <condition>`"
                ),
                kind: EqlErrorKind::Sequence,
            });
        }
    }
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
    };
    let cat = p.next();
    match &cat.tok {
        Tok::Ident(s) if s == "process" => {}
        Tok::Ident(s) if matches!(s.as_str(), "sequence" | "sample") => {
            return Err(kind_at(
                &cat,
                EqlErrorKind::Sequence,
                format!("`{s}` queries are not supported; expected `process where <condition>`"),
            ));
        }
        Tok::Ident(s) if p.peek_is_ident("where") => {
            return Err(kind_at(
                &cat,
                EqlErrorKind::Category,
                format!("event category `{s}` is not supported; expected `process`"),
            ));
        }
        _ => return Err(err_at(&cat, "expected `process where <condition>`".into())),
    }
    let w = p.next();
    if !matches!(&w.tok, Tok::Ident(s) if s == "where") {
        return Err(err_at(&w, "expected `where` after `process`".into()));
    }
    let node = p.expr()?;
    p.expect_eof()?;
    Ok(node)
}

/// Parses a bare condition (used by severity overrides).
pub fn parse_condition(src: &str) -> Result<Node, EqlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
    };
    let node = p.expr()?;
    p.expect_eof()?;
    Ok(node)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Parentheses and `not`s open around the current token.
    depth: usize,
}

/// Nesting deeper than this is refused: conditions are walked recursively (here and in
/// folding, indexing and evaluation), and a hostile rule must not exhaust the stack.
const MAX_DEPTH: usize = 128;

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Eof => "end of query".into(),
    }
}

/// An error at token `t`.
fn err_at(t: &Token, message: String) -> EqlError {
    kind_at(t, EqlErrorKind::Syntax, message)
}

/// An error of `kind` at token `t`.
fn kind_at(t: &Token, kind: EqlErrorKind, message: String) -> EqlError {
    EqlError {
        line: t.line,
        column: t.col,
        message,
        kind,
    }
}

/// The field `name` names (at token `t`). An ECS field the agent never provides is an
/// error that says why, so that no rule loads only to be silently false.
fn field(t: &Token, name: &str) -> Result<Field, EqlError> {
    // `?field` marks an optional field in Elastic EQL; absent fields never match here anyway.
    let n = name.strip_prefix('?').unwrap_or(name);
    if let Some(f) = Field::from_name(n) {
        return Ok(f);
    }
    Err(match Field::unavailable(n) {
        Some(why) => kind_at(
            t,
            EqlErrorKind::FieldNotProvided,
            format!("field `{n}` is not provided by the agent: {why}"),
        ),
        None => kind_at(
            t,
            EqlErrorKind::UnknownField,
            format!(
                "unknown field `{n}`; expected one of the documented fields (process.*, user.*, group.*, container.*, host.*, event.*, t1609.*)"
            ),
        ),
    })
}

/// Refuses an operator `what` (at `op`) on a field that is not a string.
fn need_str(field: Field, op: &Token, what: &str) -> Result<(), EqlError> {
    if matches!(field.kind(), Kind::Str | Kind::StrArray) {
        Ok(())
    } else {
        Err(err_at(
            op,
            format!(
                "`{what}` needs a string field; `{}` is not one",
                field.name()
            ),
        ))
    }
}

enum Lit {
    Str(String),
    Num(i64),
    Bool(bool),
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn peek_is_ident(&self, s: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(x) if x == s)
    }
    fn expect_eof(&mut self) -> Result<(), EqlError> {
        let t = self.next();
        match t.tok {
            Tok::Eof => Ok(()),
            Tok::Op("|") => Err(kind_at(
                &t,
                EqlErrorKind::Unsupported,
                "pipes are not supported".into(),
            )),
            ref other => Err(err_at(
                &t,
                format!(
                    "expected `and`, `or` or end of query, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn expr(&mut self) -> Result<Node, EqlError> {
        let mut v = vec![self.and()?];
        while self.peek_is_ident("or") {
            self.next();
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap_or(Node::Const(false))
        } else {
            Node::Or(v)
        })
    }

    fn and(&mut self) -> Result<Node, EqlError> {
        let mut v = vec![self.not()?];
        while self.peek_is_ident("and") {
            self.next();
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap_or(Node::Const(false))
        } else {
            Node::And(v)
        })
    }

    /// Enters one level of nesting at `t`, or refuses to go deeper than [`MAX_DEPTH`].
    fn deeper(&mut self, t: &Token) -> Result<(), EqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err_at(
                t,
                format!("expected at most {MAX_DEPTH} nested parentheses or `not`s"),
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Node, EqlError> {
        if self.peek_is_ident("not") {
            let t = self.next();
            self.deeper(&t)?;
            let n = Node::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(n);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, EqlError> {
        let t = self.next();
        match &t.tok {
            Tok::LParen => {
                self.deeper(&t)?;
                let n = self.expr()?;
                self.depth -= 1;
                let c = self.next();
                if c.tok != Tok::RParen {
                    return Err(err_at(
                        &c,
                        format!("expected `)`, found {}", describe(&c.tok)),
                    ));
                }
                Ok(n)
            }
            Tok::Ident(s) if s == "true" => Ok(Node::Const(true)),
            Tok::Ident(s) if s == "false" => Ok(Node::Const(false)),
            Tok::Ident(s) if self.peek().tok == Tok::LParen => self.function(&t, s),
            Tok::Ident(s)
                if matches!(s.as_str(), "and" | "or" | "in" | "where" | "like" | "regex") =>
            {
                Err(err_at(
                    &t,
                    format!("expected a field or `(`, found keyword `{s}`"),
                ))
            }
            Tok::Ident(s) => {
                let field = field(&t, s)?;
                self.predicate(field, &t)
            }
            other => Err(err_at(
                &t,
                format!(
                    "expected a field, function or `(`, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn literal(&mut self) -> Result<(Lit, Token), EqlError> {
        let t = self.next();
        let l = match &t.tok {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(*n),
            Tok::Ident(s) if s == "true" => Lit::Bool(true),
            Tok::Ident(s) if s == "false" => Lit::Bool(false),
            Tok::Ident(s) if s == "null" => {
                return Err(err_at(
                    &t,
                    "`null` is only supported as `field == null` or `field != null`".into(),
                ));
            }
            Tok::Ident(s) => {
                return Err(kind_at(
                    &t,
                    EqlErrorKind::Unsupported,
                    format!(
                        "expected a literal value, found `{s}` (field-to-field comparison is not supported)"
                    ),
                ));
            }
            other => {
                return Err(err_at(
                    &t,
                    format!("expected a literal value, found {}", describe(other)),
                ));
            }
        };
        Ok((l, t))
    }

    /// One literal or a parenthesised list of them.
    fn literals(&mut self, list_required: bool) -> Result<Vec<(Lit, Token)>, EqlError> {
        if self.peek().tok != Tok::LParen {
            if list_required {
                let t = self.peek().clone();
                return Err(err_at(
                    &t,
                    format!(
                        "expected `(` starting a value list, found {}",
                        describe(&t.tok)
                    ),
                ));
            }
            return Ok(vec![self.literal()?]);
        }
        self.next();
        let mut v = vec![self.literal()?];
        loop {
            let t = self.next();
            match t.tok {
                Tok::Comma => v.push(self.literal()?),
                Tok::RParen => return Ok(v),
                ref other => {
                    return Err(err_at(
                        &t,
                        format!(
                            "expected `,` or `)` in value list, found {}",
                            describe(other)
                        ),
                    ));
                }
            }
        }
    }

    fn strings(&mut self, field: Field, list_required: bool) -> Result<Vec<String>, EqlError> {
        let lits = self.literals(list_required)?;
        let mut out = Vec::with_capacity(lits.len());
        for (l, t) in lits {
            let Lit::Str(s) = l else {
                return Err(err_at(
                    &t,
                    format!("expected a string for `{}`", field.name()),
                ));
            };
            out.push(s);
        }
        Ok(out)
    }

    fn predicate(&mut self, field: Field, ft: &Token) -> Result<Node, EqlError> {
        let op = self.peek().clone();
        match &op.tok {
            Tok::Op(o) => {
                self.next();
                self.comparison(field, &op, o)
            }
            Tok::Ident(kw) => self.keyword_predicate(field, ft, &op, kw),
            // A bare boolean field is a condition of its own.
            _ if field.kind() == Kind::Bool => Ok(Node::Bool(field, Cmp::Eq, true)),
            other => Err(err_at(
                &op,
                format!(
                    "expected an operator after `{}`, found {}",
                    field.name(),
                    describe(other)
                ),
            )),
        }
    }

    /// `field <op> literal`, or `field : pattern`, after the operator `op` (`o`).
    fn comparison(&mut self, field: Field, op: &Token, o: &str) -> Result<Node, EqlError> {
        let kind = field.kind();
        if o == ":" {
            need_str(field, op, ":")?;
            let pats = self.strings(field, false)?;
            return Ok(Node::Str(
                field,
                StrTest::Wild {
                    pats: pats
                        .iter()
                        .map(|p| Pattern::compile(&p.to_lowercase()))
                        .collect(),
                    ci: true,
                },
            ));
        }
        let cmp = match o {
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            _ => Cmp::Ge,
        };
        if self.peek_is_ident("null") {
            let nt = self.next();
            // Elasticsearch: `!= null` is an exists query, `== null` its negation.
            return match cmp {
                Cmp::Eq => Ok(Node::Not(Box::new(Node::Exists(field)))),
                Cmp::Ne => Ok(Node::Exists(field)),
                _ => Err(err_at(
                    &nt,
                    "`null` can only be compared with `==` or `!=`".into(),
                )),
            };
        }
        let (lit, lt) = self.literal()?;
        // `a != b` is `not a == b`, as Elasticsearch translates it: on an array, true
        // when no element equals; on an absent field, true.
        let ne = |n: Node| {
            if cmp == Cmp::Ne {
                Node::Not(Box::new(n))
            } else {
                n
            }
        };
        let eq_or = |c: Cmp| if c == Cmp::Ne { Cmp::Eq } else { c };
        match (kind, lit) {
            (Kind::Str | Kind::StrArray, Lit::Str(s)) => {
                Ok(ne(Node::Str(field, StrTest::Cmp(eq_or(cmp), s))))
            }
            (Kind::Num, Lit::Num(n)) => Ok(ne(Node::Num(field, eq_or(cmp), n))),
            (Kind::Bool, Lit::Bool(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => {
                Ok(ne(Node::Bool(field, Cmp::Eq, b)))
            }
            _ => Err(err_at(
                &lt,
                format!(
                    "expected a {} value for `{}`",
                    kind_name(kind),
                    field.name()
                ),
            )),
        }
    }

    /// `in`, `not in`, `like`, `regex` (and their `~` forms) after a field: `op` is the
    /// keyword's token, `kw` its text, not consumed yet.
    fn keyword_predicate(
        &mut self,
        field: Field,
        ft: &Token,
        op: &Token,
        kw: &str,
    ) -> Result<Node, EqlError> {
        match kw {
            "in" | "in~" => {
                self.next();
                self.in_list(field, ft, kw == "in~")
            }
            "not" => {
                self.next();
                let t = self.next();
                match &t.tok {
                    Tok::Ident(k) if k == "in" || k == "in~" => {
                        Ok(Node::Not(Box::new(self.in_list(field, ft, k == "in~")?)))
                    }
                    other => Err(err_at(
                        &t,
                        format!(
                            "expected `in` after `{} not`, found {}",
                            field.name(),
                            describe(other)
                        ),
                    )),
                }
            }
            "like" | "like~" => {
                self.next();
                need_str(field, op, kw)?;
                let ci = kw == "like~";
                let pats = self.strings(field, false)?;
                let pats = pats
                    .iter()
                    .map(|p| Pattern::compile(&if ci { p.to_lowercase() } else { p.clone() }))
                    .collect();
                Ok(Node::Str(field, StrTest::Wild { pats, ci }))
            }
            "regex" | "regex~" => {
                self.next();
                need_str(field, op, kw)?;
                let start = self.peek().clone();
                let pats = self.strings(field, false)?;
                // EQL regexes match the whole value.
                let joined = pats
                    .iter()
                    .map(|p| format!("(?:{p})"))
                    .collect::<Vec<_>>()
                    .join("|");
                let flags = if kw == "regex~" { "(?i)" } else { "" };
                let re = regex::RegexBuilder::new(&format!("{flags}^(?:{joined})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| err_at(&start, format!("invalid regex: {e}")))?;
                Ok(Node::Str(field, StrTest::Regex(re)))
            }
            _ if field.kind() == Kind::Bool => Ok(Node::Bool(field, Cmp::Eq, true)),
            _ => Err(err_at(
                op,
                format!(
                    "expected an operator after `{}` (==, !=, <, <=, >, >=, :, in, in~, not in, like, like~, regex, regex~), found `{kw}`",
                    field.name()
                ),
            )),
        }
    }

    fn in_list(&mut self, field: Field, ft: &Token, ci: bool) -> Result<Node, EqlError> {
        match field.kind() {
            Kind::Str | Kind::StrArray => {
                let v = self.strings(field, true)?;
                Ok(Node::Str(
                    field,
                    if ci {
                        StrTest::InCi(v.iter().map(|s| s.to_lowercase()).collect())
                    } else {
                        StrTest::In(v)
                    },
                ))
            }
            Kind::Num => {
                let lits = self.literals(true)?;
                let mut v = Vec::new();
                for (l, t) in lits {
                    match l {
                        Lit::Num(n) => v.push(n),
                        _ => {
                            return Err(err_at(
                                &t,
                                format!("expected a number for `{}`", field.name()),
                            ));
                        }
                    }
                }
                Ok(Node::NumIn(field, v))
            }
            Kind::Bool => Err(err_at(
                ft,
                format!("`in` is not supported on boolean field `{}`", field.name()),
            )),
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Str | Kind::StrArray => "string",
        Kind::Num => "number",
        Kind::Bool => "boolean (`true`/`false` with == or !=)",
    }
}
