//! Links between a process's alerts: a socket-level alert from a process shares the
//! group id of the argv alerts it raised shortly before.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

/// Remembers recent argv alerts per process, so a socket-level alert from the same
/// process shares their group id.
#[derive(Default)]
pub struct AlertLinks {
    /// (group id, event id, when); ids shared with the repeat memo, so a replayed exec
    /// links without copying them. Keyed by kernel-assigned pids: a fast hasher is safe.
    by_tgid: HashMap<u32, (Arc<str>, Arc<str>, Instant), foldhash::fast::RandomState>,
    /// Insertion order, so expiry pops from the front instead of scanning the map.
    order: VecDeque<(u32, Instant)>,
}

const LINK_WINDOW: Duration = Duration::from_mins(1);
/// Bound on remembered processes whatever the alert rate.
const LINK_MAX: usize = 8192;

impl AlertLinks {
    pub fn remember(
        &mut self,
        tgid: u32,
        group_id: impl Into<Arc<str>>,
        event_id: impl Into<Arc<str>>,
        now: Instant,
    ) {
        self.by_tgid
            .insert(tgid, (group_id.into(), event_id.into(), now));
        self.order.push_back((tgid, now));
        while let Some(&(old, at)) = self.order.front() {
            if now.duration_since(at) < LINK_WINDOW && self.order.len() <= LINK_MAX {
                break;
            }
            self.order.pop_front();
            // Only forget the entry if it was not refreshed since.
            if self.by_tgid.get(&old).is_some_and(|(_, _, t)| *t == at) {
                self.by_tgid.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }

    pub fn lookup(&self, tgid: u32, now: Instant) -> Option<(&str, &str)> {
        self.by_tgid
            .get(&tgid)
            .filter(|(_, _, t)| now.duration_since(*t) < LINK_WINDOW)
            .map(|(g, e, _)| (&**g, &**e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_links_stay_bounded_and_expire_in_order() {
        let mut l = AlertLinks::default();
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            l.remember(i, "g", "e", t0);
        }
        assert!(l.len() <= LINK_MAX, "{}", l.len());
        assert!(l.lookup(19_999, t0).is_some());
        l.remember(1, "g2", "e2", t0 + LINK_WINDOW + Duration::from_secs(1));
        assert_eq!(l.len(), 1, "everything older than the window is gone");
        assert_eq!(
            l.lookup(1, t0 + LINK_WINDOW + Duration::from_secs(1)),
            Some(("g2", "e2"))
        );
    }
}
