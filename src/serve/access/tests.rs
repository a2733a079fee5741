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
/// sources below the limit are dropped first, a source without room is
/// counted by its network (/24), and past the networks' room in one shared
/// window that refuses only wrong credentials; finished windows make room
/// again.
#[test]
fn a_full_map_counts_by_network_and_unthrottles_no_one() {
    use std::time::{Duration, Instant};
    let a = Access::with_cap(&[], 2, 2);
    let ip = |net: u8, n: u8| IpAddr::from([10, net, 0, n]);
    let fail = |from: IpAddr, at: Instant| {
        a.note_failure_at(from, at);
        a.note_failure_at(from, at);
    };
    let refused =
        |from: IpAddr, valid: bool, at: Instant| match a.check_throttle_at(from, valid, at) {
            Ok(()) => false,
            Err(ServeError::Throttled { .. }) => true,
            Err(e) => panic!("{e:?}"),
        };
    let now = Instant::now();
    // Two sources below the limit fill the map; a third is given room by
    // dropping them (their single failures are forgotten, no throttle is).
    a.note_failure_at(ip(1, 1), now);
    a.note_failure_at(ip(2, 1), now);
    a.note_failure_at(ip(3, 1), now);
    assert_eq!(a.failures.lock().unwrap().by_source.len(), 1);
    // Two sources throttled: the map is full of throttled sources.
    let now = now + Duration::from_secs(2);
    fail(ip(1, 1), now);
    fail(ip(3, 1), now);
    assert!(refused(ip(1, 1), true, now) && refused(ip(3, 1), true, now));
    // A third source has no room of its own: it is counted by its /24,
    // which throttles its neighbours, not other networks.
    fail(ip(4, 1), now);
    assert!(refused(ip(4, 1), true, now));
    assert!(refused(ip(4, 2), true, now), "its /24 is throttled");
    assert!(!refused(ip(5, 1), false, now), "another network is not");
    // Two more networks: the second fills the shared window, which refuses
    // wrong credentials from any new network, never valid ones.
    fail(ip(5, 1), now);
    fail(ip(6, 1), now);
    assert!(refused(ip(5, 1), true, now), "its own network's window");
    assert!(refused(ip(7, 1), false, now), "a guess from a new network");
    assert!(!refused(ip(7, 1), true, now), "a client from a new network");
    for from in [ip(1, 1), ip(3, 1), ip(4, 1)] {
        assert!(refused(from, true, now), "{from} forgotten");
    }
    // A minute later the old windows are swept and new sources get theirs.
    let later = now + Duration::from_secs(61);
    assert!(!refused(ip(1, 1), false, later));
    a.note_failure_at(ip(8, 1), later);
    assert!(!refused(ip(8, 1), false, later));
    a.note_failure_at(ip(8, 1), later);
    assert!(refused(ip(8, 1), true, later));
    assert!(!refused(ip(9, 1), false, later));
    let map = a.failures.lock().unwrap();
    assert!(map.by_source.len() <= 2, "the cap holds");
    assert!(map.by_network.len() <= 2, "the cap holds");
}

/// Whatever fills the maps, a request with a valid key is allowed (and a
/// wrong key from the same new source is 429).
#[test]
fn a_full_map_never_refuses_a_valid_key() {
    let a = Access::with_cap(
        &[client("web", "k-web", &[Capability::ExportKeyReader])],
        2,
        1,
    );
    let bad = headers("authorization", "Bearer nope");
    let ok = headers("authorization", "Bearer k-web");
    let try_as = |from: IpAddr, h: &HeaderMap| {
        a.authorize(from, h, KeyHeader::Bearer, Capability::ExportKeyReader)
    };
    // Sources in many networks fail until every map and the shared
    // window are spent.
    for net in 1..=6u8 {
        for _ in 0..3 {
            assert!(try_as(IpAddr::from([10, net, 0, 1]), &bad).is_err());
        }
    }
    let fresh = IpAddr::from([192, 0, 2, 7]);
    let e = try_as(fresh, &bad).unwrap_err();
    assert!(matches!(e, ServeError::Throttled { .. }), "{e:?}");
    let client = try_as(fresh, &ok).expect("a valid key from a new source");
    assert_eq!(client.name, "web");
    let v6: IpAddr = "2001:db8:77::1".parse().unwrap();
    assert_eq!(try_as(v6, &ok).unwrap().name, "web");
}
