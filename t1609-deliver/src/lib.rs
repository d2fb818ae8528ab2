//! Alert delivery for t1609-agent.
//!
//! The agent hands every alert (an ECS JSON document) to [`Dispatcher::submit`], which never
//! blocks. Each configured sink (stdout, journald, socket server, socket client, file) has
//! its own bounded in-memory queue, its own on-disk spool and its own worker task. See
//! `README.md` for the delivery guarantees (at least once, in order per sink; consumers
//! dedupe on `event.id`).

mod alert;
mod config;
mod dispatcher;
pub mod sink;
pub mod spool;

pub use alert::Alert;
pub use config::{
    ClientMode, ConfigError, DEFAULT_SERVER_SOCKET, DeliverConfig, JOURNALD_SOCKET, SinkSpec,
};
pub use dispatcher::{DeliverError, DeliverStats, Dispatcher, SinkStats, loss_alert};
pub use sink::{Sink, SinkError};
