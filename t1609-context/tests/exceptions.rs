//! Exceptions: matching, actions, counting, time windows in named zones, config errors.

use t1609_context::{
    Ancestor, Decision, ExceptionConfig, ExceptionError, Exceptions, Severity, Subject, summarize,
};
use time::macros::datetime;

fn anc(pid: u32, name: &str, exe: &str) -> Ancestor {
    Ancestor {
        pid,
        name: name.into(),
        executable: Some(exe.into()),
    }
}

fn subject<'a>(rule: &'a str, ancestors: &'a [Ancestor]) -> Subject<'a> {
    Subject {
        rule_id: rule,
        ancestors,
        command_line: Some("docker exec -i c1 /bin/sh -c id"),
        ..Default::default()
    }
}

// 2026-11-25 is a Wednesday. Paris is UTC+1 in November.
const WED_10_PARIS: time::OffsetDateTime = datetime!(2026-11-25 09:00 UTC);
const WED_03_PARIS: time::OffsetDateTime = datetime!(2026-11-25 02:00 UTC);

#[test]
fn gitlab_runner_ancestor_suppresses_and_counts() {
    let ex = Exceptions::from_toml_str(
        r#"
        [[exception]]
        name = "ci-gitlab-runner"
        comment = "GitLab Runner jobs run docker exec as part of pipelines"
        rule_id = "t1609.docker_exec"
        ancestor_name = "gitlab-runner"
        action = "suppress"
        "#,
    )
    .unwrap();
    let ci = [
        anc(300, "bash", "/usr/bin/bash"),
        anc(200, "gitlab-runner", "/usr/local/bin/gitlab-runner"),
        anc(1, "systemd", "/sbin/init"),
    ];
    let human = [
        anc(300, "bash", "/usr/bin/bash"),
        anc(200, "sshd", "/usr/sbin/sshd"),
    ];
    for _ in 0..3 {
        let d = ex.evaluate(&subject("t1609.docker_exec", &ci), WED_10_PARIS);
        assert_eq!(
            d,
            vec![Decision::Suppress {
                exception: "ci-gitlab-runner".into()
            }]
        );
    }
    assert!(
        ex.evaluate(&subject("t1609.docker_exec", &human), WED_10_PARIS)
            .is_empty()
    );
    assert_eq!(ex.suppressed_count("t1609.docker_exec"), 3);
    assert_eq!(ex.suppressed_count("t1609.kubectl_exec"), 0);
    assert_eq!(ex.hit_counts(), vec![("ci-gitlab-runner".to_string(), 3)]);
    // Mismatched rule id: not applied, not counted.
    assert!(
        ex.evaluate(&subject("t1609.kubectl_exec", &ci), WED_10_PARIS)
            .is_empty()
    );
    assert_eq!(ex.suppressed_count("t1609.kubectl_exec"), 0);
}

#[test]
fn ancestor_executable_glob_and_basename_fallback() {
    let ex = Exceptions::from_toml_str(
        r#"
        [[exception]]
        rule_id = "*"
        ancestor_executable = ["*/Runner.Worker", "/opt/jenkins/*"]
        action = "suppress"

        [[exception]]
        rule_id = "*"
        ancestor_name = "datadog-agent-*"   # comm is truncated to 15 chars; the exe basename still matches
        action = "tag"
        tag = "monitoring"
        "#,
    )
    .unwrap();
    let gha = [anc(
        10,
        "Runner.Worker",
        "/home/runner/actions-runner/bin/Runner.Worker",
    )];
    assert!(ex.evaluate(&subject("any", &gha), WED_03_PARIS)[0].is_suppress());
    let dd = [anc(
        10,
        "datadog-agent-i",
        "/opt/datadog-agent/bin/datadog-agent-integration",
    )];
    assert_eq!(
        ex.evaluate(&subject("any", &dd), WED_03_PARIS),
        vec![Decision::Tag {
            exception: "exception[1]".into(),
            tag: "monitoring".into()
        }]
    );
    assert!(ex.evaluate(&subject("any", &[]), WED_03_PARIS).is_empty());
}

#[test]
fn business_hours_window_in_paris() {
    let ex = Exceptions::from_toml_str(
        r#"
        [[exception]]
        name = "devops-business-hours"
        rule_id = "*"
        group = "devops"
        time_window = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "18:00", tz = "Europe/Paris" }
        action = "lower_severity"
        severity = "low"
        "#,
    )
    .unwrap();
    let s = Subject {
        group: Some("devops"),
        ..subject("t1609.kubectl_exec", &[])
    };
    // 10:00 local on a Wednesday: holds.
    assert_eq!(
        ex.evaluate(&s, WED_10_PARIS),
        vec![Decision::LowerSeverity {
            exception: "devops-business-hours".into(),
            severity: Severity::Low
        }]
    );
    // 03:00 local: does not.
    assert!(ex.evaluate(&s, WED_03_PARIS).is_empty());
    // 09:00 UTC on a Saturday (10:00 Paris): weekend, no.
    assert!(ex.evaluate(&s, datetime!(2026-11-28 09:00 UTC)).is_empty());
    // End is exclusive: 18:00 Paris = 17:00 UTC in winter.
    assert!(!ex.evaluate(&s, datetime!(2026-11-25 16:59 UTC)).is_empty());
    assert!(ex.evaluate(&s, datetime!(2026-11-25 17:00 UTC)).is_empty());
    // Summer time (UTC+2): 10:00 Paris = 08:00 UTC on Wednesday 2026-07-15.
    assert!(!ex.evaluate(&s, datetime!(2026-07-15 08:00 UTC)).is_empty());
    // The clock may come with any offset; the instant is what counts.
    assert!(
        !ex.evaluate(&s, datetime!(2026-11-25 01:00 -08:00))
            .is_empty()
    ); // = 10:00 Paris
    // Another group: no.
    assert!(
        ex.evaluate(
            &Subject {
                group: Some("dev"),
                ..s
            },
            WED_10_PARIS
        )
        .is_empty()
    );
    // Lowering severity is not a suppression.
    assert_eq!(ex.suppressed_count("t1609.kubectl_exec"), 0);
}

#[test]
fn overnight_window() {
    let ex = Exceptions::from_toml_str(
        r#"
        [[exception]]
        rule_id = "*"
        time_window = { days = ["sun"], start = "22:00", end = "02:00", tz = "UTC" }
        action = "tag"
        tag = "maintenance"
        "#,
    )
    .unwrap();
    let s = subject("r", &[]);
    assert!(!ex.evaluate(&s, datetime!(2026-11-29 23:00 UTC)).is_empty()); // Sunday 23:00
    assert!(!ex.evaluate(&s, datetime!(2026-11-30 01:30 UTC)).is_empty()); // Monday 01:30, window started Sunday
    assert!(ex.evaluate(&s, datetime!(2026-11-30 23:00 UTC)).is_empty()); // Monday 23:00
}

#[test]
fn all_fields_and_actions_combine() {
    let ex = Exceptions::from_toml_str(
        r#"
        [[exception]]
        name = "healthcheck"
        rule_id = "t1609.docker_exec"
        user = ["svc-*", "root"]
        parent_command_line = "/usr/bin/python3 /opt/health/check.py*"
        command_line = "docker exec * /healthz*"
        container_id = "3f1c9e2b7a4d"
        image = "registry.local/web:*"
        systemd_unit = "health-*.service"
        action = "suppress"

        [[exception]]
        name = "tag-all-docker-exec"
        rule_id = "t1609.docker_exec"
        action = "tag"
        tag = "reviewed"
        "#,
    )
    .unwrap();
    let full = Subject {
        rule_id: "t1609.docker_exec",
        ancestors: &[],
        user: Some("svc-health"),
        group: None,
        parent_command_line: Some("/usr/bin/python3 /opt/health/check.py --interval 30"),
        command_line: Some("docker exec web /healthz --quick"),
        container_id: Some("3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456"),
        image: Some("registry.local/web:2.1"),
        systemd_unit: Some("health-probe.service"),
    };
    let d = ex.evaluate(&full, WED_10_PARIS);
    assert_eq!(d.len(), 2);
    let (sup, sev, tags) = summarize(&d);
    assert!(sup);
    assert_eq!(sev, None);
    assert_eq!(tags, vec!["reviewed".to_string()]);
    // Each condition is required: drop one value at a time → only the tag remains.
    let variants = [
        Subject {
            user: Some("alice"),
            ..full
        },
        Subject {
            parent_command_line: None,
            ..full
        },
        Subject {
            command_line: Some("docker exec web sh"),
            ..full
        },
        Subject {
            container_id: Some("aaaa"),
            ..full
        },
        Subject {
            image: Some("docker.io/web:1"),
            ..full
        },
        Subject {
            systemd_unit: None,
            ..full
        },
    ];
    for v in variants {
        let d = ex.evaluate(&v, WED_10_PARIS);
        assert_eq!(d.len(), 1, "{v:?}");
        assert!(!d[0].is_suppress());
    }
    assert_eq!(ex.suppressed_count("t1609.docker_exec"), 1);
}

fn err_of(toml_text: &str) -> ExceptionError {
    Exceptions::from_toml_str(toml_text).expect_err("config should be rejected")
}

#[test]
fn invalid_configs_name_the_field() {
    let base = "[[exception]]\nname = \"x\"\nrule_id = \"*\"\naction = \"suppress\"\n";
    // Bad time zone.
    let e = err_of(&format!(
        "{base}time_window = {{ days = [\"mon\"], start = \"09:00\", end = \"18:00\", tz = \"Europe/Atlantis\" }}\n"
    ));
    assert!(
        matches!(
            &e,
            ExceptionError::Invalid {
                field: "time_window.tz",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("time_window.tz") && e.to_string().contains("Europe/Atlantis"),
        "{e}"
    );
    // Bad time.
    let e = err_of(&format!(
        "{base}time_window = {{ days = [\"mon\"], start = \"9h\", end = \"18:00\" }}\n"
    ));
    assert!(e.to_string().contains("time_window.start"), "{e}");
    let e = err_of(&format!(
        "{base}time_window = {{ start = \"09:00\", end = \"25:00\" }}\n"
    ));
    assert!(e.to_string().contains("time_window.end"), "{e}");
    // Bad day.
    let e = err_of(&format!(
        "{base}time_window = {{ days = [\"funday\"], start = \"09:00\", end = \"18:00\" }}\n"
    ));
    assert!(e.to_string().contains("time_window.days"), "{e}");
    // Unknown key (top level and inside time_window).
    let e = err_of(&format!("{base}ancestor_exe = \"x\"\n"));
    assert!(
        matches!(e, ExceptionError::Parse(_)) && e.to_string().contains("ancestor_exe"),
        "{e}"
    );
    let e = err_of(&format!(
        "{base}time_window = {{ start = \"09:00\", end = \"18:00\", zone = \"UTC\" }}\n"
    ));
    assert!(e.to_string().contains("zone"), "{e}");
    // Action without its parameter.
    let e = err_of("[[exception]]\nrule_id = \"*\"\naction = \"lower_severity\"\n");
    assert!(e.to_string().contains("severity"), "{e}");
    let e = err_of("[[exception]]\nrule_id = \"*\"\naction = \"tag\"\n");
    assert!(e.to_string().contains("`tag`"), "{e}");
    // Unknown action / severity values.
    let e = err_of("[[exception]]\nrule_id = \"*\"\naction = \"drop\"\n");
    assert!(e.to_string().contains("drop"), "{e}");
    // Empty rule id, empty pattern.
    let e = Exceptions::new(vec![ExceptionConfig {
        name: None,
        comment: None,
        rule_id: " ".into(),
        ancestor_executable: None,
        ancestor_name: None,
        user: None,
        group: None,
        parent_command_line: None,
        command_line: None,
        container_id: None,
        image: None,
        systemd_unit: None,
        time_window: None,
        action: t1609_context::Action::Suppress,
        severity: None,
        tag: None,
    }])
    .unwrap_err();
    assert!(
        e.to_string().contains("exception[0]") && e.to_string().contains("rule_id"),
        "{e}"
    );
    let e = err_of(&format!("{base}user = []\n"));
    assert!(e.to_string().contains("`user`"), "{e}");
}

#[test]
fn readme_examples_parse() {
    // Every ```toml block of the README compiles.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut n = 0;
    for block in readme.split("```toml").skip(1) {
        let body = block.split("```").next().unwrap();
        if !body.contains("[[exception]]") {
            continue;
        }
        let ex = Exceptions::from_toml_str(body)
            .unwrap_or_else(|e| panic!("README block {n}: {e}\n{body}"));
        assert!(!ex.is_empty());
        n += 1;
    }
    assert!(n >= 1, "no exception examples in README");
}
