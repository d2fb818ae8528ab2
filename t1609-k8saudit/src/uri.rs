//! What an exec/attach/port-forward request asked for, from `objectRef` and `requestURI`.

use crate::event::AuditEvent;

/// Percent-decodes like Go's `url.QueryUnescape`, which the API server and the kubelet use
/// for query parameters: `%XX` is a byte and `+` is a space (kubectl's `url.Values.Encode`
/// writes a space as `+` and a plus as `%2B`). An invalid escape is kept literally.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push(hex(b[i + 1]).unwrap_or(0) << 4 | hex(b[i + 2]).unwrap_or(0));
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The decoded `key=value` pairs of a request URI's query, in order (repeats kept).
pub fn parse_query(request_uri: &str) -> Vec<(String, String)> {
    let Some((_, q)) = request_uri.split_once('?') else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or("");
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The decoded request of an exec-like audit event.
#[derive(Clone, Debug, Default, PartialEq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the request's own stdin, stdout, stderr and tty flags, one field each"
)]
pub struct ExecRequest {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The `command=` parameters in order (or the kubelet `/run/` `cmd=` split on spaces).
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Port-forward `ports=` parameters.
    pub ports: Vec<String>,
    /// For `nodes/proxy`: the node and the path proxied to the kubelet.
    pub node: Option<String>,
    pub proxy_path: Option<String>,
    /// For `nodes/proxy`: the kubelet endpoint (`exec`, `run`, `attach`, `portForward`, ...).
    pub kubelet_endpoint: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "true" | "t" | "yes" | "y"
    )
}

fn path_of(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or("")
}

/// Reads pod, namespace, container, command and stream flags from an event's `objectRef`
/// and `requestURI`. Works for `pods/exec|attach|portforward` and for `nodes/proxy`.
pub fn parse_exec_request(ev: &AuditEvent) -> ExecRequest {
    let or = ev.object_ref();
    let mut r = ExecRequest::default();
    let query = parse_query(&ev.request_uri);
    let path = path_of(&ev.request_uri);
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();

    let is_node_proxy =
        or.resource.as_deref() == Some("nodes") && or.subresource.as_deref() == Some("proxy");
    if is_node_proxy {
        r.node.clone_from(&or.name);
        // /api/v1/nodes/{node}[:port]/proxy/{kubelet path...}
        if let Some(i) = segs.iter().position(|s| s == "proxy") {
            if r.node.is_none() && i > 0 {
                r.node = Some(segs[i - 1].split(':').next().unwrap_or("").to_string());
            }
            let rest = &segs[i + 1..];
            r.proxy_path = Some(format!("/{}", rest.join("/")));
            if let Some(ep) = rest.first() {
                r.kubelet_endpoint = Some(ep.clone());
                // /exec/{ns}/{pod}/{container} or /exec/{ns}/{pod}/{uid}/{container}
                if matches!(
                    ep.as_str(),
                    "exec" | "run" | "attach" | "portForward" | "portforward"
                ) {
                    r.namespace = rest.get(1).cloned();
                    r.pod = rest.get(2).cloned();
                    r.container = match rest.len() {
                        4 => rest.get(3).cloned(),
                        n if n >= 5 => rest.get(4).cloned(),
                        _ => None,
                    };
                }
            }
        }
    } else {
        r.namespace.clone_from(&or.namespace);
        r.pod.clone_from(&or.name);
        // /api/v1/namespaces/{ns}/pods/{name}/{subresource}
        if let Some(i) = segs.iter().position(|s| s == "pods") {
            if r.namespace.is_none() && i >= 2 && segs[i - 2] == "namespaces" {
                r.namespace = Some(segs[i - 1].clone());
            }
            if r.pod.is_none() {
                r.pod = segs.get(i + 1).cloned();
            }
        }
    }
    for (k, v) in query {
        match k.as_str() {
            "command" => r.command.push(v),
            "cmd" => r.command.extend(v.split_whitespace().map(str::to_string)),
            "container" => r.container = Some(v),
            "stdin" | "input" => r.stdin = truthy(&v),
            "stdout" | "output" => r.stdout = truthy(&v),
            "stderr" | "error" => r.stderr = truthy(&v),
            "tty" => r.tty = truthy(&v),
            "ports" | "port" => r.ports.extend(v.split(',').map(str::to_string)),
            _ => {}
        }
    }
    r
}

impl ExecRequest {
    /// The command as one line, arguments with spaces or quotes single-quoted.
    pub fn command_line(&self) -> String {
        self.command
            .iter()
            .map(|a| {
                if a.is_empty()
                    || a.chars()
                        .any(|c| c.is_whitespace() || "'\"\\$`;&|<>(){}*?!".contains(c))
                {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub(crate) fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        assert_eq!(percent_decode("%2Fbin%2Fsh"), "/bin/sh");
        assert_eq!(percent_decode("echo+hi"), "echo hi");
        assert_eq!(percent_decode("a%2Bb"), "a+b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn query_keeps_repeats_in_order() {
        let q = parse_query("/x?command=sh&command=-c&command=id+-u&container=c1&stdin=true");
        assert_eq!(q[0], ("command".into(), "sh".into()));
        assert_eq!(q[1], ("command".into(), "-c".into()));
        assert_eq!(q[2], ("command".into(), "id -u".into()));
        assert_eq!(q[3], ("container".into(), "c1".into()));
    }
}
