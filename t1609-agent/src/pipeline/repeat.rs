//! The shortcut for exact repeats, the pipeline's first and last step. A loop that runs the same command (a probe, a cron job, an attacker's
//! script) sends the same exec again and again, and after the first one every alert it
//! raises is a repeat that the dedup window only counts. For an exec identical to one
//! handled less than [`TTL`] ago — same binary, argv, credentials, terminal, namespaces,
//! `css_set`, working directory, parent and ancestors, all as the process table holds them —
//! the pipeline replays that exec's outcome (table entry, suppressed and repeated alerts)
//! instead of building the event and evaluating the rules again.
//!
//! The identity is compared byte for byte, so a crafted argv cannot pass for another
//! command. Only execs whose full path reads nothing from /proc are eligible, and an
//! outcome is replayed only while every one of its alerts is still a repeat in its open
//! dedup window; otherwise the exec takes the full path. A rule reload starts afresh.
//! What can go stale within [`TTL`]: an exception's `time_window` boundary, and an
//! ancestor whose table entry changed without its pid, comm or start time changing.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use t1609_context::{DedupKey, ProcessTable};
use t1609_detect::Engine;

use crate::{
    alerts::links::AlertLinks,
    context::Context,
    decode::CapturedExec,
    stats::{Counter, Counters},
    triage::Tuning,
};

/// How long an outcome is replayed before the full path decides again.
pub const TTL: Duration = Duration::from_secs(1);
/// Bound on remembered outcomes (a storm of distinct commands only cycles them).
const MAX_ENTRIES: usize = 256;
/// Longer identities (huge argv) are not remembered: they would dominate memory.
const MAX_IDENTITY_BYTES: usize = 4096;

/// What the full path decided for one exec, replayed for its exact repeats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The process-table entry's name, executable and argv.
    pub name: String,
    pub executable: Option<Arc<str>>,
    pub args: Option<Arc<[String]>>,
    /// Alerts the exceptions suppressed.
    pub suppressed: u64,
    /// Dedup keys of the alerts that were repeats in their window.
    pub repeated: Vec<DedupKey>,
    /// Group and event id a later network alert from the process is linked to.
    pub link: Option<(Arc<str>, Arc<str>)>,
}

/// What the full path made of one exec's alerts: what a repeat of it would replay.
#[derive(Debug, Default)]
pub struct Fates {
    /// Some alert was emitted or folded into a session: a repeat must take the full path.
    pub emitted_or_folded: bool,
    /// The rules read leaders or environment variables, which a repeat's identity does
    /// not compare: a repeat must take the full path.
    pub read_extras: bool,
    /// Alerts the exceptions suppressed.
    pub suppressed: u64,
    /// Dedup keys of the alerts that were repeats in their window.
    pub repeated: Vec<DedupKey>,
    /// Group and event id of the last alert, for a later network alert of the process.
    pub link: Option<(Arc<str>, Arc<str>)>,
}

#[derive(Default)]
pub struct Repeats {
    /// Off with `--record`: every exec is recorded whole.
    disabled: bool,
    /// The exec being handled was eligible ([`Repeats::identify`]).
    eligible: bool,
    /// A fast seeded hash, not `SipHash`, though argv is the attacker's: the map holds at
    /// most [`MAX_ENTRIES`] identities of at most [`MAX_IDENTITY_BYTES`], so even keys
    /// crafted to collide cost a bounded scan, and `SipHash` over the ~0.5 KB identity was
    /// a fifth of a replayed repeat's instructions.
    entries: HashMap<Box<[u8]>, (Instant, Outcome), foldhash::fast::RandomState>,
    /// The rules the outcomes were decided with; a reload clears them.
    engine: Option<Arc<Engine>>,
    identity: Vec<u8>,
}

/// `bytes` with its length first, so `["ab", "c"]` and `["a", "bc"]` differ (the length
/// is bounded by the kernel's record).
fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

impl Repeats {
    /// `enabled: false` turns the shortcut off (every exec takes the full path).
    pub fn new(enabled: bool) -> Self {
        Self {
            disabled: !enabled,
            ..Self::default()
        }
    }

    /// The first step of the exec path: replays `exec` when it is an exact repeat of an
    /// exec handled less than [`TTL`] ago whose alerts are all still repeats in their open
    /// dedup windows. The table records it, the dedup windows and counters count its
    /// alerts, and a later connect of the process is linked to the alerts it repeats.
    /// `true` when replayed.
    #[expect(
        clippy::too_many_arguments,
        reason = "the stages a replay updates, each once"
    )]
    pub fn replay(
        &mut self,
        exec: &CapturedExec,
        engine: &Arc<Engine>,
        context: &mut Context,
        tuning: &mut Tuning,
        links: &mut AlertLinks,
        counters: &Counters,
        now: Instant,
    ) -> bool {
        self.eligible = !self.disabled && self.identify(exec, &context.table);
        if !self.eligible {
            return false;
        }
        let Some(outcome) = self.lookup(engine, now) else {
            return false;
        };
        if !tuning.count_if_all_repeats(&outcome.repeated, now) {
            return false;
        }
        context.on_repeat_exec(
            exec,
            &outcome.name,
            outcome.executable.clone(),
            outcome.args.clone(),
        );
        if let Some((group, event_id)) = &outcome.link {
            links.remember(exec.tgid, group.clone(), event_id.clone(), now);
        }
        counters.add(Counter::Suppressed, outcome.suppressed);
        counters.add(Counter::Deduplicated, outcome.repeated.len() as u64);
        counters.inc(Counter::RepeatsReplayed);
        true
    }

    /// The last step of the exec path: remembers what the full path decided for the exec
    /// just handled, for its repeats, unless it emitted or folded an alert. The outcome
    /// shares the table entry's executable and argv, as its repeats' entries will.
    pub fn remember_fates(
        &mut self,
        engine: &Arc<Engine>,
        exec: &CapturedExec,
        table: &ProcessTable,
        fates: Fates,
        now: Instant,
    ) {
        if !self.eligible || fates.emitted_or_folded || fates.read_extras {
            return;
        }
        let Some(entry) = table.get(exec.tgid) else {
            return;
        };
        let outcome = Outcome {
            name: entry.name.clone(),
            executable: entry.executable.clone(),
            args: entry.args.clone(),
            suppressed: fates.suppressed,
            repeated: fates.repeated,
            link: fates.link,
        };
        self.remember(engine, outcome, now);
    }

    /// Builds `exec`'s identity from the record and the table. `false` when the exec is
    /// not eligible: its full path would read /proc (unknown parent, ancestor, `css_set` or
    /// directory), it belongs to a session, or its identity is too long.
    fn identify(&mut self, exec: &CapturedExec, table: &ProcessTable) -> bool {
        self.identity.clear();
        if exec.session != 0 || exec.session_root || exec.ancestors.is_empty() {
            return false;
        }
        let Some(parent) = table.get(exec.ppid) else {
            return false;
        };
        let cgroup_known =
            exec.css_set != 0 && parent.css_set == Some(exec.css_set) && parent.cgroup.is_some();
        let cwd = match &parent.cwd {
            Some((pwd, path)) if exec.pwd != (0, 0) && *pwd == exec.pwd => path,
            _ => return false,
        };
        if parent.exited || parent.executable.is_none() || !cgroup_known {
            return false;
        }
        let b = &mut self.identity;
        put(b, &exec.filename);
        put(b, &exec.argv);
        put(b, &exec.comm);
        for v in [
            exec.argc,
            exec.argv_total_len,
            u32::from(exec.truncated)
                | u32::from(exec.incomplete) << 1
                | u32::from(exec.argv_read_failed) << 2,
            exec.uid,
            exec.gid,
            exec.euid,
            exec.egid,
            exec.loginuid.map_or(u32::MAX, |v| v),
            exec.pid_ns,
            exec.mnt_ns,
            exec.ppid,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        match &exec.tty {
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.index.to_le_bytes());
                put(b, t.name.as_bytes());
            }
            None => b.push(0),
        }
        put_u64(b, exec.cgroup_id);
        put_u64(b, exec.css_set);
        put_u64(b, exec.pwd.0);
        put_u64(b, exec.pwd.1);
        put(b, cwd.as_bytes());
        // The parent's entry as the event would show it; a new exec or fork of the
        // parent changes its start time.
        put_u64(b, parent.start_ns.unwrap_or(0));
        for (tgid, comm) in &exec.ancestors {
            let Some(known) = table.get(*tgid) else {
                self.identity.clear();
                return false;
            };
            let b = &mut self.identity;
            b.extend_from_slice(&tgid.to_le_bytes());
            put(b, comm);
            put_u64(b, known.start_ns.unwrap_or(0));
            put(b, known.executable.as_deref().unwrap_or("").as_bytes());
        }
        self.identity.len() <= MAX_IDENTITY_BYTES
    }

    /// Forgets every outcome if they were decided with other rules than `engine` (a
    /// reload); `true` when it did.
    fn rebind(&mut self, engine: &Arc<Engine>) -> bool {
        if self.engine.as_ref().is_some_and(|e| Arc::ptr_eq(e, engine)) {
            return false;
        }
        self.entries.clear();
        self.engine = Some(engine.clone());
        true
    }

    /// The outcome remembered for the identity last built by [`identify`](Self::identify).
    fn lookup(&mut self, engine: &Arc<Engine>, now: Instant) -> Option<&Outcome> {
        if self.rebind(engine) {
            return None;
        }
        // One hash of the identity: an expired outcome is not removed here; the full path
        // that follows overwrites it, and `remember` sweeps the rest when the map is full.
        self.entries
            .get(self.identity.as_slice())
            .filter(|(at, _)| now.saturating_duration_since(*at) < TTL)
            .map(|(_, outcome)| outcome)
    }

    /// Remembers the full path's outcome for the identity last built.
    fn remember(&mut self, engine: &Arc<Engine>, outcome: Outcome, now: Instant) {
        if self.identity.is_empty() {
            return;
        }
        self.rebind(engine);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < TTL);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries
            .insert(self.identity.as_slice().into(), (now, outcome));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use t1609_context::ProcInfo;

    use super::*;
    use crate::decode::Comm;

    fn table() -> ProcessTable {
        // An empty proc root: nothing is read from the real /proc.
        let mut t = ProcessTable::new(Path::new("/nonexistent"), 64, Duration::from_mins(1));
        for (pid, ppid, name) in [(100, 1, "bash"), (1, 0, "systemd")] {
            t.on_exec(ProcInfo {
                pid,
                ppid,
                name: name.into(),
                executable: Some(format!("/usr/bin/{name}").into()),
                args: Some(vec![name.to_owned()].into()),
                start_ns: Some(u64::from(pid) * 1000),
                css_set: Some(0xc55),
                cgroup: Some("0::/user.slice\n".into()),
                cwd: Some(((7, 8), "/root".into())),
                ..Default::default()
            });
        }
        t
    }

    fn exec() -> CapturedExec {
        CapturedExec {
            ktime_ns: 5_000,
            tgid: 200,
            pid: 200,
            ppid: 100,
            uid: 0,
            filename: b"/usr/bin/docker".to_vec(),
            argv: b"docker\0exec\0-it\0c\0sh\0".to_vec(),
            comm: crate::decode::Comm::new(b"docker"),
            argc: 5,
            css_set: 0xc55,
            pwd: (7, 8),
            ancestors: vec![(100, Comm::new(b"bash")), (1, Comm::new(b"systemd"))],
            ..Default::default()
        }
    }

    /// A named change to the reference exec.
    type Change = (&'static str, Box<dyn Fn(&mut CapturedExec)>);

    fn identity(r: &mut Repeats, e: &CapturedExec, t: &ProcessTable) -> Option<Vec<u8>> {
        r.identify(e, t).then(|| r.identity.clone())
    }

    #[test]
    fn identical_execs_share_an_identity_whatever_their_pid_and_time() {
        let (t, mut r) = (table(), Repeats::default());
        let a = identity(&mut r, &exec(), &t).expect("eligible");
        let mut later = exec();
        later.tgid = 201;
        later.pid = 201;
        later.ktime_ns = 9_000;
        assert_eq!(identity(&mut r, &later, &t), Some(a));
    }

    #[test]
    fn every_input_of_the_outcome_changes_the_identity() {
        let (t, mut r) = (table(), Repeats::default());
        let base = identity(&mut r, &exec(), &t).unwrap();
        let variants: Vec<Change> = vec![
            (
                "argv",
                Box::new(|e| e.argv = b"docker\0exec\0-it\0d\0sh\0".to_vec()),
            ),
            // Same bytes split differently must differ too.
            (
                "argv split",
                Box::new(|e| e.argv = b"docker\0exec\0-it\0c sh\0".to_vec()),
            ),
            (
                "filename",
                Box::new(|e| e.filename = b"/tmp/docker".to_vec()),
            ),
            ("uid", Box::new(|e| e.uid = 1000)),
            ("euid", Box::new(|e| e.euid = 1000)),
            ("gid", Box::new(|e| e.gid = 5)),
            ("loginuid", Box::new(|e| e.loginuid = Some(1000))),
            ("argc", Box::new(|e| e.argc = 6)),
            ("truncated", Box::new(|e| e.truncated = true)),
            ("mnt_ns", Box::new(|e| e.mnt_ns = 9)),
            ("pid_ns", Box::new(|e| e.pid_ns = 9)),
            ("cgroup_id", Box::new(|e| e.cgroup_id = 9)),
            (
                "tty",
                Box::new(|e| {
                    e.tty = Some(crate::decode::Tty {
                        index: 1,
                        name: "pts1".into(),
                    });
                }),
            ),
            (
                "ancestor comm",
                Box::new(|e| e.ancestors[1].1 = Comm::new(b"init")),
            ),
        ];
        for (what, change) in variants {
            let mut e = exec();
            change(&mut e);
            let other = identity(&mut r, &e, &t);
            assert!(other.is_some(), "{what}: still eligible");
            assert_ne!(other.unwrap(), base, "{what} must change the identity");
        }
        // The parent exec'd again (new start time): a different parent event.
        let mut t2 = table();
        let mut p = t2.get(100).unwrap().clone();
        p.start_ns = Some(777);
        t2.on_exec(p);
        assert_ne!(identity(&mut r, &exec(), &t2).unwrap(), base);
    }

    #[test]
    fn execs_that_would_read_proc_or_belong_to_a_session_are_not_eligible() {
        let (t, mut r) = (table(), Repeats::default());
        let cases: Vec<Change> = vec![
            ("other css_set", Box::new(|e| e.css_set = 0xbad)),
            ("unknown css_set", Box::new(|e| e.css_set = 0)),
            ("other directory", Box::new(|e| e.pwd = (7, 9))),
            ("unknown directory", Box::new(|e| e.pwd = (0, 0))),
            ("unknown parent", Box::new(|e| e.ppid = 4242)),
            (
                "unknown ancestor",
                Box::new(|e| e.ancestors.push((4242, Comm::new(b"x")))),
            ),
            ("no ancestors", Box::new(|e| e.ancestors.clear())),
            ("session", Box::new(|e| e.session = 7)),
            ("session root", Box::new(|e| e.session_root = true)),
            ("huge argv", Box::new(|e| e.argv = vec![b'a'; 5000])),
        ];
        for (what, change) in cases {
            let mut e = exec();
            change(&mut e);
            assert!(!r.identify(&e, &t), "{what}: must take the full path");
        }
    }

    #[test]
    fn outcomes_expire_and_a_rule_reload_forgets_them() {
        let (t, mut r) = (table(), Repeats::default());
        let engine = Arc::new(Engine::builtin().expect("builtin rules"));
        let t0 = Instant::now();
        assert!(r.identify(&exec(), &t));
        assert!(r.lookup(&engine, t0).is_none());
        let outcome = Outcome {
            name: "docker".into(),
            suppressed: 1,
            ..Default::default()
        };
        r.remember(&engine, outcome.clone(), t0);
        assert_eq!(r.lookup(&engine, t0 + TTL / 2), Some(&outcome));
        assert!(r.lookup(&engine, t0 + TTL).is_none(), "expired");
        // Kept until the full path's outcome overwrites it.
        r.remember(&engine, outcome.clone(), t0 + TTL);
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup(&engine, t0 + TTL), Some(&outcome));
        let reloaded = Arc::new(Engine::builtin().expect("builtin rules"));
        assert!(r.lookup(&reloaded, t0).is_none(), "other rules");
        assert!(r.is_empty());
        // Bounded: distinct identities only cycle the entries.
        for i in 0..u32::try_from(MAX_ENTRIES * 3).unwrap() {
            let mut e = exec();
            e.uid = i;
            assert!(r.identify(&e, &t));
            r.remember(&reloaded, outcome.clone(), t0);
            assert!(r.len() <= MAX_ENTRIES);
        }
    }
}
