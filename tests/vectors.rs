//! Known-answer vectors for the bundle format, as files in
//! tests/vectors/bundle/: `good_*` bundles restore on every token kind with
//! the KCVs of the key values they were made from (computed here in
//! software); every `fail_*` vector is refused with the error code in its
//! `.expect` file, and leaves the token unchanged.
//!
//! The vectors are password-protected, so any token can open them. They were
//! written once by `generate_vectors` (ignored; run with
//! `cargo test --test vectors -- --ignored` to rewrite them).

mod common;

use std::path::{Path, PathBuf};

use aes::cipher::{BlockEncrypt, KeyInit};
use common::{code, TestToken};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use hmac::Mac;
use serde_json::Value;

const PASSWORD: &str = "Vector-Pass#1";

/// The key values inside the good vectors.
fn known_keys() -> Vec<(&'static str, KeyType, Vec<u8>)> {
    vec![
        ("v-aes128", KeyType::AES, (0u8..16).collect()),
        ("v-aes256", KeyType::AES, (0u8..32).collect()),
        ("v-generic", KeyType::GENERIC_SECRET, vec![0x42; 32]),
    ]
}

fn software_kcv(key_type: KeyType, value: &[u8]) -> String {
    if key_type == KeyType::AES {
        let mut block = aes::Block::default();
        match value.len() {
            16 => aes::Aes128::new_from_slice(value)
                .unwrap()
                .encrypt_block(&mut block),
            _ => aes::Aes256::new_from_slice(value)
                .unwrap()
                .encrypt_block(&mut block),
        }
        hex::encode(&block[..3])
    } else {
        let mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(value)
            .unwrap()
            .finalize()
            .into_bytes();
        hex::encode(&mac[..3])
    }
}

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundle")
}

fn password_file(t: &TestToken) -> PathBuf {
    let p = t.dir.path().join("pw.txt");
    std::fs::write(&p, PASSWORD).unwrap();
    p
}

#[test]
fn good_vectors_restore_with_the_known_kcvs() {
    let mut seen = 0;
    for entry in std::fs::read_dir(vector_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("good_") {
            continue;
        }
        seen += 1;
        let t = TestToken::new();
        let pw = password_file(&t);
        let verified = t.json(&[
            "verify",
            path.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ]);
        let restored = t.json(&[
            "restore",
            path.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ]);
        assert_eq!(verified["entries"], restored["entries"], "{name}");
        let entries = restored["entries"].as_array().unwrap();
        assert!(!entries.is_empty(), "{name}");
        for e in entries {
            let label = e["label"].as_str().unwrap();
            let (_, kt, value) = known_keys().into_iter().find(|k| k.0 == label).unwrap();
            let expected = software_kcv(kt, &value);
            assert_eq!(e["kcv"], expected.as_str(), "{name}: {label} as recorded");
            if kt == KeyType::AES {
                let shown = t.json(&["key", "show", label]);
                assert_eq!(
                    shown["keys"][0]["kcv"],
                    expected.as_str(),
                    "{name}: {label} in the token"
                );
            }
        }
    }
    assert!(seen >= 2, "the good vectors are in tests/vectors/bundle");
}

#[test]
fn fail_vectors_are_refused_with_their_codes() {
    let t = TestToken::new();
    let pw = password_file(&t);
    let before = t.object_count();
    let mut seen = 0;
    for entry in std::fs::read_dir(vector_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("fail_") || name.ends_with(".expect") {
            continue;
        }
        seen += 1;
        let expect = std::fs::read_to_string(format!("{}.expect", path.display()))
            .unwrap_or_else(|_| panic!("{name} has an .expect file"));
        let want = expect
            .lines()
            .find_map(|l| l.strip_prefix("expect: "))
            .unwrap()
            .trim()
            .to_string();
        for command in ["verify", "restore"] {
            let (_, e) = t.json_err(t.cmd().args([
                command,
                path.to_str().unwrap(),
                "--password-file",
                pw.to_str().unwrap(),
            ]));
            assert_eq!(code(&e), want, "{command} {name}: {e}");
        }
        assert_eq!(t.object_count(), before, "{name}: nothing created");
    }
    assert!(seen >= 10, "the fail_ vectors are in tests/vectors/bundle");
}

fn write_fail(dir: &Path, name: &str, bytes: &[u8], code: &str, why: &str) {
    std::fs::write(dir.join(name), bytes).unwrap();
    std::fs::write(
        dir.join(format!("{name}.expect")),
        format!("expect: {code}\nwhy: {why}\n"),
    )
    .unwrap();
}

#[test]
#[ignore = "writes tests/vectors/bundle; run by hand to regenerate"]
fn generate_vectors() {
    let t = TestToken::new_of(common::Kind::SoftHsm);
    for (label, kt, value) in known_keys() {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(kt),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Value(value),
        ];
        if kt == KeyType::AES {
            template.extend([Attribute::Encrypt(true), Attribute::Decrypt(true)]);
        } else {
            template.extend([Attribute::Sign(true), Attribute::Verify(true)]);
        }
        t.put_secret(template);
    }
    let dir = vector_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let pw = password_file(&t);
    let good = dir.join("good_password.bundle");
    let _ = std::fs::remove_file(&good);
    t.json(&[
        "backup",
        "--password-file",
        pw.to_str().unwrap(),
        "--all",
        "--out",
        good.to_str().unwrap(),
    ]);
    let blob = dir.join("good_password.blob");
    let _ = std::fs::remove_file(&blob);
    t.json(&[
        "backup",
        "--password-file",
        pw.to_str().unwrap(),
        "--format",
        "blob",
        "v-aes256",
        "--out",
        blob.to_str().unwrap(),
    ]);

    let bytes = std::fs::read(&good).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 5);
    let corrupt = "HK1302";
    let mut flipped = bytes.clone();
    let at = text.find("\"wrapped\":\"").unwrap() + 14;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    write_fail(
        &dir,
        "fail_flipped_wrapped_key.bundle",
        &flipped,
        corrupt,
        "one character of an entry's wrapped key changed: the MAC no longer matches",
    );
    write_fail(
        &dir,
        "fail_truncated_mid_entry.bundle",
        &bytes[..lines[0].len() + 40],
        corrupt,
        "cut in the middle of the first entry",
    );
    write_fail(
        &dir,
        "fail_no_trailer.bundle",
        lines[..4].concat().as_bytes(),
        corrupt,
        "the trailer line is missing",
    );
    let removed = [
        lines[0],
        lines[1],
        lines[3],
        &lines[4].replace("\"entries\":3", "\"entries\":2"),
    ]
    .concat();
    write_fail(
        &dir,
        "fail_entry_removed.bundle",
        removed.as_bytes(),
        corrupt,
        "an entry removed and the count fixed up: the MAC no longer matches",
    );
    let reordered = [lines[0], lines[2], lines[1], lines[3], lines[4]].concat();
    write_fail(
        &dir,
        "fail_entries_reordered.bundle",
        reordered.as_bytes(),
        corrupt,
        "two entries swapped",
    );
    let relabeled = text.replacen("\"label\":\"v-aes128\"", "\"label\":\"v-aes129\"", 1);
    write_fail(
        &dir,
        "fail_label_changed.bundle",
        relabeled.as_bytes(),
        corrupt,
        "an entry's label changed",
    );
    let header = text.replacen("\"created\":\"", "\"created\":\"1", 1);
    write_fail(
        &dir,
        "fail_header_changed.bundle",
        header.as_bytes(),
        corrupt,
        "the header's creation time changed",
    );
    let future = text.replacen("\"version\":1,", "\"version\":2,", 1);
    write_fail(
        &dir,
        "fail_future_version.bundle",
        future.as_bytes(),
        "HK1303",
        "format version 2",
    );
    let kdf = text.replacen("\"algorithm\":\"argon2id\"", "\"algorithm\":\"scrypt\"", 1);
    write_fail(
        &dir,
        "fail_unknown_kdf.bundle",
        kdf.as_bytes(),
        "HK1303",
        "a key derivation hsmkey does not know",
    );
    let salt_at = text.find("\"salt\":\"").unwrap() + 8;
    let mut salted = bytes.clone();
    salted[salt_at] = if salted[salt_at] == b'A' { b'B' } else { b'A' };
    write_fail(
        &dir,
        "fail_salt_changed.bundle",
        &salted,
        "HK1107",
        "the salt changed: the derived key no longer unwraps the integrity key",
    );
    write_fail(&dir, "fail_empty.bundle", b"", corrupt, "an empty file");
    let random: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    write_fail(&dir, "fail_random.bundle", &random, corrupt, "random bytes");
    write_fail(
        &dir,
        "fail_blob_not_base64.blob",
        b"hsmkey-blob-v1:***not base64***\n",
        corrupt,
        "a blob whose body is not base64url",
    );
    let blob_text = std::fs::read_to_string(&blob).unwrap();
    let cut = &blob_text.trim()[..blob_text.len() / 2];
    write_fail(
        &dir,
        "fail_blob_truncated.blob",
        format!("{cut}\n").as_bytes(),
        corrupt,
        "half a blob",
    );
    let _: Value = serde_json::from_str(lines[0]).unwrap();
}
