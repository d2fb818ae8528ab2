//! The audit webhook backend receiver: HTTP/1.1 (optionally TLS) POSTs of `EventList`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, rustls};

use crate::{
    config::WebhookConfig,
    error::AuditError,
    event::{AuditEvent, parse_event_list},
    stats::AuditStats,
};

const MAX_CONNECTIONS: usize = 256;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_TIMEOUT: Duration = Duration::from_mins(1);

/// A bound, not yet serving, webhook receiver; `local_addr` tells the port when
/// `listen` asked for port 0.
pub struct WebhookServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    token: Option<Vec<u8>>,
    max_body_bytes: usize,
}

struct Shared {
    tx: mpsc::Sender<AuditEvent>,
    stats: Arc<AuditStats>,
    token: Option<Vec<u8>>,
    max_body_bytes: usize,
}

fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, AuditError> {
    let io = |p: &std::path::Path, source| AuditError::Io {
        path: p.to_path_buf(),
        source,
    };
    let certs = {
        let mut r = std::io::BufReader::new(std::fs::File::open(cert).map_err(|e| io(cert, e))?);
        rustls_pemfile::certs(&mut r)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io(cert, e))?
    };
    if certs.is_empty() {
        return Err(AuditError::TlsPem {
            path: cert.to_path_buf(),
            missing: "certificate",
        });
    }
    let key_der = {
        let mut r = std::io::BufReader::new(std::fs::File::open(key).map_err(|e| io(key, e))?);
        rustls_pemfile::private_key(&mut r)
            .map_err(|e| io(key, e))?
            .ok_or_else(|| AuditError::TlsPem {
                path: key.to_path_buf(),
                missing: "private key",
            })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| AuditError::Tls { source })?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|source| AuditError::Tls { source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Equal-length inputs are compared in time independent of their contents.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    std::hint::black_box(d) == 0
}

fn reply(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn status_json(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1",
        "status": if code.is_success() { "Success" } else { "Failure" },
        "code": code.as_u16(), "message": message,
    });
    reply(code, &body.to_string())
}

async fn handle(
    req: Request<Incoming>,
    s: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        let mut r = status_json(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST of audit.k8s.io/v1 EventList",
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return Ok(r);
    }
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes().to_vec())
            .unwrap_or_default();
        if !ct_eq(&given, token) {
            AuditStats::inc(&s.stats.rejected_auth);
            tracing::warn!("audit webhook request with a missing or wrong bearer token");
            let mut r = status_json(StatusCode::UNAUTHORIZED, "unauthorized");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            return Ok(r);
        }
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
        AuditStats::inc(&s.stats.oversized);
        tracing::warn!(
            declared,
            max = s.max_body_bytes,
            "audit webhook body too large"
        );
        let mut r = status_json(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        r.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), s.max_body_bytes).collect(),
    )
    .await
    {
        Err(_) => {
            return Ok(status_json(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            ));
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                AuditStats::inc(&s.stats.oversized);
                tracing::warn!(max = s.max_body_bytes, "audit webhook body too large");
                let mut r = status_json(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(r);
            }
            return Ok(status_json(StatusCode::BAD_REQUEST, "cannot read body"));
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    let events = match parse_event_list(&body) {
        Ok(evs) => evs,
        Err(e) => {
            AuditStats::inc(&s.stats.malformed);
            tracing::warn!(error = %e, bytes = body.len(), "malformed audit webhook body");
            return Ok(status_json(
                StatusCode::BAD_REQUEST,
                &format!("malformed EventList: {e}"),
            ));
        }
    };
    let n = events.len();
    for ev in events {
        AuditStats::inc(&s.stats.events);
        if s.tx.send(ev).await.is_err() {
            return Ok(status_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "agent shutting down",
            ));
        }
    }
    Ok(reply(
        StatusCode::OK,
        &serde_json::json!({ "accepted": n }).to_string(),
    ))
}

async fn serve_conn<I>(io: I, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(req, shared.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "audit webhook connection ended with an error");
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

impl WebhookServer {
    /// Binds the listener and loads TLS material and the bearer token.
    pub async fn bind(cfg: &WebhookConfig) -> Result<Self, AuditError> {
        cfg.validate()?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(load_tls(c, k)?),
            _ => None,
        };
        let token = match &cfg.bearer_token_file {
            Some(p) => {
                let t = std::fs::read_to_string(p).map_err(|source| AuditError::TokenRead {
                    path: p.clone(),
                    source,
                })?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(AuditError::TokenEmpty { path: p.clone() });
                }
                Some(t.as_bytes().to_vec())
            }
            None => None,
        };
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AuditError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AuditError::Bind {
            addr: cfg.listen,
            source,
        })?;
        if tls.is_none() && !local_addr.ip().is_loopback() {
            tracing::warn!(%local_addr, "audit webhook listens without TLS on a non-loopback address");
        }
        if token.is_none() && !local_addr.ip().is_loopback() {
            tracing::warn!(%local_addr, "audit webhook accepts posts without a bearer token");
        }
        Ok(WebhookServer {
            listener,
            local_addr,
            tls,
            token,
            max_body_bytes: cfg.max_body_bytes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `stop` turns true (or its sender is dropped).
    pub async fn serve(
        self,
        tx: mpsc::Sender<AuditEvent>,
        stats: Arc<AuditStats>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), AuditError> {
        let shared = Arc::new(Shared {
            tx,
            stats,
            token: self.token,
            max_body_bytes: self.max_body_bytes,
        });
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tracing::info!(addr = %self.local_addr, tls = self.tls.is_some(), "audit webhook listening");
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() { return Ok(()) }
                    continue;
                }
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "audit webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "audit webhook connection limit reached; dropping connection");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let shared = shared.clone();
            let tls = self.tls.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(io)) => serve_conn(io, shared, stop).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "audit webhook TLS handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "audit webhook TLS handshake timed out");
                            }
                        }
                    }
                    None => serve_conn(tcp, shared, stop).await,
                }
            });
        }
    }
}

/// Binds and serves the webhook; returns after a bind/TLS/token error or when stopped.
pub async fn serve_webhook(
    cfg: WebhookConfig,
    tx: mpsc::Sender<AuditEvent>,
    stats: Arc<AuditStats>,
    stop: watch::Receiver<bool>,
) -> Result<(), AuditError> {
    WebhookServer::bind(&cfg)
        .await?
        .serve(tx, stats, stop)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq_works() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"abcd"));
    }
}
