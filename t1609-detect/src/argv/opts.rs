//! The getopt-style option walker the tool parsers share, and [`Few`], its small
//! in-place vector.

/// Splits `--name=value` into its parts.
pub(crate) fn split_eq(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (arg, None),
    }
}

/// A generic getopt-style walker: `long_vals`/`short_vals` list options that take a
/// value. Calls `on_opt(name, value)` for each option and returns the index of the first
/// positional (or `--`+1), honouring `--`.
pub(crate) struct Opts<'a> {
    pub long_vals: &'a [&'a str],
    pub short_vals: &'a str,
    /// Stop at the first positional (tools whose options precede the verb / command).
    pub stop_at_positional: bool,
}

pub(crate) struct Walk<'a> {
    /// (option name with dashes, value), borrowed from the argv (short names from
    /// [`SHORT_NAMES`]).
    pub opts: Few<(&'a str, Option<&'a str>), 8>,
    /// Borrowed from the walked argv, like `rest`.
    pub positionals: Few<&'a String, 4>,
    /// Arguments after `--` (or after the first positional when stopping there): a
    /// suffix of the walked argv, borrowed.
    pub rest: &'a [String],
    pub saw_dashdash: bool,
}

/// Up to `N` items in place, more in a vector: a walk rarely sees more than a few
/// options or positionals, and two vectors per walk were a visible share of a parse.
pub(crate) struct Few<T: Copy, const N: usize> {
    len: usize,
    inline: [T; N],
    /// Every item once more than `N` were pushed.
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> Few<T, N> {
    /// `fill` only pads the unused slots.
    pub(crate) fn new(fill: T) -> Self {
        Few {
            len: 0,
            inline: [fill; N],
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, x: T) {
        if self.len < N {
            self.inline[self.len] = x;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(x);
        }
        self.len += 1;
    }
}

impl<T: Copy, const N: usize> std::ops::Deref for Few<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

/// `-X` for every printable ASCII `X`, so short option names need no allocation.
const SHORT_NAMES: &str = r#"-!-"-#-$-%-&-'-(-)-*-+-,---.-/-0-1-2-3-4-5-6-7-8-9-:-;-<-=->-?-@-A-B-C-D-E-F-G-H-I-J-K-L-M-N-O-P-Q-R-S-T-U-V-W-X-Y-Z-[-\-]-^-_-`-a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-{-|-}-~"#;

/// The name of a short option that is not printable ASCII. No option we look up has
/// one, so they can all share this name.
const OTHER_SHORT: &str = "-\u{fffd}";

fn short_name(c: char) -> &'static str {
    match u8::try_from(c) {
        Ok(b @ 0x21..=0x7e) => {
            let i = usize::from(b - 0x21) * 2;
            &SHORT_NAMES[i..i + 2]
        }
        _ => OTHER_SHORT,
    }
}

/// Placeholder for unused positional slots.
static NO_ARG: String = String::new();

impl Opts<'_> {
    pub(crate) fn walk<'a>(&self, args: &'a [String]) -> Walk<'a> {
        let mut walk = Walk {
            opts: Few::new(("", None)),
            positionals: Few::new(&NO_ARG),
            rest: &[],
            saw_dashdash: false,
        };
        let mut i = 0;
        while i < args.len() {
            let arg: &'a str = &args[i];
            if arg == "--" {
                walk.saw_dashdash = true;
                walk.rest = &args[i + 1..];
                return walk;
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (key, value) = split_eq(long);
                // `--key` is a prefix of the argument itself.
                let name = &arg[..2 + key.len()];
                if value.is_none() && self.long_vals.contains(&key) {
                    walk.opts.push((name, args.get(i + 1).map(String::as_str)));
                    i += 2;
                } else {
                    walk.opts.push((name, value));
                    i += 1;
                }
                continue;
            }
            if arg.len() > 1 && arg.starts_with('-') {
                let cluster = &arg[1..];
                let mut consumed_next = false;
                for (j, c) in cluster.char_indices() {
                    // Option letters are ASCII: a byte scan, not a char search.
                    if c.is_ascii() && self.short_vals.as_bytes().contains(&(c as u8)) {
                        let rest = &cluster[j + c.len_utf8()..];
                        let rest = rest.strip_prefix('=').unwrap_or(rest);
                        if rest.is_empty() {
                            walk.opts
                                .push((short_name(c), args.get(i + 1).map(String::as_str)));
                            consumed_next = true;
                        } else {
                            walk.opts.push((short_name(c), Some(rest)));
                        }
                        break;
                    }
                    walk.opts.push((short_name(c), None));
                }
                i += if consumed_next { 2 } else { 1 };
                continue;
            }
            if self.stop_at_positional {
                walk.positionals.push(&args[i]);
                walk.rest = &args[i + 1..];
                return walk;
            }
            walk.positionals.push(&args[i]);
            i += 1;
        }
        walk
    }
}

impl<'a> Walk<'a> {
    pub(crate) fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(k, _)| names.contains(k))
    }
    pub(crate) fn flag_true(&self, names: &[&str]) -> bool {
        self.opts
            .iter()
            .any(|(k, v)| names.contains(k) && v.is_none_or(|v| !v.eq_ignore_ascii_case("false")))
    }
    pub(crate) fn values<'b>(&'b self, names: &'b [&'b str]) -> impl Iterator<Item = &'a str> + 'b {
        self.opts
            .iter()
            .filter(move |(k, _)| names.contains(k))
            .filter_map(|(_, v)| *v)
    }
    /// The last value of any of `names`, borrowed.
    pub(crate) fn value_str(&self, names: &[&str]) -> Option<&'a str> {
        self.opts
            .iter()
            .rev()
            .find(|(k, _)| names.contains(k))
            .and_then(|(_, v)| *v)
    }
    pub(crate) fn value(&self, names: &[&str]) -> Option<String> {
        self.value_str(names).map(str::to_string)
    }
    /// The positionals then the rest, as owned strings (a wrapped command).
    pub(crate) fn command(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.positionals.len() + self.rest.len());
        v.extend(self.positionals.iter().map(|s| (*s).clone()));
        v.extend_from_slice(self.rest);
        v
    }
}

pub(crate) const HELP_FLAGS: &[&str] = &["--help", "-h", "--version", "-V"];
