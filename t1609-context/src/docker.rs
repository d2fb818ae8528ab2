//! A minimal Docker Engine API client: one HTTP/1.1 GET over the Unix socket, with a
//! single deadline covering connect, write and read (no hang on a stuck daemon).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

/// Default Docker socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Largest response accepted (an inspect document is a few KiB).
const MAX_RESPONSE: usize = 4 << 20;

/// Label keys the kubelet (dockershim / cri-dockerd) puts on containers.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What a runtime says about a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ContainerMeta {
    /// Full 64-hex id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: Option<String>,
    /// Image as given at creation (`Config.Image`, e.g. `t1609-test/busybox:1`).
    pub image: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("invalid container reference {0:?}")]
    InvalidName(String),
    #[error("runtime socket {socket} unreachable: {source}")]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime socket {socket} did not answer within {timeout:?}")]
    Timeout { socket: PathBuf, timeout: Duration },
    #[error("runtime API returned HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("runtime API protocol error: {0}")]
    Protocol(String),
}

impl RuntimeError {
    /// True when the runtime itself could not be reached (degrade: `metadata_pending`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unreachable { .. } | RuntimeError::Timeout { .. }
        )
    }
}

/// Docker Engine API over a Unix socket.
#[derive(Debug, Clone)]
pub struct DockerClient {
    socket: PathBuf,
    timeout: Duration,
}

#[derive(Deserialize)]
struct InspectDoc {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Config")]
    config: Option<InspectConfig>,
}

#[derive(Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image")]
    image: Option<String>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

impl DockerClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    /// Client for [`DEFAULT_DOCKER_SOCKET`].
    pub fn default_socket(timeout: Duration) -> Self {
        Self::new(PathBuf::from(DEFAULT_DOCKER_SOCKET), timeout)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /containers/<name_or_id>/json` → id, name, image and Kubernetes labels.
    /// Accepts a name, a full id or a unique id prefix (as `docker inspect` does).
    pub async fn resolve(&self, name_or_id: &str) -> Result<ContainerMeta, RuntimeError> {
        let r = name_or_id.trim().trim_start_matches('/');
        let valid = !r.is_empty()
            && r.len() <= 255
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(RuntimeError::InvalidName(name_or_id.to_string()));
        }
        let (status, body) = self.get(&format!("/containers/{r}/json")).await?;
        match status {
            200 => parse_inspect(&body),
            404 => Err(RuntimeError::NotFound(r.to_string())),
            s => Err(RuntimeError::Http {
                status: s,
                message: api_message(&body),
            }),
        }
    }

    /// `GET /containers/json?all=1`: every container, running or not, with its name,
    /// image and Kubernetes labels (`ContainerMeta` of each).
    pub async fn list(&self) -> Result<Vec<ContainerMeta>, RuntimeError> {
        let (status, body) = self.get("/containers/json?all=1").await?;
        if status != 200 {
            return Err(RuntimeError::Http {
                status,
                message: api_message(&body),
            });
        }
        parse_list(&body)
    }

    /// `GET /_ping`: true when the daemon answers `OK`.
    pub async fn ping(&self) -> Result<bool, RuntimeError> {
        let (status, body) = self.get("/_ping").await?;
        Ok(status == 200 && body.trim_ascii() == b"OK")
    }

    /// One GET; returns (status, decoded body).
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), RuntimeError> {
        match tokio::time::timeout(self.timeout, self.get_inner(path)).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout {
                socket: self.socket.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn get_inner(&self, path: &str) -> Result<(u16, Vec<u8>), RuntimeError> {
        let unreachable = |source| RuntimeError::Unreachable {
            socket: self.socket.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.socket)
            .await
            .map_err(unreachable)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: t1609-agent\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.map_err(unreachable)?;
        let mut buf = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await.map_err(unreachable)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                return Err(RuntimeError::Protocol(format!(
                    "response larger than {MAX_RESPONSE} bytes"
                )));
            }
            // Stop early once a Content-Length body is complete (some proxies keep the
            // connection open despite `Connection: close`).
            if let Some(done) = complete_length(&buf)
                && done
            {
                break;
            }
        }
        parse_http_response(&buf)
    }
}

fn api_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// Builds a [`ContainerMeta`] from a `docker inspect` JSON document.
pub fn parse_inspect(body: &[u8]) -> Result<ContainerMeta, RuntimeError> {
    let doc: InspectDoc = serde_json::from_slice(body)
        .map_err(|e| RuntimeError::Protocol(format!("inspect JSON: {e}")))?;
    let (image, labels) = match doc.config {
        Some(c) => (c.image, c.labels.unwrap_or_default()),
        None => (None, BTreeMap::new()),
    };
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(ContainerMeta {
        id: doc.id,
        name: doc
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty()),
        image: image.filter(|i| !i.is_empty()),
        pod_name: label(LABEL_POD_NAME),
        pod_namespace: label(LABEL_POD_NAMESPACE),
        pod_uid: label(LABEL_POD_UID),
    })
}

#[derive(Deserialize)]
struct ListItem {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Builds one [`ContainerMeta`] per entry of a `GET /containers/json` answer.
pub fn parse_list(body: &[u8]) -> Result<Vec<ContainerMeta>, RuntimeError> {
    let items: Vec<ListItem> = serde_json::from_slice(body)
        .map_err(|e| RuntimeError::Protocol(format!("container list JSON: {e}")))?;
    Ok(items
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
            ContainerMeta {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .filter(|n| !n.is_empty()),
                image: c.image.filter(|i| !i.is_empty()),
                pod_name: label(LABEL_POD_NAME),
                pod_namespace: label(LABEL_POD_NAMESPACE),
                pod_uid: label(LABEL_POD_UID),
                id: c.id,
            }
        })
        .collect())
}

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `Some(true)` when headers are in and a Content-Length body is complete.
fn complete_length(buf: &[u8]) -> Option<bool> {
    let end = header_end(buf)?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len: usize = header_value(head, "content-length")?.parse().ok()?;
    Some(buf.len() >= end + len)
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked, or read-to-close body).
pub fn parse_http_response(buf: &[u8]) -> Result<(u16, Vec<u8>), RuntimeError> {
    let end =
        header_end(buf).ok_or_else(|| RuntimeError::Protocol("incomplete HTTP headers".into()))?;
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| RuntimeError::Protocol("non-UTF-8 headers".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| RuntimeError::Protocol(format!("bad status line {status_line:?}")))?;
    let raw = &buf[end..];
    let body = if header_value(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        decode_chunked(raw)?
    } else if let Some(len) =
        header_value(head, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        if raw.len() < len {
            return Err(RuntimeError::Protocol(format!(
                "body truncated: {} of {len} bytes",
                raw.len()
            )));
        }
        raw[..len].to_vec()
    } else {
        raw.to_vec()
    };
    Ok((status, body))
}

fn decode_chunked(mut raw: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    let bad = |m: &str| RuntimeError::Protocol(format!("chunked body: {m}"));
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("missing size line"))?;
        let size_txt = std::str::from_utf8(&raw[..eol]).map_err(|_| bad("size not UTF-8"))?;
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16).map_err(|_| bad("bad size"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_content_length_and_chunked() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_http_response(r).unwrap(), (200, b"{}".to_vec()));
        let c = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(c).unwrap(), (404, b"abcdefg".to_vec()));
        assert!(parse_http_response(b"garbage").is_err());
        assert_eq!(
            complete_length(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"),
            Some(false)
        );
    }

    #[test]
    fn inspect_with_kube_labels() {
        let doc = br#"{"Id":"abc","Name":"/k8s_app_web-0_prod_1b2c_0","Config":{"Image":"nginx:1","Labels":{
            "io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"1b2c","io.kubernetes.container.name":"app"}}}"#;
        let m = parse_inspect(doc).unwrap();
        assert_eq!(m.name.as_deref(), Some("k8s_app_web-0_prod_1b2c_0"));
        assert_eq!(m.image.as_deref(), Some("nginx:1"));
        assert_eq!(m.pod_name.as_deref(), Some("web-0"));
        assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(m.pod_uid.as_deref(), Some("1b2c"));
        let bare = parse_inspect(br#"{"Id":"x","Name":"/n","Config":{"Image":"i","Labels":null}}"#)
            .unwrap();
        assert_eq!(bare.pod_name, None);
    }

    #[test]
    fn list_with_names_and_labels() {
        let l = parse_list(
            br#"[{"Id":"a1","Names":["/web"],"Image":"busybox:1","Labels":{"io.kubernetes.pod.name":"p"}},
                 {"Id":"b2","Names":null,"Image":"","Labels":null}]"#,
        )
        .unwrap();
        assert_eq!(l[0].name.as_deref(), Some("web"));
        assert_eq!(l[0].pod_name.as_deref(), Some("p"));
        assert_eq!((l[1].name.as_deref(), l[1].image.as_deref()), (None, None));
        assert!(parse_list(b"{}").is_err());
    }

    #[tokio::test]
    async fn invalid_names_rejected_without_io() {
        let c = DockerClient::new("/nonexistent.sock".into(), Duration::from_millis(100));
        for bad in ["", "a/b", "a b", "../x", "x?y"] {
            assert!(
                matches!(c.resolve(bad).await, Err(RuntimeError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
