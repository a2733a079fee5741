use super::*;

#[test]
fn versions_from_labels() {
    assert_eq!(split_version("db"), ("db", 1));
    assert_eq!(split_version("db@v2"), ("db", 2));
    assert_eq!(split_version("db@v10"), ("db", 10));
    assert_eq!(split_version("db@v1"), ("db@v1", 1));
    assert_eq!(split_version("db@v02"), ("db@v02", 1));
    assert_eq!(split_version("db@vx"), ("db@vx", 1));
    assert_eq!(split_version("@v3"), ("@v3", 1));
    assert_eq!(versioned_label("db", 1), "db");
    assert_eq!(versioned_label("db", 3), "db@v3");
}

#[test]
fn reserved_suffix_is_refused_as_a_name() {
    assert_eq!(validate_name("x@v2").unwrap_err().code(), "HK1301");
    assert_eq!(validate_name("x@v1").unwrap_err().code(), "HK1301");
    assert!(validate_name("x@vault").is_ok());
    assert_eq!(validate_name("").unwrap_err().code(), "HK1301");
    assert_eq!(
        validate_name("hsmkey-import-0d0466b0-e727-4d9c-b35d-f84bb474a37f")
            .unwrap_err()
            .code(),
        "HK1301"
    );
    assert!(validate_name("hsmkey-imports").is_ok());
}

fn vid(name: &str, version: u32) -> Vec<u8> {
    crate::formats::id::version_id(name, version, &[9; 8])
}

#[test]
fn bare_name_selects_all_versions() {
    let s = KeySelector::parse("db").unwrap();
    assert!(s.matches("db", b"1"));
    assert!(s.matches("db@v2", &vid("db", 2)));
    assert!(!s.matches("dbx", b"1"));
    let s = KeySelector::parse("db@v1").unwrap();
    assert!(s.matches("db", b"1"));
    assert!(!s.matches("db@v2", &vid("db", 2)));
    let s = KeySelector::parse("db@v2").unwrap();
    assert!(s.matches("db@v2", &vid("db", 2)));
    assert!(!s.matches("db", b"1"));
    assert!(!s.matches("db@v3", &vid("db", 3)));
}

#[test]
fn a_label_that_only_looks_like_a_version_is_its_own_key() {
    // Another tool's key labelled db@v2 (any id but a version id of db, 2).
    assert_eq!(name_and_version("db@v2", b"\x01\x02"), ("db@v2", 1));
    assert_eq!(name_and_version("db@v2", &vid("db", 3)), ("db@v2", 1));
    assert_eq!(name_and_version("db@v2", &vid("dc", 2)), ("db@v2", 1));
    assert_eq!(name_and_version("db@v2", &vid("db", 2)), ("db", 2));
    assert_eq!(name_and_version("db", &vid("db", 2)), ("db", 1));
    let s = KeySelector::parse("db").unwrap();
    assert!(!s.matches("db@v2", b"\x01\x02"));
    // Named by its whole label, it is found.
    assert!(KeySelector::parse("db@v2")
        .unwrap()
        .matches("db@v2", b"\x01\x02"));
}

#[test]
fn a_uri_object_is_the_label_exactly() {
    let s = KeySelector::parse("pkcs11:object=db").unwrap();
    assert!(s.matches("db", b"1"));
    assert!(!s.matches("db@v2", &vid("db", 2)));
    let s = KeySelector::parse("pkcs11:object=db@v1").unwrap();
    assert!(s.matches("db@v1", b"1"));
    assert!(!s.matches("db", b"1"));
    let s = KeySelector::parse("pkcs11:object=;id=").unwrap();
    assert_eq!(s.label.as_deref(), Some(""));
    assert_eq!(s.id.as_deref(), Some(&[][..]));
    assert!(s.matches("", b""));
    assert!(!s.matches("x", b""));
}

#[test]
fn usage_parsing_and_rules() {
    let u: Usage = "wrap, unwrap".parse().unwrap();
    assert!(u.wrap && u.unwrap && !u.encrypt);
    assert_eq!("fly".parse::<Usage>().unwrap_err().code(), "HK1301");
    assert_eq!("".parse::<Usage>().unwrap_err().code(), "HK1301");
    let spec = GenerateSpec {
        name: "k".into(),
        id: vec![],
        spec: KeySpec::EcP256,
        usage: Some("encrypt".parse().unwrap()),
        policy: BackupPolicy::None,
        kek: false,
        trusted: false,
        version: 1,
    };
    assert_eq!(effective_usage(&spec).unwrap_err().code(), "HK1301");
    let kek = GenerateSpec {
        spec: KeySpec::Aes128,
        usage: None,
        kek: true,
        ..spec
    };
    assert_eq!(effective_usage(&kek).unwrap_err().code(), "HK1007");
}

#[test]
fn key_specs_round_trip_their_names() {
    for k in KeySpec::ALL {
        assert_eq!(k.name().parse::<KeySpec>().unwrap(), k);
    }
    assert_eq!("des".parse::<KeySpec>().unwrap_err().code(), "HK1301");
}

#[test]
fn audit_labels_are_refused_as_names() {
    for name in ["hsmkey-audit-mac", "hsmkey-audit-head", "hsmkey-audit-x"] {
        assert_eq!(validate_name(name).unwrap_err().code(), "HK1301", "{name}");
    }
    assert!(validate_name("hsmkey-auditor").is_ok());
}
