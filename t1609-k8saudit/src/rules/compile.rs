//! Rule files: their TOML form (`*Spec`), the compiled form the evaluation reads, and the
//! checks that turn one into the other with errors that name the file and the rule.

use std::collections::HashSet;

use regex::Regex;
use serde::Deserialize;
use t1609_ecs::Severity;

use crate::error::RuleError;

/// The audit stages a rule may name.
const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// `event.dataset` of every alert made from an audit event, and the only `dataset` a rule
/// file may name.
pub const DATASET: &str = "kubernetes.audit";

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
#[derive(Clone, Debug, Default, Deserialize)]
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
pub(super) enum Field {
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
pub(super) struct Cond {
    pub(super) name: String,
    pub(super) any: bool,
    pub(super) fields: Vec<(Field, Regex)>,
    pub(super) shell: Option<bool>,
    pub(super) response_code: Vec<i32>,
}

#[derive(Debug)]
pub(super) struct Match {
    pub(super) kind: String,
    pub(super) verbs: Vec<String>,
    pub(super) resource: String,
    pub(super) subresources: Vec<String>,
    pub(super) proxy_path: Vec<Regex>,
    pub(super) severity: Severity,
}

#[derive(Debug)]
pub(super) struct Rule {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) reference: String,
    pub(super) references: Vec<String>,
    pub(super) source: String,
    pub(super) stages: Vec<String>,
    pub(super) shells: HashSet<String>,
    pub(super) multicall: HashSet<String>,
    pub(super) matches: Vec<Match>,
    pub(super) modifiers: Vec<(Cond, u8)>,
    pub(super) exceptions: Vec<Cond>,
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
            let re = glob_regex(&globs).map_err(|error| RuleError::Pattern {
                source_name: source.into(),
                rule: rule.into(),
                what: format!("{what} `{name}`"),
                error,
            })?;
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
            proxy_path.push(Regex::new(p).map_err(|error| RuleError::Pattern {
                source_name: source.into(),
                rule: id.clone(),
                what: format!("match `{}`: proxy_path", m.kind),
                error,
            })?);
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

/// Compiles rule files, in order: (source name, text). A file's `[[rule]]` with the id of
/// a loaded rule replaces it; its top-level `[[exception]]`s are added to the loaded
/// rules they name.
pub(super) fn compile_sources(sources: &[(String, String)]) -> Result<Vec<Rule>, RuleError> {
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
                glob_regex(std::slice::from_ref(&target)).map_err(|error| RuleError::Pattern {
                    source_name: source.clone(),
                    rule: target.clone(),
                    what: "`rule` glob".into(),
                    error,
                })?;
            let mut hit = false;
            for r in rules.iter_mut().filter(|r| re.is_match(&r.id)) {
                let s = CondSpec {
                    rule: None,
                    ..spec.clone()
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
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_bad_proxy_path_names_the_rule_and_keeps_the_regex_error() {
        let text = "[[rule]]\nid = \"r\"\nname = \"r\"\n[[rule.match]]\nkind = \"k\"\nresource = \"nodes\"\nproxy_path = ['(']\nseverity = \"low\"\n";
        let e = compile_sources(&[("extra.toml".into(), text.into())]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("extra.toml: rule `r`: match `k`: proxy_path: regex parse error"),
            "{e}"
        );
        assert!(e.source().unwrap().is::<regex::Error>());
    }
}
