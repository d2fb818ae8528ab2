//! Collapse identical alerts within a window into one alert plus a repeat count.
//!
//! Identity ([`DedupKey`]) = rule id + normalized command line + parent executable +
//! container id. Normalization ([`normalize_command_line`]): trim, collapse every run of
//! whitespace to one space, and replace each run of **3 or more** ASCII digits that is not
//! part of a longer alphanumeric word with `N` (pids, ports, sleep counts:
//! `nsenter -t 4242 -m` ≡ `nsenter -t 5151 -m`, `/proc/1234/root` ≡ `/proc/99999/root`).
//! 1–2 digit numbers are kept so `nsenter -t 1` (host init) stays distinct, and hex ids
//! (`3f1c…`) are untouched because their digits touch letters.
//!
//! The window is fixed from the first occurrence (not sliding): a steady stream yields one
//! `First` per window.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey {
    pub rule_id: String,
    /// Already normalized (use [`DedupKey::new`]).
    pub command_line: String,
    pub parent_executable: String,
    /// Empty for host processes.
    pub container_id: String,
}

impl DedupKey {
    /// Builds a key, normalizing the command line. Missing parent / container → "".
    pub fn new(
        rule_id: &str,
        command_line: &str,
        parent_executable: Option<&str>,
        container_id: Option<&str>,
    ) -> Self {
        Self {
            rule_id: rule_id.to_string(),
            command_line: normalize_command_line(command_line),
            parent_executable: parent_executable.unwrap_or_default().to_string(),
            container_id: container_id.unwrap_or_default().to_string(),
        }
    }
}

/// See the module docs.
pub fn normalize_command_line(cmd: &str) -> String {
    let collapsed = cmd.split_whitespace().collect::<Vec<_>>().join(" ");
    let b = collapsed.as_bytes();
    let mut out = String::with_capacity(collapsed.len());
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let before_alnum = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let after_alnum = j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_');
            if j - i >= 3 && !before_alnum && !after_alnum {
                out.push('N');
            } else {
                out.push_str(&collapsed[i..j]);
            }
            i = j;
        } else {
            // Copy one UTF-8 character.
            let ch = collapsed[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupOutcome {
    /// First occurrence in a window: emit the alert.
    First,
    /// A repeat; `count` is the total so far in this window, the first one included.
    Repeat { count: u64 },
}

#[derive(Debug)]
struct Slot {
    first: Instant,
    count: u64,
}

/// Windowed deduplicator. Bounded: beyond `max_keys` live windows, the oldest window is
/// closed early (its count goes to the next [`flush_expired`](Self::flush_expired)).
#[derive(Debug)]
pub struct Deduper {
    window: Duration,
    max_keys: usize,
    slots: HashMap<DedupKey, Slot>,
    /// Window openings, oldest first: expiry and the bound take from the front instead of
    /// scanning every open window. An opening whose key has since reopened is skipped
    /// (its slot's `first` differs).
    openings: VecDeque<(Instant, DedupKey)>,
    /// Windows closed by `check` (expired key seen again) or by the bound.
    closed: Vec<(DedupKey, u64)>,
}

impl Deduper {
    pub fn new(window: Duration) -> Self {
        Self::with_max_keys(window, 65_536)
    }

    pub fn with_max_keys(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            slots: HashMap::new(),
            openings: VecDeque::new(),
            closed: Vec::new(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn check(&mut self, key: DedupKey, now: Instant) -> DedupOutcome {
        if let Some(slot) = self.slots.get_mut(&key) {
            if now.saturating_duration_since(slot.first) < self.window {
                slot.count += 1;
                return DedupOutcome::Repeat { count: slot.count };
            }
            let old = std::mem::replace(
                slot,
                Slot {
                    first: now,
                    count: 1,
                },
            );
            self.openings.push_back((now, key.clone()));
            self.push_closed(key, old.count);
            return DedupOutcome::First;
        }
        if self.slots.len() >= self.max_keys
            && let Some((oldest, count)) = self.pop_oldest(|_| true)
        {
            self.push_closed(oldest, count);
        }
        self.openings.push_back((now, key.clone()));
        self.slots.insert(
            key,
            Slot {
                first: now,
                count: 1,
            },
        );
        DedupOutcome::First
    }

    /// Removes the oldest open window if `take` accepts its opening time: its key and count.
    /// Stale openings met on the way are dropped.
    fn pop_oldest(&mut self, take: impl Fn(Instant) -> bool) -> Option<(DedupKey, u64)> {
        while let Some((first, _)) = self.openings.front() {
            let first = *first;
            if !take(first) {
                return None;
            }
            let (_, key) = self.openings.pop_front()?;
            if self.slots.get(&key).is_some_and(|s| s.first == first)
                && let Some(s) = self.slots.remove(&key)
            {
                return Some((key, s.count));
            }
        }
        None
    }

    /// Counts one more occurrence of every key in `keys` if each of them is a repeat in
    /// its open window at `now`, and returns `true`; otherwise changes nothing and
    /// returns `false` (the caller then takes the full path, which opens new windows).
    pub fn count_if_all_repeats(&mut self, keys: &[DedupKey], now: Instant) -> bool {
        let window = self.window;
        // One lookup per key when all are repeats (the common case); a miss undoes the
        // counts already taken.
        for (i, k) in keys.iter().enumerate() {
            match self.slots.get_mut(k) {
                Some(slot) if now.saturating_duration_since(slot.first) < window => {
                    slot.count += 1;
                }
                _ => {
                    for taken in &keys[..i] {
                        if let Some(slot) = self.slots.get_mut(taken) {
                            slot.count -= 1;
                        }
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Closes every window older than the window length and returns (key, total count) for
    /// each closed window, count 1 included (emit a summary when count > 1).
    pub fn flush_expired(&mut self, now: Instant) -> Vec<(DedupKey, u64)> {
        let mut out = std::mem::take(&mut self.closed);
        let window = self.window;
        while let Some(closed) =
            self.pop_oldest(|first| now.saturating_duration_since(first) >= window)
        {
            out.push(closed);
        }
        out
    }

    /// Closes every window, expired or not (at shutdown, or the end of a replay), in
    /// opening order after those `check` closed.
    pub fn flush_all(&mut self) -> Vec<(DedupKey, u64)> {
        let mut out = std::mem::take(&mut self.closed);
        while let Some(closed) = self.pop_oldest(|_| true) {
            out.push(closed);
        }
        out
    }

    /// Closed windows wait for the next flush; if nobody flushes, the oldest are dropped
    /// beyond `max_keys` so memory stays bounded.
    fn push_closed(&mut self, key: DedupKey, count: u64) {
        if self.closed.len() >= self.max_keys {
            self.closed.remove(0);
        }
        self.closed.push((key, count));
    }

    /// Open windows.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// No open window and no closed one waiting to be reported.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.closed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_repeats_counted_together_or_not_at_all() {
        let t0 = Instant::now();
        let mut d = Deduper::new(Duration::from_secs(10));
        let a = DedupKey::new("r1", "docker exec -it c sh", Some("/bin/bash"), None);
        let b = DedupKey::new("r2", "docker exec -it c sh", Some("/bin/bash"), None);
        assert_eq!(d.check(a.clone(), t0), DedupOutcome::First);
        // `b` has no open window: nothing is counted, not even `a`.
        assert!(!d.count_if_all_repeats(&[a.clone(), b.clone()], t0));
        assert_eq!(d.check(b.clone(), t0), DedupOutcome::First);
        assert!(d.count_if_all_repeats(&[a.clone(), b.clone()], t0 + Duration::from_secs(1)));
        assert!(d.count_if_all_repeats(&[], t0));
        // A closed window is not a repeat: the full path must open the next one.
        assert!(!d.count_if_all_repeats(std::slice::from_ref(&a), t0 + Duration::from_secs(10)));
        assert_eq!(
            d.check(a.clone(), t0 + Duration::from_secs(2)),
            DedupOutcome::Repeat { count: 3 }
        );
        let closed = d.flush_expired(t0 + Duration::from_secs(11));
        assert!(closed.contains(&(a, 3)), "{closed:?}");
        assert!(closed.contains(&(b, 2)), "{closed:?}");
    }

    /// Expiry and the bound take windows in opening order; a window reopened by `check`
    /// lives its own length, whatever its key's earlier opening.
    #[test]
    fn a_reopened_window_lives_its_own_length_and_the_bound_evicts_the_oldest_open_one() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let key = |c: &str| DedupKey::new("r", c, None, None);
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let mut dedup = Deduper::with_max_keys(secs(10), 2);
        assert_eq!(dedup.check(a.clone(), t0), DedupOutcome::First);
        assert_eq!(dedup.check(b.clone(), t0 + secs(1)), DedupOutcome::First);
        assert_eq!(dedup.check(a.clone(), t0 + secs(11)), DedupOutcome::First);
        assert_eq!(
            dedup.flush_expired(t0 + secs(12)),
            vec![(a.clone(), 1), (b.clone(), 1)]
        );
        assert_eq!(dedup.len(), 1, "a's second window is open until 21 s");
        assert_eq!(
            dedup.check(a.clone(), t0 + secs(12)),
            DedupOutcome::Repeat { count: 2 }
        );
        assert_eq!(dedup.check(b.clone(), t0 + secs(13)), DedupOutcome::First);
        // At the bound the oldest open window (a, opened at 11 s) closes early.
        assert_eq!(dedup.check(c.clone(), t0 + secs(14)), DedupOutcome::First);
        assert_eq!(dedup.flush_expired(t0 + secs(15)), vec![(a, 2)]);
        assert_eq!(dedup.flush_expired(t0 + secs(23)), vec![(b, 1)]);
        assert_eq!(dedup.flush_expired(t0 + secs(24)), vec![(c, 1)]);
        assert!(dedup.is_empty() && dedup.openings.is_empty());
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_command_line("  docker   exec\t-it  c1 sh "),
            "docker exec -it c1 sh"
        );
        assert_eq!(
            normalize_command_line("nsenter -t 4242 -m -p"),
            "nsenter -t N -m -p"
        );
        assert_eq!(
            normalize_command_line("nsenter -t 1 -m -p"),
            "nsenter -t 1 -m -p"
        );
        assert_eq!(
            normalize_command_line("cat /proc/12345/environ"),
            "cat /proc/N/environ"
        );
        assert_eq!(
            normalize_command_line("curl -k https://10.0.0.1:10250/pods"),
            "curl -k https://10.0.0.1:N/pods"
        );
        assert_eq!(
            normalize_command_line("docker exec 3f1c9e2b7a4d sh"),
            "docker exec 3f1c9e2b7a4d sh"
        );
        assert_eq!(normalize_command_line("echo héllo 123"), "echo héllo N");
    }
}
