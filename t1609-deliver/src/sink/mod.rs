//! Sinks: one module per output, all behind [`Sink`].

pub mod direct;
pub mod file;
pub mod journald;
pub mod socket_client;
pub mod socket_server;
pub mod stdout;

use std::future::Future;

use crate::Alert;

/// A destination for alerts. A sink worker owns its sink and calls [`Sink::deliver`] for
/// one alert at a time, in order. `Ok` means the alert was handed over; an `Err` whose
/// [`SinkError::is_permanent`] is false means "down, retry later" (the worker spools and
/// backs off); a permanent error drops that one alert (counted).
///
/// The methods are `async fn`s in a trait (Rust 2024); they are declared with
/// `-> impl Future + Send` so the worker can run on tokio's multi-threaded runtime.
pub trait Sink: Send + 'static {
    /// Name used in stats, logs and loss alerts (the sink spec, e.g. `file:/var/log/a`).
    fn name(&self) -> &str;

    /// Delivers one alert.
    fn deliver(&mut self, alert: &Alert) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// A writer the dispatcher may use from the submitting thread while the sink is
    /// healthy and nothing is queued for it (see [`direct`]). `None` (the default): every
    /// alert goes through the worker.
    fn direct(&self) -> Option<Box<dyn direct::DirectWrite>> {
        None
    }

    /// Resolves when the sink may have become usable again (a subscriber connected...).
    /// Used to cut a retry backoff short. The default never resolves.
    fn wakeup(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Flushes and releases resources at shutdown, within `deadline`.
    fn close(&mut self, deadline: std::time::Instant) -> impl Future<Output = ()> + Send {
        let _ = deadline;
        async {}
    }

    /// Extra counters for stats: (connected subscribers, subscribers disconnected).
    fn subscriber_counts(&self) -> Option<(usize, u64)> {
        None
    }

    /// Alerts handed over by `deliver` but not confirmed as read by the peer, which the
    /// sink itself will resend after a reconnect (socket client).
    fn unconfirmed(&self) -> usize {
        0
    }

    /// After `close`: alerts the peer may never have read (its connection is gone). The
    /// worker puts them back at the head of the spool.
    fn take_unconfirmed(&mut self) -> Vec<Alert> {
        Vec::new()
    }
}

/// Delivery errors, one variant per sink module.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Stdout(#[from] stdout::StdoutError),
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error(transparent)]
    Journald(#[from] journald::JournaldError),
    #[error(transparent)]
    SocketServer(#[from] socket_server::SocketServerError),
    #[error(transparent)]
    SocketClient(#[from] socket_client::SocketClientError),
}

impl SinkError {
    /// True when retrying the same alert cannot succeed (e.g. too large for a datagram).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::SocketClient(e) => e.is_permanent(),
            Self::Journald(e) => e.is_permanent(),
            _ => false,
        }
    }
}
