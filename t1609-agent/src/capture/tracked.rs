//! The tracked-task map (`TRACKED`: injected sessions' processes) and the counting filter
//! in front of it (`TRACKED_COUNT`, 4,096 slots, each the number of tracked pids that
//! fall in it), as the agent sees them. The probes answer "not tracked" for a fork or
//! exit from one load of its slot; the agent keeps the counts true when it removes
//! entries (ending a session that injects nothing), and checks them at the stop.

use t1609_common::tracked_slot;

use super::Capture;

/// `TRACKED` against its counting filter, from [`Capture::tracked_check`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedCheck {
    /// Keys in `TRACKED`.
    pub entries: u64,
    /// The counts' sum: `entries` unless an LRU eviction (all 16,384 entries in use) left
    /// some counted (harmless: those slots just keep asking `TRACKED`).
    pub counted: u64,
    /// Slots counting fewer keys than `TRACKED` holds (must be 0: those keys' tasks would
    /// be invisible to the probes).
    pub short_slots: u64,
}

impl Capture {
    /// Ends a session the kernel started for an exec that turned out not to inject
    /// anything (runc create/start/state...): the root and whatever it forked since.
    pub fn end_session(&mut self, session: u64) {
        let Some(map) = self.ebpf.map_mut("TRACKED") else {
            return;
        };
        let Ok(mut tracked) = aya::maps::HashMap::<_, u32, u64>::try_from(map) else {
            return;
        };
        let members: Vec<u32> = tracked
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| *s == session)
            .map(|(k, _)| k)
            .collect();
        for tgid in members {
            // Uncounted only if this removal took it out: the probe's exit may have.
            if tracked.remove(&tgid).is_ok()
                && let Some(counts) = &self.tracked_count
            {
                counts.uncount(tgid);
            }
        }
    }

    /// Tasks the probes track (sessions and reported processes), as their counting
    /// filter has it: the `TRACKED` entries, plus any an LRU eviction took out behind
    /// the counts' back. `None` when the filter could not be mapped.
    pub fn tracked_tasks(&self) -> Option<u64> {
        self.tracked_count
            .as_ref()
            .map(super::mapped::TrackedCount::total)
    }

    /// Compares `TRACKED` with its counting filter: a slot counting fewer keys than it
    /// holds would hide tracked tasks from the probes. Exact once detached.
    pub fn tracked_check(&self) -> Option<TrackedCheck> {
        let counts = self.tracked_count.as_ref()?;
        let map = self.ebpf.map("TRACKED")?;
        let tracked = aya::maps::HashMap::<_, u32, u64>::try_from(map).ok()?;
        let mut per_slot = std::collections::HashMap::<u32, u32>::new();
        for key in tracked.keys().filter_map(Result::ok) {
            *per_slot.entry(tracked_slot(key)).or_default() += 1;
        }
        Some(TrackedCheck {
            entries: per_slot.values().map(|&n| u64::from(n)).sum(),
            counted: counts.total(),
            short_slots: per_slot
                .iter()
                .filter(|&(&slot, &keys)| counts.slot(slot) < u64::from(keys))
                .count() as u64,
        })
    }
}
