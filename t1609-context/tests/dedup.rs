//! Deduplication: a burst collapses to one alert plus a count; keys differ by container.

use std::time::{Duration, Instant};

use t1609_context::{DedupKey, DedupOutcome, Deduper};

fn key(cmd: &str, container: Option<&str>) -> DedupKey {
    DedupKey::new("t1609.docker_exec", cmd, Some("/usr/bin/bash"), container)
}

#[test]
fn burst_of_50_collapses() {
    let mut d = Deduper::new(Duration::from_mins(1));
    let t0 = Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..50u64 {
        // Whitespace and pid-like numbers vary; the normalized key does not.
        let cmd = format!("docker  exec -i c1   /bin/sh -c 'kill {}'", 1000 + i);
        outcomes.push(d.check(key(&cmd, Some("abc")), t0 + Duration::from_millis(i * 10)));
    }
    assert_eq!(outcomes[0], DedupOutcome::First);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, DedupOutcome::Repeat { .. }))
            .count(),
        49
    );
    assert_eq!(outcomes[49], DedupOutcome::Repeat { count: 50 });
    // Nothing expires inside the window.
    assert!(d.flush_expired(t0 + Duration::from_secs(30)).is_empty());
    let flushed = d.flush_expired(t0 + Duration::from_secs(61));
    assert_eq!(flushed.len(), 1);
    assert_eq!(flushed[0].1, 50);
    assert_eq!(
        flushed[0].0.command_line,
        "docker exec -i c1 /bin/sh -c 'kill N'"
    );
    assert!(d.is_empty());
    // After the window the same key is First again.
    assert_eq!(
        d.check(
            key("docker exec -i c1 /bin/sh -c 'kill 1234'", Some("abc")),
            t0 + Duration::from_secs(62)
        ),
        DedupOutcome::First
    );
}

#[test]
fn different_container_parent_rule_or_command_are_separate() {
    let mut d = Deduper::new(Duration::from_mins(1));
    let t = Instant::now();
    assert_eq!(
        d.check(key("docker exec c1 sh", Some("abc")), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(key("docker exec c1 sh", Some("def")), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(key("docker exec c1 sh", None), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(key("docker exec c1 id", Some("abc")), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(
            DedupKey::new(
                "t1609.docker_exec",
                "docker exec c1 sh",
                Some("/usr/bin/zsh"),
                Some("abc")
            ),
            t
        ),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(
            DedupKey::new(
                "t1609.kubectl_exec",
                "docker exec c1 sh",
                Some("/usr/bin/bash"),
                Some("abc")
            ),
            t
        ),
        DedupOutcome::First
    );
    // `nsenter -t 1` (host init) is not merged with `nsenter -t 4242`.
    assert_eq!(
        d.check(key("nsenter -t 1 -m sh", None), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(key("nsenter -t 4242 -m sh", None), t),
        DedupOutcome::First
    );
    assert_eq!(
        d.check(key("nsenter -t 5151 -m sh", None), t),
        DedupOutcome::Repeat { count: 2 }
    );
    assert_eq!(
        d.check(key("docker exec c1 sh", Some("abc")), t),
        DedupOutcome::Repeat { count: 2 }
    );
    assert_eq!(d.len(), 8);
    let mut flushed = d.flush_expired(t + Duration::from_mins(1));
    flushed.sort();
    assert_eq!(flushed.len(), 8);
    assert_eq!(flushed.iter().map(|(_, c)| c).sum::<u64>(), 10);
}

#[test]
fn expired_window_reopened_by_check_is_reported_and_bound_holds() {
    let mut d = Deduper::with_max_keys(Duration::from_secs(10), 2);
    let t = Instant::now();
    d.check(key("a", None), t);
    d.check(key("a", None), t + Duration::from_secs(1));
    // Seen again after the window without a flush in between: the old window's count is kept.
    assert_eq!(
        d.check(key("a", None), t + Duration::from_secs(11)),
        DedupOutcome::First
    );
    // Bound: a third key closes the oldest window early.
    d.check(key("b", None), t + Duration::from_secs(12));
    d.check(key("c", None), t + Duration::from_secs(13));
    assert!(d.len() <= 2);
    let flushed = d.flush_expired(t + Duration::from_secs(14));
    assert!(flushed.contains(&(key("a", None), 2)), "{flushed:?}");
    assert!(flushed.contains(&(key("a", None), 1)), "{flushed:?}");
}
