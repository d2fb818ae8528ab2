//! The sweep's table and the lines under it.

use super::Phase;
use crate::bench::table::Table;

/// One rate's three phases.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row {
    pub rate: u32,
    pub distinct: Phase,
    pub repeated: Phase,
    pub auditd: Phase,
}

fn cell(p: &Phase) -> String {
    format!("{:.4} / {:.1} %", p.per_1000(), p.pct_core())
}

pub fn print(rows: &[Row], idle_ms_per_s: f64, lost: f64, stop_line: Option<&str>) {
    let t = Table::compact(&[
        "rate (exec/s)",
        "agent, distinct: s per 1,000 / % core",
        "agent p99 (ms), delivered",
        "agent, one repeated line: s per 1,000 / % core",
        "auditd: s per 1,000 / % core",
        "agent ÷ auditd (distinct)",
    ]);
    println!();
    println!("{}", t.header());
    for r in rows {
        let p99 = r.distinct.p99_ms.map_or_else(
            || "-".to_owned(),
            |p| format!("{p:.2}, {}/{}", r.distinct.delivered, r.distinct.execs),
        );
        let ratio = r.distinct.per_1000() / r.auditd.per_1000();
        println!(
            "{}",
            t.row(&[
                r.rate.to_string(),
                cell(&r.distinct),
                p99,
                cell(&r.repeated),
                cell(&r.auditd),
                format!("{ratio:.3}"),
            ])
        );
    }
    println!();
    println!(
        "- Targets: agent ≤ 0.05 s per 1,000 at ≤ 20/s and ≤ 0.0125 from 200/s; ≤ ¼ of auditd at every rate; p99 ≤ 5 ms."
    );
    println!(
        "- Idle agent: {idle_ms_per_s:.2} ms of CPU a second (included in every agent figure above)."
    );
    println!("- Ring-buffer events lost over the sweep: {lost}");
    if let Some(l) = stop_line {
        println!("- Agent stop line: {l}");
    }
}
