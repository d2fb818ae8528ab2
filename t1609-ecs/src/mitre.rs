//! MITRE ATT&CK references: the tactics and techniques the rules name, and the ECS
//! `threat` object built from them.

use serde_json::{Value, json};

/// One tactic or technique, with its name and page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MitreRef {
    pub id: String,
    pub name: String,
    pub reference: String,
}

/// The tactics of ATT&CK for Enterprise (the shipped rules use some; rule files of
/// Elastic's and Sigma's name the others).
const TACTICS: &[(&str, &str)] = &[
    ("TA0002", "Execution"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0001", "Initial Access"),
    ("TA0003", "Persistence"),
    ("TA0009", "Collection"),
    ("TA0010", "Exfiltration"),
    ("TA0011", "Command and Control"),
    ("TA0040", "Impact"),
    ("TA0042", "Resource Development"),
    ("TA0043", "Reconnaissance"),
];

/// The techniques the shipped rules use.
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1609", "Container Administration Command"),
    ("T1610", "Deploy Container"),
    ("T1611", "Escape to Host"),
    ("T1613", "Container and Resource Discovery"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1552.007", "Container API"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1036.003", "Rename Legitimate Utilities"),
];

/// A known technique (`T1609`, `T1059.004`), or `None`.
pub fn technique(id: &str) -> Option<MitreRef> {
    let (id, name) = TECHNIQUES.iter().find(|(t, _)| *t == id)?;
    Some(MitreRef {
        id: (*id).into(),
        name: (*name).into(),
        reference: technique_url(id),
    })
}

/// A known tactic (`TA0002`), or `None`.
pub fn tactic(id: &str) -> Option<MitreRef> {
    let (id, name) = TACTICS.iter().find(|(t, _)| *t == id)?;
    Some(MitreRef {
        id: (*id).into(),
        name: (*name).into(),
        reference: format!("https://attack.mitre.org/tactics/{id}/"),
    })
}

fn technique_url(id: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    )
}

/// The ECS `threat` object: `framework`, then each of `tactic` and `technique` as
/// parallel `id`, `name` and `reference` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Threat {
    pub tactics: Vec<MitreRef>,
    pub techniques: Vec<MitreRef>,
}

impl Threat {
    /// From ids. An id missing from the tables keeps its id and page with an empty name.
    pub fn of(tactics: &[&str], techniques: &[&str]) -> Self {
        Self {
            tactics: tactics
                .iter()
                .map(|id| {
                    tactic(id).unwrap_or_else(|| MitreRef {
                        id: (*id).to_owned(),
                        name: String::new(),
                        reference: format!("https://attack.mitre.org/tactics/{id}/"),
                    })
                })
                .collect(),
            techniques: techniques
                .iter()
                .map(|id| {
                    technique(id).unwrap_or_else(|| MitreRef {
                        id: (*id).to_owned(),
                        name: String::new(),
                        reference: technique_url(id),
                    })
                })
                .collect(),
        }
    }

    /// The ECS document fragment.
    pub fn to_ecs(&self) -> Value {
        fn lists(refs: &[MitreRef]) -> Value {
            let col = |f: fn(&MitreRef) -> &str| refs.iter().map(&f).collect::<Vec<_>>();
            json!({"id": col(|r| &r.id), "name": col(|r| &r.name), "reference": col(|r| &r.reference)})
        }
        json!({
            "framework": "MITRE ATT&CK",
            "tactic": lists(&self.tactics),
            "technique": lists(&self.techniques),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threat_lists_ids_names_and_pages_in_parallel() {
        let t = Threat::of(&["TA0002"], &["T1609", "T1059.004", "T9999"]).to_ecs();
        assert_eq!(t["framework"], "MITRE ATT&CK");
        assert_eq!(t["tactic"]["name"], json!(["Execution"]));
        assert_eq!(t["technique"]["id"], json!(["T1609", "T1059.004", "T9999"]));
        assert_eq!(
            t["technique"]["name"],
            json!(["Container Administration Command", "Unix Shell", ""])
        );
        assert_eq!(
            t["technique"]["reference"][1],
            "https://attack.mitre.org/techniques/T1059/004/"
        );
        assert!(tactic("TA9999").is_none() && technique("T1609").is_some());
    }
}
