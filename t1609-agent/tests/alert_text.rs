//! The agent's alerts are written once, as JSON text, with what the agent adds (the
//! exec's context, the exceptions' verdict, the exec's target: `AlertFields`). The slow
//! path stays the definition: for every alert of t1609-detect's corpus, under contexts
//! with and without container metadata, pods, resolved and unresolved targets,
//! exceptions, session leaders, systemd units and hostile strings, the text is the
//! document `Alert::to_ecs` plus each writer's `add_to_value` builds, on one line, with
//! no key twice; and a follow-up's lean copy taken from the fields is the one taken from
//! the document. Unprivileged.

#[path = "../../t1609-detect/tests/common/mod.rs"]
mod detect_common;

use std::sync::Arc;

use serde_json::{Value, json};
use t1609_agent::{
    alerts::followup::FirstAlerts,
    context::{ExecContext, ExecFields, Targets},
    deliver::SentAlert,
    triage::Verdict,
};
use t1609_context::{
    Ancestor, CgroupContext, ContainerInfo, DedupKey, Meta, PendingReason, PodInfo, Runtime,
    RuntimeKind, Runtimes,
};
use t1609_detect::{Alert, AlertFields, Engine, ExtraFields, Severity, event::ProcessEvent};

/// The fields Elastic's rules test, as the agent fills them (host.os, creds, tty,
/// leaders, captured environment variables, the identified file's digest), with hostile strings among them.
fn with_elastic_fields(ev: &mut ProcessEvent) {
    use t1609_detect::event::{Identity, RelatedProcess};
    ev.host_os.kind = Some("linux".into());
    ev.host_os.name = Some("Debian \"GNU\"/Linux".into());
    ev.host_os.kernel = Some("6.1.0-\n28".into());
    let p = &mut ev.process;
    p.interactive = Some(true);
    p.hash_sha256 = Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    p.tty.char_device_major = Some(136);
    p.tty.char_device_minor = Some(3);
    p.creds.user = Identity {
        id: Some("0".into()),
        name: Some("root".into()),
    };
    p.creds.real_user = Identity {
        id: Some("1000".into()),
        name: Some("us\u{7}er".into()),
    };
    p.creds.group = Identity {
        id: Some("0".into()),
        name: None,
    };
    p.creds.real_group = Identity {
        id: Some("1000".into()),
        name: Some("staff".into()),
    };
    p.env_vars = Some(vec![
        "LD_PRELOAD=/tmp/x\n.so".into(),
        "HTTPS_PROXY=\"q\"".into(),
    ]);
    p.session_leader = Some(Box::new(RelatedProcess {
        pid: Some(41),
        name: Some("sshd".into()),
        executable: Some("/usr/sbin/sshd".into()),
        args: Some(vec!["sshd: root@pts/3".into()]),
        ..Default::default()
    }));
    p.group_leader = Some(Box::new(RelatedProcess {
        same_as_process: Some(true),
        pid: p.pid,
        ..Default::default()
    }));
}

/// The corpus, with the event shapes spread over it, and hostile events.
fn events() -> Vec<ProcessEvent> {
    let text = include_str!("../../t1609-detect/tests/corpus/commands.jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: Value = serde_json::from_str(line).expect("corpus line");
        let mut ev = detect_common::corpus_event(&v);
        match i % 5 {
            1 => ev.container_id = Some("4f2a9c".into()),
            2 => {
                ev.container_id = Some("e\"v\n".into());
                ev.container_privileged = Some(true);
                ev.timestamp = None;
            }
            3 => {
                ev.container_privileged = Some(false);
                ev.host_hostname = None;
                ev.process.parent = None;
            }
            4 => with_elastic_fields(&mut ev),
            _ => {}
        }
        out.push(ev);
    }
    let huge: Vec<String> = (0..400)
        .map(|i| format!("--opt{i}={}", "x".repeat(300)))
        .collect();
    let mut huge_argv = vec!["docker", "exec", "-it", "web-huge"];
    huge_argv.extend(huge.iter().map(String::as_str));
    huge_argv.push("sh");
    // Invalid UTF-8 as the agent decodes it: lossily, into U+FFFD.
    let lossy = String::from_utf8_lossy(b"we\xffb\xc3").into_owned();
    for argv in [
        &["docker", "exec", "-it", "we\nb\u{0}", "sh\u{1b}[31m"][..],
        &[
            "docker",
            "exec",
            "-it",
            lossy.as_str(),
            "/bin/sh",
            "-c",
            "a\u{2028}b\"\\",
        ],
        &[
            "kubectl", "exec", "-n", "ns\"x", "p\\od", "--", "sh", "-c", "id\r\n",
        ],
        &huge_argv[..],
    ] {
        let mut ev = detect_common::event(argv);
        ev.process.working_directory = Some("/tmp/\u{7f}\0\"x\"".into());
        out.push(ev);
    }
    out
}

fn info(id: &str, runtime: RuntimeKind, name: Option<&str>) -> ContainerInfo {
    let mut i = ContainerInfo::new(id, runtime, "docker");
    i.name = name.map(Into::into);
    i
}

fn pod(name: &str, namespace: &str, uid: &str, container: Option<&str>) -> PodInfo {
    PodInfo {
        name: name.into(),
        namespace: namespace.into(),
        uid: uid.into(),
        container_name: container.map(Into::into),
    }
}

/// Runtimes that know some of the corpus's targets, so that targets resolve and don't.
fn runtimes() -> Runtimes {
    let r = Runtimes::disabled();
    let mut web = info(
        &"a".repeat(64),
        RuntimeKind::Docker,
        Some("t1609_container"),
    );
    web.image = Some("docker.io/library/busybox:1".into());
    web.image_digest = Some("sha256:0123".into());
    r.cache().insert(web);
    r.cache()
        .insert(info(&"b".repeat(64), RuntimeKind::Docker, Some("web")));
    let mut k = info(&"c".repeat(64), RuntimeKind::Containerd, Some("app"));
    k.namespace = Some("k8s.io".into());
    k.pod = Some(pod("busybox-1234", "default", "u-9", Some("app")));
    r.cache().insert(k);
    let mut m = info(&"d".repeat(64), RuntimeKind::Containerd, Some("sidecar"));
    m.namespace = Some("k8s.io".into());
    m.pod = Some(pod("mypod", "default", "", Some("sidecar")));
    r.cache().insert(m);
    r
}

/// An exec's context, its session leader and what the runtimes say of its container.
struct Where {
    ctx: ExecContext,
    leader: Option<u32>,
    meta: Option<Meta>,
}

fn ancestor(pid: u32, name: &str, executable: Option<&str>) -> Ancestor {
    Ancestor {
        pid,
        name: name.into(),
        executable: executable.map(Into::into),
    }
}

fn wheres() -> Vec<Where> {
    let cgroup = |id: Option<&str>, runtime: Runtime, pod_uid: Option<&str>| CgroupContext {
        container_id: id.map(Into::into),
        runtime,
        pod_uid: pod_uid.map(Into::into),
        ..Default::default()
    };
    let known = |i: ContainerInfo| Some(Meta::Known(Arc::new(i)));
    let mut k8s = info("c1-full", RuntimeKind::Containerd, Some("app"));
    k8s.image = Some("registry/x:1".into());
    k8s.image_digest = Some("sha256:d".into());
    k8s.pod = Some(pod("web-0", "prod", "u-1", Some("app")));
    let mut nameless_pod = info("c3", RuntimeKind::CriO, None);
    nameless_pod.pod = Some(pod("web-1", "prod", "", None));
    let mut unit = cgroup(None, Runtime::SystemdUnit, None);
    unit.systemd_unit = Some("cron\n\"x\".service".into());
    let hostile: Vec<Ancestor> = (0..8)
        .map(|i| {
            ancestor(
                i,
                &format!("sh\0\n{i}\u{1b}"),
                (i % 2 == 0).then_some("/bin/\"sh\""),
            )
        })
        .collect();
    vec![
        Where {
            ctx: ExecContext::default(),
            leader: None,
            meta: None,
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(Some("4f2a"), Runtime::Docker, None),
                in_container: true,
                ancestry: vec![
                    ancestor(1, "containerd-shim", None),
                    ancestor(7, "bash", Some("/bin/bash")),
                ],
                extras_read: false,
            },
            leader: Some(1),
            meta: Some(Meta::Pending(PendingReason::LookupQueued)),
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(Some("c1"), Runtime::CriContainerd, Some("u-1")),
                in_container: true,
                ancestry: vec![ancestor(3, "runc", Some("/usr/bin/runc"))],
                extras_read: false,
            },
            leader: Some(3),
            meta: known(k8s),
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(Some("c2"), Runtime::Kubernetes, Some("u-2")),
                ..Default::default()
            },
            leader: None,
            meta: known(info("c2", RuntimeKind::Docker, None)),
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(Some("c3"), Runtime::CriO, Some("u-3")),
                ..Default::default()
            },
            leader: None,
            meta: known(nameless_pod),
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(None, Runtime::Kubernetes, Some("u-4")),
                ..Default::default()
            },
            leader: Some(9),
            meta: None,
        },
        Where {
            ctx: ExecContext {
                cgroup: cgroup(Some("c5"), Runtime::Podman, Some("u-5")),
                in_container: true,
                ancestry: hostile,
                extras_read: false,
            },
            leader: Some(u32::MAX),
            meta: Some(Meta::Pending(PendingReason::RuntimeDown(
                "/run/x.sock: \"timeout\"\n\u{0}".into(),
            ))),
        },
        Where {
            ctx: ExecContext {
                cgroup: unit,
                ..Default::default()
            },
            leader: Some(1),
            meta: None,
        },
    ]
}

fn verdicts() -> Vec<Verdict> {
    vec![
        Verdict::default(),
        Verdict {
            lower: Some(Severity::Low),
            tags: vec!["ci".into(), "a\n\"b\"".into()],
            ..Default::default()
        },
        Verdict {
            tags: vec!["only-tags".into()],
            ..Default::default()
        },
        Verdict {
            lower: Some(Severity::Medium),
            ..Default::default()
        },
    ]
}

/// One-off fields through the generic fallback, in every object.
fn extra() -> ExtraFields {
    let mut e = ExtraFields::default();
    e.container
        .insert("extra_c".into(), json!({"n": [1, "x\n"]}));
    e.t1609.insert("extra_t".into(), json!(null));
    e.top.insert("extra".into(), json!("top\u{0}"));
    e
}

/// The text `fields` write for `a` is the document the slow path builds: one line, no
/// key twice (a duplicate would parse into fewer members, so a shorter re-serialisation).
fn check(a: &Alert, fields: &dyn AlertFields, what: &str) -> (String, Value) {
    let text = a.json_with(fields);
    assert!(
        !text.contains('\n') && !text.contains('\r') && !text.contains('\0'),
        "{what}: not one line"
    );
    let fast: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let slow = a.to_ecs_with(fields);
    assert_eq!(fast, slow, "{what}: the text and the document differ");
    assert_eq!(
        serde_json::to_string(&fast).unwrap().len(),
        text.len(),
        "{what}: a key written twice"
    );
    let mut written = Vec::new();
    a.write_json_with(fields, &mut written).unwrap();
    assert_eq!(written, text.as_bytes(), "{what}: write_json_with");
    (text, slow)
}

#[test]
fn the_text_is_the_document_for_every_alert_and_context() {
    let engine = Engine::builtin().expect("builtin");
    let targets = Targets::new(runtimes());
    let (wheres, verdicts, extra) = (wheres(), verdicts(), extra());
    let mut n = 0usize;
    let mut shapes = std::collections::BTreeSet::new();
    for (i, ev) in events().into_iter().enumerate() {
        let alerts = engine.evaluate(&ev);
        // Every context and verdict on the first events; spread over the others.
        let combos: Vec<(usize, usize)> = if i < 4 {
            (0..wheres.len())
                .flat_map(|w| (0..verdicts.len()).map(move |v| (w, v)))
                .collect()
        } else {
            vec![(i % wheres.len(), i % verdicts.len())]
        };
        for (w, v) in combos {
            let at = &wheres[w];
            let exec = ExecFields::new(&at.ctx, at.leader, at.meta.clone());
            let verdict = &verdicts[v];
            for (j, a) in alerts.iter().enumerate() {
                let target = targets.resolve(a.argv.as_deref());
                let what = format!("event {i} alert {j} ({}) where {w} verdict {v}", a.rule_id);
                let (_, doc) = if (i + j) % 3 == 0 {
                    check(a, &(&exec, verdict, &target, &extra), &what)
                } else {
                    check(a, &(&exec, verdict, &target), &what)
                };
                // The event part is cached per event: the plain writer still writes the
                // serde document byte for byte after alerts with fields.
                let mut plain = Vec::new();
                a.write_json(&mut plain).unwrap();
                assert_eq!(plain, serde_json::to_vec(a).unwrap(), "{what}: plain");
                shapes.insert((
                    doc["t1609"]["target"]["resolved"].as_bool(),
                    doc["t1609"]["metadata"]["pending"].as_bool(),
                    doc.get("orchestrator").is_some(),
                    doc.get("tags").is_some(),
                ));
                n += 1;
            }
        }
    }
    assert!(n > 600, "only {n} alerts");
    for shape in [
        (Some(true), Some(false), true, false),
        (Some(false), Some(true), false, true),
        (None, None, false, false),
    ] {
        assert!(shapes.contains(&shape), "{shape:?} not covered: {shapes:?}");
    }
}

/// A follow-up past the whole bound: its lean copy taken from the alert and its fields
/// (text path) is the one taken from the document (the `Value` path).
#[test]
fn lean_follow_ups_from_fields_match_those_from_documents() {
    let engine = Engine::builtin().expect("builtin");
    let targets = Targets::new(runtimes());
    let (wheres, verdicts) = (wheres(), verdicts());
    let mut n = 0;
    for (i, ev) in events().into_iter().enumerate() {
        let at = &wheres[i % wheres.len()];
        let exec = ExecFields::new(&at.ctx, at.leader, at.meta.clone());
        for a in engine.evaluate(&ev) {
            let target = targets.resolve(a.argv.as_deref());
            let fields = (&exec, &verdicts[i % verdicts.len()], &target);
            let key = DedupKey::new(&a.rule_id, &i.to_string(), None, None);
            // Fewer than eight kept: none whole, every one lean.
            let (mut by_doc, mut by_fields) = (FirstAlerts::new(4), FirstAlerts::new(4));
            by_doc.remember(
                key.clone(),
                &SentAlert::new(Arc::new(a.to_ecs_with(&fields))),
                None,
            );
            let text = SentAlert::from_text(a.json_with(&fields));
            by_fields.remember(key.clone(), &text, Some((&a, &fields)));
            assert!(text.parsed().is_none(), "the text is not parsed to keep it");
            let (mut x, _) = by_doc.close(&key, 3, None).expect("a follow-up");
            let (mut y, _) = by_fields.close(&key, 3, None).expect("a follow-up");
            // Each follow-up has an id of its own.
            x["event"]["id"].take();
            y["event"]["id"].take();
            assert_eq!(x, y, "event {i} {}", a.rule_id);
            n += 1;
        }
    }
    assert!(n > 300, "only {n}");
}
