//! HTTP clients (curl, wget, python, perl, node, websocat, wscat, openssl) calling the
//! kubelet, the API server's node proxy, or a container runtime's Engine API.

use std::borrow::Cow;

use super::{
    container::is_runtime_socket,
    invocation::Invocation,
    opts::{Few, HELP_FLAGS, Opts},
};

pub(crate) struct Url<'a> {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Percent-decoded, with `.`/`..`/empty segments resolved.
    pub path: String,
    /// Percent-decoded; borrowed from the input when there was nothing to decode.
    pub query: Cow<'a, str>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; invalid escapes stay as they are, invalid UTF-8 is replaced.
/// Borrows when there is no `%` (the usual case).
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Resolves `.`, `..` and empty segments in one pass over the output (a `..` drops
/// the last segment written).
fn normalize_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Parses `scheme://host:port/path?query` (scheme optional, as curl allows).
pub(crate) fn parse_url(raw: &str) -> Option<Url<'_>> {
    let raw = raw.trim().trim_matches(['\'', '"']);
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", raw),
    };
    let scheme_is = |w: &str| scheme.eq_ignore_ascii_case(w);
    let scheme_ok =
        scheme.is_empty() || ["http", "https", "ws", "wss"].iter().any(|w| scheme_is(w));
    if !scheme_ok {
        return None;
    }
    let (authority, pathq) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        // A bare path (`kubectl get --raw /api/...`): no host or port.
        if scheme.is_empty() && raw.starts_with('/') {
            let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
            return Some(Url {
                host: None,
                port: None,
                path: normalize_path(&percent_decode(path)),
                query: percent_decode(query),
            });
        }
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        (h, p.strip_prefix(':').and_then(|p| p.parse().ok()))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (authority, None),
        }
    };
    let port = port.or(if scheme_is("https") || scheme_is("wss") {
        Some(443)
    } else if scheme_is("http") || scheme_is("ws") {
        Some(80)
    } else {
        None
    });
    let (path, query) = match pathq.split_once('?') {
        Some((p, q)) => (p, q),
        None => (pathq, ""),
    };
    let path = normalize_path(&percent_decode(path.split('#').next().unwrap_or(path)));
    Some(Url {
        host: Some(host.to_ascii_lowercase()),
        port,
        path,
        query: percent_decode(query),
    })
}

const KUBELET_PORTS: &[u16] = &[10250, 10255];
const RUNTIME_TCP_PORTS: &[u16] = &[2375, 2376];

/// Classifies a kubelet path (already stripped of any API-server proxy prefix).
fn kubelet_action(segs: &[&str]) -> &'static str {
    match segs.first().copied() {
        Some("run") => "run",
        Some("exec") => "exec",
        Some("attach") => "attach",
        Some("cri") if segs.get(1) == Some(&"exec") => "cri_exec",
        Some("pods") => "pods",
        Some("runningpods") => "runningpods",
        Some("portForward" | "portforward") => "port_forward",
        Some("metrics") => "metrics",
        Some("healthz") => "healthz",
        Some("containerLogs" | "logs") => "logs",
        Some("stats" | "spec" | "configz" | "debug") => "other_read",
        _ => "other",
    }
}

/// Fills the URL fields of `inv` from `raw`; returns whether it was an API we classify.
pub(crate) fn apply_url(inv: &mut Invocation, raw: &str) -> bool {
    let Some(u) = parse_url(raw) else {
        return false;
    };
    let mut segs: Few<&str, 16> = Few::new("");
    for s in u.path.split('/').filter(|s| !s.is_empty()) {
        segs.push(s);
    }
    let mut classified = false;
    // API server node proxy: /api/v1/nodes/<node>[:port]/proxy/<kubelet path>.
    if segs.len() >= 5 && segs[0] == "api" && segs[2] == "nodes" && segs[4] == "proxy" {
        let rest = &segs[5..];
        inv.api = Some("apiserver");
        inv.api_action = Some(kubelet_action(rest));
        set_target(inv, rest);
        classified = true;
    } else if segs.len() >= 7
        && segs[0] == "api"
        && segs[2] == "namespaces"
        && segs[4] == "pods"
        && matches!(segs[6], "exec" | "attach")
    {
        // API server pods/<pod>/exec|attach subresource.
        inv.api = Some("apiserver");
        inv.api_action = Some(if segs[6] == "exec" { "exec" } else { "attach" });
        inv.namespace = Some(segs[3].to_string());
        inv.pod = Some(segs[5].to_string());
        classified = true;
    } else if u.port.is_some_and(|p| KUBELET_PORTS.contains(&p)) {
        inv.api = Some("kubelet");
        inv.api_action = Some(kubelet_action(&segs));
        set_target(inv, &segs);
        classified = true;
    } else if inv.unix_socket.as_deref().is_some_and(is_runtime_socket)
        || u.port.is_some_and(|p| RUNTIME_TCP_PORTS.contains(&p))
    {
        inv.api = Some("runtime");
        inv.api_action = Some(runtime_action(&segs));
        classified = true;
    }
    // Query `command=` (API server exec) / `cmd=` (kubelet run) name the command.
    if classified && inv.command.is_empty() {
        let cmd: Vec<String> = u
            .query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| matches!(*k, "command" | "cmd"))
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        if !cmd.is_empty() {
            inv.set_command(cmd);
        }
    }
    if classified || inv.url.is_none() {
        inv.url = Some(raw.to_string());
        inv.url_host = u.host;
        inv.url_port = u.port;
        inv.url_path = Some(u.path);
    }
    classified
}

/// `/run|exec|attach/<ns>/<pod>/<ctr>` or `/<ns>/<pod>/<uid>/<ctr>`.
fn set_target(inv: &mut Invocation, segs: &[&str]) {
    if matches!(
        segs.first().copied(),
        Some("run" | "exec" | "attach" | "portForward" | "containerLogs")
    ) {
        let t = &segs[1..];
        match t.len() {
            0 => {}
            1 => inv.namespace = Some(t[0].to_string()),
            2 => {
                inv.namespace = Some(t[0].to_string());
                inv.pod = Some(t[1].to_string());
            }
            3 => {
                inv.namespace = Some(t[0].to_string());
                inv.pod = Some(t[1].to_string());
                inv.container = Some(t[2].to_string());
            }
            _ => {
                inv.namespace = Some(t[0].to_string());
                inv.pod = Some(t[1].to_string());
                inv.container = Some(t[3].to_string());
            }
        }
    }
}

/// Docker/Podman Engine API: `/[vX/][libpod/]containers/create`, `/containers/<id>/exec`,
/// `/exec/<id>/start`, `/containers/<id>/attach`.
fn runtime_action(segs: &[&str]) -> &'static str {
    let mut s = segs;
    if s.first()
        .is_some_and(|v| v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit()))
    {
        s = &s[1..];
    }
    if s.first() == Some(&"libpod") {
        s = &s[1..];
    }
    match s {
        ["containers", "create", ..] => "create",
        ["containers", _, "exec", ..] | ["exec", _, "start", ..] => "exec",
        ["containers", _, "attach", ..] => "attach",
        ["containers", _, "start", ..] => "start",
        ["containers", "json", ..]
        | ["containers", _, "json", ..]
        | ["info" | "version" | "_ping" | "images", ..] => "read",
        _ => "other",
    }
}

const CURL_LONG: &[&str] = &[
    "unix-socket",
    "abstract-unix-socket",
    "data",
    "data-raw",
    "data-binary",
    "data-urlencode",
    "header",
    "request",
    "output",
    "user",
    "cacert",
    "cert",
    "key",
    "url",
    "user-agent",
    "referer",
    "cookie",
    "connect-timeout",
    "max-time",
    "proxy",
    "form",
    "resolve",
    "connect-to",
    "retry",
    "write-out",
    "config",
    "oauth2-bearer",
    "interface",
    "limit-rate",
    "upload-file",
    "range",
    "dump-header",
    "trace",
    "trace-ascii",
    "stderr",
    "cert-type",
    "key-type",
    "pass",
    "capath",
    "ciphers",
    "proto",
    "proto-redir",
    "socks5",
    "socks5-hostname",
    "max-redirs",
    "output-dir",
    "expect100-timeout",
    "aws-sigv4",
    "json",
];
const CURL_SHORT: &str = "dHXoucEAeKbmxFTrwCYyztQ";

const WGET_LONG: &[&str] = &[
    "output-document",
    "output-file",
    "header",
    "post-data",
    "post-file",
    "body-data",
    "method",
    "user",
    "password",
    "ca-certificate",
    "certificate",
    "private-key",
    "user-agent",
    "tries",
    "timeout",
    "directory-prefix",
    "append-output",
    "input-file",
    "load-cookies",
    "save-cookies",
    "referer",
    "bind-address",
    "execute",
    "limit-rate",
    "wait",
];
const WGET_SHORT: &str = "OoaHUTtPeiYwlAR";

/// `-d cmd=...` (kubelet /run takes the command as form data).
fn data_command(inv: &mut Invocation, data: &str) {
    for kv in data.split('&') {
        if let Some(("cmd" | "command", v)) = kv.split_once('=') {
            // Form data encodes spaces as '+'.
            let plus = v.contains('+').then(|| v.replace('+', " "));
            let v = percent_decode(plus.as_deref().unwrap_or(v));
            inv.set_command(v.split_whitespace().map(str::to_string).collect());
            return;
        }
    }
}

/// Finds `http(s)://` / `ws(s)://` URLs inside free text (python -c code, wscat -c).
fn urls_in_text(text: &str) -> Vec<&str> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while out.len() < 8 {
        let Some(rel) = ["http://", "https://", "ws://", "wss://"]
            .iter()
            .filter_map(|p| lower[from..].find(p))
            .min()
        else {
            break;
        };
        let start = from + rel;
        let end = text[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '\'' | '"' | '`' | ')' | '>' | '<' | ',' | ';')
            })
            .map_or(text.len(), |e| start + e);
        out.push(&text[start..end]);
        from = end.max(start + 1);
        if from >= text.len() {
            break;
        }
    }
    out
}

pub(crate) fn parse_client(tool: &str, argv: &[String]) -> Invocation {
    let mut inv = Invocation::new(tool, argv);
    let args = &argv[1..];
    // Borrowed from the argv except for openssl's synthesised URL.
    let mut candidates: Vec<Cow<'_, str>> = Vec::new();
    match tool {
        "curl" | "wget" => {
            let (long, short) = if tool == "curl" {
                (CURL_LONG, CURL_SHORT)
            } else {
                (WGET_LONG, WGET_SHORT)
            };
            let w = Opts {
                long_vals: long,
                short_vals: short,
                stop_at_positional: false,
            }
            .walk(args);
            inv.help = w.has(&["--help", "--version", "-V"]) || (tool == "curl" && w.has(&["-h"]));
            inv.unix_socket = w.value(&["--unix-socket", "--abstract-unix-socket"]);
            inv.runtime_socket = inv.unix_socket.as_deref().is_some_and(is_runtime_socket);
            candidates.extend(w.values(&["--url"]).map(Cow::Borrowed));
            candidates.extend(w.positionals.iter().map(|s| Cow::Borrowed(s.as_str())));
            candidates.extend(w.rest.iter().map(|s| Cow::Borrowed(s.as_str())));
            for d in w.values(&[
                "-d",
                "--data",
                "--data-raw",
                "--data-binary",
                "--data-urlencode",
                "--post-data",
                "--body-data",
                "-F",
                "--form",
            ]) {
                data_command(&mut inv, d);
            }
        }
        "openssl" => {
            // `openssl s_client -connect host:10250`: the path goes over stdin, unseen.
            if let Some(i) = args.iter().position(|a| a == "-connect")
                && let Some(hp) = args.get(i + 1)
            {
                candidates.push(Cow::Owned(format!("https://{hp}/")));
            }
        }
        _ => {
            // Interpreters and websocket clients: URLs anywhere in their arguments.
            inv.help = args.len() == 1 && HELP_FLAGS.contains(&args[0].as_str());
            for a in args {
                candidates.extend(urls_in_text(a).into_iter().map(Cow::Borrowed));
            }
            if tool == "websocat" {
                candidates.extend(
                    args.iter()
                        .filter(|a| a.contains("://"))
                        .map(|a| Cow::Borrowed(a.as_str())),
                );
            }
        }
    }
    for c in candidates {
        let looks_like_url =
            c.contains("://") || c.contains(':') || c.starts_with('/') || c.contains('/');
        if !looks_like_url {
            continue;
        }
        // With --unix-socket the host part is a placeholder (`http://localhost/...`).
        if apply_url(&mut inv, &c) {
            break;
        }
    }
    inv
}
