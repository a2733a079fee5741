use super::protection::{argon2_key, ARGON2_MAX_M_KIB, ARGON2_MAX_P, ARGON2_MAX_T};
use super::write::now_rfc3339;
use super::*;
use crate::formats::bundle::{b64, KdfParams};

#[test]
fn dates_are_rfc3339_utc() {
    let d = now_rfc3339();
    assert_eq!(d.len(), 20);
    assert!(d.ends_with('Z'));
    assert_eq!(&d[4..5], "-");
    assert!(d.as_str() > "2024-01-01T00:00:00Z");
}

#[test]
fn argon2_parameters_from_a_header_are_bounded() {
    let pw = SecretString::from("abcdef".to_string());
    let params = KdfParams {
        algorithm: "argon2id".into(),
        version: 0x13,
        m_kib: ARGON2_MAX_M_KIB + 1,
        t: 1,
        p: 1,
        salt: b64(&[0; 16]),
    };
    assert_eq!(argon2_key(&pw, &params).unwrap_err().code(), "HK1302");
    let scrypt = KdfParams {
        algorithm: "scrypt".into(),
        ..params
    };
    assert_eq!(argon2_key(&pw, &scrypt).unwrap_err().code(), "HK1303");
}

#[test]
fn argon2_matches_the_reference_crate_output() {
    let pw = SecretString::from("correct horse".to_string());
    let params = KdfParams {
        algorithm: "argon2id".into(),
        version: 0x13,
        m_kib: 64,
        t: 1,
        p: 1,
        salt: b64(b"saltsaltsaltsalt"),
    };
    let a = argon2_key(&pw, &params).unwrap();
    let b = argon2_key(&pw, &params).unwrap();
    assert_eq!(a.len(), 32);
    assert_eq!(*a, *b, "deterministic for the same salt");
    let other = KdfParams {
        salt: b64(b"SALTSALTSALTSALT"),
        ..params
    };
    assert_ne!(*argon2_key(&pw, &other).unwrap(), *a);
}

/// Issue #11: the bounds in docs/FORMAT.md and docs/SECURITY.md once said
/// 4 GiB/64/64 while the code enforced 1 GiB/16/16.
#[test]
fn argon2_bounds_in_the_docs_match_the_code() {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let format = squash(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/FORMAT.md"
    )));
    let security = squash(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/SECURITY.md"
    )));
    let m = ARGON2_MAX_M_KIB.to_string();
    let mut grouped = String::new();
    for (i, c) in m.chars().enumerate() {
        if i > 0 && (m.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    assert_eq!(
        ARGON2_MAX_M_KIB % (1024 * 1024),
        0,
        "the docs say whole GiB"
    );
    let gib = ARGON2_MAX_M_KIB / (1024 * 1024);
    for row in [
        format!("| `m_kib` | at most {grouped} ({gib} GiB) |"),
        format!("| `t` | at most {ARGON2_MAX_T} |"),
        format!("| `p` | at most {ARGON2_MAX_P} |"),
    ] {
        assert!(format.contains(&row), "docs/FORMAT.md lacks: {row}");
    }
    let prose = format!("up to {gib} GiB of memory and {ARGON2_MAX_T} Argon2 passes");
    assert!(security.contains(&prose), "docs/SECURITY.md lacks: {prose}");
}
