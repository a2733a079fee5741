//! Unit tests of the refusal counts: one tally per source, the bound on
//! sources and on kinds, the counts kept whole through a failed write.

use std::net::IpAddr;

use super::{Refusals, Whose, MAX_KINDS, MAX_PATH};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn one_tally_per_source_and_the_rest_together() {
    let r = Refusals::new(2);
    for _ in 0..5 {
        r.record(ip("192.0.2.1"), "GET", "/a", 401, Some("HK1109"));
    }
    r.record(ip("192.0.2.1"), "GET", "/a", 429, Some("HK1111"));
    // Two addresses of one /64 are one source.
    r.record(ip("2001:db8::1"), "POST", "/b", 401, Some("HK1109"));
    r.record(ip("2001:db8::2"), "POST", "/b", 401, Some("HK1109"));
    // Past two sources: the others, together.
    r.record(ip("192.0.2.3"), "GET", "/c", 404, Some("HK1013"));
    r.record(ip("192.0.2.4"), "GET", "/c", 404, None);
    let lines = r.take();
    let whose: Vec<String> = lines.iter().map(|(w, _)| w.to_string()).collect();
    assert_eq!(whose, ["192.0.2.1", "2001:db8::/64", "*"]);
    let counts: Vec<u64> = lines.iter().map(|(_, t)| t.count).collect();
    assert_eq!(counts, [6, 2, 2]);
    let (refused, outcome) = lines[0].1.line(lines[0].0);
    assert_eq!(refused.source, "192.0.2.1");
    assert_eq!(refused.requests.len(), 2);
    assert_eq!(
        (refused.requests[0].status, refused.requests[0].count),
        (401, 5)
    );
    assert_eq!(outcome.code.as_deref(), Some("HK1109"));
    assert!(!outcome.ok);
    assert_eq!(
        outcome.message.as_deref(),
        Some("6 requests from 192.0.2.1 refused without a client (401: 5, 429: 1)")
    );
    assert!(refused.first <= refused.last);
    // Taken: nothing is left.
    assert!(r.take().is_empty());
}

#[test]
fn kinds_and_paths_are_bounded_and_every_request_counted() {
    let r = Refusals::new(4);
    let long = format!("/{}", "é".repeat(MAX_PATH));
    for i in 0..(MAX_KINDS + 5) {
        r.record(
            ip("192.0.2.9"),
            "GET",
            &format!("/p{i}"),
            401,
            Some("HK1109"),
        );
    }
    r.record(ip("192.0.2.9"), "GET", &long, 404, None);
    let lines = r.take();
    let (_, t) = &lines[0];
    assert_eq!(t.count, MAX_KINDS as u64 + 6);
    assert_eq!(t.requests.len(), MAX_KINDS);
    assert_eq!(t.unlisted, 6);
    let listed: u64 = t.requests.iter().map(|k| k.count).sum();
    assert_eq!(listed + t.unlisted, t.count);
    // A long path is cut.
    let r = Refusals::new(4);
    r.record(ip("192.0.2.9"), "GET", &long, 404, None);
    let path = &r.take()[0].1.requests[0].path;
    assert!(path.len() <= MAX_PATH && path.ends_with("..."), "{path}");
    // Made-up methods are one kind.
    let r = Refusals::new(4);
    for method in ["GET", "BREW", "WHEN"] {
        r.record(ip("192.0.2.9"), method, "/a", 405, None);
    }
    let methods: Vec<String> = r.take()[0]
        .1
        .requests
        .iter()
        .map(|k| format!("{} {}", k.method, k.count))
        .collect();
    assert_eq!(methods, ["GET 1", "OTHER 2"]);
}

#[test]
fn a_tally_put_back_is_merged_not_lost() {
    let r = Refusals::new(1);
    r.record(ip("192.0.2.1"), "GET", "/a", 401, Some("HK1109"));
    r.record(ip("192.0.2.2"), "GET", "/a", 401, Some("HK1109"));
    let taken = r.take();
    // Meanwhile another refusal from the first source.
    r.record(ip("192.0.2.1"), "GET", "/a", 401, Some("HK1109"));
    for (w, t) in taken {
        r.put_back(w, t);
    }
    let lines = r.take();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].0.to_string(), lines[0].1.count),
        ("192.0.2.1".into(), 2)
    );
    assert_eq!(lines[0].1.requests[0].count, 2);
    assert_eq!((lines[1].0, lines[1].1.count), (Whose::Others, 1));
}
