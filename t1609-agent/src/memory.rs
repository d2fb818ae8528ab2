//! The agent's own memory.

/// Gives freed heap pages back to the kernel. glibc keeps them after a peak (the BTF
/// parse at start-up, a burst of events), which would otherwise count in the agent's RSS
/// for good. Called after start-up and from the pipeline's housekeeping.
pub fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
