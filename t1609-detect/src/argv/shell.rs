//! Wrappers whose argv carries another command (sudo, env, xargs, sh -c, ...): the inner
//! command is re-parsed, with the wrapper recorded in `wrappers`.

use std::sync::Arc;

use super::invocation::{Invocation, PackedArgv};
use super::kube::parse_kubectl;
use super::opts::Opts;
use super::tools::{SHELLS, basename};
// The one arrow back to the dispatcher: a wrapper's inner command is parsed like any other.
use super::{MAX_INVOCATIONS, parse_into};

/// Re-parses `inner` as a command run by `wrapper`.
fn recurse(
    wrapper: &str,
    inner: &[String],
    wrappers: &[String],
    depth: u8,
    out: &mut Vec<Arc<Invocation>>,
) {
    let Some(first) = inner.first() else {
        return;
    };
    let mut w = wrappers.to_vec();
    w.push(wrapper.to_string());
    parse_into(basename(first), inner, &w, depth + 1, out);
}

/// Appends the wrapper's own invocation; returns it, so that the inner command is
/// parsed from its `command` rather than from another copy.
fn push_wrapper(
    name: &str,
    argv: &[String],
    wrappers: &[String],
    out: &mut Vec<Arc<Invocation>>,
    cmd: Vec<String>,
) -> Arc<Invocation> {
    let mut inv = Invocation::new(name, argv);
    inv.wrappers = wrappers.to_vec();
    inv.set_command(cmd);
    let inv = Arc::new(inv);
    out.push(Arc::clone(&inv));
    inv
}

pub(crate) fn parse_wrapper(
    name: &str,
    argv: &[String],
    wrappers: &[String],
    depth: u8,
    out: &mut Vec<Arc<Invocation>>,
) {
    let args = &argv[1..];
    let inner: Vec<String> = match name {
        "sudo" => {
            let w = Opts {
                long_vals: &[
                    "user",
                    "group",
                    "close-from",
                    "chdir",
                    "host",
                    "prompt",
                    "role",
                    "type",
                    "command-timeout",
                    "other-user",
                    "chroot",
                ],
                short_vals: "ugCDhprtTUR",
                stop_at_positional: true,
            }
            .walk(args);
            let mut cmd: Vec<String> = w.command();
            // `sudo -s cmd` / `sudo -i cmd` run the command through a shell.
            if w.opts
                .iter()
                .any(|(k, _)| matches!(*k, "-s" | "-i" | "--shell" | "--login"))
                && !cmd.is_empty()
            {
                cmd = vec!["sh".into(), "-c".into(), cmd.join(" ")];
            }
            cmd
        }
        "doas" => {
            let w = Opts {
                long_vals: &[],
                short_vals: "uC",
                stop_at_positional: true,
            }
            .walk(args);
            w.command()
        }
        "env" => {
            let w = Opts {
                long_vals: &[
                    "unset",
                    "chdir",
                    "split-string",
                    "block-signal",
                    "default-signal",
                    "ignore-signal",
                ],
                short_vals: "uCS",
                stop_at_positional: true,
            }
            .walk(args);
            let mut cmd: Vec<String> = w
                .command()
                .into_iter()
                .skip_while(|a| is_assignment(a))
                .collect();
            // `env -S "docker exec ..."` splits one string into argv.
            if let Some(s) = w
                .opts
                .iter()
                .rev()
                .find(|(k, _)| matches!(*k, "-S" | "--split-string"))
                .and_then(|(_, v)| *v)
            {
                let mut split = split_words(s);
                split.extend(cmd);
                cmd = split.into_iter().skip_while(|a| is_assignment(a)).collect();
            }
            cmd
        }
        "nohup" | "setsid" | "stdbuf" | "nice" | "ionice" | "unbuffer" | "time" | "runuser"
        | "chronic" | "caffeinate" | "strace" | "ltrace" | "flock" => {
            let w = Opts {
                long_vals: &[
                    "adjustment",
                    "class",
                    "classdata",
                    "user",
                    "group",
                    "output",
                    "input",
                    "error",
                    "output-file",
                ],
                short_vals: "nciugoeE",
                stop_at_positional: true,
            }
            .walk(args);
            let mut cmd: Vec<String> = w.command();
            if name == "flock" && !cmd.is_empty() {
                cmd.remove(0);
            }
            cmd
        }
        "timeout" => {
            let w = Opts {
                long_vals: &["signal", "kill-after"],
                short_vals: "sk",
                stop_at_positional: true,
            }
            .walk(args);
            // The first positional is the duration.
            w.rest.to_vec()
        }
        "chroot" => {
            let w = Opts {
                long_vals: &["userspec", "groups"],
                short_vals: "",
                stop_at_positional: true,
            }
            .walk(args);
            let cmd = w.rest.to_vec();
            if cmd.is_empty() && !w.positionals.is_empty() {
                vec!["/bin/sh".into(), "-i".into()]
            } else {
                cmd
            }
        }
        "xargs" => {
            let w = Opts {
                long_vals: &[
                    "arg-file",
                    "delimiter",
                    "eof",
                    "replace",
                    "max-lines",
                    "max-args",
                    "max-procs",
                    "max-chars",
                    "process-slot-var",
                ],
                short_vals: "adEeIiLlnPs",
                stop_at_positional: true,
            }
            .walk(args);
            w.command()
        }
        "watch" => {
            let w = Opts {
                long_vals: &["interval", "differences"],
                short_vals: "nd",
                stop_at_positional: true,
            }
            .walk(args);
            let cmd: Vec<String> = w.command();
            // watch runs its arguments through `sh -c`.
            if cmd.is_empty() {
                cmd
            } else {
                vec!["sh".into(), "-c".into(), cmd.join(" ")]
            }
        }
        "su" => {
            let w = Opts {
                long_vals: &[
                    "command",
                    "group",
                    "supp-group",
                    "shell",
                    "whitelist-environment",
                ],
                short_vals: "cgGsw",
                stop_at_positional: false,
            }
            .walk(args);
            match w.value(&["-c", "--command"]) {
                Some(c) => vec!["sh".into(), "-c".into(), c],
                None => Vec::new(),
            }
        }
        "script" => {
            let w = Opts {
                long_vals: &[
                    "command",
                    "log-io",
                    "log-in",
                    "log-out",
                    "log-timing",
                    "logging-format",
                    "output-limit",
                    "echo",
                    "timing",
                ],
                short_vals: "cIOBTmEt",
                stop_at_positional: false,
            }
            .walk(args);
            match w.value(&["-c", "--command"]) {
                Some(c) => vec!["sh".into(), "-c".into(), c],
                None => Vec::new(),
            }
        }
        n if SHELLS.contains(&n) => {
            if let Some(s) = shell_c_string(args) {
                push_wrapper(n, argv, wrappers, out, Vec::new());
                let mut w = wrappers.to_vec();
                w.push(format!("{n} -c"));
                for segment in split_commands(&s, 0) {
                    if out.len() >= MAX_INVOCATIONS {
                        break;
                    }
                    let seg = strip_prefix_words(&segment);
                    if let Some(first) = seg.first() {
                        parse_into(basename(first), seg, &w, depth + 1, out);
                    }
                }
            }
            return;
        }
        n if n.starts_with("kubectl-") => {
            // kubectl plugins: node-shell runs a privileged nsenter pod on a node.
            if matches!(
                n,
                "kubectl-exec_as" | "kubectl-exec-as" | "kubectl-node_shell" | "kubectl-node-shell"
            ) {
                // The plugin binary takes kubectl's arguments after the plugin name.
                let verb = if n.contains("exec") {
                    "exec"
                } else {
                    "node-shell"
                };
                let mut full = vec!["kubectl".to_string(), verb.to_string()];
                full.extend(args.iter().cloned());
                let mut inv = parse_kubectl("kubectl", &full);
                inv.argv = PackedArgv::new(argv);
                inv.wrappers = wrappers.to_vec();
                out.push(Arc::new(inv));
                return;
            }
            let mut inv = Invocation::new("kubectl", argv);
            inv.wrappers = wrappers.to_vec();
            // Other plugins (and look-alikes such as `kubectl-exec`) run nothing we know.
            inv.verb = Some(format!("plugin:{}", &n[8..]));
            out.push(Arc::new(inv));
            return;
        }
        _ => return,
    };
    let inv = push_wrapper(name, argv, wrappers, out, inner);
    recurse(name, &inv.command, wrappers, depth, out);
}

fn is_assignment(a: &str) -> bool {
    match a.split_once('=') {
        Some((k, _)) => {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The string after `-c` (`sh -c`, `bash -lc`, `sh -ec`, `busybox sh -c`).
fn shell_c_string(args: &[String]) -> Option<String> {
    let mut seen_c = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            continue;
        }
        if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 && !a.starts_with("--") {
            if a.starts_with('-') && a.contains('c') {
                seen_c = true;
            }
            // `-o opt` takes a value.
            if a.ends_with('o') {
                i += 1;
            }
            i += 1;
            continue;
        }
        if a.starts_with("--") {
            i += 1;
            continue;
        }
        return seen_c.then(|| a.clone());
    }
    None
}

/// Drops leading assignments and prefix keywords (`FOO=1 exec time docker ...`).
fn strip_prefix_words(seg: &[String]) -> &[String] {
    let mut s = seg;
    while let Some(first) = s.first() {
        let f = first.as_str();
        if is_assignment(f)
            || matches!(
                f,
                "exec"
                    | "command"
                    | "builtin"
                    | "time"
                    | "!"
                    | "then"
                    | "do"
                    | "else"
                    | "{"
                    | "("
                    | "if"
                    | "while"
                    | "until"
                    | "nohup"
            )
        {
            s = &s[1..];
        } else {
            break;
        }
    }
    s
}

/// Shell-word splitting with quotes and backslashes (no expansion).
pub(crate) fn split_words(s: &str) -> Vec<String> {
    split_commands(s, 0).into_iter().flatten().collect()
}

/// Splits a shell command string into simple commands (on `;`, `&&`, `||`, `|`, `&`,
/// newlines, parentheses), each as a list of words. `$(...)` and backticks become
/// commands of their own.
pub(crate) fn split_commands(s: &str, depth: u8) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let flush_word = |word: &mut String, in_word: &mut bool, cur: &mut Vec<String>| {
        if *in_word {
            cur.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    if n != '\n' {
                        word.push(n);
                        in_word = true;
                    }
                    i += 2;
                    continue;
                }
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\'
                        && i + 1 < chars.len()
                        && matches!(chars[i + 1], '"' | '\\' | '$' | '`')
                    {
                        i += 1;
                    } else if chars[i] == '$' && chars.get(i + 1) == Some(&'(') || chars[i] == '`' {
                        let (inner, end) = substitution(&chars, i);
                        if depth < 3 {
                            cmds.extend(split_commands(&inner, depth + 1));
                        }
                        i = end;
                        continue;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                let (inner, end) = substitution(&chars, i);
                if depth < 3 {
                    cmds.extend(split_commands(&inner, depth + 1));
                }
                in_word = true;
                i = end;
                continue;
            }
            '`' => {
                let (inner, end) = substitution(&chars, i);
                if depth < 3 {
                    cmds.extend(split_commands(&inner, depth + 1));
                }
                in_word = true;
                i = end;
                continue;
            }
            ';' | '&' | '|' | '\n' | '(' | ')' => {
                flush_word(&mut word, &mut in_word, &mut cur);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
            }
            '<' | '>' => {
                // Redirections: drop the operator and its target word.
                flush_word(&mut word, &mut in_word, &mut cur);
                i += 1;
                while i < chars.len() && matches!(chars[i], '>' | '&' | '<') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], ';' | '&' | '|' | ')')
                {
                    i += 1;
                }
                continue;
            }
            c if c.is_whitespace() => flush_word(&mut word, &mut in_word, &mut cur),
            c => {
                // A redirection's fd number (`2>`) is not a word.
                if c.is_ascii_digit() && !in_word && matches!(chars.get(i + 1), Some('>' | '<')) {
                    i += 1;
                    continue;
                }
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    flush_word(&mut word, &mut in_word, &mut cur);
    if !cur.is_empty() {
        cmds.push(cur);
    }
    cmds
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
