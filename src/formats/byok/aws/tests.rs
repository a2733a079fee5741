use super::*;

#[test]
fn iso_dates() {
    assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_iso8601("2026-11-22T08:00:00.123+00:00"),
        Some(1_795_334_400)
    );
    assert_eq!(
        parse_iso8601("2026-11-22T09:00:00+01:00"),
        Some(1_795_334_400)
    );
    assert_eq!(parse_iso8601("yesterday"), None);
}

#[test]
fn parameters_parse() {
    let p = ImportParameters::parse(
        br#"{"KeyId":"arn:aws:kms:x","ImportToken":"AAEC","PublicKey":"MIIB","ParametersValidTo":1795334400.5}"#,
    )
    .unwrap();
    assert_eq!(p.import_token().unwrap(), vec![0, 1, 2]);
    assert_eq!(p.valid_to(), Some(1_795_334_400));
    assert!(ImportParameters::parse(b"{}").is_err());
}
