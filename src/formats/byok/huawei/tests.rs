use super::*;

#[test]
fn key_id_pattern() {
    assert!(valid_key_id("0d0466b0-e727-4d9c-b35d-f84bb474a37f"));
    assert!(!valid_key_id("0D0466B0-e727-4d9c-b35d-f84bb474a37f"));
    assert!(!valid_key_id("0d0466b0e7274d9cb35df84bb474a37f"));
}

#[test]
fn parameters_and_material() {
    let p = ImportParameters::parse(
        br#"{"key_id":"0d0466b0-e727-4d9c-b35d-f84bb474a37f","import_token":"tok","expiration_time":"1795334400","public_key":"MIIB"}"#,
    )
    .unwrap();
    assert_eq!(p.expiration_time, 1_795_334_400);
    let m = material(&p, &[1, 2], None);
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["encrypted_key_material"], "AQI=");
    assert!(v.get("encrypted_privatekey").is_none());
    assert!(ImportParameters::parse(
        br#"{"key_id":"x","import_token":"t","expiration_time":1,"public_key":""}"#
    )
    .is_err());
}
