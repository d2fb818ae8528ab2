//! Reading one process from `/proc/<pid>` (`stat`, `status`, `cmdline`, `exe`,
//! `cgroup`, `loginuid`) into a [`ProcInfo`], the process table's entry.

use std::{fs, io, path::Path, sync::Arc};

use serde::Serialize;

use crate::cgroup::compact_cgroup_text;

/// What the table knows about one process (thread-group leader).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// `comm` (at most 15 bytes, from `/proc/<pid>/stat` or the kernel event).
    pub name: String,
    /// Resolved `/proc/<pid>/exe` (may end in ` (deleted)`); `None` for kernel threads or
    /// when unreadable. Shared: a fork, or a repeat of the same command, clones a pointer.
    pub executable: Option<Arc<str>>,
    /// argv; `None` for kernel threads / zombies (empty cmdline) or when unreadable.
    pub args: Option<Arc<[String]>>,
    /// Start time in ns since boot: `/proc/<pid>/stat` starttime (clock ticks) × 1e9 / `CLK_TCK`
    /// when seeded, the fork event's ktime when learned from a fork.
    pub start_ns: Option<u64>,
    /// Real uid (`Uid:` first column of `/proc/<pid>/status`; what `bpf_get_current_uid_gid`
    /// reports). Effective and login uids: see [`read_creds`].
    pub uid: Option<u32>,
    /// Session id (`stat` field 6) – the pid of the session leader.
    pub session_leader: Option<u32>,
    /// Compacted `/proc/<pid>/cgroup` (one line per distinct path); feed to
    /// [`crate::parse_cgroup`]. Shared: most processes sit in a handful of cgroups.
    pub cgroup: Option<Arc<str>>,
    /// Kernel address of the cgroup set (`css_set`) that `cgroup` was read for (from exec
    /// events; a fork inherits it). Lets a child in the same set reuse `cgroup`.
    pub css_set: Option<u64>,
    /// Working directory with the (vfsmount, dentry) identity it was read for, from exec
    /// events (a fork inherits it): a child in the same directory reuses the path.
    pub cwd: Option<((u64, u64), Arc<str>)>,
    pub exited: bool,
}

impl ProcInfo {
    /// argv joined by single spaces (no quoting), or the name when args are unknown.
    pub fn command_line(&self) -> String {
        match &self.args {
            Some(a) if !a.is_empty() => a.join(" "),
            _ => self.name.clone(),
        }
    }
}

/// Clock ticks per second, the unit of `stat`'s start time.
pub(crate) fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// Fields of `/proc/<pid>/stat` the table uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: u32,
    pub starttime_ticks: u64,
}

/// Parses `/proc/<pid>/stat`; the comm may contain spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] = state (field 3), rest[1] = ppid (4), … starttime is field 22 → rest[19].
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
        tty_nr: rest.get(4)?.parse().ok()?,
        starttime_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// Real, effective, saved and fs ids from `/proc/<pid>/status`, plus the login uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    /// `/proc/<pid>/loginuid`; `None` when unset (4294967295) or unreadable.
    pub login_uid: Option<u32>,
}

fn status_ids(status: &str, key: &str) -> Option<(u32, u32)> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut it = line[key.len()..].split_whitespace();
    let real = it.next()?.parse().ok()?;
    let eff = it.next()?.parse().ok()?;
    Some((real, eff))
}

/// Parses `Uid:`/`Gid:` from the text of `/proc/<pid>/status`.
pub fn parse_status_creds(status: &str) -> Option<Creds> {
    let (uid, euid) = status_ids(status, "Uid:")?;
    let (gid, egid) = status_ids(status, "Gid:")?;
    Some(Creds {
        uid,
        euid,
        gid,
        egid,
        login_uid: None,
    })
}

/// Real/effective uid and gid and login uid of a live process.
pub fn read_creds(proc_root: &Path, pid: u32) -> io::Result<Creds> {
    let dir = proc_root.join(pid.to_string());
    let status = fs::read_to_string(dir.join("status"))?;
    let mut c = parse_status_creds(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status"))?;
    c.login_uid = fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&u| u != u32::MAX);
    Ok(c)
}

/// The pid as seen in the process's own (innermost) pid namespace: the last value of the
/// `NSpid:` line of `/proc/<pid>/status`. 1 means the namespace's init (a container's PID 1).
pub fn read_ns_pid(proc_root: &Path, pid: u32) -> Option<u32> {
    let status = fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    parse_ns_pid(&status)
}

/// See [`read_ns_pid`].
pub fn parse_ns_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Splits `/proc/<pid>/cmdline` (NUL-separated, maybe NUL-terminated). Empty → `None`.
pub fn parse_cmdline(raw: &[u8]) -> Option<Vec<String>> {
    if raw.is_empty() {
        return None;
    }
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    Some(
        raw.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Reads one process from `<proc_root>/<pid>`. Fails if the process does not exist (its
/// `stat` is unreadable); other files are best effort.
pub fn read_proc_info(proc_root: &Path, pid: u32) -> io::Result<ProcInfo> {
    read_proc_info_tck(proc_root, pid, clk_tck())
}

/// [`read_proc_info`] with the clock-tick rate already known.
pub(crate) fn read_proc_info_tck(proc_root: &Path, pid: u32, tck: u64) -> io::Result<ProcInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat_text = fs::read_to_string(dir.join("stat"))?;
    let stat = parse_stat(&stat_text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat"))?;
    let executable = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| Arc::from(p.to_string_lossy()));
    let args = fs::read(dir.join("cmdline"))
        .ok()
        .and_then(|b| parse_cmdline(&b))
        .map(Arc::from);
    let uid = fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| status_ids(&s, "Uid:"))
        .map(|(r, _)| r);
    let cgroup = fs::read_to_string(dir.join("cgroup"))
        .ok()
        .map(|t| compact_cgroup_text(&t))
        .filter(|s| !s.is_empty())
        .map(Arc::from);
    Ok(ProcInfo {
        pid,
        ppid: stat.ppid,
        name: stat.comm,
        executable,
        args,
        start_ns: Some(stat.starttime_ticks.saturating_mul(1_000_000_000) / tck.max(1)),
        uid,
        session_leader: Some(stat.session),
        cgroup,
        // /proc does not show the css_set or the cwd's identity: exec events set them.
        css_set: None,
        cwd: None,
        exited: stat.state == 'Z' || stat.state == 'X',
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "1234 (a) b (c)) S 1 1234 1234 34816 1234 4194304 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200 18446744073709551615";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "a) b (c)");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.session, 1234);
        assert_eq!(st.starttime_ticks, 98765);
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo a  b\0"),
            Some(vec!["sh".into(), "-c".into(), "echo a  b".into()])
        );
        assert_eq!(parse_cmdline(b""), None);
    }

    #[test]
    fn creds() {
        let st = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        let c = parse_status_creds(st).unwrap();
        assert_eq!((c.uid, c.euid, c.gid), (1000, 0, 100));
    }
}
