//! stdout sink: one JSON line per alert.

use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{AsyncWriteExt, Stdout};

use super::{
    Sink, SinkError,
    direct::{DirectWrite, FdWriter},
};
use crate::Alert;

/// Errors of the stdout sink.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    #[error("stdout: write failed after {written} alerts: {source}")]
    Write {
        written: u64,
        #[source]
        source: std::io::Error,
    },
}

/// Writes JSON lines to the process's standard output (through tokio, so a blocked pipe
/// stalls only this sink's worker).
#[derive(Debug)]
pub struct StdoutSink {
    out: Stdout,
    written: u64,
    buf: Vec<u8>,
}

impl StdoutSink {
    #[must_use]
    pub fn new() -> Self {
        Self {
            out: tokio::io::stdout(),
            written: 0,
            buf: Vec::new(),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's standard output, as the direct writer holds it (never closed).
struct Fd1;

impl AsRawFd for Fd1 {
    fn as_raw_fd(&self) -> RawFd {
        1
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    /// A file, `/dev/null` or a pipe with room: written directly. A terminal or a socket
    /// (journald's stream under systemd) goes through the worker.
    fn direct(&self) -> Option<Box<dyn DirectWrite>> {
        FdWriter::new(Fd1).map(|w| Box::new(w) as Box<dyn DirectWrite>)
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.buf.clear();
        self.buf.extend_from_slice(alert.json().as_bytes());
        self.buf.push(b'\n');
        let r = async {
            self.out.write_all(&self.buf).await?;
            self.out.flush().await
        }
        .await;
        r.map_err(|source| StdoutError::Write {
            written: self.written,
            source,
        })?;
        self.written += 1;
        Ok(())
    }
}
