//! Evaluating compiled rules on one audit event: match clauses, conditions (modifiers and
//! exceptions), what counts as a shell, and the once-per-auditID rule.

use std::collections::{HashSet, VecDeque};

use regex::Regex;
use t1609_ecs::Severity;

use super::compile::{Cond, Field, Match, Rule};
use crate::{
    event::AuditEvent,
    uri::{ExecRequest, basename},
};

/// (rule, auditID) pairs remembered to alert once per auditID.
const DEDUPE_CAPACITY: usize = 8192;

/// What the conditions of a rule read about one event.
struct Ctx<'a> {
    ev: &'a AuditEvent,
    req: &'a ExecRequest,
    kind: &'a str,
    shell: bool,
    command_line: String,
}

/// Whether the glob of field `f` matches the event (either user, when impersonated).
fn field_matches(f: Field, re: &Regex, c: &Ctx) -> bool {
    let ev = c.ev;
    let imp = ev.impersonated_user.as_ref();
    let one = |v: Option<&str>| v.is_some_and(|v| re.is_match(v));
    match f {
        Field::User => {
            re.is_match(&ev.user.username) || imp.is_some_and(|u| re.is_match(&u.username))
        }
        Field::Group => ev
            .user
            .groups
            .iter()
            .chain(imp.map(|u| u.groups.iter()).into_iter().flatten())
            .any(|g| re.is_match(g)),
        Field::Namespace => one(c.req.namespace.as_deref()),
        Field::UserAgent => one(ev.user_agent.as_deref()),
        Field::SourceIp => ev.source_ips.iter().any(|ip| re.is_match(ip)),
        Field::Pod => one(c.req.pod.as_deref()),
        Field::Container => one(c.req.container.as_deref()),
        Field::Verb => re.is_match(&ev.verb),
        Field::Kind => re.is_match(c.kind),
        Field::Node => one(c.req.node.as_deref()),
        Field::Command => re.is_match(&c.command_line),
    }
}

impl Cond {
    fn matches(&self, c: &Ctx) -> bool {
        let mut results = self
            .fields
            .iter()
            .map(|(f, re)| field_matches(*f, re, c))
            .collect::<Vec<_>>();
        if let Some(s) = self.shell {
            results.push(c.shell == s);
        }
        if !self.response_code.is_empty() {
            let code = c.ev.response_status.as_ref().and_then(|s| s.code);
            results.push(code.is_some_and(|code| self.response_code.contains(&code)));
        }
        if self.any {
            results.iter().any(|r| *r)
        } else {
            results.iter().all(|r| *r)
        }
    }
}

impl Match {
    fn matches(&self, ev: &AuditEvent, req: &ExecRequest) -> bool {
        let or = ev.object_ref.as_ref();
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == &ev.verb) {
            return false;
        }
        if or.and_then(|o| o.resource.as_deref()) != Some(self.resource.as_str()) {
            return false;
        }
        let sub = or.and_then(|o| o.subresource.as_deref());
        if self.subresources.is_empty() {
            if sub.is_some() {
                return false;
            }
        } else if !sub.is_some_and(|s| self.subresources.iter().any(|x| x == s)) {
            return false;
        }
        if !self.proxy_path.is_empty() {
            let Some(p) = req.proxy_path.as_deref() else {
                return false;
            };
            if !self.proxy_path.iter().any(|re| re.is_match(p)) {
                return false;
            }
        }
        true
    }
}

impl Rule {
    fn is_shell(&self, cmd: &[String]) -> bool {
        let Some(first) = cmd.first() else {
            return false;
        };
        let b = basename(first);
        if self.shells.contains(b) {
            return true;
        }
        if self.multicall.contains(b) {
            return cmd
                .get(1)
                .is_some_and(|a| self.shells.contains(basename(a)));
        }
        false
    }
}

/// A rule that fired on an event: what the alert document is made of.
pub(super) struct Hit<'a> {
    pub rule: &'a Rule,
    pub m: &'a Match,
    pub ev: &'a AuditEvent,
    pub req: &'a ExecRequest,
    /// The command is a shell (see [`Rule::is_shell`]).
    pub shell: bool,
    /// The match's severity, raised by the modifiers that matched.
    pub severity: Severity,
    /// Names of those modifiers.
    pub reasons: Vec<String>,
}

impl Rule {
    /// Whether the rule reads events of this stage (all stages when it lists none, and
    /// events that name no stage).
    pub(super) fn wants_stage(&self, stage: &str) -> bool {
        self.stages.is_empty() || stage.is_empty() || self.stages.iter().any(|s| s == stage)
    }

    /// The hit of this rule on `ev`, if a match clause fits, no exception does, and
    /// `first_time(rule id, auditID)` says the auditID has not alerted for it yet (asked
    /// last, so an excepted event is not remembered).
    pub(super) fn evaluate<'a>(
        &'a self,
        ev: &'a AuditEvent,
        req: &'a ExecRequest,
        first_time: impl FnOnce(&str, &str) -> bool,
    ) -> Option<Hit<'a>> {
        let m = self.matches.iter().find(|m| m.matches(ev, req))?;
        let shell = self.is_shell(&req.command);
        let ctx = Ctx {
            ev,
            req,
            kind: &m.kind,
            shell,
            command_line: req.command_line(),
        };
        if let Some(ex) = self.exceptions.iter().find(|c| c.matches(&ctx)) {
            tracing::debug!(rule = %self.id, exception = %ex.name, audit_id = %ev.audit_id, "audit event excepted");
            return None;
        }
        if !ev.audit_id.is_empty() && !first_time(&self.id, &ev.audit_id) {
            return None;
        }
        let mut severity = m.severity;
        let mut reasons = Vec::new();
        for (c, raise) in &self.modifiers {
            if c.matches(&ctx) {
                severity = severity.raised(*raise);
                reasons.push(c.name.clone());
            }
        }
        Some(Hit {
            rule: self,
            m,
            ev,
            req,
            shell,
            severity,
            reasons,
        })
    }
}

/// The (rule, auditID) pairs that alerted, the oldest forgotten first.
#[derive(Debug, Default)]
pub(super) struct Seen {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Seen {
    /// True the first time `(rule, audit_id)` is seen (within the last
    /// [`DEDUPE_CAPACITY`] pairs).
    pub(super) fn first_time(&mut self, rule: &str, audit_id: &str) -> bool {
        let key = (rule.to_string(), audit_id.to_string());
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > DEDUPE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}
