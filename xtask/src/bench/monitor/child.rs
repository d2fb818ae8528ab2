//! Stopping the processes a monitor started.

use std::{
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

/// Sends `signal` to our own child.
pub fn signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, signal) };
}

/// SIGTERM, then SIGKILL if it is still running after `grace`; its exit status if known.
pub fn sigterm_and_wait(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Whether our child has not exited yet.
pub fn running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}
