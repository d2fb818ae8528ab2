//! `t1609-agent replay`: ECS process events in, alerts out, through the live code path.

use std::io::{BufRead, Write};

use crate::{engine::Engine, event::ProcessEvent};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub bad_lines: u64,
    pub alerts: u64,
}

/// Reads one JSON event per line, writes one alert JSON per line to `out`, and a message
/// naming the line number to `err` for each bad line. Blank lines are skipped; invalid
/// UTF-8 is replaced, never fatal.
pub fn replay(
    engine: &Engine,
    mut input: impl BufRead,
    mut out: impl Write,
    mut err: impl Write,
) -> ReplaySummary {
    let mut s = ReplaySummary::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                s.bad_lines += 1;
                let _ = writeln!(err, "line {}: read error: {e}", s.lines + 1);
                break;
            }
        }
        s.lines += 1;
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim();
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                s.bad_lines += 1;
                let _ = writeln!(err, "line {}: invalid JSON: {e}", s.lines);
                continue;
            }
        };
        let ev = match ProcessEvent::from_ecs(&value) {
            Ok(ev) => ev,
            Err(e) => {
                s.bad_lines += 1;
                let _ = writeln!(err, "line {}: {e}", s.lines);
                continue;
            }
        };
        for alert in engine.evaluate(&ev) {
            s.alerts += 1;
            let _ = alert.write_json(&mut out);
            let _ = out.write_all(b"\n");
        }
    }
    let _ = out.flush();
    s
}
