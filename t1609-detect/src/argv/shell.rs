//! Wrappers whose argv carries another command (sudo, env, xargs, sh -c, ...): the inner
//! command is re-parsed, with the wrapper recorded in `wrappers`.

use std::sync::Arc;

use super::{
    invocation::{Invocation, MAX_INVOCATIONS},
    opts::{Opts, Walk},
    tools::{SHELLS, basename},
    words::{split_commands, split_words},
};

/// The dispatcher's `parse_into(name, argv, wrappers, depth, out)`: a wrapper's inner
/// command is parsed like any other. Handed in, so this module does not import back
/// the module that calls it.
pub(super) type ParseInto = fn(&str, &[String], &[String], u8, &mut Vec<Arc<Invocation>>);

/// Re-parses `inner` as a command run by `wrapper`.
fn recurse(
    wrapper: &str,
    inner: &[String],
    wrappers: &[String],
    depth: u8,
    out: &mut Vec<Arc<Invocation>>,
    parse_into: ParseInto,
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

const SUDO_LONG: &[&str] = &[
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
];
const ENV_LONG: &[&str] = &[
    "unset",
    "chdir",
    "split-string",
    "block-signal",
    "default-signal",
    "ignore-signal",
];
/// nohup, setsid, nice, runuser, strace and the other prefix commands: the options of
/// them all, as none of their names clash.
const PREFIX_LONG: &[&str] = &[
    "adjustment",
    "class",
    "classdata",
    "user",
    "group",
    "output",
    "input",
    "error",
    "output-file",
];
const XARGS_LONG: &[&str] = &[
    "arg-file",
    "delimiter",
    "eof",
    "replace",
    "max-lines",
    "max-args",
    "max-procs",
    "max-chars",
    "process-slot-var",
];
const SU_LONG: &[&str] = &[
    "command",
    "group",
    "supp-group",
    "shell",
    "whitelist-environment",
];
const SCRIPT_LONG: &[&str] = &[
    "command",
    "log-io",
    "log-in",
    "log-out",
    "log-timing",
    "logging-format",
    "output-limit",
    "echo",
    "timing",
];

/// The option grammar of a wrapper that takes its command as arguments (or as `-c`).
fn wrapper_opts(name: &str) -> Option<Opts<'static>> {
    let (long_vals, short_vals, stop_at_positional): (&'static [&'static str], _, _) = match name {
        "sudo" => (SUDO_LONG, "ugCDhprtTUR", true),
        "doas" => (&[], "uC", true),
        "env" => (ENV_LONG, "uCS", true),
        "nohup" | "setsid" | "stdbuf" | "nice" | "ionice" | "unbuffer" | "time" | "runuser"
        | "chronic" | "caffeinate" | "strace" | "ltrace" | "flock" => {
            (PREFIX_LONG, "nciugoeE", true)
        }
        "timeout" => (&["signal", "kill-after"], "sk", true),
        "chroot" => (&["userspec", "groups"], "", true),
        "xargs" => (XARGS_LONG, "adEeIiLlnPs", true),
        "watch" => (&["interval", "differences"], "nd", true),
        "su" => (SU_LONG, "cgGsw", false),
        "script" => (SCRIPT_LONG, "cIOBTmEt", false),
        _ => return None,
    };
    Some(Opts {
        long_vals,
        short_vals,
        stop_at_positional,
    })
}

/// The command wrapper `name` runs, from its walked arguments.
fn wrapped_command(name: &str, w: &Walk) -> Vec<String> {
    match name {
        "sudo" => {
            let cmd = w.command();
            // `sudo -s cmd` / `sudo -i cmd` run the command through a shell.
            if w.has(&["-s", "-i", "--shell", "--login"]) && !cmd.is_empty() {
                vec!["sh".into(), "-c".into(), cmd.join(" ")]
            } else {
                cmd
            }
        }
        "env" => {
            let mut cmd: Vec<String> = w
                .command()
                .into_iter()
                .skip_while(|a| is_assignment(a))
                .collect();
            // `env -S "docker exec ..."` splits one string into argv.
            if let Some(s) = w.value_str(&["-S", "--split-string"]) {
                let mut split = split_words(s);
                split.extend(cmd);
                cmd = split.into_iter().skip_while(|a| is_assignment(a)).collect();
            }
            cmd
        }
        "flock" => {
            // The first positional is the lock file.
            let mut cmd = w.command();
            if !cmd.is_empty() {
                cmd.remove(0);
            }
            cmd
        }
        // The first positional is the duration.
        "timeout" => w.rest.to_vec(),
        "chroot" => {
            let cmd = w.rest.to_vec();
            if cmd.is_empty() && !w.positionals.is_empty() {
                vec!["/bin/sh".into(), "-i".into()]
            } else {
                cmd
            }
        }
        "watch" => {
            // watch runs its arguments through `sh -c`.
            let cmd = w.command();
            if cmd.is_empty() {
                cmd
            } else {
                vec!["sh".into(), "-c".into(), cmd.join(" ")]
            }
        }
        "su" | "script" => match w.value(&["-c", "--command"]) {
            Some(c) => vec!["sh".into(), "-c".into(), c],
            None => Vec::new(),
        },
        _ => w.command(),
    }
}

pub(crate) fn parse_wrapper(
    name: &str,
    argv: &[String],
    wrappers: &[String],
    depth: u8,
    out: &mut Vec<Arc<Invocation>>,
    parse_into: ParseInto,
) {
    let args = &argv[1..];
    if let Some(opts) = wrapper_opts(name) {
        let inner = wrapped_command(name, &opts.walk(args));
        let inv = push_wrapper(name, argv, wrappers, out, inner);
        recurse(name, &inv.command, wrappers, depth, out, parse_into);
    } else if SHELLS.contains(&name) {
        let Some(s) = shell_c_string(args) else {
            return;
        };
        push_wrapper(name, argv, wrappers, out, Vec::new());
        let mut w = wrappers.to_vec();
        w.push(format!("{name} -c"));
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
}

/// Whether `name` is a wrapper this module parses (sudo, env, a shell, …).
pub(super) fn is_wrapper(name: &str) -> bool {
    wrapper_opts(name).is_some() || SHELLS.contains(&name)
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
