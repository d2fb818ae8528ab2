//! kubectl plugins (`kubectl-<name>` on PATH, run with kubectl's arguments after the
//! plugin name) and docker CLI plugins (`…/cli-plugins/docker-<name>`, run as
//! `<path> <name> …`). A plugin that execs into pods or containers, or opens a shell on
//! the node, is T1609: its name says which it is.

use super::{
    container,
    invocation::{Invocation, PackedArgv},
    kube::parse_kubectl,
    tools::basename,
};

/// The host CLI and plugin name when `name` (an executable's basename) is a plugin.
pub(super) fn plugin_of(name: &str, argv: &[String]) -> Option<(&'static str, String)> {
    if let Some(p) = name.strip_prefix("kubectl-").filter(|p| !p.is_empty()) {
        return Some(("kubectl", p.to_string()));
    }
    let p = name.strip_prefix("docker-").filter(|p| !p.is_empty())?;
    // The docker CLI runs a plugin with the plugin's name as argv[1]; `docker-compose`
    // run on its own is compose's own binary.
    (argv.get(1).map(|a| basename(a)) == Some(p)).then(|| ("docker", p.to_string()))
}

/// What a plugin's name says it does: `node-shell` (a shell on the node), `exec` (a
/// command or shell in a pod or container), `debug` (docker debug: a shell in a
/// container), or nothing we know.
pub(super) fn plugin_verb(plugin: &str) -> Option<&'static str> {
    let p = plugin.to_ascii_lowercase();
    let words: Vec<&str> = p.split(['-', '_']).collect();
    let has = |w: &str| words.contains(&w);
    if has("node") && (has("shell") || has("admin") || has("ssh"))
        || has("nsenter")
        || p == "nodeshell"
        || has("root") && has("host")
    {
        Some("node-shell")
    } else if p == "debug" {
        Some("debug")
    } else if ["exec", "iexec", "pexec", "shell", "ssh", "enter", "attach"]
        .iter()
        .any(|w| has(w))
    {
        Some("exec")
    } else {
        None
    }
}

/// Parses a plugin's exec.
pub(super) fn parse_plugin(
    host: &str,
    plugin: &str,
    argv: &[String],
    wrappers: &[String],
) -> Invocation {
    let mut inv = match host {
        "kubectl" => kubectl_plugin(plugin, argv),
        _ => docker_plugin(plugin, argv),
    };
    inv.argv = PackedArgv::new(argv);
    inv.wrappers = wrappers.to_vec();
    inv.plugin = Some(plugin.to_string());
    inv
}

fn kubectl_plugin(plugin: &str, argv: &[String]) -> Invocation {
    let Some(verb) = plugin_verb(plugin).map(|v| if v == "debug" { "exec" } else { v }) else {
        let mut inv = Invocation::new("kubectl", argv);
        inv.verb = Some(format!("plugin:{plugin}"));
        return inv;
    };
    // The plugin takes kubectl's arguments after the plugin name.
    let mut full = vec!["kubectl".to_string(), verb.to_string()];
    full.extend(argv[1..].iter().cloned());
    parse_kubectl("kubectl", &full)
}

/// Options of exec-like docker plugins (`docker debug`) that take a value.
const DOCKER_PLUGIN_VALUES: &[&str] = &[
    "--shell",
    "-c",
    "--command",
    "-u",
    "--user",
    "--host",
    "-H",
    "--context",
    "-e",
    "--env",
    "-w",
    "--workdir",
    "--image",
];

fn docker_plugin(plugin: &str, argv: &[String]) -> Invocation {
    // argv[1] is the plugin's name: what follows is its own command line.
    if plugin == "compose" {
        return container::parse_compose(argv, 2);
    }
    let mut inv = Invocation::new("docker", argv);
    let Some(verb) = plugin_verb(plugin) else {
        inv.verb = Some(format!("plugin:{plugin}"));
        return inv;
    };
    let args = argv.get(2..).unwrap_or(&[]);
    let mut i = 0;
    let mut command = None;
    while let Some(a) = args.get(i) {
        if a == "--help" || a == "-h" {
            inv.help = true;
        }
        if !a.starts_with('-') {
            break;
        }
        let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
        if !a.contains('=') && DOCKER_PLUGIN_VALUES.contains(&key) {
            if matches!(key, "-c" | "--command") {
                command = args.get(i + 1).cloned();
            }
            i += 1;
        }
        i += 1;
    }
    inv.container = args.get(i).cloned();
    // These plugins open an interactive shell unless given a command.
    inv.interactive = true;
    inv.tty = true;
    let mut cmd: Vec<String> = args
        .get(i + 1..)
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    if let Some(c) = command {
        cmd = vec!["sh".into(), "-c".into(), c];
    }
    if cmd.is_empty() {
        inv.command_class = Some("shell");
    } else {
        inv.set_command(cmd);
    }
    inv.verb = Some(if verb == "debug" { "debug" } else { "exec" }.into());
    inv
}

#[cfg(test)]
mod tests {
    use super::plugin_verb;

    #[test]
    fn plugin_names() {
        for (p, want) in [
            ("node_shell", Some("node-shell")),
            ("node-shell", Some("node-shell")),
            ("nsenter", Some("node-shell")),
            ("ssh_node", Some("node-shell")),
            ("exec_as", Some("exec")),
            ("iexec", Some("exec")),
            ("pod-shell", Some("exec")),
            ("ssh", Some("exec")),
            ("debug", Some("debug")),
            ("ctx", None),
            ("neat", None),
            ("tree", None),
            ("krew", None),
            ("buildx", None),
            ("executor", None),
        ] {
            assert_eq!(plugin_verb(p), want, "{p}");
        }
    }
}
