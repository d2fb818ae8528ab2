//! Reads the agent's alerts from its socket-server sink and notes when the first alert of
//! each marked exec arrived.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    os::unix::net::UnixStream,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::Context as _;

use super::paced::now_ns;

/// The target of a marked exec: `web<seq>p<phase>` (digits next to letters survive the
/// agent's command-line normalization, so every exec is a distinct command line).
pub fn marker(phase: usize, seq: usize) -> String {
    format!("web{seq}p{phase}")
}

/// (phase, seq) of a marker found in an alert line.
fn parse_marker(line: &str) -> Option<(usize, usize)> {
    let at = line.find("\"web")? + 4;
    let rest = &line[at..];
    let seq_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let seq = rest[..seq_len].parse().ok()?;
    let rest = rest[seq_len..].strip_prefix('p')?;
    let phase_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((rest[..phase_len].parse().ok()?, seq))
}

/// Arrival times (ns since the epoch) of the first alert of each (phase, seq).
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<HashMap<(usize, usize), u64>>>);

impl Arrivals {
    /// Connects to `sock` and records arrivals until the agent closes it.
    pub fn subscribe(sock: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(sock)
            .with_context(|| format!("connecting to the agent's socket {}", sock.display()))?;
        let this = Self::default();
        let map = this.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let t = now_ns();
                if let Some(key) = parse_marker(&line) {
                    map.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(key)
                        .or_insert(t);
                }
            }
        });
        Ok(this)
    }

    /// Latencies (ms) of `phase`'s execs that were delivered, given when each started.
    pub fn latencies_ms(&self, phase: usize, started_ns: &[u64]) -> Vec<f64> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        started_ns
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 0)
            .filter_map(|(seq, &s)| {
                map.get(&(phase, seq))
                    .map(|&t| t.saturating_sub(s) as f64 / 1e6)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_an_alert_line() {
        let line = format!(
            "{{\"process\":{{\"args\":[\"true\",\"exec\",\"-it\",\"{}\",\"/bin/sh\"]}}}}",
            marker(3, 1234)
        );
        assert_eq!(parse_marker(&line), Some((3, 1234)));
        assert_eq!(parse_marker("{\"web\":1}"), None);
    }
}
