//! Shell-word splitting of a command string (`sh -c '...'`, `env -S '...'`): quotes,
//! backslashes, separators, redirections and command substitutions, with no expansion.

/// Substitutions nested deeper than this are not split into commands of their own.
const MAX_SUBSTITUTION_DEPTH: u8 = 3;

/// Shell-word splitting with quotes and backslashes (no expansion).
pub(crate) fn split_words(s: &str) -> Vec<String> {
    split_commands(s, 0).into_iter().flatten().collect()
}

/// Splits a shell command string into simple commands (on `;`, `&&`, `||`, `|`, `&`,
/// newlines, parentheses), each as a list of words. `$(...)` and backticks become
/// commands of their own.
pub(crate) fn split_commands(s: &str, depth: u8) -> Vec<Vec<String>> {
    let chars: Vec<char> = s.chars().collect();
    let mut sp = Splitter {
        chars: &chars,
        depth,
        cmds: Vec::new(),
        cur: Vec::new(),
        word: String::new(),
        in_word: false,
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    if n != '\n' {
                        sp.word.push(n);
                        sp.in_word = true;
                    }
                    i += 2;
                    continue;
                }
                // A trailing backslash is dropped.
            }
            '\'' => {
                sp.in_word = true;
                i += 1;
                while let Some(&q) = chars.get(i).filter(|&&q| q != '\'') {
                    sp.word.push(q);
                    i += 1;
                }
            }
            '"' => i = sp.double_quoted(i + 1),
            '$' if chars.get(i + 1) == Some(&'(') => {
                i = sp.substitute(i);
                sp.in_word = true;
                continue;
            }
            '`' => {
                i = sp.substitute(i);
                sp.in_word = true;
                continue;
            }
            ';' | '&' | '|' | '\n' | '(' | ')' => sp.end_command(),
            '<' | '>' => {
                i = sp.redirection(i);
                continue;
            }
            c if c.is_whitespace() => sp.flush_word(),
            c => {
                // A redirection's fd number (`2>`) is not a word.
                if c.is_ascii_digit() && !sp.in_word && matches!(chars.get(i + 1), Some('>' | '<'))
                {
                    i += 1;
                    continue;
                }
                sp.word.push(c);
                sp.in_word = true;
            }
        }
        i += 1;
    }
    sp.end_command();
    sp.cmds
}

/// The state of one [`split_commands`] pass.
struct Splitter<'a> {
    chars: &'a [char],
    depth: u8,
    /// The commands so far.
    cmds: Vec<Vec<String>>,
    /// The words of the command being read.
    cur: Vec<String>,
    word: String,
    /// A word has started (`''` is an empty word, not none).
    in_word: bool,
}

impl Splitter<'_> {
    fn flush_word(&mut self) {
        if self.in_word {
            self.cur.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn end_command(&mut self) {
        self.flush_word();
        if !self.cur.is_empty() {
            self.cmds.push(std::mem::take(&mut self.cur));
        }
    }

    /// The `$(...)` or backtick substitution at `i` becomes commands of its own;
    /// returns the index after it.
    fn substitute(&mut self, i: usize) -> usize {
        let (inner, end) = substitution(self.chars, i);
        if self.depth < MAX_SUBSTITUTION_DEPTH {
            self.cmds.extend(split_commands(&inner, self.depth + 1));
        }
        end
    }

    /// The inside of a double-quoted string starting at `i`; returns the index of the
    /// closing quote (or past the end).
    fn double_quoted(&mut self, mut i: usize) -> usize {
        let chars = self.chars;
        self.in_word = true;
        while let Some(&c) = chars.get(i).filter(|&&c| c != '"') {
            if c == '\\' && matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) {
                i += 1;
            } else if c == '$' && chars.get(i + 1) == Some(&'(') || c == '`' {
                i = self.substitute(i);
                continue;
            }
            self.word.push(chars[i]);
            i += 1;
        }
        i
    }

    /// Drops the redirection at `i` (operator and target word); returns the index after.
    fn redirection(&mut self, mut i: usize) -> usize {
        let chars = self.chars;
        self.flush_word();
        i += 1;
        while chars.get(i).is_some_and(|c| matches!(c, '>' | '&' | '<')) {
            i += 1;
        }
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        while chars
            .get(i)
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, ';' | '&' | '|' | ')'))
        {
            i += 1;
        }
        i
    }
}

/// Returns the text inside `$(...)` or backticks starting at `start`, and the index after it.
fn substitution(chars: &[char], start: usize) -> (String, usize) {
    if chars[start] == '`' {
        let mut i = start + 1;
        let mut s = String::new();
        while i < chars.len() && chars[i] != '`' {
            s.push(chars[i]);
            i += 1;
        }
        return (s, i + 1);
    }
    let mut i = start + 2;
    let mut level = 1;
    let mut s = String::new();
    while i < chars.len() {
        match chars[i] {
            '(' => level += 1,
            ')' => {
                level -= 1;
                if level == 0 {
                    return (s, i + 1);
                }
            }
            _ => {}
        }
        s.push(chars[i]);
        i += 1;
    }
    (s, i)
}
