//! Unit tests of the bundle summary: what is shown, what is hidden, and the
//! codes of broken structures, on bundles built in memory.

use super::*;
use crate::formats::bundle::{
    b64, encode_blob, encode_line, Kcv, KeyRef, MacInfo, Trailer, FORMAT, VERSION,
};

fn header(protection: Protection) -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        tool: "hsmkey test".into(),
        created: "2026-11-22T00:00:00Z".into(),
        source: SourceToken {
            label: "src".into(),
            manufacturer: "maker".into(),
            model: "model-x".into(),
            serial: "0001".into(),
        },
        protection,
        mac: MacInfo {
            algorithm: "hmac-sha256".into(),
            wrap: "rfc3394".into(),
            wrapped_key: b64(&[1; 40]),
        },
    }
}

fn kek() -> Protection {
    Protection::Kek {
        kek: KeyRef {
            label: "backup-kek".into(),
            id: "6b656b".into(),
            kcv: Some("abcdef".into()),
        },
    }
}

fn password(algorithm: &str, m_kib: u32, salt: String) -> Protection {
    Protection::Password {
        kdf: KdfParams {
            algorithm: algorithm.into(),
            version: 0x13,
            m_kib,
            t: 3,
            p: 1,
            salt,
        },
    }
}

fn recipient(hash: &str) -> Protection {
    Protection::Recipient {
        recipient: RecipientInfo {
            spki_sha256: "ab".repeat(32),
            bits: 2048,
            oaep_hash: hash.into(),
            wrapped_transfer_key: b64(&[3; 256]),
        },
    }
}

fn entry(label: &str) -> Entry {
    let (name, version) = split_version(label);
    Entry {
        label: label.into(),
        name: name.into(),
        version,
        id: "0a0b".into(),
        class: "secret-key".into(),
        key_type: "aes".into(),
        size: Some(256),
        usage: vec!["encrypt".into(), "decrypt".into()],
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

fn bytes(h: Header, entries: &[Entry], claimed: u64) -> Vec<u8> {
    let mut out = encode_line(&Line::Header(h)).unwrap();
    for e in entries {
        out.extend(encode_line(&Line::Key(e.clone())).unwrap());
    }
    out.extend(
        encode_line(&Line::Trailer(Trailer {
            entries: claimed,
            mac: b64(&[0; 32]),
        }))
        .unwrap(),
    );
    out
}

fn inspect_bytes(b: Vec<u8>) -> Result<Inspection> {
    inspect(&Input::Bytes(b))
}

fn code_of(b: Vec<u8>) -> &'static str {
    inspect_bytes(b).unwrap_err().code()
}

#[test]
fn a_kek_bundle_is_described_entry_by_entry() {
    let entries = [entry("pay"), entry("pay@v2")];
    let r = inspect_bytes(bytes(header(kek()), &entries, 2)).unwrap();
    assert_eq!(r.container, "blob", "bytes, as a decoded blob gives them");
    assert_eq!((r.format.as_str(), r.format_version), ("hsmkey-bundle", 1));
    assert_eq!(r.source.serial, "0001");
    assert_eq!(
        r.protection,
        ProtectionSummary::Kek {
            kek: KekSummary {
                label: "backup-kek".into(),
                id: "6b656b".into(),
                kcv: Some("abcdef".into()),
            }
        }
    );
    assert_eq!(r.entries.len(), 2);
    assert_eq!(
        (r.entries[1].name.as_str(), r.entries[1].version),
        ("pay", 2)
    );
    assert_eq!(r.entries[0].kcv.as_deref(), Some("123456"));
    assert_eq!(r.entries[0].kcv_method.as_deref(), Some("aes-ecb-zero"));
    assert_eq!(r.entries[0].wrapped_bytes, 40);
    assert_eq!(r.mac.wrapped_key_bytes, 40);
    assert_eq!(r.mac.trailer_mac_bytes, 32);
    assert_eq!(r.structure.lines, 4);
    assert_eq!((r.structure.entries, r.structure.trailer_entries), (2, 2));
    assert!(r.structure.intact);
    assert!(!r.mac_checked);
    assert!(r.notes[0].contains("hsmkey verify FILE --kek 'backup-kek'"));
}

#[test]
fn salts_and_wrapped_keys_are_shown_as_lengths_only() {
    let salt = b64(b"0123456789abcdef");
    let r = inspect_bytes(bytes(
        header(password("argon2id", 65536, salt.clone())),
        &[],
        0,
    ))
    .unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(&salt), "{json}");
    assert!(
        !json.contains(&b64(&[1; 40])),
        "the wrapped MAC key: {json}"
    );
    let ProtectionSummary::Password { kdf } = &r.protection else {
        panic!("{:?}", r.protection)
    };
    assert_eq!((kdf.m_kib, kdf.t, kdf.p, kdf.salt_bytes), (65536, 3, 1, 16));

    let r = inspect_bytes(bytes(header(recipient("sha256")), &[entry("k")], 1)).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(&b64(&[3; 256])), "{json}");
    assert!(
        !json.contains(&b64(&[2; 40])),
        "an entry's wrapped key: {json}"
    );
    let ProtectionSummary::Recipient { recipient } = &r.protection else {
        panic!("{:?}", r.protection)
    };
    assert_eq!(recipient.wrapped_transfer_key_bytes, 256);
    assert_eq!(recipient.oaep_hash, "sha256");
}

#[test]
fn broken_structures_give_the_codes_restore_gives() {
    let good = bytes(header(kek()), &[entry("a"), entry("b")], 2);
    assert!(inspect_bytes(good.clone()).is_ok());
    // The trailer's count differs.
    assert_eq!(
        code_of(bytes(header(kek()), &[entry("a"), entry("b")], 3)),
        "HK1302"
    );
    // Cut in the middle, or without the trailer.
    assert_eq!(code_of(good[..good.len() - 5].to_vec()), "HK1302");
    let text = String::from_utf8(good.clone()).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(code_of(lines[..3].concat().into_bytes()), "HK1302");
    // Data after the trailer.
    assert_eq!(code_of([&good[..], b"\n"].concat()), "HK1302");
    assert_eq!(code_of(Vec::new()), "HK1302");
    // A later format version, before anything else is parsed.
    let future = text.replacen("\"version\":1,", "\"version\":2,", 1);
    assert_eq!(code_of(future.into_bytes()), "HK1303");
    // A line over the reader's limit.
    let mut long = entry("long");
    long.wrapped = b64(&vec![0; MAX_LINE]);
    assert_eq!(code_of(bytes(header(kek()), &[long], 1)), "HK1302");
    // An entry the reader refuses.
    let mut no_kcv = entry("x");
    no_kcv.kcv = None;
    assert_eq!(code_of(bytes(header(kek()), &[no_kcv], 1)), "HK1302");
}

#[test]
fn header_values_are_checked_as_restore_checks_them() {
    let salt = b64(&[0; 16]);
    assert_eq!(
        code_of(bytes(
            header(password("scrypt", 65536, salt.clone())),
            &[],
            0
        )),
        "HK1303"
    );
    assert_eq!(
        code_of(bytes(header(password("argon2id", u32::MAX, salt)), &[], 0)),
        "HK1302"
    );
    assert_eq!(
        code_of(bytes(
            header(password("argon2id", 65536, "not base64!".into())),
            &[],
            0
        )),
        "HK1302"
    );
    assert_eq!(code_of(bytes(header(recipient("md5")), &[], 0)), "HK1303");
    let mut h = header(kek());
    h.mac.wrapped_key = "***".into();
    assert_eq!(code_of(bytes(h, &[], 0)), "HK1302");
    let bad_mac = String::from_utf8(bytes(header(kek()), &[], 0))
        .unwrap()
        .replace(&b64(&[0; 32]), "***");
    assert_eq!(code_of(bad_mac.into_bytes()), "HK1302");
}

#[test]
fn a_label_that_disagrees_with_its_version_is_noted() {
    let mut odd = entry("pay@v3");
    odd.version = 2;
    let r = inspect_bytes(bytes(header(kek()), &[odd], 1)).unwrap();
    assert_eq!(r.entries[0].version, 2, "the entry's own field");
    assert!(
        r.notes.iter().any(|n| n.contains("version 3")),
        "{:?}",
        r.notes
    );
}

#[test]
fn a_blob_reads_as_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.blob");
    let b = bytes(header(kek()), &[entry("k")], 1);
    std::fs::write(&path, format!("{}\n", encode_blob(&b))).unwrap();
    let r = inspect(&Input::open(&path).unwrap()).unwrap();
    assert_eq!(r.container, "blob");
    assert_eq!(r.entries[0].label, "k");
    let bundle = dir.path().join("k.bundle");
    std::fs::write(&bundle, &b).unwrap();
    assert_eq!(
        inspect(&Input::open(&bundle).unwrap()).unwrap().container,
        "bundle"
    );
}
