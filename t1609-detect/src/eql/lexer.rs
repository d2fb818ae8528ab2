//! EQL tokens, with the line and column of each for error messages.

use super::EqlError;

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
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, col, msg: String| EqlError {
        line,
        column: col,
        message: msg,
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let adv = |n: usize, i: &mut usize, line: &mut usize, col: &mut usize| {
            for _ in 0..n {
                if chars.get(*i) == Some(&'\n') {
                    *line += 1;
                    *col = 1;
                } else {
                    *col += 1;
                }
                *i += 1;
            }
        };
        if c.is_whitespace() {
            adv(1, &mut i, &mut line, &mut col);
            continue;
        }
        // `//` line comments and `/* */` block comments, as EQL allows.
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                adv(1, &mut i, &mut line, &mut col);
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            adv(2, &mut i, &mut line, &mut col);
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                adv(1, &mut i, &mut line, &mut col);
            }
            if i >= chars.len() {
                return Err(err(tl, tc, "unterminated comment".into()));
            }
            adv(2, &mut i, &mut line, &mut col);
            continue;
        }
        let tok = match c {
            '(' => {
                adv(1, &mut i, &mut line, &mut col);
                Tok::LParen
            }
            ')' => {
                adv(1, &mut i, &mut line, &mut col);
                Tok::RParen
            }
            ',' => {
                adv(1, &mut i, &mut line, &mut col);
                Tok::Comma
            }
            ':' => {
                adv(1, &mut i, &mut line, &mut col);
                Tok::Op(":")
            }
            '=' | '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('=', true) => "==",
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    ('=', false) => {
                        return Err(err(
                            tl,
                            tc,
                            "expected `==` (a single `=` is not an EQL operator)".into(),
                        ));
                    }
                    _ => return Err(err(tl, tc, "expected `!=` (use `not` for negation)".into())),
                };
                adv(if two { 2 } else { 1 }, &mut i, &mut line, &mut col);
                Tok::Op(op)
            }
            '"' | '\'' => {
                // EQL strings: "..." with escapes, """raw""" triple-quoted.
                if c == '"' && chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    adv(3, &mut i, &mut line, &mut col);
                    let mut s = String::new();
                    loop {
                        if i >= chars.len() {
                            return Err(err(tl, tc, "unterminated string".into()));
                        }
                        if chars[i] == '"'
                            && chars.get(i + 1) == Some(&'"')
                            && chars.get(i + 2) == Some(&'"')
                        {
                            adv(3, &mut i, &mut line, &mut col);
                            break;
                        }
                        s.push(chars[i]);
                        adv(1, &mut i, &mut line, &mut col);
                    }
                    Tok::Str(s)
                } else if c == '\'' {
                    return Err(err(
                        tl,
                        tc,
                        "expected a double-quoted string (EQL does not allow single quotes)".into(),
                    ));
                } else {
                    adv(1, &mut i, &mut line, &mut col);
                    let mut s = String::new();
                    loop {
                        let Some(&ch) = chars.get(i) else {
                            return Err(err(tl, tc, "unterminated string".into()));
                        };
                        if ch == '\n' {
                            return Err(err(
                                line,
                                col,
                                "unterminated string (newline inside quotes)".into(),
                            ));
                        }
                        if ch == '"' {
                            adv(1, &mut i, &mut line, &mut col);
                            break;
                        }
                        if ch == '\\' {
                            let (el, ec) = (line, col);
                            adv(1, &mut i, &mut line, &mut col);
                            let e = chars.get(i).copied();
                            s.push(match e {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('\'') => '\'',
                                _ => {
                                    return Err(err(
                                        el,
                                        ec,
                                        "expected an escape: \\n \\t \\r \\\" \\\\".into(),
                                    ));
                                }
                            });
                            adv(1, &mut i, &mut line, &mut col);
                            continue;
                        }
                        s.push(ch);
                        adv(1, &mut i, &mut line, &mut col);
                    }
                    Tok::Str(s)
                }
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut s = String::from(c);
                adv(1, &mut i, &mut line, &mut col);
                while i < chars.len() && chars[i].is_ascii_digit() {
                    s.push(chars[i]);
                    adv(1, &mut i, &mut line, &mut col);
                }
                if i < chars.len() && (chars[i] == '.' || chars[i].is_alphabetic()) {
                    return Err(err(
                        tl,
                        tc,
                        format!("expected an integer, found `{s}{}`", chars[i]),
                    ));
                }
                Tok::Num(
                    s.parse()
                        .map_err(|_| err(tl, tc, format!("integer `{s}` out of range")))?,
                )
            }
            c if c.is_alphabetic() || c == '_' || c == '@' || c == '?' => {
                let mut s = String::from(c);
                adv(1, &mut i, &mut line, &mut col);
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '@'))
                {
                    s.push(chars[i]);
                    adv(1, &mut i, &mut line, &mut col);
                }
                if chars.get(i) == Some(&'~') {
                    s.push('~');
                    adv(1, &mut i, &mut line, &mut col);
                }
                Tok::Ident(s)
            }
            '`' => {
                // Backtick-escaped field names.
                adv(1, &mut i, &mut line, &mut col);
                let mut s = String::new();
                while i < chars.len() && chars[i] != '`' {
                    s.push(chars[i]);
                    adv(1, &mut i, &mut line, &mut col);
                }
                if i >= chars.len() {
                    return Err(err(tl, tc, "unterminated backtick field name".into()));
                }
                adv(1, &mut i, &mut line, &mut col);
                Tok::Ident(s)
            }
            other => {
                let shown: String = other.escape_debug().collect();
                return Err(err(
                    tl,
                    tc,
                    format!(
                        "unexpected character `{shown}`; expected a field, string, number, operator or parenthesis"
                    ),
                ));
            }
        };
        out.push(Token {
            tok,
            line: tl,
            col: tc,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}
