//! The kernel-record decoder: ring-buffer samples → typed events.
//!
//! The input is a sequence of samples, each `u16 little-endian length` + that many bytes
//! (the last sample takes whatever is left), fed to one `Assembler` in order, so the
//! fuzzer can interleave exec records with their continuation records. Nothing the ring
//! buffer holds may panic the agent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use t1609_agent::decode::{Assembler, Captured};

fuzz_target!(|data: &[u8]| {
    let mut asm = Assembler::default();
    let mut rest = data;
    let mut samples = 0u64;
    while !rest.is_empty() {
        let sample = if rest.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            let n = n.min(body.len());
            let (sample, tail) = body.split_at(n);
            rest = tail;
            sample
        } else {
            std::mem::take(&mut rest)
        };
        samples += 1;
        match asm.push(sample) {
            Ok(Some(Captured::Exec(exec))) => {
                // What the enrich stage does with every exec.
                let args = exec.args();
                assert!(args.len() <= exec.argv.len() + 1);
                let _ = String::from_utf8_lossy(&exec.filename);
                let _ = String::from_utf8_lossy(&exec.comm);
            }
            Ok(Some(Captured::Net(net))) => {
                let _ = format!("{:?}", net.destination);
            }
            Ok(Some(Captured::Task(_)) | None) => {}
            Err(e) => {
                // Every error renders (it is logged).
                let _ = e.to_string();
            }
        }
        assert!(asm.pending() <= 4096, "pending execs must stay bounded");
    }
    assert!(asm.decode_errors + asm.orphan_chunks <= samples);
});
