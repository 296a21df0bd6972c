//! Throttle tests, with an injected clock: limits per window and class, delays, resets, and
//! persistence.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// A fixed starting time; tests add seconds to it.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(segments: [u16; 8]) -> IpAddr {
    let [a, b, c, d, e, f, g, h] = segments;
    IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
}

fn fail(t: &mut Throttle, ip: IpAddr, account: Option<&str>, now: SystemTime, times: u32) {
    for _ in 0..times {
        t.record_failure(Attempt::new(ip, account), now);
    }
}

fn allow(secs: u64) -> Decision {
    Decision::Allow {
        delay: Duration::from_secs(secs),
    }
}

fn refused(d: &Decision) -> Option<(u64, Scope, Window)> {
    match d {
        Decision::Refuse {
            retry_after,
            reason,
            ..
        } => Some((retry_after.as_secs(), reason.scope, reason.window)),
        Decision::Allow { .. } => None,
    }
}

#[test]
fn delays_double_after_the_free_failures_up_to_the_cap() {
    let mut t = Throttle::new();
    let ip = v4(192, 0, 2, 1);
    let mut delays = Vec::new();
    for _ in 0..9 {
        match t.check(Attempt::new(ip, None), at(0)) {
            Decision::Allow { delay } => delays.push(delay.as_secs()),
            other => panic!("{other:?}"),
        }
        t.record_failure(Attempt::new(ip, None), at(0));
    }
    assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 15, 15]);
}

#[test]
fn refuses_a_host_for_the_rest_of_the_minute_after_ten_failures() {
    let mut t = Throttle::new();
    let ip = v4(192, 0, 2, 1);
    fail(&mut t, ip, None, at(0), 9);
    assert!(refused(&t.check(Attempt::new(ip, None), at(5))).is_none());
    t.record_failure(Attempt::new(ip, None), at(5));
    assert_eq!(
        refused(&t.check(Attempt::new(ip, None), at(20))),
        Some((40, Scope::Ipv4Host, Window::Minute))
    );
    assert_eq!(
        RefuseReason {
            scope: Scope::Ipv4Host,
            window: Window::Minute
        }
        .to_string(),
        "too many failed logins for this IPv4 address in the last minute"
    );
    // Another host in the same /24 is not affected yet; the window ends after a minute.
    assert_eq!(
        t.check(Attempt::new(v4(192, 0, 2, 2), None), at(20)),
        allow(0)
    );
    assert!(refused(&t.check(Attempt::new(ip, None), at(60))).is_none());
}

#[test]
fn refuses_a_host_for_the_day_after_fifty_failures() {
    let mut t = Throttle::new();
    let ip = v4(198, 51, 100, 7);
    for minute in 0..5 {
        fail(&mut t, ip, None, at(minute * 120), 9);
    }
    fail(&mut t, ip, None, at(600), 5);
    let day_left = DAY - 600 - 30;
    assert_eq!(
        refused(&t.check(Attempt::new(ip, None), at(630))),
        Some((day_left, Scope::Ipv4Host, Window::Day))
    );
    assert!(refused(&t.check(Attempt::new(ip, None), at(DAY - 1))).is_some());
    assert_eq!(t.check(Attempt::new(ip, None), at(DAY)), allow(0));
}

#[test]
fn aggregates_ipv4_hosts_per_slash_24() {
    let mut t = Throttle::new();
    for host in 1..=30 {
        t.record_failure(Attempt::new(v4(203, 0, 113, host), None), at(0));
    }
    assert_eq!(
        refused(&t.check(Attempt::new(v4(203, 0, 113, 200), None), at(1))),
        Some((59, Scope::Ipv4Network, Window::Minute))
    );
    assert_eq!(
        t.check(Attempt::new(v4(203, 0, 114, 1), None), at(1)),
        allow(0)
    );
}

#[test]
fn treats_an_ipv6_slash_64_as_one_host_and_aggregates_per_slash_48() {
    let mut t = Throttle::new();
    // Ten addresses in one /64: one host.
    for i in 0..10 {
        t.record_failure(
            Attempt::new(v6([0x2001, 0xdb8, 1, 1, 0, 0, 0, i]), None),
            at(0),
        );
    }
    assert_eq!(
        refused(&t.check(
            Attempt::new(v6([0x2001, 0xdb8, 1, 1, 9, 9, 9, 9]), None),
            at(0)
        )),
        Some((60, Scope::Ipv6Host, Window::Minute))
    );
    // Thirty /64s in one /48.
    let mut t = Throttle::new();
    for net in 0..30 {
        t.record_failure(
            Attempt::new(v6([0x2001, 0xdb8, 1, net, 0, 0, 0, 1]), None),
            at(0),
        );
    }
    assert_eq!(
        refused(&t.check(
            Attempt::new(v6([0x2001, 0xdb8, 1, 0xffff, 0, 0, 0, 1]), None),
            at(0)
        )),
        Some((60, Scope::Ipv6Network, Window::Minute))
    );
    assert_eq!(
        t.check(
            Attempt::new(v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]), None),
            at(0)
        ),
        allow(0)
    );
}

#[test]
fn counts_ipv4_mapped_ipv6_as_ipv4() {
    let mut t = Throttle::new();
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
    fail(&mut t, mapped, None, at(0), 10);
    assert_eq!(
        refused(&t.check(Attempt::new(v4(192, 0, 2, 9), None), at(0))),
        Some((60, Scope::Ipv4Host, Window::Minute))
    );
}

#[test]
fn limits_an_account_attacked_from_many_networks() {
    let mut t = Throttle::new();
    for net in 0..20 {
        t.record_failure(Attempt::new(v4(10, net, 0, 1), Some("Alice")), at(0));
    }
    let fresh = v4(172, 16, 0, 1);
    assert_eq!(
        refused(&t.check(Attempt::new(fresh, Some("alice")), at(1))),
        Some((59, Scope::Account, Window::Minute))
    );
    assert_eq!(t.check(Attempt::new(fresh, Some("bob")), at(1)), allow(0));
    assert_eq!(t.check(Attempt::new(fresh, None), at(1)), allow(0));
    // The day limit for the account.
    let mut t = Throttle::new();
    for minute in 0..5 {
        for net in 0..20 {
            t.record_failure(
                Attempt::new(v4(10, net, minute as u8, 1), Some("alice")),
                at(minute * 60),
            );
        }
    }
    assert_eq!(
        refused(&t.check(Attempt::new(fresh, Some("alice")), at(300))),
        Some((DAY - 300, Scope::Account, Window::Day))
    );
}

#[test]
fn success_clears_the_host_minute_counter_only() {
    let mut t = Throttle::new();
    let ip = v4(192, 0, 2, 1);
    fail(&mut t, ip, Some("alice"), at(0), 6);
    assert_eq!(t.check(Attempt::new(ip, None), at(1)), allow(8));
    t.record_success(Attempt::new(ip, Some("alice")), at(1));
    assert_eq!(t.check(Attempt::new(ip, None), at(1)), allow(0));
    // The account's recent failures still slow it down.
    assert_eq!(t.check(Attempt::new(ip, Some("alice")), at(1)), allow(8));
    // And the day count remains: 44 more failures (spread out) reach the daily limit of 50.
    for minute in 1..=5 {
        fail(&mut t, ip, None, at(minute * 60), 8);
    }
    fail(&mut t, ip, None, at(360), 4);
    assert_eq!(
        refused(&t.check(Attempt::new(ip, None), at(360))).map(|r| r.2),
        Some(Window::Day)
    );
}

#[test]
fn survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Throttle::new();
    let ip = v4(192, 0, 2, 1);
    fail(&mut t, ip, Some("alice"), at(0), 10);
    let before = t.check(Attempt::new(ip, Some("alice")), at(10));
    t.save(dir.path()).unwrap();

    let loaded = Throttle::load(dir.path()).unwrap();
    assert_eq!(
        loaded.check(Attempt::new(ip, Some("alice")), at(10)),
        before
    );
    assert!(refused(&before).is_some());
    assert_eq!(loaded.len(), t.len());
}

#[test]
fn loads_empty_when_nothing_was_saved() {
    let dir = tempfile::tempdir().unwrap();
    let t = Throttle::load(dir.path()).unwrap();
    assert_eq!(
        t.check(Attempt::new(v4(192, 0, 2, 1), Some("a")), at(0)),
        allow(0)
    );
}

#[test]
fn prunes_counters_whose_windows_ended() {
    let mut t = Throttle::new();
    t.record_failure(Attempt::new(v4(192, 0, 2, 1), Some("alice")), at(0));
    t.record_failure(
        Attempt::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), None),
        at(DAY - 10),
    );
    assert_eq!(t.len(), 5);
    t.prune(at(DAY));
    assert_eq!(
        t.len(),
        2,
        "only the IPv6 counters are still in their day window"
    );
}

#[test]
fn bounds_memory_under_a_flood_of_addresses() {
    let mut t = Throttle::new();
    t.counters.insert(
        Key::Account("old".into()),
        Counter {
            day_start: 1,
            day: 1,
            ..Counter::default()
        },
    );
    for i in 0..MAX_COUNTERS as u64 {
        t.counters.insert(
            Key::Account(format!("a{i}")),
            Counter {
                day_start: unix_secs(at(i % 1000)),
                day: 1,
                ..Counter::default()
            },
        );
    }
    t.record_failure(Attempt::new(v4(192, 0, 2, 1), None), at(1000));
    assert!(t.len() <= MAX_COUNTERS);
    assert!(!t.counters.contains_key(&Key::Account("old".into())));
    assert!(refused(&t.check(Attempt::new(v4(192, 0, 2, 1), None), at(1000))).is_none());
}

#[test]
fn survives_a_clock_that_goes_backwards() {
    let mut t = Throttle::new();
    let ip = v4(192, 0, 2, 1);
    fail(&mut t, ip, None, at(100), 10);
    assert_eq!(
        refused(&t.check(Attempt::new(ip, None), at(50))),
        Some((60, Scope::Ipv4Host, Window::Minute))
    );
}

#[test]
fn a_link_is_refused_past_its_budget_whatever_addresses_it_reports() {
    let mut t = Throttle::new().with_limits(Limits {
        link_failures_per_minute: 5,
        ..Limits::default()
    });
    let names = ["a", "b", "c", "d", "e"];
    for (i, name) in (0..5u8).zip(names) {
        let attempt = Attempt::new(v4(10, i, 0, 1), Some(name)).through("imapd");
        // Each address and name is fresh: the link's failures do not slow its clients down.
        assert_eq!(t.check(attempt, at(0)), allow(0), "attempt {i}");
        t.record_failure(attempt, at(0));
    }
    let fresh = Attempt::new(v4(172, 16, 0, 1), Some("y"));
    assert_eq!(
        refused(&t.check(fresh.through("imapd"), at(1))),
        Some((59, Scope::Link, Window::Minute))
    );
    // Another role's link, and the same address without a link, are not affected.
    assert_eq!(t.check(fresh.through("submission"), at(1)), allow(0));
    assert_eq!(t.check(fresh, at(1)), allow(0));
}
