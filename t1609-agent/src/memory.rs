//! The agent's own memory.

/// How much free memory at the top of a heap glibc keeps instead of giving it back at
/// each `free`. Its default (128 KiB) made every exec on a quiet host shrink the hot-path
/// thread's heap (an `mprotect`) when its alerts were freed and grow it again, with fresh
/// page faults, at the next: a third of a lone exec's cost on the build VM. Freed memory
/// still goes back every ten seconds ([`release_free_heap`]).
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Sets the allocator's policy; called once at start-up, before the threads start.
pub fn tune_allocator() {
    // SAFETY: mallopt has no preconditions; an unknown option is ignored (returns 0).
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Gives freed heap pages back to the kernel. glibc keeps them after a peak (the BTF
/// parse at start-up, a burst of events), which would otherwise count in the agent's RSS
/// for good. Called after start-up and from the pipeline's housekeeping.
pub fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
