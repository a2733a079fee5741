//! Unit tests of the helpers every route family shares.

use super::body_error;

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Parameters {
    password: String,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Backup {
    parameters: Parameters,
}

#[test]
fn a_bad_body_is_described_without_the_values_it_held() {
    for body in [
        r#"{"parameters": "S3cret-pass"}"#,
        r#"{"parameters": {"password": ["S3cret-pass"]}}"#,
    ] {
        let e = serde_json::from_str::<Backup>(body).expect_err("must not parse");
        let message = body_error(&e);
        assert!(!message.contains("S3cret"), "{message}");
        assert!(message.starts_with("invalid type: "), "{message}");
        assert!(message.contains("expected"), "{message}");
    }
    // Numbers are values too; a cut body quotes nothing and is kept whole.
    let e = serde_json::from_str::<Backup>(r#"{"parameters": {"password": 74219}}"#)
        .expect_err("a number");
    assert!(!body_error(&e).contains("74219"), "{}", body_error(&e));
    let e = serde_json::from_str::<Backup>(r#"{"parameters": {"password": "x""#).expect_err("eof");
    assert!(e.is_eof());
    assert_eq!(body_error(&e), e.to_string());
}

#[test]
fn the_client_address_comes_from_every_forwarded_line_behind_a_trusted_proxy() {
    use super::state::client_address;
    use axum::http::{HeaderMap, HeaderValue};
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    let proxy = ip("10.0.0.1");
    let mut h = HeaderMap::new();
    // The client's own (forged) line first, the proxy's line after it.
    h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.4"));
    assert_eq!(client_address(proxy, &h, &[proxy]), ip("198.51.100.4"));
    // Not from a proxy: the header is ignored.
    assert_eq!(
        client_address(ip("192.0.2.1"), &h, &[proxy]),
        ip("192.0.2.1")
    );
    // A hop with a port.
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("198.51.100.4:5123"),
    );
    assert_eq!(client_address(proxy, &h, &[proxy]), ip("198.51.100.4"));
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("[2001:db8::7]:443, 10.0.0.1"),
    );
    assert_eq!(client_address(proxy, &h, &[proxy]), ip("2001:db8::7"));
}
