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
}

#[test]
fn bare_name_selects_all_versions() {
    let s = KeySelector::parse("db").unwrap();
    assert!(s.matches_label("db"));
    assert!(s.matches_label("db@v2"));
    assert!(!s.matches_label("dbx"));
    let s = KeySelector::parse("db@v1").unwrap();
    assert!(s.matches_label("db"));
    assert!(!s.matches_label("db@v2"));
    let s = KeySelector::parse("db@v2").unwrap();
    assert!(s.matches_label("db@v2"));
    assert!(!s.matches_label("db"));
    assert!(!s.matches_label("db@v3"));
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
