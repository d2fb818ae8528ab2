//! The event fields that cost a /proc read per exec — the session and process-group
//! leaders, the captured environment variables — filled only when a rule that may match
//! the exec tests them (`Engine::extras_needed`). Best effort like the rest: a process
//! gone before we look has none.

use std::path::Path;

use t1609_context::ProcessTable;
use t1609_detect::{
    Extras,
    event::{
        ENV_VAR_VALUE_MAX, ENV_VARS_CAPTURED, ENV_VARS_MAX, Process, ProcessEvent, RelatedProcess,
    },
};

/// When the agent reads `process.env_vars` (`[context] env_vars`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvVarsCapture {
    /// When a loaded rule tests `process.env_vars`.
    #[default]
    Auto,
    /// For every captured exec, so `--record` keeps them for replay.
    Always,
    /// Never: the values may hold secrets (a proxy URL's password).
    Never,
}

impl EnvVarsCapture {
    /// What to read for an exec: what its candidate rules need, the environment as
    /// configured.
    pub fn apply(self, needed: Extras) -> Extras {
        Extras {
            env_vars: match self {
                EnvVarsCapture::Auto => needed.env_vars,
                EnvVarsCapture::Always => true,
                EnvVarsCapture::Never => false,
            },
            ..needed
        }
    }
}

/// Process group and session ids (fields 5 and 6 of /proc/<pid>/stat).
fn group_and_session(proc_root: &Path, pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(2);
    let pgrp = f.next()?.parse().ok()?;
    let sid = f.next()?.parse().ok()?;
    Some((pgrp, sid))
}

/// The leader `pid` as a related process: the event's own process when it leads, else
/// the table's entry (read from /proc if new).
fn related(table: &mut ProcessTable, pid: u32, process: &Process) -> Option<Box<RelatedProcess>> {
    if pid == 0 {
        return None;
    }
    if process.pid == Some(pid) {
        // The table still holds the image before this exec.
        return Some(Box::new(RelatedProcess {
            pid: Some(pid),
            name: process.name.clone(),
            executable: process.executable.clone(),
            args: process.args.clone(),
            command_line: process.command_line.clone(),
            interactive: process.interactive,
            creds: process.creds.clone(),
            same_as_process: Some(true),
            ..Default::default()
        }));
    }
    if table.get(pid).is_none_or(|p| p.executable.is_none()) {
        table.refresh_from_proc(pid);
    }
    let p = table.get(pid)?;
    Some(Box::new(RelatedProcess {
        pid: Some(pid),
        name: Some(p.name.clone()),
        executable: p.executable.as_deref().map(str::to_owned),
        command_line: p.args.as_ref().map(|a| a.join(" ")),
        args: p.args.as_deref().map(<[String]>::to_vec),
        same_as_process: Some(false),
        ..Default::default()
    }))
}

/// The captured variables of an `environ` block: the names of [`ENV_VARS_CAPTURED`]
/// only, at most [`ENV_VARS_MAX`], each value cut at [`ENV_VAR_VALUE_MAX`] bytes. `None`
/// when none is set.
pub fn captured_env_vars(environ: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for entry in environ.split(|b| *b == 0) {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&entry[..eq]) else {
            continue;
        };
        if !ENV_VARS_CAPTURED.contains(&name) {
            continue;
        }
        let value = String::from_utf8_lossy(&entry[eq + 1..]);
        let mut cut = value.len().min(ENV_VAR_VALUE_MAX);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(format!("{name}={}", &value[..cut]));
        if out.len() == ENV_VARS_MAX {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Fills what `wants` asks for into `event`, for the exec of `pid`.
pub fn fill(
    event: &mut ProcessEvent,
    wants: Extras,
    proc_root: &Path,
    table: &mut ProcessTable,
    pid: u32,
) {
    if (wants.session_leader || wants.group_leader)
        && let Some((pgrp, sid)) = group_and_session(proc_root, pid)
    {
        if wants.session_leader {
            event.process.session_leader = related(table, sid, &event.process);
        }
        if wants.group_leader {
            event.process.group_leader = related(table, pgrp, &event.process);
        }
    }
    if wants.env_vars
        && let Ok(environ) = std::fs::read(proc_root.join(pid.to_string()).join("environ"))
    {
        event.process.env_vars = captured_env_vars(&environ);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_captured_names_are_kept_cut_and_bounded() {
        let long = "x".repeat(ENV_VAR_VALUE_MAX + 10);
        let environ =
            format!("PATH=/bin\0LD_PRELOAD=/tmp/evil.so\0HTTPS_PROXY={long}\0NOEQUALS\0SECRET=1\0");
        let got = captured_env_vars(environ.as_bytes()).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], "LD_PRELOAD=/tmp/evil.so");
        assert_eq!(got[1].len(), "HTTPS_PROXY=".len() + ENV_VAR_VALUE_MAX);
        assert_eq!(captured_env_vars(b"PATH=/bin\0HOME=/root\0"), None);
    }

    #[test]
    fn a_cut_never_splits_a_character_and_the_count_is_bounded() {
        let value = "é".repeat(ENV_VAR_VALUE_MAX);
        let got = captured_env_vars(format!("LD_AUDIT={value}\0").as_bytes()).unwrap();
        assert!(got[0].len() <= "LD_AUDIT=".len() + ENV_VAR_VALUE_MAX);
        assert!(got[0].ends_with('é'));
        let many: String = std::iter::repeat_n("LD_PRELOAD=a\0", ENV_VARS_MAX + 5).collect();
        assert_eq!(
            captured_env_vars(many.as_bytes()).unwrap().len(),
            ENV_VARS_MAX
        );
    }
}
