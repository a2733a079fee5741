//! The VSP family's own rules: which `Accept` headers the backup answers,
//! and the 412 of what the token cannot do.

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use super::{accepts_octets, status};
use crate::error::Error;

fn accept(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "accept",
        HeaderValue::from_str(value).expect("a header value"),
    );
    h
}

#[test]
fn the_backup_answers_octet_stream_or_anything() {
    assert!(accepts_octets(&HeaderMap::new()));
    assert!(accepts_octets(&accept("application/octet-stream")));
    assert!(accepts_octets(&accept("Application/Octet-Stream")));
    assert!(accepts_octets(&accept("*/*")));
    assert!(accepts_octets(&accept("text/html, application/*;q=0.8")));
    assert!(accepts_octets(&accept(
        "application/json, application/octet-stream;q=0.1"
    )));
    assert!(!accepts_octets(&accept("application/json")));
    assert!(!accepts_octets(&accept("text/plain")));
}

#[test]
fn what_the_token_cannot_do_is_412() {
    let not_capable = Error::NotCapable {
        capability: "AES key wrap".into(),
        detail: String::new(),
        alternatives: String::new(),
    };
    assert_eq!(status(&not_capable), StatusCode::PRECONDITION_FAILED);
    let policy = Error::PolicyRefused {
        key: "k".into(),
        reason: "r".into(),
    };
    assert_eq!(status(&policy), StatusCode::PRECONDITION_FAILED);
    let bad = Error::BadPassword { reason: "r".into() };
    assert_eq!(status(&bad), StatusCode::BAD_REQUEST);
    let missing = Error::KeyNotFound { key: "k".into() };
    assert_eq!(status(&missing), StatusCode::NOT_FOUND);
}
