//! Unit tests of access: keys found by digest, capabilities, the header
//! each family reads, and the failed-login window.

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::{Access, Capability, KeyHeader};
use crate::error::ServeError;
use crate::serve::config::ClientConfig;

fn client(name: &str, key: &str, caps: &[Capability]) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        api_key_sha256: Sha256::digest(key.as_bytes()).into(),
        access_key: Some(format!("AK-{name}")),
        secret_key: None,
        capabilities: caps.iter().copied().collect::<BTreeSet<_>>(),
    }
}

fn access(per_minute: u32) -> Access {
    Access::new(
        &[
            client("web", "k-web", &[Capability::ExportKeyReader]),
            client(
                "ops",
                "k-ops",
                &[Capability::KeyAdmin, Capability::KeyReader],
            ),
        ],
        per_minute,
    )
}

fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).unwrap());
    h
}

const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[test]
fn keys_find_their_client_and_nothing_else() {
    let a = access(10);
    assert_eq!(a.by_api_key("k-web").unwrap().name, "web");
    assert_eq!(a.by_api_key("k-ops").unwrap().name, "ops");
    assert!(a.by_api_key("k-we").is_none());
    assert!(a.by_api_key("").is_none());
    assert_eq!(a.by_access_key("AK-ops").unwrap().name, "ops");
    assert!(a.by_access_key("AK-op").is_none());
}

#[test]
fn each_family_reads_its_own_header() {
    let bearer = headers("authorization", "Bearer k-web");
    assert_eq!(KeyHeader::Bearer.find(&bearer), Some("k-web"));
    assert_eq!(KeyHeader::Header("x-http-token").find(&bearer), None);
    assert_eq!(KeyHeader::Scheme("Session").find(&bearer), None);
    let lower = headers("authorization", "bearer   k-web ");
    assert_eq!(KeyHeader::Bearer.find(&lower), Some("k-web"));
    assert_eq!(
        KeyHeader::Bearer.find(&headers("authorization", "Bearer ")),
        None
    );
    let token = headers("x-http-token", "k-ops");
    assert_eq!(
        KeyHeader::Header("x-http-token").find(&token),
        Some("k-ops")
    );
    let session = headers("authorization", "Session k-ops");
    assert_eq!(KeyHeader::Scheme("Session").find(&session), Some("k-ops"));
}

#[test]
fn refusals_are_401_403_then_429() {
    let a = access(2);
    let ok = headers("authorization", "Bearer k-web");
    assert!(a
        .authorize(HERE, &ok, KeyHeader::Bearer, Capability::ExportKeyReader)
        .is_ok());
    // A known client without the capability: 403, not a failed login.
    for _ in 0..3 {
        let e = a
            .authorize(HERE, &ok, KeyHeader::Bearer, Capability::KeyAdmin)
            .unwrap_err();
        assert!(matches!(e, ServeError::Forbidden { ref client, .. } if client == "web"));
    }
    let bad = headers("authorization", "Bearer nope");
    for _ in 0..2 {
        let e = a
            .authorize(HERE, &bad, KeyHeader::Bearer, Capability::ExportKeyReader)
            .unwrap_err();
        assert!(matches!(e, ServeError::Unauthenticated { .. }));
    }
    let e = a
        .authorize(HERE, &ok, KeyHeader::Bearer, Capability::ExportKeyReader)
        .unwrap_err();
    assert!(
        matches!(e, ServeError::Throttled { retry_after, .. } if (1..=60).contains(&retry_after))
    );
    // Another address is not held back.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert!(a
        .authorize(other, &ok, KeyHeader::Bearer, Capability::ExportKeyReader)
        .is_ok());
}

#[test]
fn capability_names_are_the_configurations() {
    for c in Capability::ALL {
        assert_eq!(c.name().parse::<Capability>(), Ok(c));
    }
    assert!("CapAll".parse::<Capability>().is_err());
}

#[test]
fn ipv6_sources_are_counted_by_their_64() {
    use super::SourceBucket;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let a = access(2);
    let bad = headers("authorization", "Bearer nope");
    let ok = headers("authorization", "Bearer k-web");
    // Two addresses of one /64 share a count: the second is throttled.
    for from in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"] {
        let e = a
            .authorize(
                ip(from),
                &bad,
                KeyHeader::Bearer,
                Capability::ExportKeyReader,
            )
            .unwrap_err();
        assert!(matches!(e, ServeError::Unauthenticated { .. }));
    }
    let e = a
        .authorize(
            ip("2001:db8:1:2:abcd::1"),
            &ok,
            KeyHeader::Bearer,
            Capability::ExportKeyReader,
        )
        .unwrap_err();
    assert!(
        matches!(e, ServeError::Throttled { ref source_addr, .. } if source_addr == "2001:db8:1:2::/64"),
        "{e:?}"
    );
    // The next /64 is another source.
    assert!(a
        .authorize(
            ip("2001:db8:1:3::1"),
            &ok,
            KeyHeader::Bearer,
            Capability::ExportKeyReader
        )
        .is_ok());
    // An IPv4-mapped address is its IPv4 address; IPv4 is not bucketed.
    assert_eq!(
        SourceBucket::of(ip("::ffff:192.0.2.7")),
        SourceBucket::of(ip("192.0.2.7"))
    );
    assert_ne!(
        SourceBucket::of(ip("192.0.2.7")),
        SourceBucket::of(ip("192.0.2.8"))
    );
    assert_eq!(SourceBucket::of(ip("192.0.2.7")).to_string(), "192.0.2.7");
    assert_eq!(SourceBucket::of(ip("::1")).to_string(), "::/64");
}

/// A full map never forgets a throttled source before its minute ends:
/// sources without room share one window, throttled together; finished
/// windows make room again.
#[test]
fn a_full_map_shares_one_window_and_unthrottles_no_one() {
    use std::time::{Duration, Instant};
    let a = Access::with_cap(&[], 2, 2);
    let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
    let now = Instant::now();
    // Two sources throttled: the map is full.
    for n in [1, 2] {
        a.note_failure_at(ip(n), now);
        a.note_failure_at(ip(n), now);
        assert!(a.check_throttle_at(ip(n), now).is_err());
    }
    // A third source has no room: it is counted in the shared window.
    assert!(a.check_throttle_at(ip(3), now).is_ok());
    a.note_failure_at(ip(3), now);
    a.note_failure_at(ip(4), now);
    // The shared window is spent: every source without its own is refused,
    // and the first two stay throttled.
    for n in [3, 4, 5] {
        let e = a.check_throttle_at(ip(n), now).unwrap_err();
        assert!(matches!(e, ServeError::Throttled { .. }), "{n}: {e:?}");
    }
    for n in [1, 2] {
        assert!(a.check_throttle_at(ip(n), now).is_err(), "{n} forgotten");
    }
    // A minute later the old windows are swept and new sources get theirs.
    let later = now + Duration::from_secs(61);
    assert!(a.check_throttle_at(ip(1), later).is_ok());
    a.note_failure_at(ip(6), later);
    assert!(a.check_throttle_at(ip(6), later).is_ok());
    a.note_failure_at(ip(6), later);
    assert!(a.check_throttle_at(ip(6), later).is_err());
    assert!(a.check_throttle_at(ip(7), later).is_ok(), "{:?}", 7);
    let map = a.failures.lock().unwrap();
    assert!(map.by_source.len() <= 2, "the cap holds");
}
