//! ATT&CK references of a rule: any syntactically valid id is accepted; names come from
//! t1609-ecs's table where it knows the id, else from the rule file, else are empty.

use t1609_ecs::{
    MitreRef, Threat,
    mitre::{tactic, technique},
};

/// `TA` and four digits.
fn valid_tactic(id: &str) -> bool {
    id.len() == 6 && id.starts_with("TA") && id[2..].bytes().all(|b| b.is_ascii_digit())
}

/// `T` and four digits, optionally `.` and three.
fn valid_technique(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

/// The tactic `id`, named by the table or by `name` (the rule file's).
pub(super) fn tactic_ref(id: &str, name: Option<&str>) -> Result<MitreRef, String> {
    if !valid_tactic(id) {
        return Err(format!(
            "expected an ATT&CK tactic id (`TA` and four digits, as TA0002), found `{id}`"
        ));
    }
    Ok(tactic(id).unwrap_or_else(|| named(Threat::of(&[id], &[]).tactics, name)))
}

/// The technique or sub-technique `id`, named by the table or by `name`.
pub(super) fn technique_ref(id: &str, name: Option<&str>) -> Result<MitreRef, String> {
    if !valid_technique(id) {
        return Err(format!(
            "expected an ATT&CK technique id (`T` and four digits, with `.` and three for a sub-technique, as T1059.004), found `{id}`"
        ));
    }
    Ok(technique(id).unwrap_or_else(|| named(Threat::of(&[], &[id]).techniques, name)))
}

fn named(mut refs: Vec<MitreRef>, name: Option<&str>) -> MitreRef {
    let mut r = refs.pop().unwrap_or(MitreRef {
        id: String::new(),
        name: String::new(),
        reference: String::new(),
    });
    if let Some(n) = name {
        n.clone_into(&mut r.name);
    }
    r
}

/// The tactic a Sigma tag names (`attack.privilege-escalation`), by the table's names.
pub(super) fn tactic_by_slug(slug: &str) -> Option<MitreRef> {
    let want: String = slug.replace(['-', '_'], " ").to_ascii_lowercase();
    (1..=43)
        .filter_map(|n| tactic(&format!("TA{n:04}")))
        .find(|t| t.name.to_ascii_lowercase() == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_by_syntax_and_named_when_known() {
        assert_eq!(
            technique_ref("T1609", None).map(|r| r.name),
            Ok("Container Administration Command".into())
        );
        let r = technique_ref("T1222.002", Some("Linux and Mac File Permissions")).expect("ok");
        assert_eq!(r.name, "Linux and Mac File Permissions");
        assert_eq!(
            r.reference,
            "https://attack.mitre.org/techniques/T1222/002/"
        );
        assert!(technique_ref("T12", None).is_err());
        assert!(technique_ref("TA0002", None).is_err());
        assert!(tactic_ref("TA0011", Some("Command and Control")).is_ok());
        assert!(tactic_ref("T1609", None).is_err());
        assert_eq!(
            tactic_by_slug("privilege-escalation").map(|t| t.id),
            Some("TA0004".into())
        );
    }
}
