//! On-disk spool: one per sink, an append-only queue of JSON lines.
//!
//! Where things are: the queue itself (append, peek, ack) in `queue`, the bytes on disk
//! in `format`, picking up after a crash in `recovery`, deleting and dropping in
//! `compaction`, and the fsync policy in `sync`.
//!
//! ## Layout
//! `DIR/lock` (flock, one process per spool), `DIR/<20-digit id>.seg` segment files and
//! `DIR/ack` (the read position `segment offset`, replaced atomically by writing
//! `DIR/ack.tmp` and renaming it).
//!
//! ## Framing
//! Every record is `magic u32 LE | len u32 LE | crc32 u32 LE | payload`, the CRC covering
//! the length and the payload. A torn write (crash in the middle of an append) leaves a
//! short or mismatching record at the tail of a segment: it is detected and skipped. A
//! damaged record in the middle is skipped by scanning forward to the next valid record.
//! A restarted process never appends to an old segment; it opens a new one.
//!
//! ## fsync policy
//! Appends are plain `write(2)`s: once `append` returns the record survives a crash of the
//! process (`kill -9`). Every `spool_sync_ms` the sink worker takes a [`SyncJob`]
//! ([`Spool::sync_job`]) and runs it on a blocking thread, so fsync latency never stalls
//! the worker: it `fdatasync`s the segments written since the last job (including ones
//! rotated out meanwhile), writes the ack file with `fsync` before its rename, and
//! `fsync`s the directory when segments were created or deleted. At shutdown the worker
//! runs [`Spool::sync`] inline. On power loss, records appended in the last sync interval
//! (plus the duration of one sync) can be lost, and records delivered in it can be
//! delivered again. Between syncs the ack file is rewritten (without fsync) every 64
//! acknowledged records and when a segment is deleted.
//!
//! ## Cap
//! `max_bytes` caps the undelivered bytes (framing included). Appending beyond it drops
//! the oldest records and reports how many. Consumed bytes at the front of the oldest
//! segment are reclaimed when that segment is deleted, so the disk usage is at most
//! `max_bytes` plus one segment (`max_bytes / 8`, at most 16 MiB).

mod compaction;
mod format;
mod queue;
mod recovery;
mod sync;

pub use format::MAX_RECORD;
pub use queue::{Appended, Pos, Record, Spool, SpoolError};
pub use sync::SyncJob;
