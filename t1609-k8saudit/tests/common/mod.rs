//! Audit events built from the documented `audit.k8s.io/v1` `Event` schema
//! (<https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/>). No cluster runs
//! here: these JSON objects imitate what kube-apiserver writes with `--audit-log-path`
//! (one `Event` per line) and POSTs to an audit webhook (an `EventList`).
#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::fmt::Write as _;

use serde_json::{Value, json};

/// Go's `url.QueryEscape`, which kubectl's `url.Values.Encode` uses.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

pub struct Ev {
    pub audit_id: String,
    pub stage: &'static str,
    pub verb: &'static str,
    pub username: String,
    pub groups: Vec<String>,
    pub user_agent: String,
    pub source_ip: String,
    pub namespace: String,
    pub pod: String,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub command: Vec<String>,
    pub container: Option<String>,
    pub code: i32,
    pub request_uri: Option<String>,
    pub node: Option<String>,
}

impl Ev {
    /// kubectl exec by the kubeadm admin into `pod` in `namespace`.
    pub fn exec(id: &str, namespace: &str, pod: &str, command: &[&str]) -> Ev {
        Ev {
            audit_id: id.into(),
            stage: "ResponseComplete",
            verb: "create",
            username: "kubernetes-admin".into(),
            groups: vec![
                "kubeadm:cluster-admins".into(),
                "system:authenticated".into(),
            ],
            user_agent: "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8".into(),
            source_ip: "192.0.2.10".into(),
            namespace: namespace.into(),
            pod: pod.into(),
            resource: "pods",
            subresource: Some("exec"),
            command: command.iter().map(|s| (*s).to_string()).collect(),
            container: Some(pod.into()),
            code: 101,
            request_uri: None,
            node: None,
        }
    }

    pub fn uri(&self) -> String {
        if let Some(u) = &self.request_uri {
            return u.clone();
        }
        let mut q: Vec<String> = self
            .command
            .iter()
            .map(|c| format!("command={}", query_escape(c)))
            .collect();
        if let Some(c) = &self.container {
            q.push(format!("container={}", query_escape(c)));
        }
        match self.subresource {
            Some("exec" | "attach") => {
                q.push("stdin=true".into());
                q.push("stdout=true".into());
                q.push("tty=true".into());
            }
            Some("portforward") => q = vec!["ports=5432".into()],
            _ => {}
        }
        let base = match self.subresource {
            Some(s) => format!(
                "/api/v1/namespaces/{}/pods/{}/{}",
                self.namespace, self.pod, s
            ),
            None => format!("/api/v1/namespaces/{}/pods", self.namespace),
        };
        if q.is_empty() {
            base
        } else {
            format!("{base}?{}", q.join("&"))
        }
    }

    pub fn json(&self) -> Value {
        let mut object_ref = json!({ "resource": self.resource, "apiVersion": "v1" });
        if let Some(node) = &self.node {
            object_ref["name"] = json!(node);
        } else {
            object_ref["namespace"] = json!(self.namespace);
            if self.subresource.is_some() {
                object_ref["name"] = json!(self.pod);
            }
        }
        if let Some(s) = self.subresource {
            object_ref["subresource"] = json!(s);
        }
        json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": self.audit_id,
            "stage": self.stage,
            "requestURI": self.uri(),
            "verb": self.verb,
            "user": { "username": self.username, "uid": "4d8e3c1b-7f0a-4a5e-9a43-2f1c0b9e8d11", "groups": self.groups },
            "sourceIPs": [self.source_ip],
            "userAgent": self.user_agent,
            "objectRef": object_ref,
            "responseStatus": { "metadata": {}, "code": self.code },
            "requestReceivedTimestamp": "2026-11-28T17:02:03.123456Z",
            "stageTimestamp": "2026-11-28T17:02:05.654321Z",
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"kubeadm:cluster-admins\" of ClusterRole \"cluster-admin\" to Group \"kubeadm:cluster-admins\""
            }
        })
    }

    pub fn line(&self) -> String {
        serde_json::to_string(&self.json()).unwrap()
    }
}

/// Atomic Red Team T1609 test 2: `kubectl exec atomic-exec-test -- /bin/sh`.
pub fn atomic_test2(id: &str) -> Ev {
    Ev::exec(id, "default", "atomic-exec-test", &["/bin/sh"])
}

/// A service account execs a shell into a kube-system pod.
pub fn kube_system_sa_exec(id: &str) -> Ev {
    let mut e = Ev::exec(
        id,
        "kube-system",
        "coredns-76f75df574-8xk2p",
        &["sh", "-c", "cat /etc/resolv.conf"],
    );
    e.username = "system:serviceaccount:ci:deployer".into();
    e.groups = vec![
        "system:serviceaccounts".into(),
        "system:serviceaccounts:ci".into(),
        "system:authenticated".into(),
    ];
    e.user_agent = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46".into();
    e.verb = "get"; // kubectl >= 1.30 upgrades to WebSocket with a GET
    e.container = Some("coredns".into());
    e
}

pub fn port_forward(id: &str) -> Ev {
    let mut e = Ev::exec(id, "default", "postgres-0", &[]);
    e.subresource = Some("portforward");
    e.container = None;
    e
}

/// `kubectl get --raw` style POST to the kubelet's exec endpoint through nodes/proxy.
pub fn node_proxy_exec(id: &str) -> Ev {
    let mut e = Ev::exec(id, "default", "web-7d9c5b8f4-qx2lm", &["id"]);
    e.resource = "nodes";
    e.subresource = Some("proxy");
    e.node = Some("worker-1".into());
    e.user_agent = "curl/8.5.0".into();
    e.request_uri = Some("/api/v1/nodes/worker-1/proxy/exec/default/web-7d9c5b8f4-qx2lm/web?command=id&input=1&output=1&tty=1".into());
    e
}

pub fn get_pods(id: &str) -> Ev {
    let mut e = Ev::exec(id, "default", "", &[]);
    e.verb = "list";
    e.subresource = None;
    e.container = None;
    e.code = 200;
    e.request_uri = Some("/api/v1/namespaces/default/pods?limit=500".into());
    e
}

pub fn get_one_pod(id: &str) -> Value {
    let mut e = Ev::exec(id, "default", "atomic-exec-test", &[]);
    e.verb = "get";
    e.subresource = None;
    e.code = 200;
    e.request_uri = Some("/api/v1/namespaces/default/pods/atomic-exec-test".into());
    let mut v = e.json();
    v["objectRef"]["name"] = json!("atomic-exec-test");
    v
}

pub const MALFORMED_LINE: &str =
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"trunc"#;

pub fn event_list(items: &[Value]) -> Value {
    json!({ "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items })
}
