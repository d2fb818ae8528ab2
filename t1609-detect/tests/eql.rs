//! EQL subset: semantics and parser errors.

mod common;

use common::event;
use t1609_detect::eql::{self, parse_query};

fn q(src: &str, argv: &[&str]) -> bool {
    let node = parse_query(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let ev = event(argv);
    let invs = t1609_detect::argv::parse(
        ev.process.name.as_deref(),
        ev.process.args.as_deref().unwrap_or(&[]),
    );
    if node.needs_argv() {
        invs.iter().any(|i| node.eval(&eql::ctx(&ev, Some(i))))
    } else {
        node.eval(&eql::ctx(&ev, None))
    }
}

#[test]
fn in_is_case_sensitive_colon_is_not() {
    assert!(q(
        r#"process where process.name in ("docker")"#,
        &["docker", "ps"]
    ));
    assert!(!q(
        r#"process where process.name in ("Docker")"#,
        &["docker", "ps"]
    ));
    assert!(q(
        r#"process where process.name in~ ("DOCKER")"#,
        &["docker", "ps"]
    ));
    assert!(q(
        r#"process where process.name : "DoCkEr""#,
        &["docker", "ps"]
    ));
    assert!(q(
        r#"process where process.name : ("x", "DOCK*")"#,
        &["docker", "ps"]
    ));
    assert!(q(
        r#"process where process.name not in ("kubectl")"#,
        &["docker", "ps"]
    ));
    assert!(!q(
        r#"process where process.name not in ("docker")"#,
        &["docker", "ps"]
    ));
    assert!(q(
        r#"process where process.name == "docker" and process.name != "Docker""#,
        &["docker"]
    ));
}

#[test]
fn wildcards_like_and_regex() {
    assert!(q(
        r#"process where process.command_line : "*nsenter*pid*1*""#,
        &["nsenter", "--pid", "-t", "1"]
    ));
    assert!(!q(
        r#"process where process.command_line : "*nsenter*pid*1*""#,
        &["nsenter", "--pid"]
    ));
    assert!(q(r#"process where process.name : "d?cker""#, &["docker"]));
    assert!(!q(r#"process where process.name : "d?cker""#, &["dcker"]));
    assert!(q(r#"process where process.name like "dock*""#, &["docker"]));
    assert!(!q(
        r#"process where process.name like "DOCK*""#,
        &["docker"]
    ));
    assert!(q(
        r#"process where process.name like~ "DOCK*""#,
        &["docker"]
    ));
    assert!(q(
        r#"process where process.name regex "d[o]ck.r""#,
        &["docker"]
    ));
    assert!(
        !q(r#"process where process.name regex "ock""#, &["docker"]),
        "regex is anchored"
    );
    assert!(q(
        r#"process where process.name regex~ "DOCKER""#,
        &["docker"]
    ));
    assert!(q(
        r#"process where process.command_line : "ÄRGER *""#,
        &["ärger", "x"]
    ));
}

#[test]
fn functions() {
    assert!(q(
        r#"process where startsWith(process.executable, "/usr/bin/")"#,
        &["docker"]
    ));
    assert!(!q(
        r#"process where startsWith(process.executable, "/USR/")"#,
        &["docker"]
    ));
    assert!(q(
        r#"process where startsWith~(process.executable, "/USR/")"#,
        &["docker"]
    ));
    assert!(q(
        r#"process where endsWith(process.name, "ker")"#,
        &["docker"]
    ));
    assert!(q(
        r#"process where endsWith~(process.name, "KER")"#,
        &["docker"]
    ));
    assert!(q(
        r#"process where stringContains(process.command_line, "exec -it")"#,
        &["docker", "exec", "-it", "x"]
    ));
    assert!(q(
        r#"process where stringContains~(process.command_line, "EXEC")"#,
        &["docker", "exec"]
    ));
    assert!(q("process where length(process.name) == 6", &["docker"]));
    assert!(q(
        "process where length(process.args) > 10",
        &["docker", "--privileged"]
    ));
    assert!(q(
        "process where process.args_count >= 2 and process.pid in (4242, 1)",
        &["docker", "ps"]
    ));
    assert!(!q(
        "process where process.args_count < 2",
        &["docker", "ps"]
    ));
}

#[test]
fn array_fields_match_any_element() {
    assert!(q(
        r#"process where process.args : "exec""#,
        &["docker", "exec"]
    ));
    assert!(q(
        r#"process where process.args == "exec""#,
        &["docker", "exec"]
    ));
    assert!(!q(
        r#"process where process.args : "exec""#,
        &["docker", "--exec-opt"]
    ));
    assert!(q(
        r#"process where process.args : "--exec*""#,
        &["docker", "--exec-opt"]
    ));
    assert!(q(
        r#"process where process.parent.args : "bash""#,
        &["docker"]
    ));
}

/// Elasticsearch semantics: a predicate on an absent field is false, so its negation
/// (and `!=`, which is `not ==`) is true; `== null` / `!= null` test presence.
#[test]
fn absent_fields_follow_elasticsearch() {
    let ev = event(&["docker"]);
    let holds = |src: &str| {
        parse_query(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&eql::ctx(&ev, None))
    };
    assert!(!holds(r#"process where container.id : "*""#));
    assert!(holds(r#"process where container.id != "x""#));
    assert!(holds(r#"process where not container.id : "*""#));
    assert!(holds("process where container.id == null"));
    assert!(!holds("process where container.id != null"));
    assert!(holds("process where process.name != null"));
    assert!(!holds("process where process.name == null"));
    // length() is a script in Elasticsearch: null on an absent field, and `not null`
    // stays null, so neither the test nor its negation matches.
    assert!(!holds("process where length(container.id) > 0"));
    assert!(!holds("process where not length(container.id) > 0"));
    assert!(!holds("process where not not length(container.id) > 0"));
    assert!(holds("process where not length(process.name) > 100"));
}

/// `!=` on an array holds when no element equals (it used to hold when some element
/// differed, so `!=` and `not ==` disagreed).
#[test]
fn not_equal_on_arrays_means_no_element_equals() {
    assert!(!q(
        r#"process where process.args != "exec""#,
        &["docker", "exec", "w"]
    ));
    assert!(q(
        r#"process where process.args != "run""#,
        &["docker", "exec", "w"]
    ));
    assert!(!q(
        "process where process.args_count != 3",
        &["docker", "exec", "w"]
    ));
    assert!(q(
        r#"process where process.args != "x" and not process.args == "x""#,
        &["a", "b"]
    ));
}

#[test]
fn argv_fields() {
    assert!(q(
        r#"process where t1609.argv.verb == "exec" and t1609.argv.interactive"#,
        &["docker", "exec", "-it", "w", "sh"]
    ));
    assert!(q(
        r#"process where t1609.argv.cap_add in~ ("sys_admin")"#,
        &["docker", "run", "--cap-add", "SYS_ADMIN", "x"]
    ));
    assert!(q(
        "process where t1609.argv.url_port == 10250",
        &["curl", "https://n:10250/pods"]
    ));
    assert!(q(
        r#"process where t1609.argv.wrappers == "sudo""#,
        &["sudo", "docker", "ps"]
    ));
}

fn err(src: &str) -> (usize, usize, String) {
    let e = parse_query(src).expect_err(src);
    (e.line, e.column, e.message)
}

#[test]
fn errors_name_line_column_and_expectation() {
    let (l, c, m) = err("process where process.nmae == \"x\"");
    assert_eq!((l, c), (1, 15));
    assert!(m.contains("unknown field `process.nmae`"), "{m}");

    let (l, c, m) = err("process where\n  process.name == \"x\" and\n  process.argz : \"y\"");
    assert_eq!((l, c), (3, 3));
    assert!(m.contains("process.argz"), "{m}");

    let (l, c, m) = err("process where process.name = \"x\"");
    assert_eq!((l, c), (1, 28));
    assert!(m.contains("expected `==`"), "{m}");

    let (_, _, m) = err("process where (process.name == \"x\"");
    assert!(m.contains("expected `)`"), "{m}");
    let (_, _, m) = err("network where process.name == \"x\"");
    assert!(m.contains("not supported"), "{m}");
    let (_, _, m) = err("sequence by host.id");
    assert!(m.contains("not supported"), "{m}");
    let (_, _, m) = err("process where cidrMatch(process.name, \"10.0.0.0/8\")");
    assert!(m.contains("unsupported function `cidrMatch`"), "{m}");
    let (_, _, m) = err("process where process.pid : \"1\"");
    assert!(m.contains("needs a string field"), "{m}");
    let (_, _, m) = err("process where process.name == 3");
    assert!(m.contains("expected a string"), "{m}");
    let (_, _, m) = err("process where process.name in (\"a\" \"b\")");
    assert!(m.contains("expected `,` or `)`"), "{m}");
    let (_, _, m) = err("process where process.name == \"x\" | head 1");
    assert!(
        m.contains("unexpected character") || m.contains("pipes"),
        "{m}"
    );
    let (_, _, m) = err("process where process.name == 'x'");
    assert!(m.contains("double-quoted"), "{m}");
    let (_, _, m) = err("process where process.name regex \"(\"");
    assert!(m.contains("invalid regex"), "{m}");
    let (_, _, m) = err("process where process.name == \"unterminated");
    assert!(m.contains("unterminated"), "{m}");
    let (_, _, m) = err("process where process.name : null");
    assert!(m.contains("null"), "{m}");
    let (_, _, m) = err("process where process.args_count > null");
    assert!(m.contains("null"), "{m}");
    let (_, _, m) = err("process where process.Ext.token.integrity_level_name == \"x\"");
    assert!(m.contains("not provided by the agent"), "{m}");
    let (_, _, m) = err("process where file.path == \"x\"");
    assert!(m.contains("file events are not captured"), "{m}");
    let (_, _, m) = err("process where");
    assert!(m.contains("expected a field"), "{m}");
}
