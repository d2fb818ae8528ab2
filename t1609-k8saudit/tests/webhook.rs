//! The audit webhook receiver with a real HTTP client (hyper) on 127.0.0.1:0. The API
//! server is imitated: the client POSTs `audit.k8s.io/v1` `EventList` bodies built from the
//! schema, as kube-apiserver's webhook backend does.

mod common;

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use t1609_k8saudit::*;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, watch},
};
use tokio_rustls::rustls;

struct Server {
    addr: std::net::SocketAddr,
    rx: mpsc::Receiver<AuditEvent>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), AuditError>>,
    stats: Arc<AuditStats>,
    _dir: tempfile::TempDir,
}

async fn start(mut cfg: WebhookConfig, token: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    if let Some(t) = token {
        let p = dir.path().join("token");
        std::fs::write(&p, format!("{t}\n")).unwrap();
        cfg.bearer_token_file = Some(p);
    }
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let srv = WebhookServer::bind(&cfg).await.expect("bind");
    let addr = srv.local_addr();
    let (tx, rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(AuditStats::default());
    let task = tokio::spawn(srv.serve(tx, stats.clone(), stop_rx));
    Server {
        addr,
        rx,
        stop,
        task,
        stats,
        _dir: dir,
    }
}

async fn send<I>(io: I, body: Vec<u8>, token: Option<&str>) -> (u16, String)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::post("/audit")
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post(addr: std::net::SocketAddr, body: Vec<u8>, token: Option<&str>) -> (u16, String) {
    send(TcpStream::connect(addr).await.unwrap(), body, token).await
}

impl Server {
    async fn events(&mut self, n: usize) -> Vec<AuditEvent> {
        let mut v = Vec::new();
        while v.len() < n {
            v.push(
                tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        v
    }
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn body() -> Vec<u8> {
    event_list(&[
        atomic_test2("wh-1").json(),
        get_pods("wh-2").json(),
        port_forward("wh-3").json(),
    ])
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn valid_event_list_is_accepted_and_alerts() {
    let mut s = start(WebhookConfig::default(), None).await;
    let (code, text) = post(s.addr, body(), None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"accepted\":3"), "{text}");
    let evs = s.events(3).await;
    let rules = AuditRules::builtin().unwrap();
    let alerts: Vec<_> = evs.iter().flat_map(|e| rules.evaluate(e)).collect();
    assert_eq!(
        alerts.len(),
        2,
        "exec and port-forward alert, list pods does not"
    );
    assert_eq!(
        alerts[0]["orchestrator"]["resource"]["name"],
        "atomic-exec-test"
    );
    assert_eq!(alerts[1]["t1609"]["k8s"]["kind"], "portforward");
    assert_eq!(s.stats.events.load(Ordering::Relaxed), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_json_gets_400_and_is_counted() {
    let s = start(WebhookConfig::default(), None).await;
    let (code, _) = post(
        s.addr,
        b"{\"kind\":\"EventList\",\"items\":[{\"auditID\":".to_vec(),
        None,
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = post(
        s.addr,
        br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec(),
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(s.stats.malformed.load(Ordering::Relaxed), 2);
    // Still serving.
    let (code, _) = post(s.addr, body(), None).await;
    assert_eq!(code, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let cfg = WebhookConfig {
        max_body_bytes: 1024,
        ..Default::default()
    };
    let s = start(cfg, None).await;
    let big = event_list(
        &(0..20)
            .map(|i| atomic_test2(&format!("big-{i}")).json())
            .collect::<Vec<_>>(),
    )
    .to_string();
    assert!(big.len() > 1024 && big.len() < 64 * 1024);
    let (code, _) = post(s.addr, big.clone().into_bytes(), None).await;
    assert_eq!(code, 413);

    // Chunked, so no Content-Length: the limit applies while reading.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut req = String::from(
        "POST /audit HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for chunk in big.as_bytes().chunks(512) {
        let _ = write!(
            req,
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        );
    }
    req.push_str("0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&resp[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(s.stats.oversized.load(Ordering::Relaxed), 2);
    assert_eq!(s.stats.events.load(Ordering::Relaxed), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_token_gets_401() {
    let mut s = start(WebhookConfig::default(), Some("s3cr3t-t0ken")).await;
    let (code, _) = post(s.addr, body(), Some("wrong-token!")).await;
    assert_eq!(code, 401);
    let (code, _) = post(s.addr, body(), None).await;
    assert_eq!(code, 401);
    assert_eq!(s.stats.rejected_auth.load(Ordering::Relaxed), 2);
    let (code, _) = post(s.addr, body(), Some("s3cr3t-t0ken")).await;
    assert_eq!(code, 200);
    assert_eq!(s.events(3).await.len(), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn other_methods_get_405() {
    let s = start(WebhookConfig::default(), None).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /audit HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    s.shutdown().await;
}

#[tokio::test]
async fn bind_error_is_returned() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = WebhookConfig {
        listen: held.local_addr().unwrap(),
        ..Default::default()
    };
    let (tx, _rx) = mpsc::channel(1);
    let (_stop, stop_rx) = watch::channel(false);
    let r = serve_webhook(cfg, tx, Arc::new(AuditStats::default()), stop_rx).await;
    assert!(matches!(r, Err(AuditError::Bind { .. })), "{r:?}");
}

fn write_cert(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = write_cert(dir.path());
    let cfg = WebhookConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    };
    let mut s = start(cfg, Some("tls-token")).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tls = connector
        .connect(name.clone(), TcpStream::connect(s.addr).await.unwrap())
        .await
        .unwrap();
    let (code, text) = send(tls, body(), Some("tls-token")).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(s.events(3).await[0].audit_id, "wh-1");

    let tls = connector
        .connect(name, TcpStream::connect(s.addr).await.unwrap())
        .await
        .unwrap();
    let (code, _) = send(tls, body(), Some("nope")).await;
    assert_eq!(code, 401);

    // Plain HTTP to the TLS port fails the handshake without hurting the server.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let _ = tcp
        .write_all(b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await;
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert_eq!(s.stats.events.load(Ordering::Relaxed), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn tls_config_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("empty.pem");
    std::fs::write(&bad, "").unwrap();
    let cfg = WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(bad.clone()),
        tls_key: Some(bad),
        ..Default::default()
    };
    assert!(matches!(
        WebhookServer::bind(&cfg).await,
        Err(AuditError::TlsPem { .. })
    ));
    let cfg = WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bearer_token_file: Some(dir.path().join("missing")),
        ..Default::default()
    };
    assert!(matches!(
        WebhookServer::bind(&cfg).await,
        Err(AuditError::TokenRead { .. })
    ));
}
