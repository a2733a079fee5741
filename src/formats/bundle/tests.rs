use super::*;

pub(crate) fn sample_header() -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        tool: "hsmkey test".into(),
        created: "2026-11-22T00:00:00Z".into(),
        source: SourceToken {
            label: "src".into(),
            manufacturer: "m".into(),
            model: "x".into(),
            serial: "1".into(),
        },
        protection: Protection::Kek {
            kek: KeyRef {
                label: "kek".into(),
                id: "01".into(),
                kcv: Some("abcdef".into()),
            },
        },
        mac: MacInfo {
            algorithm: "hmac-sha256".into(),
            wrap: "rfc3394".into(),
            wrapped_key: b64(&[1; 40]),
        },
    }
}

fn sample_entry(label: &str) -> Entry {
    Entry {
        label: label.into(),
        name: label.into(),
        version: 1,
        id: "0a".into(),
        class: "secret-key".into(),
        key_type: "aes".into(),
        size: Some(256),
        usage: vec!["encrypt".into()],
        backup_policy: "any".into(),
        kcv: Some(Kcv {
            method: "aes-ecb-zero".into(),
            value: "123456".into(),
        }),
        public: None,
        wrap: "rfc3394".into(),
        wrapped: b64(&[2; 40]),
    }
}

fn bundle(entries: usize) -> Vec<u8> {
    let mut out = encode_line(&Line::Header(sample_header())).unwrap();
    for i in 0..entries {
        out.extend(encode_line(&Line::Key(sample_entry(&format!("k{i}")))).unwrap());
    }
    out.extend(
        encode_line(&Line::Trailer(Trailer {
            entries: entries as u64,
            mac: b64(&[0; 32]),
        }))
        .unwrap(),
    );
    out
}

fn read_all(bytes: &[u8]) -> Result<Vec<Line>, BundleError> {
    let mut r = BundleReader::new(bytes);
    let mut out = Vec::new();
    while let Some(l) = r.next_line()? {
        out.push(l.line);
    }
    Ok(out)
}

#[test]
fn round_trip_and_exact_bytes() {
    let bytes = bundle(3);
    let lines = read_all(&bytes).unwrap();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0], Line::Header(sample_header()));
    assert_eq!(lines[2], Line::Key(sample_entry("k1")));
    let mut r = BundleReader::new(&bytes[..]);
    let mut concat = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        concat.extend(l.bytes);
    }
    assert_eq!(concat, bytes);
}

#[test]
fn structural_failures_have_their_own_errors() {
    assert_eq!(read_all(b"").unwrap_err(), BundleError::Empty);
    let bytes = bundle(2);
    let cut = bytes.len() - 10;
    assert!(matches!(
        read_all(&bytes[..cut]).unwrap_err(),
        BundleError::Truncated { .. }
    ));
    // Cut exactly at a line boundary: the trailer is missing.
    let first_line_end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    assert_eq!(
        read_all(&bytes[..first_line_end]).unwrap_err(),
        BundleError::Truncated { line: 1 }
    );
    let mut extra = bytes.clone();
    extra.extend(b"{}\n");
    assert!(matches!(
        read_all(&extra).unwrap_err(),
        BundleError::Malformed { .. }
    ));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let future = text.replacen("\"version\":1", "\"version\":2", 1);
    assert_eq!(
        read_all(future.as_bytes()).unwrap_err(),
        BundleError::UnsupportedVersion { found: 2 }
    );
    let miscounted = text.replace("\"entries\":2", "\"entries\":1");
    assert_eq!(
        read_all(miscounted.as_bytes()).unwrap_err(),
        BundleError::CountMismatch {
            claimed: 1,
            found: 2
        }
    );
    assert!(matches!(
        read_all(&[0x8f; 64]).unwrap_err(),
        BundleError::Malformed { .. } | BundleError::Truncated { .. }
    ));
}

#[test]
fn overlong_lines_are_refused_without_reading_them_whole() {
    let mut bytes = vec![b'a'; MAX_LINE + 10];
    bytes.push(b'\n');
    assert!(matches!(
        read_all(&bytes).unwrap_err(),
        BundleError::Malformed { line: 1, .. }
    ));
}

#[test]
fn blob_round_trip() {
    let bytes = bundle(1);
    let blob = encode_blob(&bytes);
    assert!(blob.starts_with(BLOB_PREFIX));
    assert!(!blob.contains('\n') && !blob.contains('='));
    assert!(is_blob(format!("  {blob}").as_bytes()));
    assert_eq!(decode_blob(&format!("{blob}\n")).unwrap(), bytes);
    assert!(matches!(
        decode_blob("nope").unwrap_err(),
        BundleError::BadBlob { .. }
    ));
    assert!(matches!(
        decode_blob(&format!("{BLOB_PREFIX}***")).unwrap_err(),
        BundleError::BadBlob { .. }
    ));
}

#[test]
fn entries_are_validated() {
    let mut e = sample_entry("x");
    e.class = "public-key".into();
    assert!(validate_entry(&e).is_err());
    let mut e = sample_entry("x");
    e.wrap = "rot13".into();
    assert!(validate_entry(&e).is_err());
    let mut e = sample_entry("x");
    e.class = "private-key".into();
    e.key_type = "rsa".into();
    assert!(
        validate_entry(&e).is_err(),
        "private key without public part"
    );
    assert!(validate_entry(&sample_entry("x")).is_ok());
}
