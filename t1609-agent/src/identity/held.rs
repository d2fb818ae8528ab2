//! Execs waiting for their file's verdict: the first exec of a file the probe reported
//! only for what it is (a renamed tool, or any file not classified yet). Each waits at
//! most the hold time, and at most [`MAX_HELD`] wait; then they are evaluated as they
//! are, by name and argument shape.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use t1609_common::ExeKey;
use t1609_identity::Verdict;

use crate::decode::CapturedExec;

/// Execs held at once. Each keeps its argv (up to 32 KiB), so this bounds the memory a
/// storm of new files can take; past it, execs are evaluated without waiting.
pub const MAX_HELD: usize = 64;

/// What became of a held exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Its verdict arrived (or its classification failed: no verdict, no wait).
    Answered,
    /// The hold time ran out first.
    TimedOut,
}

struct Waiting {
    exec: Box<CapturedExec>,
    key: ExeKey,
    since: Instant,
    answer: Answer,
}

enum Answer {
    Pending,
    /// Classification answered: the verdict, `None` when it failed or the file changed
    /// meanwhile.
    Came(Option<Arc<Verdict>>),
}

/// The held execs, in arrival order.
pub struct Held {
    waiting: VecDeque<Waiting>,
    hold: Duration,
}

impl Held {
    pub fn new(hold: Duration) -> Held {
        Held {
            waiting: VecDeque::new(),
            hold,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Holds `exec` until `key`'s verdict; false (not held) when [`MAX_HELD`] wait.
    pub fn hold(&mut self, exec: &CapturedExec, key: ExeKey, now: Instant) -> bool {
        if self.waiting.len() >= MAX_HELD {
            return false;
        }
        self.waiting.push_back(Waiting {
            exec: Box::new(exec.clone()),
            key,
            since: now,
            answer: Answer::Pending,
        });
        true
    }

    /// `key` was classified: every exec waiting for it may go.
    pub fn answer(&mut self, key: &ExeKey, verdict: Option<&Arc<Verdict>>) {
        for w in self.waiting.iter_mut().filter(|w| w.key == *key) {
            w.answer = Answer::Came(verdict.cloned());
        }
    }

    /// The next exec that may go (answered, or waited long enough; any, with `all`),
    /// with its verdict.
    pub fn next(
        &mut self,
        now: Instant,
        all: bool,
    ) -> Option<(Box<CapturedExec>, Option<Arc<Verdict>>, Released)> {
        let i = self.waiting.iter().position(|w| {
            all || matches!(w.answer, Answer::Came(_)) || now.duration_since(w.since) >= self.hold
        })?;
        let w = self.waiting.remove(i)?;
        Some(match w.answer {
            Answer::Came(v) => (w.exec, v, Released::Answered),
            Answer::Pending => (w.exec, None, Released::TimedOut),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> ExeKey {
        ExeKey {
            ino,
            ..ExeKey::default()
        }
    }

    #[test]
    fn execs_go_when_answered_or_when_the_hold_runs_out() {
        let t0 = Instant::now();
        let mut h = Held::new(Duration::from_millis(100));
        let exec = CapturedExec {
            tgid: 1,
            ..CapturedExec::default()
        };
        assert!(h.hold(&exec, key(1), t0));
        assert!(h.hold(
            &CapturedExec {
                tgid: 2,
                ..exec.clone()
            },
            key(2),
            t0
        ));
        assert!(
            h.next(t0, false).is_none(),
            "nothing answered, nothing late"
        );
        h.answer(&key(2), None);
        let (e, v, how) = h.next(t0, false).unwrap();
        assert_eq!((e.tgid, v.is_none(), how), (2, true, Released::Answered));
        assert!(h.next(t0 + Duration::from_millis(99), false).is_none());
        let (e, _, how) = h.next(t0 + Duration::from_millis(100), false).unwrap();
        assert_eq!((e.tgid, how), (1, Released::TimedOut));
        assert!(h.is_empty());
    }

    #[test]
    fn the_hold_is_bounded() {
        let t0 = Instant::now();
        let mut h = Held::new(Duration::from_secs(1));
        let exec = CapturedExec::default();
        for i in 0..MAX_HELD as u64 {
            assert!(h.hold(&exec, key(i), t0));
        }
        assert!(!h.hold(&exec, key(999), t0));
        let mut n = 0;
        while h.next(t0, true).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_HELD, "the stop lets every one go");
    }
}
