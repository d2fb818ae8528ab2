//! Counting what the agent recorded, per marker step: the agent writes its `--record`
//! lines into a FIFO and a thread here counts each step's marker (`t1609bench-s<step>`).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::bench::drive::MARK;

/// Steps a counter tells apart: the ceiling, the max-rate storm and the sweep's rates.
pub const MAX_STEPS: usize = 64;

/// Counts `--record` lines per marker step, read from a FIFO the agent writes.
pub struct RecordCounter {
    counts: Arc<Vec<AtomicU64>>,
    other: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RecordCounter {
    /// Makes the FIFO at `fifo` and starts reading it (the open waits for the writer).
    pub fn start(fifo: &Path) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(fifo);
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo {}: {}",
                fifo.display(),
                std::io::Error::last_os_error()
            );
        }
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new((0..MAX_STEPS).map(|_| AtomicU64::new(0)).collect());
        let other = Arc::new(AtomicU64::new(0));
        let (c2, o2, path) = (counts.clone(), other.clone(), fifo.to_owned());
        let thread = std::thread::spawn(move || {
            let Ok(f) = std::fs::File::open(&path) else {
                return;
            };
            let mut r = BufReader::with_capacity(1 << 20, f);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match step_of(&String::from_utf8_lossy(&buf)) {
                    Some(s) if s < MAX_STEPS => {
                        c2[s].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        o2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            counts,
            other,
            thread: Some(thread),
        })
    }

    pub fn get(&self, step: usize) -> u64 {
        self.counts[step].load(Ordering::Relaxed)
    }

    /// Waits until the count for `step` reaches `want` or stops moving for `quiet`.
    pub fn settle(&self, step: usize, want: u64, quiet: Duration, max: Duration) -> u64 {
        let start = Instant::now();
        let (mut last, mut since) = (self.get(step), Instant::now());
        while self.get(step) < want && start.elapsed() < max {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.get(step);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        self.get(step)
    }

    /// Waits for the reader to see the FIFO close (the agent stopped); the number of
    /// recorded lines that carried no marker.
    pub fn finish(mut self) -> u64 {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.other.load(Ordering::Relaxed)
    }
}

/// The step number after the marker in a recorded line.
fn step_of(line: &str) -> Option<usize> {
    // (str::find runs core's optimised searcher even in this debug build.)
    let i = line.find(MARK)?;
    let rest = &line[i + MARK.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse::<usize>().ok()
}

#[cfg(test)]
mod tests {
    use super::step_of;

    #[test]
    fn the_step_is_the_number_after_the_marker() {
        assert_eq!(
            step_of(r#"{"argv":["docker","exec","--label=t1609bench-s12","x"]}"#),
            Some(12)
        );
        assert_eq!(step_of("t1609bench-s"), None);
        assert_eq!(step_of("docker exec -it c sh"), None);
    }
}
