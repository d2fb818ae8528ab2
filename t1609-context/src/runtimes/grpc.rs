//! A gRPC channel over a runtime's Unix socket, and calls bounded by a deadline: a hung
//! runtime costs one timeout, never a stall.

use std::{future::Future, path::Path, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::RuntimesError;

/// Connects to the gRPC server on `socket` within `timeout`.
pub(crate) async fn channel(socket: &Path, timeout: Duration) -> Result<Channel, RuntimesError> {
    let path = socket.to_owned();
    // The URI is required by tonic and ignored by the connector: the socket is the address.
    let endpoint = Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(timeout.max(Duration::from_secs(5)));
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    }));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(source)) => Err(RuntimesError::Connect {
            socket: socket.to_owned(),
            source,
        }),
        Err(_) => Err(RuntimesError::Timeout {
            socket: socket.to_owned(),
            call: "connect",
            timeout,
        }),
    }
}

/// Runs one call within `timeout`, naming the socket and the call in its error.
pub(crate) async fn call<T>(
    socket: &Path,
    name: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RuntimesError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(RuntimesError::Rpc {
            socket: socket.to_owned(),
            call: name,
            source: Box::new(status),
        }),
        Err(_) => Err(RuntimesError::Timeout {
            socket: socket.to_owned(),
            call: name,
            timeout,
        }),
    }
}
