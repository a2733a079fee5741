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

/// Issue #11: a non-ASCII byte in the offset made the hand-written parser
/// slice inside a character and panic (exit 101).
#[test]
fn a_malformed_offset_is_refused_not_a_panic() {
    assert_eq!(parse_iso8601("2026-11-26T10:00:00+0é00"), None);
    assert_eq!(parse_iso8601("2026-11-26T10:00:00+é"), None);
    assert_eq!(parse_iso8601("2026-11-26T10:00:00é"), None);
    assert_eq!(parse_iso8601("2026-13-26T10:00:00Z"), None);
    assert_eq!(parse_iso8601(""), None);
    let p = ImportParameters::parse(
        r#"{"ImportToken":"AAEC","PublicKey":"MIIB","ParametersValidTo":"2026-11-26T10:00:00+0é00"}"#
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(p.valid_to(), None);
}

#[test]
fn accepted_time_forms() {
    // No offset: UTC. Microseconds, as the AWS CLI prints them.
    assert_eq!(parse_iso8601("2026-11-22T08:00:00"), Some(1_795_334_400));
    assert_eq!(
        parse_iso8601("2026-11-22T08:00:00.123000+00:00"),
        Some(1_795_334_400)
    );
    assert_eq!(
        parse_iso8601("2026-11-22T07:00:00-01:00"),
        Some(1_795_334_400)
    );
    assert_eq!(
        parse_iso8601("2026-11-22T09:00:00+0100"),
        Some(1_795_334_400)
    );
    assert_eq!(
        parse_iso8601(" 2026-11-22T08:00:00Z\n"),
        Some(1_795_334_400)
    );
    assert_eq!(parse_iso8601("2026-11-22 08:00:00Z"), Some(1_795_334_400));
}
