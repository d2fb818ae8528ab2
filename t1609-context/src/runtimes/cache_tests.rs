//! Unit tests of the metadata cache (`cache.rs`).

use super::*;
use crate::runtimes::info::{PodInfo, some};

fn cache() -> MetaCache {
    let c = MetaCache::new(100, Duration::from_millis(50), Duration::from_secs(1));
    let mut h = Health::new(RuntimeKind::Containerd, "containerd", true);
    h.up = true;
    c.health.write().unwrap().push(h);
    c
}

fn ctr(id: &str, ns: &str, name: Option<&str>) -> ContainerInfo {
    let mut i = ContainerInfo::new(id, RuntimeKind::Containerd, "containerd");
    i.namespace = some(ns);
    i.name = name.map(Arc::from);
    i
}

#[test]
fn hits_and_targets_by_namespace_name_and_prefix() {
    let c = cache();
    c.upsert(0, ctr("web", "t1609", Some("web")));
    c.upsert(0, ctr("abcdef0123", "default", Some("nginx-1")));
    c.upsert(0, ctr("abcdff0000", "default", None));
    assert!(c.container("web").known().is_some());
    // ctr: exact id in its namespace; the same id elsewhere is a near miss.
    assert!(c.target("ctr", Some("t1609"), "web").known().is_some());
    assert!(c.target("ctr", None, "web").known().is_none());
    assert!(
        c.target("ctr", None, "abcdef").known().is_none(),
        "ctr takes no prefix"
    );
    // nerdctl: name or unique prefix, namespace "default" by default.
    assert_eq!(
        &*c.target("nerdctl", None, "nginx-1").known().unwrap().id,
        "abcdef0123"
    );
    assert!(c.target("nerdctl", None, "abcde").known().is_some());
    assert_eq!(
        c.target("nerdctl", None, "abc"),
        Meta::Pending(PendingReason::Ambiguous)
    );
    // docker asks Docker only.
    assert!(c.target("docker", None, "nginx-1").known().is_none());
}

#[test]
fn misses_queue_once_and_say_why() {
    let c = cache();
    assert_eq!(
        c.container("nope"),
        Meta::Pending(PendingReason::NoRuntime),
        "no request channel: nothing can answer"
    );
    let (tx, mut rx) = mpsc::channel(1);
    c.set_requests(tx);
    assert_eq!(c.container("x"), Meta::Pending(PendingReason::LookupQueued));
    assert_eq!(c.container("x"), Meta::Pending(PendingReason::LookupQueued));
    assert_eq!(c.container("y"), Meta::Pending(PendingReason::QueueFull));
    assert_eq!(rx.try_recv().unwrap(), Wanted::Id("x".into()));
    c.lookup_done(&Wanted::Id("x".into()), Some(PendingReason::NotFound));
    assert_eq!(c.container("x"), Meta::Pending(PendingReason::NotFound));
    // The answer arrives later: named, and reported once as a late answer.
    c.upsert(0, ctr("x", "default", None));
    c.lookup_done(&Wanted::Id("x".into()), None);
    assert!(c.container("x").known().is_some());
    assert_eq!(c.take_answered().len(), 1);
    assert!(c.take_answered().is_empty());
    // All endpoints down: the reason names the error.
    {
        let h = &mut c.health.write().unwrap()[0];
        h.up = false;
        h.last_error = Some("containerd /x.sock: timeout".into());
    }
    match c.container("z") {
        Meta::Pending(PendingReason::RuntimeDown(e)) => assert!(e.contains("/x.sock")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_containers_stay_named_for_the_grace_then_go() {
    let c = cache();
    c.upsert(0, ctr("gone", "default", None));
    c.upsert(1, ctr("kept", "default", None));
    c.removed("gone");
    c.expire();
    assert!(c.container("gone").known().is_some());
    std::thread::sleep(Duration::from_millis(60));
    c.expire();
    assert!(c.container("gone").known().is_none());
    // A relist of endpoint 1 without "kept" retires it.
    c.retire_missing(1, &HashSet::new());
    std::thread::sleep(Duration::from_millis(60));
    c.expire();
    assert!(c.is_empty());
}

#[test]
fn bounded_and_pods_found_by_name() {
    let c = MetaCache::new(3, Duration::from_mins(1), Duration::from_secs(1));
    for i in 0..5 {
        let mut info = ctr(&format!("c{i}"), "k8s.io", Some("app"));
        info.pod = Some(PodInfo {
            name: "web-0".into(),
            namespace: "prod".into(),
            uid: "u".into(),
            container_name: some(if i == 4 { "sidecar" } else { "app" }),
        });
        c.upsert(0, info);
    }
    assert_eq!(c.len(), 3);
    assert!(c.container("c0").known().is_none(), "oldest evicted");
    assert!(c.container("c1").known().is_none(), "oldest evicted");
    assert_eq!(
        &*c.pod("prod", "web-0", Some("sidecar")).known().unwrap().id,
        "c4"
    );
    assert_eq!(&*c.pod("prod", "web-0", None).known().unwrap().id, "c2");
    assert!(c.pod("prod", "web-1", None).known().is_none());
}
