//! Types shared between the eBPF programs and the agent.
//!
//! Everything here is plain `#[repr(C)]` data with fixed-size buffers. The kernel writes
//! these records into a ring buffer and the agent decodes them with length and version
//! checks (see `t1609-agent/src/decode.rs`); nothing is transmuted.
//!
//! One module per concern, every item re-exported here so `t1609_common::X` is the one
//! path: `record` (the ring-buffer records), `probe` (load-time globals and counters),
//! `watch` (watched names), `exe` (the executed file's identity and the maps keyed by
//! it), `tracked` (the tracked-task counting filter), `quiet` (quiet signatures), `net`
//! (connect keys and kinds).
#![no_std]

mod exe;
mod net;
mod probe;
mod quiet;
mod record;
mod tracked;
mod watch;

pub use exe::{
    EXE_KNOWN_SLOTS, EXE_NOT_A_TOOL, EXE_PENDING, EXE_PENDING_RETRY_NS, ExeKey, ExeVerdict,
    InodeKey, PLUGIN_DOCKER_MASK, PLUGIN_DOCKER_WORD, PLUGIN_KUBECTL_WORD, dev_from_kernel,
    dev_to_kernel, exe_fingerprint, exe_known_slot, plugin_comm,
};
pub use net::{UNIX_PATH_LEN, UnixPathKey, net_kind};
pub use probe::{ExeSettings, KernelOffsets, ProbeConfig, counters};
pub use quiet::{
    QUIET_ARGV_BYTES, QUIET_SIGNATURES, quiet_signature, quiet_signature_finish,
    quiet_signature_seed, quiet_signature_step, quiet_slot, quiet_word_mask,
};
pub use record::{
    ARGV_CHUNK_LEN, ARGV_MAX_CHUNKS, ARGV_MAX_TOTAL, AncestorSlot, ArgvChunkRecord, COMM_LEN,
    ExecRecord, KIND_ARGV_CHUNK, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_NET, MAX_ANCESTORS,
    NetRecord, PATH_LEN, RECORD_VERSION, RecordHeader, TTY_NAME_LEN, TaskRecord, flags,
};
pub use tracked::{TRACKED_SLOTS, reported_tgid, tracked_keys, tracked_slot};
pub use watch::{WATCH_FILTER_BITS, WatchKey, watch_filter_bit, watch_filter_bit_of_words};
