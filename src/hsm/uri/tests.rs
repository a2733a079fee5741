use super::*;
use secrecy::ExposeSecret;

fn parse(s: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn err(s: &str) -> UriError {
    match Pkcs11Uri::parse(s) {
        Ok(u) => panic!("{s:?} should be rejected, parsed as {u:?}"),
        Err(e) => e,
    }
}

/// Pkcs11Uri has no PartialEq (SecretString has none); Debug covers every
/// field and redacts the PIN, which the round trip drops anyway.
fn same(a: &Pkcs11Uri, b: &Pkcs11Uri) -> bool {
    let strip = |u: &Pkcs11Uri| Pkcs11Uri {
        pin_value: None,
        ..u.clone()
    };
    format!("{:?}", strip(a)) == format!("{:?}", strip(b))
}

fn assert_round_trip(u: &Pkcs11Uri) {
    let text = u.to_string();
    let back = Pkcs11Uri::parse(&text)
        .unwrap_or_else(|e| panic!("display output {text:?} does not parse: {e}"));
    assert!(
        same(u, &back),
        "round trip changed {u:?} into {back:?} via {text:?}"
    );
}

#[test]
fn bare_scheme_is_valid_and_constrains_nothing() {
    let u = parse("pkcs11:");
    assert!(same(&u, &Pkcs11Uri::default()));
    assert!(!u.has_token_attributes());
    assert!(!u.has_object_attributes());
    assert_eq!(u.to_string(), "pkcs11:");
    // An empty query is as harmless as an empty path.
    assert!(same(&parse("pkcs11:?"), &Pkcs11Uri::default()));
}

#[test]
fn scheme_is_case_insensitive() {
    assert_eq!(parse("PKCS11:token=a").token.as_deref(), Some("a"));
    assert_eq!(parse("Pkcs11:token=b").token.as_deref(), Some("b"));
    assert_eq!(parse("PKCS11:token=a").to_string(), "pkcs11:token=a");
}

#[test]
fn missing_scheme_is_rejected() {
    for s in [
        "pkcs12:token=a",
        "object=x",
        "",
        "pkcs11",
        "pkcs11token=a",
        " pkcs11:",
    ] {
        assert_eq!(err(s), UriError::MissingScheme, "input {s:?}");
    }
}

#[test]
fn looks_like_uri_checks_only_the_scheme() {
    assert!(Pkcs11Uri::looks_like_uri("pkcs11:"));
    assert!(Pkcs11Uri::looks_like_uri("PKCS11:object=k"));
    assert!(Pkcs11Uri::looks_like_uri("pkcs11:foo=bar"));
    assert!(!Pkcs11Uri::looks_like_uri("my-key"));
    assert!(!Pkcs11Uri::looks_like_uri("pkcs11"));
    assert!(!Pkcs11Uri::looks_like_uri("file:/tmp/x"));
    // A multibyte char straddling byte 7 must not panic.
    assert!(!Pkcs11Uri::looks_like_uri("pkcs1€:"));
}

#[test]
fn decodes_space_slash_and_semicolon() {
    let u = parse("pkcs11:token=My%20Token%2Fprod%3Bv2;object=a%25b%3Fc%23d");
    assert_eq!(u.token.as_deref(), Some("My Token/prod;v2"));
    assert_eq!(u.object.as_deref(), Some("a%b?c#d"));
}

#[test]
fn encodes_space_slash_semicolon_and_friends() {
    let u = Pkcs11Uri {
        token: Some("My Token/prod;v2".into()),
        object: Some("a%b?c#d".into()),
        ..Default::default()
    };
    assert_eq!(
        u.to_string(),
        "pkcs11:token=My%20Token%2Fprod%3Bv2;object=a%25b%3Fc%23d"
    );
    assert_round_trip(&u);
}

#[test]
fn pchar_sub_delims_stay_readable_in_the_path() {
    let label = "a-b.c_d~e!f$g'h(i)j*k+l,m=n:o@p&q";
    let u = Pkcs11Uri {
        object: Some(label.into()),
        ..Default::default()
    };
    assert_eq!(u.to_string(), format!("pkcs11:object={label}"));
    assert_round_trip(&u);
}

#[test]
fn non_ascii_labels_both_ways() {
    let u = parse("pkcs11:token=Cl%C3%A9%20%E2%82%AC");
    assert_eq!(u.token.as_deref(), Some("Clé €"));
    assert_eq!(u.to_string(), "pkcs11:token=Cl%C3%A9%20%E2%82%AC");
    // Hand-typed URIs often carry raw UTF-8; accept it, print it encoded.
    let raw = parse("pkcs11:token=Clé €");
    assert_eq!(raw.token.as_deref(), Some("Clé €"));
    assert_eq!(raw.to_string(), "pkcs11:token=Cl%C3%A9%20%E2%82%AC");
}

#[test]
fn text_attribute_must_be_utf8() {
    let e = err("pkcs11:object=%FF%FE");
    assert!(
        matches!(&e, UriError::BadValue { attribute, .. } if attribute == "object"),
        "{e:?}"
    );
}

#[test]
fn id_is_binary() {
    let u = parse("pkcs11:id=%01%02");
    assert_eq!(u.id, Some(vec![1, 2]));
    assert_eq!(u.to_string(), "pkcs11:id=%01%02");
    // Not UTF-8, and must still be accepted.
    assert_eq!(parse("pkcs11:id=%FF%00%fe").id, Some(vec![0xff, 0, 0xfe]));
}

#[test]
fn id_accepts_lowercase_hex_and_prints_uppercase() {
    let u = parse("pkcs11:id=%0a%bC");
    assert_eq!(u.id, Some(vec![0x0a, 0xbc]));
    assert_eq!(u.to_string(), "pkcs11:id=%0A%BC");
}

#[test]
fn id_with_raw_ascii_chars() {
    assert_eq!(parse("pkcs11:id=ab").id, Some(b"ab".to_vec()));
    let mixed = parse("pkcs11:id=a%00b");
    assert_eq!(mixed.id, Some(b"a\0b".to_vec()));
    assert_eq!(mixed.to_string(), "pkcs11:id=%61%00%62");
}

#[test]
fn all_five_types_and_a_bad_one() {
    let cases = [
        ("secret-key", ObjectType::SecretKey),
        ("private", ObjectType::PrivateKey),
        ("public", ObjectType::PublicKey),
        ("cert", ObjectType::Cert),
        ("data", ObjectType::Data),
    ];
    for (text, ty) in cases {
        let u = parse(&format!("pkcs11:type={text}"));
        assert_eq!(u.object_type, Some(ty));
        assert_eq!(ty.as_str(), text);
        assert_eq!(text.parse::<ObjectType>(), Ok(ty));
        assert_eq!(u.to_string(), format!("pkcs11:type={text}"));
    }
    assert_eq!(
        parse("pkcs11:type=private-key").object_type,
        Some(ObjectType::PrivateKey)
    );
    assert_eq!(
        parse("pkcs11:type=public-key").to_string(),
        "pkcs11:type=public"
    );
    for bad in ["privatekey", "key", "Cert", "secret%20key"] {
        let e = err(&format!("pkcs11:type={bad}"));
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "type"),
            "type={bad}: {e:?}"
        );
    }
    // Percent-encoding applies to type values as well.
    assert_eq!(
        parse("pkcs11:type=%63ert").object_type,
        Some(ObjectType::Cert)
    );
}

#[test]
fn empty_value_is_rejected() {
    for (s, attr) in [
        ("pkcs11:token=", "token"),
        ("pkcs11:serial=;object=a", "serial"),
        ("pkcs11:?pin-source=", "pin-source"),
        ("pkcs11:x-foo=", "x-foo"),
    ] {
        assert_eq!(
            err(s),
            UriError::EmptyAttribute {
                attribute: attr.into()
            },
            "input {s:?}"
        );
    }
}

#[test]
fn empty_object_and_id_name_an_empty_label_and_id() {
    // RFC 7512 allows empty values: what hsmkey prints for a key without a
    // label or an id must select it again.
    let u = parse("pkcs11:token=t;object=;id=;type=secret-key");
    assert_eq!(u.object.as_deref(), Some(""));
    assert_eq!(u.id.as_deref(), Some(&[][..]));
    assert!(u.has_object_attributes());
    assert_eq!(u.to_string(), "pkcs11:token=t;object=;id=;type=secret-key");
    assert_round_trip(&u);
    assert_eq!(
        err("pkcs11:object=;object=a"),
        UriError::DuplicateAttribute {
            attribute: "object".into()
        }
    );
    assert_eq!(
        err("pkcs11:id"),
        UriError::EmptyAttribute {
            attribute: "id".into()
        }
    );
}

#[test]
fn attribute_without_equals_sign_is_empty() {
    assert_eq!(
        err("pkcs11:object"),
        UriError::EmptyAttribute {
            attribute: "object".into()
        }
    );
}

#[test]
fn empty_components_are_rejected() {
    let empty = UriError::EmptyAttribute {
        attribute: String::new(),
    };
    for s in [
        "pkcs11:;object=a",
        "pkcs11:object=a;",
        "pkcs11:token=t;;object=a",
        "pkcs11:=a",
        "pkcs11:token=t?&pin-source=x",
        "pkcs11:token=t?pin-source=x&",
    ] {
        assert_eq!(err(s), empty, "input {s:?}");
    }
}

#[test]
fn pin_source_with_file_path() {
    let u = parse("pkcs11:token=t?pin-source=file:/etc/hsm/pin.txt");
    assert_eq!(u.pin_source.as_deref(), Some("file:/etc/hsm/pin.txt"));
    assert_eq!(
        u.to_string(),
        "pkcs11:token=t?pin-source=file:%2Fetc%2Fhsm%2Fpin.txt"
    );
    assert_round_trip(&u);
}

#[test]
fn module_path_query_attribute() {
    let u = parse("pkcs11:?module-path=/usr/lib/softhsm/libsofthsm2.so");
    assert_eq!(
        u.module_path.as_deref(),
        Some("/usr/lib/softhsm/libsofthsm2.so")
    );
    // Query attributes say how to reach a token, not which one.
    assert!(!u.has_token_attributes());
    assert_round_trip(&u);
    let named = parse("pkcs11:?module-name=softhsm2&module-path=%2Fopt%2Fp11.so");
    assert_eq!(named.module_name.as_deref(), Some("softhsm2"));
    assert_eq!(named.module_path.as_deref(), Some("/opt/p11.so"));
}

#[test]
fn pin_value_is_parsed_but_never_displayed() {
    let u = parse("pkcs11:token=t;object=k?pin-value=12%2034&module-name=m");
    assert_eq!(
        u.pin_value.as_ref().map(|p| p.expose_secret().to_string()),
        Some("12 34".to_string())
    );
    let shown = u.to_string();
    assert_eq!(shown, "pkcs11:token=t;object=k?module-name=m");
    assert!(!format!("{u:?}").contains("12 34"));
    // A clone keeps the PIN: callers clone URIs before using them.
    let cloned = u.clone();
    assert_eq!(cloned.pin_value.unwrap().expose_secret(), "12 34");
}

#[test]
fn pin_value_errors_do_not_echo_the_pin() {
    let e = err("pkcs11:?pin-value=hunter2%FF");
    assert!(
        matches!(&e, UriError::BadValue { attribute, .. } if attribute == "pin-value"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("hunter2"));
    let e = err("pkcs11:?pin-value=hunter2%Z1");
    assert_eq!(
        e,
        UriError::BadPercentEncoding {
            attribute: "pin-value".into()
        }
    );
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn pin_value_and_pin_source_together_are_refused() {
    let e = err("pkcs11:?pin-source=file:/p&pin-value=1234");
    assert!(
        matches!(&e, UriError::BadValue { attribute, .. } if attribute == "pin-value"),
        "{e:?}"
    );
}

#[test]
fn bad_percent_encoding_is_rejected() {
    for (s, attr) in [
        ("pkcs11:object=%zz", "object"),
        ("pkcs11:object=ab%4", "object"),
        ("pkcs11:object=ab%", "object"),
        ("pkcs11:token=%4g", "token"),
        ("pkcs11:id=%0", "id"),
        ("pkcs11:?module-path=%%41", "module-path"),
    ] {
        assert_eq!(
            err(s),
            UriError::BadPercentEncoding {
                attribute: attr.into()
            },
            "input {s:?}"
        );
    }
}

#[test]
fn unknown_attributes_are_rejected() {
    assert_eq!(
        err("pkcs11:foo=bar"),
        UriError::UnknownPathAttribute {
            attribute: "foo".into()
        }
    );
    assert_eq!(
        err("pkcs11:foo"),
        UriError::UnknownPathAttribute {
            attribute: "foo".into()
        }
    );
    // Names are case-sensitive, and query names are not path names.
    assert_eq!(
        err("pkcs11:Token=a"),
        UriError::UnknownPathAttribute {
            attribute: "Token".into()
        }
    );
    assert_eq!(
        err("pkcs11:pin-value=1234"),
        UriError::UnknownPathAttribute {
            attribute: "pin-value".into()
        }
    );
    assert_eq!(
        err("pkcs11:?foo=bar"),
        UriError::UnknownQueryAttribute {
            attribute: "foo".into()
        }
    );
    assert_eq!(
        err("pkcs11:?token=a"),
        UriError::UnknownQueryAttribute {
            attribute: "token".into()
        }
    );
    // "x-" alone or with characters outside the RFC's set is not a vendor name.
    for bad in ["x-", "x-a.b", "X-foo"] {
        assert_eq!(
            err(&format!("pkcs11:{bad}=1")),
            UriError::UnknownPathAttribute {
                attribute: bad.into()
            }
        );
    }
}

#[test]
fn duplicates_are_rejected() {
    for (s, attr) in [
        ("pkcs11:object=a;object=b", "object"),
        ("pkcs11:object=a;object=a", "object"),
        ("pkcs11:id=%01;token=t;id=%02", "id"),
        ("pkcs11:?module-path=a&module-path=b", "module-path"),
        ("pkcs11:?pin-value=1&pin-value=2", "pin-value"),
        ("pkcs11:x-a=1;x-a=2", "x-a"),
        ("pkcs11:x-a=1?x-a=2", "x-a"),
    ] {
        assert_eq!(
            err(s),
            UriError::DuplicateAttribute {
                attribute: attr.into()
            },
            "input {s:?}"
        );
    }
}

#[test]
fn slot_id_must_be_a_decimal_u64() {
    assert_eq!(parse("pkcs11:slot-id=0").slot_id, Some(0));
    assert_eq!(
        parse("pkcs11:slot-id=18446744073709551615").slot_id,
        Some(u64::MAX)
    );
    for bad in ["abc", "+5", "-1", "0x10", "1 ", "18446744073709551616"] {
        let e = err(&format!("pkcs11:slot-id={bad}"));
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "slot-id"),
            "slot-id={bad}: {e:?}"
        );
    }
}

#[test]
fn library_version_is_m_or_m_dot_n() {
    assert_eq!(
        parse("pkcs11:library-version=2").library_version,
        Some((2, 0))
    );
    assert_eq!(
        parse("pkcs11:library-version=3.14").library_version,
        Some((3, 14))
    );
    assert_eq!(
        parse("pkcs11:library-version=2").to_string(),
        "pkcs11:library-version=2.0"
    );
    for bad in ["1.x", "1.", ".1", "1.2.3", "256", "1.256", "v1"] {
        let e = err(&format!("pkcs11:library-version={bad}"));
        assert!(
            matches!(&e, UriError::BadValue { attribute, .. } if attribute == "library-version"),
            "library-version={bad}: {e:?}"
        );
    }
}

#[test]
fn vendor_attributes_are_kept_in_order_and_decoded() {
    let u = parse("pkcs11:x-zeta=1;token=t;x-alpha=a%20b?x-q_1=%2Fq&pin-source=p");
    assert_eq!(
        u.vendor,
        vec![
            ("x-zeta".to_string(), "1".to_string()),
            ("x-alpha".to_string(), "a b".to_string()),
            ("x-q_1".to_string(), "/q".to_string()),
        ]
    );
    assert_eq!(
        u.to_string(),
        "pkcs11:token=t;x-zeta=1;x-alpha=a%20b;x-q_1=%2Fq?pin-source=p"
    );
    assert_round_trip(&u);
}

#[test]
fn equals_sign_inside_a_value_is_kept() {
    assert_eq!(parse("pkcs11:object=a=b").object.as_deref(), Some("a=b"));
}

#[test]
fn query_encodes_ampersand_but_path_does_not() {
    let u = Pkcs11Uri {
        token: Some("R&D".into()),
        pin_source: Some("file:a&b".into()),
        ..Default::default()
    };
    assert_eq!(u.to_string(), "pkcs11:token=R&D?pin-source=file:a%26b");
    assert_round_trip(&u);
    // A raw '&' in the path is data, not a separator.
    assert_eq!(parse("pkcs11:token=R&D").token.as_deref(), Some("R&D"));
}

#[test]
fn full_uri_round_trip_in_canonical_order() {
    let input = "pkcs11:type=private;id=%de%ad;object=signing%20key;slot-manufacturer=SM;\
                 slot-description=SD;slot-id=7;library-version=2.40;library-description=LD;\
                 library-manufacturer=LM;model=SoftHSM%20v2;serial=9a2e;manufacturer=SoftHSM%20project;\
                 token=prod%2Fkeys;x-v=1?module-path=%2Fusr%2Flib%2Fp11.so&module-name=softhsm\
                 &pin-source=env:HSM_PIN";
    let u = parse(input);
    let canonical = "pkcs11:token=prod%2Fkeys;manufacturer=SoftHSM%20project;serial=9a2e;\
                     model=SoftHSM%20v2;library-manufacturer=LM;library-description=LD;\
                     library-version=2.40;slot-id=7;slot-description=SD;slot-manufacturer=SM;\
                     object=signing%20key;id=%DE%AD;type=private;x-v=1\
                     ?pin-source=env:HSM_PIN&module-name=softhsm&module-path=%2Fusr%2Flib%2Fp11.so";
    assert_eq!(u.to_string(), canonical);
    assert_round_trip(&u);
    assert_eq!(parse(canonical).to_string(), canonical);
    assert_eq!(u.library_version, Some((2, 40)));
    assert_eq!(u.id, Some(vec![0xde, 0xad]));
    assert_eq!(u.object_type, Some(ObjectType::PrivateKey));
}

#[test]
fn awkward_text_values_round_trip_in_every_text_field() {
    let values = [
        "plain",
        "with space",
        "a/b;c?d#e%f&g=h",
        "  leading and trailing  ",
        "tab\tnewline\n",
        "ünïcødé 🔑",
        "%41 not an escape",
        "'quoted' (paren) *star* +plus, @at :colon",
    ];
    for v in values {
        let fields: [fn(&mut Pkcs11Uri) -> &mut Option<String>; 12] = [
            |u| &mut u.token,
            |u| &mut u.manufacturer,
            |u| &mut u.serial,
            |u| &mut u.model,
            |u| &mut u.library_manufacturer,
            |u| &mut u.library_description,
            |u| &mut u.slot_description,
            |u| &mut u.slot_manufacturer,
            |u| &mut u.object,
            |u| &mut u.pin_source,
            |u| &mut u.module_name,
            |u| &mut u.module_path,
        ];
        for field in fields {
            let mut u = Pkcs11Uri::default();
            *field(&mut u) = Some(v.to_string());
            assert_round_trip(&u);
        }
        let mut u = Pkcs11Uri::default();
        u.vendor.push(("x-k".into(), v.into()));
        assert_round_trip(&u);
    }
}

#[test]
fn every_id_byte_round_trips() {
    let u = Pkcs11Uri {
        id: Some((0..=255).collect()),
        ..Default::default()
    };
    assert_round_trip(&u);
}

#[test]
fn attribute_classification() {
    assert!(parse("pkcs11:token=t").has_token_attributes());
    assert!(parse("pkcs11:serial=s").has_token_attributes());
    assert!(parse("pkcs11:slot-id=1").has_token_attributes());
    assert!(parse("pkcs11:slot-description=d").has_token_attributes());
    assert!(!parse("pkcs11:library-manufacturer=x").has_token_attributes());
    assert!(!parse("pkcs11:object=k").has_token_attributes());
    assert!(parse("pkcs11:object=k").has_object_attributes());
    assert!(parse("pkcs11:id=%01").has_object_attributes());
    assert!(parse("pkcs11:type=cert").has_object_attributes());
    assert!(!parse("pkcs11:token=t;x-o=1").has_object_attributes());
}

#[test]
fn for_token_names_the_token_only() {
    let u = Pkcs11Uri::for_token("prod keys", "SoftHSM project", "SoftHSM v2", "9a2e");
    assert_eq!(u.token.as_deref(), Some("prod keys"));
    assert_eq!(u.manufacturer.as_deref(), Some("SoftHSM project"));
    assert_eq!(u.model.as_deref(), Some("SoftHSM v2"));
    assert_eq!(u.serial.as_deref(), Some("9a2e"));
    assert!(u.has_token_attributes());
    assert!(!u.has_object_attributes());
    assert_eq!(
        u.to_string(),
        "pkcs11:token=prod%20keys;manufacturer=SoftHSM%20project;serial=9a2e;model=SoftHSM%20v2"
    );
    // Building a key URI from it: the point of for_token.
    let key = Pkcs11Uri {
        object: Some("kek".into()),
        object_type: Some(ObjectType::SecretKey),
        ..u.clone()
    };
    assert_eq!(
        key.to_string(),
        "pkcs11:token=prod%20keys;manufacturer=SoftHSM%20project;serial=9a2e;\
         model=SoftHSM%20v2;object=kek;type=secret-key"
    );
    // An empty serial would print "serial=", which does not parse back.
    let no_serial = Pkcs11Uri::for_token("t", "m", "", "");
    assert_eq!(no_serial.serial, None);
    assert_eq!(no_serial.model, None);
    assert_round_trip(&no_serial);
}

#[test]
fn from_str_matches_parse() {
    let u: Pkcs11Uri = "pkcs11:object=k;type=secret-key".parse().unwrap();
    assert_eq!(u.object.as_deref(), Some("k"));
    assert_eq!(u.object_type, Some(ObjectType::SecretKey));
    assert_eq!(
        "nope".parse::<Pkcs11Uri>().unwrap_err(),
        UriError::MissingScheme
    );
}

#[test]
fn error_messages_are_sentences_naming_the_attribute() {
    let cases = [
        (UriError::MissingScheme, "pkcs11:"),
        (
            UriError::BadPercentEncoding {
                attribute: "object".into(),
            },
            "\"object\"",
        ),
        (
            UriError::UnknownPathAttribute {
                attribute: "foo".into(),
            },
            "\"foo\"",
        ),
        (
            UriError::UnknownQueryAttribute {
                attribute: "bar".into(),
            },
            "\"bar\"",
        ),
        (
            UriError::DuplicateAttribute {
                attribute: "id".into(),
            },
            "\"id\"",
        ),
        (
            UriError::EmptyAttribute {
                attribute: "object".into(),
            },
            "\"object\"",
        ),
        (
            UriError::EmptyAttribute {
                attribute: String::new(),
            },
            "stray",
        ),
        (
            UriError::BadValue {
                attribute: "slot-id".into(),
                reason: "because".into(),
            },
            "because",
        ),
    ];
    for (e, needle) in cases {
        let msg = e.to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(msg.ends_with('.'), "{msg:?} is not a sentence");
        assert!(
            msg.starts_with(|c: char| c.is_uppercase() || c == '"'),
            "{msg:?}"
        );
    }
}
