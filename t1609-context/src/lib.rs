//! Context and enrichment for t1609-agent alerts: who ran a command (process table,
//! ancestry, users), from where (cgroup → container/pod/unit, namespaces), into which
//! container (containerd, CRI-O, Docker and podman metadata; kubelet pod list), and tuning (exceptions, deduplication).
//!
//! Everything here is plain Rust over injectable inputs (a `/proc` root, a host root, a
//! socket path, `now`), so it is unit-testable without root; see README.md.

pub mod cgroup;
pub mod dedup;
pub mod docker;
pub mod exceptions;
pub mod kubelet;
pub mod ns;
pub mod orchestrator;
pub mod process;
mod procfs;
pub mod runtimes;
pub mod users;

pub use cgroup::{CgroupContext, Runtime, cgroup_line_path, compact_cgroup_text, parse_cgroup};
pub use dedup::{DedupKey, DedupOutcome, Deduper, normalize_command_line};
pub use docker::{ContainerMeta, DEFAULT_DOCKER_SOCKET, DockerClient, RuntimeError};
pub use exceptions::{
    Action, Decision, ExceptionConfig, ExceptionError, ExceptionFile, Exceptions, OneOrMany,
    Severity, Subject, TimeWindowConfig, summarize,
};
pub use kubelet::{KubeletPods, PodRef};
pub use ns::{Namespaces, host_namespaces, in_container, process_namespaces};
pub use orchestrator::{OrchestratorMeta, orchestrator_meta};
pub use process::{
    Ancestor, Creds, MAX_ANCESTRY, MAX_TABLE_ARGV_BYTES, ProcInfo, ProcessTable, read_creds,
    read_ns_pid, read_proc_info,
};
pub use runtimes::{
    ContainerInfo, Meta, PendingReason, PodInfo, RuntimeKind, RuntimeStats, Runtimes,
    RuntimesConfig, RuntimesError, write_ecs,
};
pub use t1609_ecs::glob_match;
pub use users::Users;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<crate::Exceptions>();
        assert_send_sync::<crate::DockerClient>();
        assert_send_sync::<crate::KubeletPods>();
        assert_send_sync::<crate::ProcessTable>();
        assert_send_sync::<crate::Deduper>();
        assert_send_sync::<crate::Users>();
        assert_send_sync::<crate::Runtimes>();
    }
}
