//! Knows a container tool by what its executable file is, not by what it is called.
//!
//! Attackers rename and relocate their tools (a static `docker` dropped as `/tmp/.x`). A
//! name-keyed watch set never sees those execs. This crate classifies a file by content,
//! off the hot path:
//!
//! - [`classify`]: the Go build info's main package, the ELF build-id, the sha256 against
//!   the operator's [`hashlist`] and what was learnt from the installed tools; verdicts
//!   are cached under a [`FileKey`] (device, inode, size, times), so a verdict no longer
//!   applies once the file changes;
//! - [`inventory`]: the installed tools found at start-up and reload, whose (device,
//!   inode) pairs fill the kernel's inode watch map;
//! - [`queue`]: the bounded classification queue for the first exec of each file the
//!   kernel has no verdict for; it never blocks and counts what it skips;
//! - [`tools`]: the known tools and the name check ([`check_name`]) that says whether an
//!   exec ran under one of its tool's own names (T1036.003 when not).

pub mod classify;
mod elf;
pub mod hashlist;
pub mod inventory;
pub mod key;
pub mod queue;
pub mod tools;

pub use classify::{Classifier, ClassifyError, FileKind, How, Limits, Target, Tool, Verdict};
pub use elf::{ElfError, ElfFacts, GoBuildInfo};
pub use hashlist::{HashList, HashListError};
pub use inventory::{Installed, Inventory, USUAL_DIRS};
pub use key::FileKey;
pub use queue::{ClassifyQueue, Job, Outcome, QueueError, QueueStats, Source, Submitted, Worker};
pub use tools::{NameCheck, Role, TOOLS, ToolSpec, check_name};

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
