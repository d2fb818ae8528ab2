//! The hot-path thread: the ring-buffer reader and the pipeline, as a plain loop with no
//! async runtime. The thread sleeps in the reader (a `ppoll` between bursts, a
//! `nanosleep` to the next drain tick during one) and handles each drained batch in
//! place; a tokio task pair here cost a channel hand-over, two task polls and the
//! driver's bookkeeping per tick, about a fifth of the agent's CPU in a watched storm.
//! The rare awaits (a container lookup on the runtime's socket) run on a small runtime
//! of the thread's own (`context::target`). Sinks, metrics, audit sources and signals
//! stay on the main runtime.

use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{IDLE_PERIOD, PERIOD, Pipeline};
use crate::capture::{CaptureError, Reader, StopSignal};

/// While execs wait for their file's verdict, the thread looks for it this often.
pub(crate) const HOLD_POLL: Duration = Duration::from_millis(5);

/// Starts the thread. It ends when `stop` fires and the pipeline has handled what the
/// reader drained last, and the timed work has closed every session and dedup window.
pub fn spawn(
    reader: Reader,
    pipeline: Pipeline,
    stop: Arc<StopSignal>,
) -> std::io::Result<JoinHandle<Result<(), CaptureError>>> {
    std::thread::Builder::new()
        .name("t1609-pipeline".into())
        .spawn(move || run(reader, pipeline, &stop))
}

fn run(mut reader: Reader, mut pipeline: Pipeline, stop: &StopSignal) -> Result<(), CaptureError> {
    let mut batch = Vec::new();
    let mut handled = Vec::new();
    let mut next_period = Instant::now() + PERIOD;
    let result = loop {
        let wake_by = if pipeline.holding() {
            next_period.min(Instant::now() + HOLD_POLL)
        } else {
            next_period
        };
        let running = match reader.wait_and_drain(&mut batch, wake_by, stop) {
            Ok(running) => running,
            Err(e) => break Err(e),
        };
        pipeline.handle(&batch, &mut handled);
        reader.after_batch(&batch, &handled);
        let now = Instant::now();
        // Records came: the timed work is due at the busy pace again.
        if !batch.is_empty() {
            next_period = next_period.min(now + PERIOD);
        }
        reader.recycle(&mut batch);
        if now >= next_period {
            pipeline.periodic();
            next_period = now + if pipeline.idle() { IDLE_PERIOD } else { PERIOD };
        }
        if !running {
            break Ok(());
        }
    };
    pipeline.finish();
    result
}
