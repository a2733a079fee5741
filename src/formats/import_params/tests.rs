use super::*;

#[test]
fn tokens_round_trip_and_reject_garbage() {
    let p = TokenPayload {
        v: 1,
        key_id: "0d0466b0-e727-4d9c-b35d-f84bb474a37f".into(),
        algorithm: "RSAES_OAEP_SHA_1".into(),
        spki_sha256: "ab".into(),
        expires: 5,
    };
    let t = encode_token(&p, &[1, 2, 3]).unwrap();
    let (q, bytes, mac) = decode_token(&t).unwrap();
    assert_eq!(q, p);
    assert_eq!(bytes, p.encode().unwrap());
    assert_eq!(mac, vec![1, 2, 3]);
    assert!(decode_token("hk1.abc").is_err());
    assert!(decode_token("xyz").is_err());
    assert!(decode_token(&t.replace("hk1.", "hk1.!")).is_err());
}

#[test]
fn key_ids_and_durations() {
    let id = key_id_from(&[0xab; 16]);
    assert!(valid_key_id(&id), "{id}");
    // Version 4, variant RFC 9562: the 13th hex digit is 4, the 17th 8..b.
    assert_eq!(id, "abababab-abab-4bab-abab-abababababab");
    assert_eq!(parse_duration("24h").unwrap(), 86_400);
    assert_eq!(parse_duration("90").unwrap(), 90);
    assert_eq!(parse_duration("7d").unwrap(), 604_800);
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("31d").is_err());
    assert!(parse_duration("1w").is_err());
}

#[test]
fn material_parses() {
    let m =
        Material::parse(br#"{"key_id":"k","import_token":"t","encrypted_key_material":"AQI="}"#)
            .unwrap();
    assert_eq!(m.key_material().unwrap(), vec![1, 2]);
    assert_eq!(m.private_key().unwrap(), None);
    assert!(Material::parse(b"[]").is_err());
}

#[test]
fn huge_durations_are_refused_not_overflowed() {
    assert!(parse_duration("9999999999999999d").is_err());
    assert!(parse_duration("99999999999999999999").is_err());
    assert!(parse_duration("-5s").is_err());
    assert!(parse_duration("é").is_err());
    assert!(parse_duration("").is_err());
}
