//! `cargo run --release -p t1609-identity --example classify -- [--scan] [--hashes FILE]... [PATH]...`
//!
//! Prints each path's verdict as one JSON line, and with `--scan` the installed tools the
//! start-up scan finds, with the time each step took: what an operator checks a hash
//! list or a configured directory with, and how classification cost is measured.

use std::{path::PathBuf, time::Instant};

use t1609_identity::{Classifier, HashList, Inventory, Limits, Target};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut scan = false;
    let mut lists = Vec::new();
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scan" => scan = true,
            "--hashes" => lists.push(PathBuf::from(args.next().ok_or("--hashes FILE")?)),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    let classifier = Classifier::new(HashList::load(&lists)?, Limits::default());
    if scan {
        let t = Instant::now();
        let inv = Inventory::scan(&classifier, &[]);
        eprintln!(
            "scan: {} installed tools, {} watched inodes, {} problems, {:?}",
            inv.installed.len(),
            inv.dev_inos().len(),
            inv.problems.len(),
            t.elapsed()
        );
        for i in &inv.installed {
            println!("{}", serde_json::to_string(i)?);
        }
        for p in &inv.problems {
            eprintln!("problem: {p}");
        }
    }
    for p in &paths {
        let t = Instant::now();
        match classifier.verdict(Target::Path(p)) {
            Ok(v) => println!("{}", serde_json::to_string(&v)?),
            Err(e) => eprintln!("{e}"),
        }
        let first = t.elapsed();
        let t = Instant::now();
        let _ = classifier.verdict(Target::Path(p));
        eprintln!("{}: {first:?} (cached: {:?})", p.display(), t.elapsed());
    }
    Ok(())
}
