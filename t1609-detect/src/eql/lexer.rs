//! EQL tokens, with the line and column of each for error messages.

use super::ast::{EqlError, EqlErrorKind};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifier or keyword; `~` suffix kept (`in~`, `startsWith~`), `?` prefix kept.
    Ident(String),
    Str(String),
    Num(i64),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

pub fn lex(src: &str) -> Result<Vec<Token>, EqlError> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = lx.at(0) {
        let (line, col) = (lx.line, lx.col);
        if c.is_whitespace() {
            lx.adv(1);
            continue;
        }
        // `//` line comments and `/* */` block comments, as EQL allows.
        if c == '/' && matches!(lx.at(1), Some('/' | '*')) {
            lx.comment()?;
            continue;
        }
        let tok = match c {
            '(' | ')' | ',' | ':' => {
                lx.adv(1);
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    _ => Tok::Op(":"),
                }
            }
            '=' | '!' | '<' | '>' => lx.operator(c)?,
            '"' if lx.at(1) == Some('"') && lx.at(2) == Some('"') => lx.raw_string()?,
            '"' => lx.string()?,
            '\'' => {
                return Err(lx.err_here(
                    "expected a double-quoted string (EQL does not allow single quotes)".into(),
                ));
            }
            c if c.is_ascii_digit()
                || (c == '-' && lx.at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                lx.number()?
            }
            c if c.is_alphabetic() || matches!(c, '_' | '@' | '?') => lx.ident(),
            '`' => lx.backtick()?,
            other => {
                let shown: String = other.escape_debug().collect();
                return Err(lx.err_here(format!(
                    "unexpected character `{shown}`; expected a field, string, number, operator or parenthesis"
                )));
            }
        };
        out.push(Token { tok, line, col });
    }
    out.push(Token {
        tok: Tok::Eof,
        line: lx.line,
        col: lx.col,
    });
    Ok(out)
}

/// The characters of a query and the position reached, 1-based as errors give it.
struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

impl Lexer {
    /// The character `n` ahead of the position.
    fn at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    /// Moves `n` characters on, counting lines.
    fn adv(&mut self, n: usize) {
        for _ in 0..n {
            if self.at(0) == Some('\n') {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
            self.i += 1;
        }
    }

    fn err(line: usize, column: usize, message: String) -> EqlError {
        EqlError {
            line,
            column,
            message,
            kind: EqlErrorKind::Syntax,
        }
    }

    /// An error at the position (the start of the token being read).
    fn err_here(&self, message: String) -> EqlError {
        Self::err(self.line, self.col, message)
    }

    /// Skips a `//` or `/* */` comment.
    fn comment(&mut self) -> Result<(), EqlError> {
        if self.at(1) == Some('/') {
            while self.at(0).is_some_and(|c| c != '\n') {
                self.adv(1);
            }
            return Ok(());
        }
        let (line, col) = (self.line, self.col);
        self.adv(2);
        while self.at(0).is_some() && !(self.at(0) == Some('*') && self.at(1) == Some('/')) {
            self.adv(1);
        }
        if self.at(0).is_none() {
            return Err(Self::err(line, col, "unterminated comment".into()));
        }
        self.adv(2);
        Ok(())
    }

    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, starting with `c`.
    fn operator(&mut self, c: char) -> Result<Tok, EqlError> {
        let two = self.at(1) == Some('=');
        let op = match (c, two) {
            ('=', true) => "==",
            ('!', true) => "!=",
            ('<', true) => "<=",
            ('>', true) => ">=",
            ('<', false) => "<",
            ('>', false) => ">",
            ('=', false) => {
                return Err(
                    self.err_here("expected `==` (a single `=` is not an EQL operator)".into())
                );
            }
            _ => return Err(self.err_here("expected `!=` (use `not` for negation)".into())),
        };
        self.adv(if two { 2 } else { 1 });
        Ok(Tok::Op(op))
    }

    /// `"""raw"""`: no escapes, newlines allowed.
    fn raw_string(&mut self) -> Result<Tok, EqlError> {
        let (line, col) = (self.line, self.col);
        self.adv(3);
        let mut s = String::new();
        loop {
            let Some(ch) = self.at(0) else {
                return Err(Self::err(line, col, "unterminated string".into()));
            };
            if ch == '"' && self.at(1) == Some('"') && self.at(2) == Some('"') {
                self.adv(3);
                return Ok(Tok::Str(s));
            }
            s.push(ch);
            self.adv(1);
        }
    }

    /// `"..."` with backslash escapes, on one line.
    fn string(&mut self) -> Result<Tok, EqlError> {
        let (line, col) = (self.line, self.col);
        self.adv(1);
        let mut s = String::new();
        loop {
            let Some(ch) = self.at(0) else {
                return Err(Self::err(line, col, "unterminated string".into()));
            };
            match ch {
                '\n' => {
                    return Err(self.err_here("unterminated string (newline inside quotes)".into()));
                }
                '"' => {
                    self.adv(1);
                    return Ok(Tok::Str(s));
                }
                '\\' => {
                    let (el, ec) = (self.line, self.col);
                    self.adv(1);
                    s.push(match self.at(0) {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some(c @ ('"' | '\\' | '\'')) => c,
                        _ => {
                            return Err(Self::err(
                                el,
                                ec,
                                "expected an escape: \\n \\t \\r \\\" \\\\".into(),
                            ));
                        }
                    });
                }
                ch => s.push(ch),
            }
            self.adv(1);
        }
    }

    /// A decimal integer, maybe negative.
    fn number(&mut self) -> Result<Tok, EqlError> {
        let (line, col) = (self.line, self.col);
        let mut s = String::new();
        if let Some(first) = self.at(0) {
            s.push(first);
            self.adv(1);
        }
        while let Some(d) = self.at(0).filter(char::is_ascii_digit) {
            s.push(d);
            self.adv(1);
        }
        if let Some(bad) = self.at(0).filter(|c| *c == '.' || c.is_alphabetic()) {
            return Err(Self::err(
                line,
                col,
                format!("expected an integer, found `{s}{bad}`"),
            ));
        }
        s.parse()
            .map(Tok::Num)
            .map_err(|_| Self::err(line, col, format!("integer `{s}` out of range")))
    }

    /// A field name or keyword, with a `~` suffix kept.
    fn ident(&mut self) -> Tok {
        let mut s = String::new();
        if let Some(first) = self.at(0) {
            s.push(first);
            self.adv(1);
        }
        while let Some(c) = self
            .at(0)
            .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '@'))
        {
            s.push(c);
            self.adv(1);
        }
        if self.at(0) == Some('~') {
            s.push('~');
            self.adv(1);
        }
        Tok::Ident(s)
    }

    /// A backtick-escaped field name.
    fn backtick(&mut self) -> Result<Tok, EqlError> {
        let (line, col) = (self.line, self.col);
        self.adv(1);
        let mut s = String::new();
        while let Some(c) = self.at(0).filter(|c| *c != '`') {
            s.push(c);
            self.adv(1);
        }
        if self.at(0).is_none() {
            return Err(Self::err(
                line,
                col,
                "unterminated backtick field name".into(),
            ));
        }
        self.adv(1);
        Ok(Tok::Ident(s))
    }
}
