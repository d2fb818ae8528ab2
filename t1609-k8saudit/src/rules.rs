//! Audit rules as data: `rules/k8s_audit.toml` (built in) plus optional extra files.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::RuleError;
use crate::event::AuditEvent;
use crate::uri::{ExecRequest, basename, parse_exec_request};
use t1609_detect::{digest, new_id, now_rfc3339};

/// The rule file shipped in the crate.
pub const BUILTIN_RULES: &str = include_str!("../rules/k8s_audit.toml");
/// `event.dataset` of every alert made from an audit event.
pub const DATASET: &str = "kubernetes.audit";

const DEDUPE_CAPACITY: usize = 8192;

pub use t1609_detect::Severity;

// ---------------------------------------------------------------- file format

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
    /// Exceptions added to already loaded rules (`rule` names them; globs allowed).
    exception: Vec<CondSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuleSpec {
    id: String,
    name: String,
    description: String,
    dataset: Option<String>,
    reference: Option<String>,
    references: Vec<String>,
    enabled: Option<bool>,
    stages: Vec<String>,
    shells: Vec<String>,
    multicall: Vec<String>,
    #[serde(rename = "match")]
    matches: Vec<MatchSpec>,
    modifier: Vec<CondSpec>,
    exception: Vec<CondSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    kind: String,
    #[serde(default)]
    verbs: Vec<String>,
    resource: String,
    #[serde(default)]
    subresources: Vec<String>,
    #[serde(default)]
    proxy_path: Vec<String>,
    severity: Severity,
}

/// A condition on audit fields; used by modifiers (with `raise`) and exceptions (with
/// `rule` at the top level of an extra file).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CondSpec {
    name: Option<String>,
    rule: Option<String>,
    raise: Option<u8>,
    any: bool,
    user: Vec<String>,
    group: Vec<String>,
    namespace: Vec<String>,
    user_agent: Vec<String>,
    source_ip: Vec<String>,
    pod: Vec<String>,
    container: Vec<String>,
    verb: Vec<String>,
    kind: Vec<String>,
    node: Vec<String>,
    command: Vec<String>,
    shell: Option<bool>,
    response_code: Vec<i32>,
}

// ---------------------------------------------------------------- compiled form

#[derive(Clone, Copy, Debug)]
enum Field {
    User,
    Group,
    Namespace,
    UserAgent,
    SourceIp,
    Pod,
    Container,
    Verb,
    Kind,
    Node,
    Command,
}

#[derive(Debug)]
struct Cond {
    name: String,
    any: bool,
    fields: Vec<(Field, Regex)>,
    shell: Option<bool>,
    response_code: Vec<i32>,
}

#[derive(Debug)]
struct Match {
    kind: String,
    verbs: Vec<String>,
    resource: String,
    subresources: Vec<String>,
    proxy_path: Vec<Regex>,
    severity: Severity,
}

#[derive(Debug)]
struct Rule {
    id: String,
    name: String,
    description: String,
    reference: String,
    references: Vec<String>,
    source: String,
    stages: Vec<String>,
    shells: HashSet<String>,
    multicall: HashSet<String>,
    matches: Vec<Match>,
    modifiers: Vec<(Cond, u8)>,
    exceptions: Vec<Cond>,
}

/// Audit rules loaded from data, ready to evaluate events.
#[derive(Debug)]
pub struct AuditRules {
    rules: Vec<Rule>,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

/// Turns a `*`/`?` glob into an anchored regex.
fn glob_regex(globs: &[String]) -> Result<Regex, regex::Error> {
    let alts: Vec<String> = globs
        .iter()
        .map(|g| {
            let mut s = String::new();
            for c in g.chars() {
                match c {
                    '*' => s.push_str(".*"),
                    '?' => s.push('.'),
                    c => s.push_str(&regex::escape(&c.to_string())),
                }
            }
            s
        })
        .collect();
    Regex::new(&format!("^(?s:{})$", alts.join("|")))
}

fn compile_cond(
    spec: CondSpec,
    source: &str,
    rule: &str,
    what: &str,
    idx: usize,
) -> Result<Cond, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        source_name: source.into(),
        rule: rule.into(),
        message,
    };
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("{what}[{idx}]"));
    let mut fields = Vec::new();
    for (f, globs) in [
        (Field::User, spec.user),
        (Field::Group, spec.group),
        (Field::Namespace, spec.namespace),
        (Field::UserAgent, spec.user_agent),
        (Field::SourceIp, spec.source_ip),
        (Field::Pod, spec.pod),
        (Field::Container, spec.container),
        (Field::Verb, spec.verb),
        (Field::Kind, spec.kind),
        (Field::Node, spec.node),
        (Field::Command, spec.command),
    ] {
        if !globs.is_empty() {
            let re = glob_regex(&globs).map_err(|e| invalid(format!("{what} `{name}`: {e}")))?;
            fields.push((f, re));
        }
    }
    if fields.is_empty() && spec.shell.is_none() && spec.response_code.is_empty() {
        return Err(invalid(format!(
            "{what} `{name}` has no condition (it would match every event)"
        )));
    }
    Ok(Cond {
        name,
        any: spec.any,
        fields,
        shell: spec.shell,
        response_code: spec.response_code,
    })
}

fn compile_rule(spec: RuleSpec, source: &str) -> Result<Option<Rule>, RuleError> {
    let id = spec.id.clone();
    let invalid = |message: String| RuleError::Invalid {
        source_name: source.into(),
        rule: id.clone(),
        message,
    };
    if spec.id.trim().is_empty() {
        return Err(invalid("missing `id`".into()));
    }
    if spec.name.trim().is_empty() {
        return Err(invalid("missing `name`".into()));
    }
    if let Some(ds) = &spec.dataset
        && ds != DATASET
    {
        return Err(invalid(format!(
            "dataset `{ds}`: audit rules read only `{DATASET}` events"
        )));
    }
    if spec.matches.is_empty() {
        return Err(invalid("no [[rule.match]] clause".into()));
    }
    const STAGES: [&str; 4] = [
        "RequestReceived",
        "ResponseStarted",
        "ResponseComplete",
        "Panic",
    ];
    for s in &spec.stages {
        if !STAGES.contains(&s.as_str()) {
            return Err(invalid(format!(
                "unknown stage `{s}`; expected one of {}",
                STAGES.join(", ")
            )));
        }
    }
    if spec.enabled == Some(false) {
        return Ok(None);
    }
    let mut matches = Vec::new();
    for m in spec.matches {
        if m.resource.is_empty() {
            return Err(invalid(format!("match `{}`: empty resource", m.kind)));
        }
        let mut proxy_path = Vec::new();
        for p in &m.proxy_path {
            proxy_path.push(
                Regex::new(p)
                    .map_err(|e| invalid(format!("match `{}`: proxy_path: {e}", m.kind)))?,
            );
        }
        matches.push(Match {
            kind: m.kind,
            verbs: m.verbs,
            resource: m.resource,
            subresources: m.subresources,
            proxy_path,
            severity: m.severity,
        });
    }
    let mut modifiers = Vec::new();
    for (i, c) in spec.modifier.into_iter().enumerate() {
        if c.rule.is_some() {
            return Err(invalid("a modifier takes no `rule`".into()));
        }
        let raise = c.raise.unwrap_or(1);
        modifiers.push((compile_cond(c, source, &id, "modifier", i)?, raise));
    }
    let mut exceptions = Vec::new();
    for (i, c) in spec.exception.into_iter().enumerate() {
        if c.raise.is_some() || c.rule.is_some() {
            return Err(invalid(
                "an exception inside a rule takes no `raise` or `rule`".into(),
            ));
        }
        exceptions.push(compile_cond(c, source, &id, "exception", i)?);
    }
    let reference = spec
        .reference
        .or_else(|| spec.references.first().cloned())
        .unwrap_or_else(|| "https://attack.mitre.org/techniques/T1609/".into());
    Ok(Some(Rule {
        id: spec.id,
        name: spec.name,
        description: spec.description,
        reference,
        references: spec.references,
        source: source.into(),
        stages: spec.stages,
        shells: spec.shells.into_iter().collect(),
        multicall: spec.multicall.into_iter().collect(),
        matches,
        modifiers,
        exceptions,
    }))
}

struct Ctx<'a> {
    ev: &'a AuditEvent,
    req: &'a ExecRequest,
    kind: &'a str,
    shell: bool,
    command_line: String,
}

impl Cond {
    fn field_matches(&self, f: Field, re: &Regex, c: &Ctx) -> bool {
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

    fn matches(&self, c: &Ctx) -> bool {
        let mut results = self
            .fields
            .iter()
            .map(|(f, re)| self.field_matches(*f, re, c))
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

impl AuditRules {
    /// The rules shipped in the crate (`rules/k8s_audit.toml`).
    pub fn builtin() -> Result<Self, RuleError> {
        Self::from_sources(&[("builtin:k8s_audit.toml".into(), BUILTIN_RULES.into())])
    }

    /// The built-in rules plus extra rule files. A file's `[[rule]]` with the id of a loaded
    /// rule replaces it; a file's top-level `[[exception]]` (with `rule = "<id or glob>"`)
    /// is added to the loaded rules it names.
    pub fn load(paths: &[PathBuf]) -> Result<Self, RuleError> {
        let mut sources = vec![(
            "builtin:k8s_audit.toml".to_string(),
            BUILTIN_RULES.to_string(),
        )];
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|error| RuleError::Read {
                source_name: p.display().to_string(),
                error,
            })?;
            sources.push((p.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// Rules from TOML texts, in order: (source name, text).
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut disabled: HashSet<String> = HashSet::new();
        for (source, text) in sources {
            let file: RuleFile = toml::from_str(text).map_err(|error| RuleError::Toml {
                source_name: source.clone(),
                error,
            })?;
            let mut ids = HashSet::new();
            for spec in file.rule {
                if !ids.insert(spec.id.clone()) {
                    return Err(RuleError::Invalid {
                        source_name: source.clone(),
                        rule: spec.id,
                        message: "duplicate rule id in one file".into(),
                    });
                }
                let id = spec.id.clone();
                rules.retain(|r| r.id != id);
                match compile_rule(spec, source)? {
                    Some(r) => {
                        disabled.remove(&id);
                        rules.push(r);
                    }
                    None => {
                        disabled.insert(id);
                    }
                }
            }
            for (i, spec) in file.exception.into_iter().enumerate() {
                let target = spec.rule.clone().unwrap_or_else(|| "*".into());
                if spec.raise.is_some() {
                    return Err(RuleError::Invalid {
                        source_name: source.clone(),
                        rule: target,
                        message: "an exception takes no `raise`".into(),
                    });
                }
                let re =
                    glob_regex(std::slice::from_ref(&target)).map_err(|e| RuleError::Invalid {
                        source_name: source.clone(),
                        rule: target.clone(),
                        message: e.to_string(),
                    })?;
                let mut hit = false;
                for r in rules.iter_mut().filter(|r| re.is_match(&r.id)) {
                    let s = CondSpec {
                        rule: None,
                        ..clone_cond(&spec)
                    };
                    r.exceptions
                        .push(compile_cond(s, source, &r.id.clone(), "exception", i)?);
                    hit = true;
                }
                if !hit && !disabled.iter().any(|d| re.is_match(d)) {
                    return Err(RuleError::Invalid {
                        source_name: source.clone(),
                        rule: target,
                        message: "exception names no loaded rule".into(),
                    });
                }
            }
        }
        Ok(AuditRules {
            rules,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The ids of the loaded (enabled) rules.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// The alerts (ECS JSON documents) that one audit event raises. A given auditID alerts
    /// once per rule, whatever the number of stages logged for it.
    pub fn evaluate(&self, ev: &AuditEvent) -> Vec<Value> {
        let mut out = Vec::new();
        let mut req: Option<ExecRequest> = None;
        for rule in &self.rules {
            if !rule.stages.is_empty()
                && !ev.stage.is_empty()
                && !rule.stages.iter().any(|s| s == &ev.stage)
            {
                continue;
            }
            let req = req.get_or_insert_with(|| parse_exec_request(ev));
            let Some(m) = rule.matches.iter().find(|m| m.matches(ev, req)) else {
                continue;
            };
            let shell = rule.is_shell(&req.command);
            let ctx = Ctx {
                ev,
                req,
                kind: &m.kind,
                shell,
                command_line: req.command_line(),
            };
            if let Some(ex) = rule.exceptions.iter().find(|c| c.matches(&ctx)) {
                tracing::debug!(rule = %rule.id, exception = %ex.name, audit_id = %ev.audit_id, "audit event excepted");
                continue;
            }
            if !ev.audit_id.is_empty() && !self.first_time(&rule.id, &ev.audit_id) {
                continue;
            }
            let mut severity = m.severity;
            let mut reasons = Vec::new();
            for (c, raise) in &rule.modifiers {
                if c.matches(&ctx) {
                    severity = severity.raised(*raise);
                    reasons.push(c.name.clone());
                }
            }
            out.push(build_alert(rule, m, &ctx, severity, &reasons));
        }
        out
    }

    /// [`evaluate`](Self::evaluate), adding the alerts to `stats.alerts`.
    pub fn evaluate_counted(
        &self,
        ev: &AuditEvent,
        stats: &crate::stats::AuditStats,
    ) -> Vec<Value> {
        let alerts = self.evaluate(ev);
        stats
            .alerts
            .fetch_add(alerts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        alerts
    }

    /// For `replay`: the alerts of a JSON value that is an audit `Event` or `EventList`
    /// (see [`looks_like_audit`](crate::looks_like_audit)).
    pub fn evaluate_value(&self, v: &Value) -> Result<Vec<Value>, crate::error::AuditError> {
        let events = if crate::event::looks_like_audit_list(v) {
            crate::event::parse_event_list(v.to_string().as_bytes())?
        } else {
            vec![crate::event::parse_event_line(&v.to_string())?]
        };
        Ok(events.iter().flat_map(|e| self.evaluate(e)).collect())
    }

    fn first_time(&self, rule: &str, audit_id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rule.to_string(), audit_id.to_string());
        if seen.set.contains(&key) {
            return false;
        }
        seen.set.insert(key.clone());
        seen.order.push_back(key);
        while seen.order.len() > DEDUPE_CAPACITY {
            if let Some(old) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        true
    }
}

fn clone_cond(c: &CondSpec) -> CondSpec {
    CondSpec {
        name: c.name.clone(),
        rule: c.rule.clone(),
        raise: c.raise,
        any: c.any,
        user: c.user.clone(),
        group: c.group.clone(),
        namespace: c.namespace.clone(),
        user_agent: c.user_agent.clone(),
        source_ip: c.source_ip.clone(),
        pod: c.pod.clone(),
        container: c.container.clone(),
        verb: c.verb.clone(),
        kind: c.kind.clone(),
        node: c.node.clone(),
        command: c.command.clone(),
        shell: c.shell,
        response_code: c.response_code.clone(),
    }
}

/// Removes nulls, empty strings, empty arrays and objects left empty by that.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => {
            a.retain_mut(prune);
            !a.is_empty()
        }
        Value::Object(m) => {
            m.retain(|_, v| prune(v));
            !m.is_empty()
        }
        _ => true,
    }
}

fn build_alert(rule: &Rule, m: &Match, c: &Ctx, severity: Severity, reasons: &[String]) -> Value {
    let ev = c.ev;
    let req = c.req;
    let or = ev.object_ref();
    let created = now_rfc3339();
    let ts = ev
        .request_received_timestamp
        .clone()
        .or_else(|| ev.stage_timestamp.clone())
        .unwrap_or_else(|| created.clone());
    let code = ev.response_status.as_ref().and_then(|s| s.code);
    let outcome = match code {
        Some(c) if c >= 400 => "failure",
        Some(_) => "success",
        None => "unknown",
    };
    let (category, etype) = if m.kind.contains("portforward") {
        (json!(["network"]), json!(["connection"]))
    } else {
        (json!(["process"]), json!(["start"]))
    };
    let action = match &or.subresource {
        Some(s) => format!("{}/{}", or.resource.clone().unwrap_or_default(), s),
        None => or.resource.clone().unwrap_or_default(),
    };
    let imp = ev.impersonated_user.as_ref();
    let mut related_users = vec![json!(ev.user.username)];
    if let Some(u) = imp {
        related_users.push(json!(u.username));
    }
    let is_node = or.resource.as_deref() == Some("nodes");
    let mut resource = json!({ "type": "pod", "name": req.pod });
    if is_node {
        resource["parent"] = json!({ "type": "node" });
    }
    let process = if req.command.is_empty() {
        Value::Null
    } else {
        json!({
            "command_line": req.command_line(),
            "args": req.command,
            "args_count": req.command.len(),
            "name": basename(&req.command[0]),
        })
    };
    let mut k8s = Map::new();
    k8s.insert("kind".into(), json!(m.kind));
    k8s.insert("stdin".into(), json!(req.stdin));
    k8s.insert("stdout".into(), json!(req.stdout));
    k8s.insert("tty".into(), json!(req.tty));
    k8s.insert("command_is_shell".into(), json!(c.shell));
    k8s.insert("severity_reasons".into(), json!(reasons));
    k8s.insert("node".into(), json!(req.node));
    k8s.insert("proxy_path".into(), json!(req.proxy_path));
    k8s.insert("kubelet_endpoint".into(), json!(req.kubelet_endpoint));
    k8s.insert("ports".into(), json!(req.ports));
    k8s.insert("impersonated".into(), json!(imp.is_some()));

    let mut doc = json!({
        "@timestamp": ts,
        "event": {
            "kind": "alert",
            "id": new_id(),
            "dataset": DATASET,
            "module": "kubernetes",
            "provider": "kube-apiserver",
            "severity": severity.ecs_number(),
            "risk_score": severity.ecs_number(),
            "category": category,
            "type": etype,
            "action": action,
            "outcome": outcome,
            "created": created,
        },
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "description": rule.description,
            "reference": rule.reference,
            "ruleset": rule.source,
        },
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": ["TA0002"],
                "name": ["Execution"],
                "reference": ["https://attack.mitre.org/tactics/TA0002/"],
            },
            "technique": {
                "id": ["T1609"],
                "name": ["Container Administration Command"],
                "reference": ["https://attack.mitre.org/techniques/T1609/"],
            },
        },
        "user": {
            "name": ev.user.username,
            "id": ev.user.uid,
            "roles": ev.user.groups,
            "group": { "name": ev.user.groups },
            "effective": imp.map(|u| json!({ "name": u.username, "id": u.uid, "roles": u.groups })),
        },
        "related": { "user": related_users, "ip": ev.source_ips },
        "source": { "ip": ev.source_ips.first() },
        "user_agent": { "original": ev.user_agent },
        "orchestrator": {
            "type": "kubernetes",
            "namespace": req.namespace,
            "api_version": or.api_version,
            "resource": resource,
        },
        "container": { "name": req.container },
        "process": process,
        "kubernetes": {
            "audit": {
                "auditID": ev.audit_id,
                "level": ev.level,
                "stage": ev.stage,
                "verb": ev.verb,
                "requestURI": ev.request_uri,
                "sourceIPs": ev.source_ips,
                "userAgent": ev.user_agent,
                "user": { "username": ev.user.username, "uid": ev.user.uid, "groups": ev.user.groups },
                "impersonatedUser": imp.map(|u| json!({ "username": u.username, "uid": u.uid, "groups": u.groups })),
                "objectRef": serde_json::to_value(&or).unwrap_or(Value::Null),
                "responseStatus": ev.response_status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
                "requestReceivedTimestamp": ev.request_received_timestamp,
                "stageTimestamp": ev.stage_timestamp,
                "annotations": ev.annotations,
            }
        },
        "t1609": {
            "severity": severity.as_str(),
            "group_id": digest(&[b"k8saudit", ev.audit_id.as_bytes()]),
            "source": DATASET,
            "references": rule.references,
            "k8s": Value::Object(k8s),
        },
    });
    prune(&mut doc);
    // Booleans and empty lists that carry meaning are kept explicitly.
    if let Some(t) = doc.pointer_mut("/t1609/k8s").and_then(Value::as_object_mut) {
        t.entry("severity_reasons").or_insert_with(|| json!([]));
    }
    doc
}
