//! Backup, restore and verify between two separate tokens of the kind under
//! test, for every protection scheme and key type; and every corruption of a
//! bundle refused before the first object is created.

mod common;

use std::path::{Path, PathBuf};

use common::{code, labels, path_str, Kind, TestToken, KEK_VALUE};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use serde_json::Value;

const PASSWORD: &str = "Correct-Horse#42";

/// A known AES-256 key for the encrypt-here, decrypt-there check.
const DATA_KEY: [u8; 32] = [0x21; 32];

fn populate(src: &TestToken) -> Vec<&'static str> {
    let types = [
        ("a128", "aes-128"),
        ("a192", "aes-192"),
        ("a256", "aes-256"),
        ("gen", "generic-256"),
        ("rsa", "rsa-2048"),
        ("ec", "ec-p256"),
    ];
    for (label, ty) in types {
        src.generate(label, ty, "any");
    }
    src.json(&["key", "rotate", "a256"]);
    src.json(&["key", "generate", "--label", "locked", "--type", "aes-128"]);
    src.put_secret(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"data".to_vec()),
        Attribute::Id(b"data".to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Value(DATA_KEY.to_vec()),
    ]);
    vec![
        "a128", "a192", "a256", "a256@v2", "data", "ec", "gen", "rsa",
    ]
}

/// An RSA unwrap-only key `transport` made in `dst`; its public key, copied
/// next to `src`, for recipient bundles.
fn transport_key(src: &TestToken, dst: &TestToken, ty: &str) -> PathBuf {
    dst.json(&[
        "key",
        "generate",
        "--label",
        "transport",
        "--type",
        ty,
        "--usage",
        "unwrap",
    ]);
    let pem_dst = file(dst, "transport.pem");
    dst.json(&["key", "public", "transport", "--out", path_str(&pem_dst)]);
    let pem = file(src, &format!("transport-{}.pem", rand_suffix()));
    std::fs::copy(&pem_dst, &pem).unwrap();
    pem
}

/// `n` AES-256 keys `bulk-00001`.. of policy `any`.
fn bulk(t: &TestToken, n: u32) {
    t.json(&[
        "key",
        "generate",
        "--label",
        "bulk",
        "--type",
        "aes-256",
        "--backup-policy",
        "any",
        "--count",
        &n.to_string(),
    ]);
}

fn file(t: &TestToken, name: &str) -> PathBuf {
    t.dir.path().join(name)
}

fn write_password(t: &TestToken, pw: &str) -> PathBuf {
    let p = file(t, "password.txt");
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

fn kcv_of(t: &TestToken, label: &str) -> String {
    let v = t.json(&["key", "show", label]);
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == label && k["class"] == "secret-key")
        .unwrap()["kcv"]
        .as_str()
        .unwrap()
        .to_string()
}

fn public_fingerprint(t: &TestToken, label: &str) -> String {
    let out = file(t, &format!("{label}-{}.pem", rand_suffix()));
    let v = t.json(&["key", "public", label, "--out", path_str(&out)]);
    v["spki_sha256"].as_str().unwrap().to_string()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Everything a round trip must show: the same keys, the same KCVs, the same
/// public keys, and a key that decrypts on the target what the source encrypted.
fn assert_same_keys(src: &TestToken, dst: &TestToken, restored: &Value, expected: &[&str]) {
    assert_eq!(labels(restored, "entries"), expected);
    for label in expected {
        let entry = restored["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["label"] == *label)
            .unwrap();
        if entry["class"] == "secret-key" {
            let bundle_kcv = entry["kcv"].as_str().unwrap();
            if entry["type"] == "aes" {
                assert_eq!(kcv_of(src, label), bundle_kcv, "{label} in the source");
                assert_eq!(kcv_of(dst, label), bundle_kcv, "{label} in the target");
            }
        } else {
            assert_eq!(
                public_fingerprint(src, label),
                public_fingerprint(dst, label),
                "{label}"
            );
        }
    }
    // Encrypt in the source, decrypt in the target.
    let find = |s: &cryptoki::session::Session| {
        s.find_objects(&[Attribute::Label(b"data".to_vec())])
            .unwrap()[0]
    };
    let plaintext = [0x5au8; 32];
    let ciphertext =
        src.with_session(|s| s.encrypt(&Mechanism::AesEcb, find(s), &plaintext).unwrap());
    assert_ne!(ciphertext, plaintext);
    let back = dst.with_session(|s| s.decrypt(&Mechanism::AesEcb, find(s), &ciphertext).unwrap());
    assert_eq!(back, plaintext);
    // A restored RSA key signs in the target and the source's public key verifies it.
    let message = b"restored keys work";
    let by_label = |s: &cryptoki::session::Session, class| {
        s.find_objects(&[Attribute::Label(b"rsa".to_vec()), Attribute::Class(class)])
            .unwrap()[0]
    };
    let signature = dst.with_session(|s| {
        s.sign(
            &Mechanism::Sha256RsaPkcs,
            by_label(s, ObjectClass::PRIVATE_KEY),
            message,
        )
        .unwrap()
    });
    src.with_session(|s| {
        s.verify(
            &Mechanism::Sha256RsaPkcs,
            by_label(s, ObjectClass::PUBLIC_KEY),
            message,
            &signature,
        )
        .unwrap()
    });
}

#[test]
fn kek_round_trip_between_two_tokens() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("shared-kek", &KEK_VALUE);
    dst.put_kek("shared-kek", &KEK_VALUE);
    let expected = populate(&src);
    let bundle = file(&src, "kek.bundle");
    let made = src.json(&[
        "backup",
        "--kek",
        "shared-kek",
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    assert_eq!(labels(&made, "entries"), expected);
    // --all lists what it left out, and why.
    let skipped = made["skipped"].as_array().unwrap();
    let locked = skipped
        .iter()
        .find(|s| s["label"] == "locked")
        .expect("locked is skipped");
    assert!(locked["reason"]
        .as_str()
        .unwrap()
        .contains("CKA_EXTRACTABLE=false"));
    assert!(skipped.iter().any(|s| s["label"] == "shared-kek"));
    let verified = dst.json(&["verify", path_str(&bundle), "--kek", "shared-kek"]);
    assert_eq!(verified["verified"], true);
    assert_eq!(labels(&verified, "entries"), expected);
    let before = dst.object_count();
    let restored = dst.json(&["restore", path_str(&bundle), "--kek", "shared-kek"]);
    assert_eq!(
        dst.object_count(),
        before + expected.len() + 2,
        "two key pairs bring their public halves"
    );
    assert_same_keys(&src, &dst, &restored, &expected);
    // Versions, policies and usage survive.
    let shown = &dst.json(&["key", "show", "a256@v2"])["keys"];
    assert_eq!(shown[0]["version"], 2);
    assert_eq!(shown[0]["backup_policy"], "any");
    assert_eq!(shown[0]["usage"], serde_json::json!(["encrypt", "decrypt"]));
    assert_eq!(
        dst.json(&["key", "show", "a256@v1"])["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A restored key's size is known again even where the token forgets it
    // after unwrap (SoftHSM): it can go on to a cloud KMS.
    let pem =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok/cloud-rsa-3072.pub.pem");
    let out = file(&dst, "to-gcp.bin");
    let v = dst.json(&[
        "byok",
        "--key",
        "a256@v1",
        "--target",
        "gcp",
        "--algorithm",
        "RSA_OAEP_3072_SHA1_AES_256",
        "--wrapping-key",
        path_str(&pem),
        "--out",
        path_str(&out),
    ]);
    assert_eq!(v["size"], 256);
}

#[test]
fn a_restored_kek_keeps_its_protection() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.json(&[
        "key",
        "generate",
        "--label",
        "movable-kek",
        "--kek",
        "--backup-policy",
        "any",
    ]);
    let pw = write_password(&src, PASSWORD);
    let pw_dst = write_password(&dst, PASSWORD);
    let bundle = file(&src, "kek.bundle");
    src.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "movable-kek",
        "--out",
        path_str(&bundle),
    ]);
    dst.json(&[
        "restore",
        path_str(&bundle),
        "--password-file",
        path_str(&pw_dst),
    ]);
    let shown = &dst.json(&["key", "show", "movable-kek"])["keys"];
    assert_eq!(shown[0]["modifiable"], false);
    if dst.kind == Kind::Nss {
        return; // NSS enforces no unwrap template (docs/TOKENS.md)
    }
    dst.with_session(|s| {
        let kek = s
            .find_objects(&[Attribute::Label(b"movable-kek".to_vec())])
            .unwrap()[0];
        let known = s
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Extractable(true),
                Attribute::Value(vec![9u8; 16]),
            ])
            .unwrap();
        let blob = s.wrap_key(&Mechanism::AesKeyWrap, kek, known).unwrap();
        let readable = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        assert!(
            s.unwrap_key(&Mechanism::AesKeyWrap, kek, &blob, &readable)
                .is_err(),
            "the unwrap template survived the restore"
        );
        assert!(s
            .update_attributes(kek, &[Attribute::Label(b"x".to_vec())])
            .is_err());
    });
}

#[test]
fn password_round_trip_between_two_tokens() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    let expected = populate(&src);
    let pw = write_password(&src, PASSWORD);
    let pw_dst = write_password(&dst, PASSWORD);
    let bundle = file(&src, "pw.bundle");
    src.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(&bundle)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["protection"]["scheme"], "password");
    assert_eq!(header["protection"]["kdf"]["algorithm"], "argon2id");
    assert_eq!(header["protection"]["kdf"]["m_kib"], 65536);
    let restored = dst.json(&[
        "restore",
        path_str(&bundle),
        "--password-file",
        path_str(&pw_dst),
    ]);
    assert_same_keys(&src, &dst, &restored, &expected);
}

#[test]
fn recipient_round_trip_between_two_tokens() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    let expected = populate(&src);
    dst.json(&[
        "key",
        "generate",
        "--label",
        "transport",
        "--type",
        "rsa-3072",
        "--usage",
        "unwrap",
    ]);
    let pem = file(&dst, "transport.pem");
    dst.json(&["key", "public", "transport", "--out", path_str(&pem)]);
    let pem_src = file(&src, "transport.pem");
    std::fs::copy(&pem, &pem_src).unwrap();
    let bundle = file(&src, "r.bundle");
    let names: Vec<&str> = ["a128", "a192", "a256", "data", "ec", "gen", "rsa"].to_vec();
    let mut args = vec![
        "backup",
        "--recipient",
        path_str(&pem_src),
        "--out",
        path_str(&bundle),
    ];
    args.extend(&names);
    src.json(&args);
    let restored = dst.json(&["restore", path_str(&bundle), "--recipient-key", "transport"]);
    assert_same_keys(&src, &dst, &restored, &expected);
    // Restoring again with --on-conflict skip is a no-op.
    let before = dst.object_count();
    let again = dst.json(&[
        "restore",
        path_str(&bundle),
        "--recipient-key",
        "transport",
        "--on-conflict",
        "skip",
    ]);
    assert_eq!(again["entries"].as_array().unwrap().len(), 0);
    assert_eq!(labels(&again, "skipped"), expected);
    assert_eq!(dst.object_count(), before);
    // Without skip, the existing keys are a conflict, and nothing changes.
    let (exit, e) = dst.json_err(dst.cmd().args([
        "restore",
        path_str(&bundle),
        "--recipient-key",
        "transport",
    ]));
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    assert_eq!(dst.object_count(), before);
}

#[test]
fn recipient_bundle_with_sha256_where_the_token_has_it() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.generate("k", "aes-256", "any");
    let pem = transport_key(&src, &dst, "rsa-2048");
    let bundle = file(&src, "r256.bundle");
    let mut cmd = src.cmd();
    cmd.args([
        "backup",
        "--recipient",
        path_str(&pem),
        "--oaep-hash",
        "sha256",
        "k",
        "--out",
        path_str(&bundle),
    ]);
    if src.kind == Kind::SoftHsm {
        // SoftHSM 2.6.1 has OAEP with SHA-1 only: refused, naming what is missing.
        let (exit, e) = src.json_err(&mut cmd);
        assert_eq!((exit, code(&e)), (5, "HK1201"));
        assert_eq!(e["context"]["capability"], "RSA-OAEP with SHA256");
        assert!(!bundle.exists(), "no output on refusal");
        return;
    }
    assert!(cmd.arg("--json").output().unwrap().status.success());
    let restored = dst.json(&["restore", path_str(&bundle), "--recipient-key", "transport"]);
    assert_eq!(labels(&restored, "entries"), vec!["k"]);
    assert_eq!(kcv_of(&src, "k"), kcv_of(&dst, "k"));
}

#[test]
fn blob_holds_one_key_with_all_its_versions() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.generate("secret", "aes-256", "any");
    src.json(&["key", "rotate", "secret"]);
    src.generate("other", "aes-256", "any");
    let pw = write_password(&src, PASSWORD);
    let pw_dst = write_password(&dst, PASSWORD);
    let out = file(&src, "secret.blob");
    let v = src.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "--format",
        "blob",
        "secret",
        "--out",
        path_str(&out),
    ]);
    let blob = v["secret_blob"].as_str().unwrap();
    assert!(blob.starts_with("hsmkey-blob-v1:"));
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), blob);
    let restored = dst.json(&[
        "restore",
        path_str(&out),
        "--password-file",
        path_str(&pw_dst),
    ]);
    assert_eq!(labels(&restored, "entries"), vec!["secret", "secret@v2"]);
    assert_eq!(kcv_of(&src, "secret@v2"), kcv_of(&dst, "secret@v2"));
    let (exit, e) = src.json_err(src.cmd().args([
        "backup",
        "--password-file",
        path_str(&pw),
        "--format",
        "blob",
        "--all",
        "--out",
        path_str(&file(&src, "x")),
    ]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    // A URI that reaches two different keys is refused too, and nothing is written.
    let two = file(&src, "two.blob");
    let (exit, e) = src.json_err(src.cmd().args([
        "backup",
        "--password-file",
        path_str(&pw),
        "--format",
        "blob",
        "pkcs11:type=secret-key",
        "--out",
        path_str(&two),
    ]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    assert!(!two.exists());
}

#[test]
fn policy_refusals_and_output_safety() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.json(&["key", "generate", "--label", "locked", "--type", "aes-128"]);
    t.generate("open", "aes-128", "any");
    let out = file(&t, "b.bundle");
    // Naming a key that may not leave is an error, and nothing is written.
    let (exit, e) = t.json_err(t.cmd().args([
        "backup",
        "--kek",
        "kek",
        "locked",
        "open",
        "--out",
        path_str(&out),
    ]));
    assert_eq!((exit, code(&e)), (5, "HK1202"));
    assert_eq!(e["context"]["key"], "locked");
    assert!(!out.exists());
    t.json(&["backup", "--kek", "kek", "open", "--out", path_str(&out)]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let first = std::fs::read(&out).unwrap();
    let (exit, e) =
        t.json_err(
            t.cmd()
                .args(["backup", "--kek", "kek", "open", "--out", path_str(&out)]),
        );
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        first,
        "never overwritten without --force"
    );
    t.json(&[
        "backup",
        "--kek",
        "kek",
        "open",
        "--out",
        path_str(&out),
        "--force",
    ]);
    assert_ne!(std::fs::read(&out).unwrap(), first);
    // An EC public key is not a recipient: said plainly.
    t.json(&["key", "generate", "--label", "ecpub", "--type", "ec-p256"]);
    let ec_pem = file(&t, "ec.pem");
    t.json(&["key", "public", "ecpub", "--out", path_str(&ec_pem)]);
    let (exit, e) = t.json_err(t.cmd().args([
        "backup",
        "--recipient",
        path_str(&ec_pem),
        "open",
        "--out",
        path_str(&file(&t, "r")),
    ]));
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    assert!(e["message"].as_str().unwrap().contains("an EC key"), "{e}");
    // The VSP rule (--password-policy vsp): 6 to 255 letters, digits,
    // punctuation. The default policy judges strength instead
    // (tests/conventions.rs): a weak password is refused there too.
    for (bad, policy) in [
        ("abc12", "vsp"),
        ("has space1", "vsp"),
        ("pässwort1", "vsp"),
        ("abc123", "strength"),
        ("password1", "strength"),
    ] {
        let pw = write_password(&t, bad);
        let (exit, e) = t.json_err(t.cmd().args([
            "backup",
            "--password-file",
            path_str(&pw),
            "--password-policy",
            policy,
            "open",
            "--out",
            path_str(&file(&t, "p")),
        ]));
        assert_eq!((exit, code(&e)), (6, "HK1304"), "{bad}");
        assert!(!e.to_string().contains(bad));
    }
    let only_dirs = std::fs::read_dir(t.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .all(|e| !e.file_name().to_string_lossy().starts_with(".hsmkey-"));
    assert!(only_dirs, "no temporary files left behind");
}

#[test]
fn trusted_keys_leave_only_under_a_trusted_kek() {
    let t = TestToken::new();
    if t.kind == Kind::Nss {
        return; // no SO sessions, no trusted keys (tests/key.rs)
    }
    t.json_with_so(&["key", "generate", "--label", "tkek", "--kek", "--trusted"]);
    t.generate("crown", "aes-256", "trusted");
    let pw = write_password(&t, PASSWORD);
    let (exit, e) = t.json_err(t.cmd().args([
        "backup",
        "--password-file",
        path_str(&pw),
        "crown",
        "--out",
        path_str(&file(&t, "x")),
    ]));
    assert_eq!((exit, code(&e)), (5, "HK1202"));
    let all = t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "--all",
        "--out",
        path_str(&file(&t, "all")),
    ]);
    assert!(all["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["label"] == "crown" && s["reason"].as_str().unwrap().contains("CKA_TRUSTED")));
    let out = file(&t, "trusted.bundle");
    let made = t.json(&["backup", "--kek", "tkek", "crown", "--out", path_str(&out)]);
    let kcv = made["entries"][0]["kcv"].as_str().unwrap().to_string();
    t.json(&["key", "destroy", "crown", "--yes"]);
    let restored = t.json(&["restore", path_str(&out), "--kek", "tkek"]);
    assert!(restored["notes"][0].as_str().unwrap().contains("trusted"));
    let shown = &t.json(&["key", "show", "crown"])["keys"];
    assert_eq!(shown[0]["kcv"], kcv.as_str());
    assert_eq!(shown[0]["backup_policy"], "trusted");
}

/// A KEK bundle of a few keys on `src`, and a target with the same KEK.
fn kek_fixture() -> (TestToken, TestToken, PathBuf) {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    for (label, ty) in [("k1", "aes-256"), ("k2", "aes-128"), ("k3", "generic-256")] {
        src.generate(label, ty, "any");
    }
    let bundle = file(&src, "good.bundle");
    src.json(&[
        "backup",
        "--kek",
        "kek",
        "k1",
        "k2",
        "k3",
        "--out",
        path_str(&bundle),
    ]);
    (src, dst, bundle)
}

/// Restore `bytes` and expect refusal with `want`, the target unchanged.
fn refused(dst: &TestToken, bytes: &[u8], want: (i32, &str), what: &str) {
    let path = file(dst, &format!("bad-{}.bundle", rand_suffix()));
    std::fs::write(&path, bytes).unwrap();
    let before = dst.object_count();
    let (exit, e) = dst.json_err(dst.cmd().args(["restore", path_str(&path), "--kek", "kek"]));
    assert_eq!((exit, code(&e)), want, "{what}: {e}");
    assert_eq!(dst.object_count(), before, "{what}: nothing created");
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

#[test]
fn every_corruption_is_refused_before_anything_is_created() {
    let (_src, dst, bundle) = kek_fixture();
    let good = std::fs::read(&bundle).unwrap();
    let corrupt = (6, "HK1302");
    let l = lines(&good);
    assert_eq!(l.len(), 5);
    let header_len = l[0].len();

    // One flipped byte: in an entry's wrapped key, in a label, in the trailer's
    // MAC, in the header's source token, in the entry count.
    // The changed character stays in the same alphabet, so the change is
    // caught by the MAC (or the key unwrap), not by a parser.
    let flip_in = |needle: &str, line: usize| {
        let text = String::from_utf8(l[line].clone()).unwrap();
        let at = text.find(needle).unwrap() + needle.len() + 2;
        let offset: usize = l[..line].iter().map(|x| x.len()).sum::<usize>() + at;
        let mut b = good.clone();
        b[offset] = match b[offset] {
            b'A' => b'B',
            b'0'..=b'8' => b[offset] + 1,
            b'9' => b'0',
            _ => b'A',
        };
        b
    };
    refused(
        &dst,
        &flip_in("\"wrapped\":", 1),
        corrupt,
        "flipped byte in a wrapped key",
    );
    refused(
        &dst,
        &flip_in("\"label\":", 2),
        corrupt,
        "flipped byte in a label",
    );
    refused(
        &dst,
        &flip_in("\"mac\":", 4),
        corrupt,
        "flipped byte in the MAC",
    );
    refused(
        &dst,
        &flip_in("\"serial\":", 0),
        corrupt,
        "flipped byte in the header",
    );
    refused(
        &dst,
        &flip_in("\"usage\":[", 3),
        corrupt,
        "flipped byte in a usage",
    );
    // Every single byte of the entries and trailer, one at a time, on a sample.
    for offset in (header_len..good.len()).step_by(97) {
        let mut b = good.clone();
        b[offset] ^= 0x20;
        let path = file(&dst, "flip.bundle");
        std::fs::write(&path, &b).unwrap();
        let out = dst
            .cmd()
            .args([
                "restore",
                path_str(&path),
                "--kek",
                "kek",
                "--dry-run",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "flip at {offset} accepted");
    }
    // The integrity key itself altered: it no longer unwraps under this KEK.
    refused(
        &dst,
        &flip_in("\"wrapped_key\":", 0),
        (4, "HK1107"),
        "flipped byte in the MAC key",
    );

    // Truncation at several points.
    for cut in [
        0,
        10,
        header_len,
        header_len + 5,
        good.len() / 2,
        good.len() - l[4].len(),
        good.len() - 1,
    ] {
        refused(&dst, &good[..cut], corrupt, &format!("truncated at {cut}"));
    }
    // An entry removed (count fixed up too), entries reordered, an entry duplicated.
    let removed: Vec<u8> = [
        l[0].clone(),
        l[1].clone(),
        l[3].clone(),
        String::from_utf8(l[4].clone())
            .unwrap()
            .replace("\"entries\":3", "\"entries\":2")
            .into_bytes(),
    ]
    .concat();
    refused(&dst, &removed, corrupt, "entry removed");
    let reordered: Vec<u8> = [
        l[0].clone(),
        l[2].clone(),
        l[1].clone(),
        l[3].clone(),
        l[4].clone(),
    ]
    .concat();
    refused(&dst, &reordered, corrupt, "entries reordered");
    // A header field changed.
    let changed = String::from_utf8(good.clone()).unwrap().replacen(
        "\"created\":\"20",
        "\"created\":\"19",
        1,
    );
    refused(&dst, changed.as_bytes(), corrupt, "header date changed");
    // A bundle from a future format version.
    let future =
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":1", "\"version\":2", 1);
    refused(&dst, future.as_bytes(), (6, "HK1303"), "future version");
    // An empty file, random bytes, text that is not a bundle, a bad blob.
    refused(&dst, b"", corrupt, "empty file");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    refused(&dst, &random, corrupt, "random bytes");
    refused(&dst, b"{\"type\":\"key\"}\n", corrupt, "no header");
    refused(&dst, b"hsmkey-blob-v1:!!!notbase64", corrupt, "bad blob");
    // The good bundle still restores: the refusals changed nothing.
    dst.json(&["restore", path_str(&bundle), "--kek", "kek"]);
}

#[test]
fn wrong_kek_password_or_recipient_is_refused() {
    let (src, dst, bundle) = kek_fixture();
    let other = TestToken::new();
    other.put_kek("kek", &[0x77; 32]);
    let before = other.object_count();
    let (exit, e) =
        other.json_err(
            other
                .cmd()
                .args(["restore", path_str(&bundle), "--kek", "kek"]),
        );
    assert_eq!((exit, code(&e)), (4, "HK1107"));
    assert_eq!(other.object_count(), before);
    // The wrong scheme for this bundle is a usage error naming the right one.
    let pw = write_password(&dst, PASSWORD);
    let (exit, e) = dst.json_err(dst.cmd().args([
        "restore",
        path_str(&bundle),
        "--password-file",
        path_str(&pw),
    ]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    assert!(e["message"].as_str().unwrap().contains("--kek"));

    let pw_src = write_password(&src, PASSWORD);
    let pbundle = file(&src, "p.bundle");
    src.json(&[
        "backup",
        "--password-file",
        path_str(&pw_src),
        "k1",
        "--out",
        path_str(&pbundle),
    ]);
    let wrong = write_password(&dst, "Correct-Horse#43");
    let before = dst.object_count();
    let (exit, e) = dst.json_err(dst.cmd().args([
        "restore",
        path_str(&pbundle),
        "--password-file",
        path_str(&wrong),
    ]));
    assert_eq!((exit, code(&e)), (4, "HK1107"));
    assert_eq!(dst.object_count(), before);

    dst.json(&[
        "key", "generate", "--label", "t1", "--type", "rsa-2048", "--usage", "unwrap",
    ]);
    dst.json(&[
        "key", "generate", "--label", "t2", "--type", "rsa-2048", "--usage", "unwrap",
    ]);
    let pem = file(&src, "t1.pem");
    let pem_dst = file(&dst, "t1.pem");
    dst.json(&["key", "public", "t1", "--out", path_str(&pem_dst)]);
    std::fs::copy(&pem_dst, &pem).unwrap();
    let rbundle = file(&src, "r.bundle");
    src.json(&[
        "backup",
        "--recipient",
        path_str(&pem),
        "k1",
        "--out",
        path_str(&rbundle),
    ]);
    let before = dst.object_count();
    let (exit, e) =
        dst.json_err(
            dst.cmd()
                .args(["restore", path_str(&rbundle), "--recipient-key", "t2"]),
        );
    assert_eq!((exit, code(&e)), (4, "HK1107"));
    assert_eq!(dst.object_count(), before);
}

#[test]
fn dry_run_and_a_failure_midway_leave_the_token_unchanged() {
    let (_src, dst, bundle) = kek_fixture();
    let before = dst.object_count();
    let dry = dst.json(&["restore", path_str(&bundle), "--kek", "kek", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(labels(&dry, "entries"), vec!["k1", "k2", "k3"]);
    assert_eq!(dst.object_count(), before);
    // The token fails the fourth unwrap (the first opens the MAC key), after
    // two keys were created: both are destroyed again.
    let (exit, e) = dst.json_err(
        dst.shim_cmd(&[("HSMKEY_SHIM_FAULT", "C_UnwrapKey:CKR_DEVICE_ERROR:after=3")])
            .args(["restore", path_str(&bundle), "--kek", "kek"]),
    );
    assert_eq!((exit, code(&e)), (7, "HK1401"), "{e}");
    assert_eq!(e["context"]["rv"], "CKR_DEVICE_ERROR", "{e}");
    assert_eq!(dst.object_count(), before, "rolled back");
    dst.json(&["restore", path_str(&bundle), "--kek", "kek"]);
    assert_eq!(dst.object_count(), before + 3);
}

/// A bundle's entry lines (not the header or trailer, which carry the time
/// and a fresh MAC key).
fn entry_lines(path: &Path) -> Vec<Vec<u8>> {
    let all = lines(&std::fs::read(path).unwrap());
    all[1..all.len() - 1].to_vec()
}

fn in_file_order(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}", e["label"].as_str().unwrap(), e["class"]))
        .collect()
}

#[test]
fn parallel_sessions_change_nothing_but_the_time() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    let mut expected: Vec<String> = populate(&src).iter().map(|l| l.to_string()).collect();
    bulk(&src, 20);
    expected.extend((1..=20).map(|i| format!("bulk-{i:05}")));
    expected.sort();
    let one = file(&src, "one.bundle");
    let eight = file(&src, "eight.bundle");
    let a = src.json(&["backup", "--kek", "kek", "--all", "--out", path_str(&one)]);
    let b = src.json(&[
        "--sessions",
        "8",
        "backup",
        "--kek",
        "kek",
        "--all",
        "--out",
        path_str(&eight),
    ]);
    assert_eq!(labels(&a, "entries"), expected);
    // Same entries, same order, same bytes: AES key wrap is deterministic.
    assert_eq!(a["entries"], b["entries"]);
    assert_eq!(a["skipped"], b["skipped"]);
    assert_eq!(entry_lines(&one), entry_lines(&eight));
    assert_eq!(
        src.json(&["key", "list"]),
        src.json(&["key", "list", "--sessions", "8"])
    );
    let verified = dst.json(&[
        "verify",
        path_str(&eight),
        "--kek",
        "kek",
        "--sessions",
        "8",
    ]);
    assert_eq!(
        in_file_order(&verified, "entries"),
        in_file_order(&a, "entries")
    );
    let before = dst.object_count();
    let restored = dst.json(&[
        "restore",
        path_str(&eight),
        "--kek",
        "kek",
        "--sessions",
        "8",
    ]);
    assert_eq!(
        in_file_order(&restored, "entries"),
        in_file_order(&a, "entries")
    );
    assert_eq!(dst.object_count(), before + expected.len() + 2);
    let names: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_same_keys(&src, &dst, &restored, &names);
    // Restoring again on 8 sessions: every key is already there.
    let again = dst.json(&[
        "restore",
        path_str(&eight),
        "--kek",
        "kek",
        "--sessions",
        "8",
        "--on-conflict",
        "skip",
    ]);
    assert_eq!(labels(&again, "skipped"), expected);
}

#[test]
fn session_keys_of_password_and_recipient_bundles_serve_every_session() {
    // The unwrapping key of these schemes is a session object of the main
    // session; the worker sessions use it too.
    let (src, dst) = (TestToken::new(), TestToken::new());
    let expected = populate(&src);
    let pw = write_password(&src, PASSWORD);
    let bundle = file(&src, "pw.bundle");
    src.json(&[
        "--sessions",
        "4",
        "backup",
        "--password-file",
        path_str(&pw),
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    let v = dst.json(&[
        "--sessions",
        "4",
        "verify",
        path_str(&bundle),
        "--password-file",
        path_str(&pw),
    ]);
    assert_eq!(labels(&v, "entries"), expected);
    let pem = transport_key(&src, &dst, "rsa-2048");
    let rbundle = file(&src, "r.bundle");
    src.json(&[
        "--sessions",
        "4",
        "backup",
        "--recipient",
        path_str(&pem),
        "--all",
        "--out",
        path_str(&rbundle),
    ]);
    let v = dst.json(&[
        "--sessions",
        "4",
        "verify",
        path_str(&rbundle),
        "--recipient-key",
        "transport",
    ]);
    assert_eq!(labels(&v, "entries"), expected);
}

#[test]
fn a_token_failure_midway_undoes_everything_on_any_number_of_sessions() {
    let (src, dst, _) = kek_fixture();
    bulk(&src, 12);
    let bundle = file(&src, "all.bundle");
    let made = src.json(&[
        "backup",
        "--kek",
        "kek",
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    assert_eq!(made["entries"].as_array().unwrap().len(), 15);
    for sessions in ["1", "4"] {
        // Restore: the sixth unwrap fails, after the MAC key and four keys.
        let before = dst.object_count();
        let (exit, e) = dst.json_err(
            dst.shim_cmd(&[("HSMKEY_SHIM_FAULT", "C_UnwrapKey:CKR_DEVICE_ERROR:after=5")])
                .args([
                    "--sessions",
                    sessions,
                    "restore",
                    path_str(&bundle),
                    "--kek",
                    "kek",
                ]),
        );
        assert_eq!((exit, code(&e)), (7, "HK1401"), "{sessions} sessions: {e}");
        assert_eq!(e["context"]["function"], "C_UnwrapKey", "{e}");
        assert_eq!(
            dst.object_count(),
            before,
            "{sessions} sessions: rolled back"
        );
        // A single failed unwrap is enough. With 2 ms a call, the entries on
        // the other sessions are still under way when it fails: their keys
        // are created after the failure and must be undone too.
        let (exit, e) = dst.json_err(
            dst.shim_cmd(&[
                (
                    "HSMKEY_SHIM_FAULT",
                    "C_UnwrapKey:CKR_SESSION_HANDLE_INVALID:after=9:times=1",
                ),
                ("HSMKEY_SHIM_DELAY_US", "2000"),
            ])
            .args([
                "--sessions",
                sessions,
                "restore",
                path_str(&bundle),
                "--kek",
                "kek",
            ]),
        );
        assert_eq!(code(&e), "HK1401", "{e}");
        assert_eq!(
            e["context"]["rv"], "CKR_SESSION_HANDLE_INVALID",
            "{e} (exit {exit})"
        );
        assert_eq!(
            dst.object_count(),
            before,
            "{sessions} sessions: rolled back"
        );
        // Backup: the fourth wrap fails; no output file.
        let out = file(&src, &format!("failed-{sessions}.bundle"));
        let (exit, e) = src.json_err(
            src.shim_cmd(&[("HSMKEY_SHIM_FAULT", "C_WrapKey:CKR_DEVICE_ERROR:after=4")])
                .args([
                    "--sessions",
                    sessions,
                    "backup",
                    "--kek",
                    "kek",
                    "--all",
                    "--out",
                ])
                .arg(&out),
        );
        assert_eq!((exit, code(&e)), (7, "HK1401"), "{e}");
        assert!(!out.exists(), "no partial bundle");
        // Listing: an attribute read fails.
        let (exit, e) = src.json_err(
            src.shim_cmd(&[(
                "HSMKEY_SHIM_FAULT",
                "C_GetAttributeValue:CKR_DEVICE_REMOVED:after=6",
            )])
            .args(["--sessions", sessions, "key", "list"]),
        );
        assert_eq!(code(&e), "HK1401", "{e} (exit {exit})");
        assert_eq!(e["context"]["rv"], "CKR_DEVICE_REMOVED", "{e}");
    }
    // A worker that cannot open its session stops the run with the token's reason.
    let (_, e) = src.json_err(
        src.shim_cmd(&[(
            "HSMKEY_SHIM_FAULT",
            "C_OpenSession:CKR_SESSION_COUNT:after=2",
        )])
        .args(["--sessions", "4", "key", "list"]),
    );
    assert_eq!(e["context"]["rv"], "CKR_SESSION_COUNT", "{e}");
    // Through the pass-through without faults, the same restore succeeds.
    let before = dst.object_count();
    let restored = dst.json_ok(dst.shim_cmd(&[]).args([
        "--sessions",
        "4",
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
    ]));
    assert_eq!(restored["entries"].as_array().unwrap().len(), 15);
    assert_eq!(dst.object_count(), before + 15);
}

#[test]
fn a_pass_through_with_a_bad_setting_refuses_to_load() {
    let t = TestToken::new();
    let (exit, e) = t.json_err(
        t.shim_cmd(&[("HSMKEY_SHIM_FAULT", "C_WrapKey:CKR_NO_SUCH_CODE:after=1")])
            .args(["key", "list"]),
    );
    assert_eq!((exit, code(&e)), (3, "HK1001"), "{e}");
}

#[test]
fn sessions_outside_1_to_64_are_refused() {
    let t = TestToken::new();
    for n in ["0", "65"] {
        let (exit, e) = t.json_err(t.cmd().args(["--sessions", n, "key", "list"]));
        assert_eq!((exit, code(&e)), (2, "HK1007"), "{n}: {e}");
        // Before any PIN is needed, and for commands without bulk work too.
        let (exit, e) = t.json_err(
            t.cmd()
                .env_remove("HSMKEY_PIN")
                .env("HSMKEY_SESSIONS", n)
                .args(["token", "list"]),
        );
        assert_eq!((exit, code(&e)), (2, "HK1007"), "{n}: {e}");
    }
}

#[test]
fn backup_never_reads_key_values_through_the_pkcs11_boundary() {
    let spy = [
        "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("pkcs11-spy.so (package opensc-pkcs11) is installed by scripts/install-deps.sh");
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    populate(&src);
    let pem = transport_key(&src, &dst, "rsa-2048");
    for (scheme, token, args) in [
        (
            "kek backup",
            &src,
            vec!["backup", "--kek", "kek", "--all", "--out"],
        ),
        (
            "recipient backup",
            &src,
            vec!["backup", "--recipient", path_str(&pem), "--all", "--out"],
        ),
        (
            "kek backup on 4 sessions",
            &src,
            vec![
                "--sessions",
                "4",
                "backup",
                "--kek",
                "kek",
                "--all",
                "--out",
            ],
        ),
    ] {
        let log = file(token, &format!("spy-{}.log", rand_suffix()));
        let out = file(token, &format!("spy-{}.bundle", rand_suffix()));
        let mut cmd = token.cmd();
        cmd.env("PKCS11SPY", &token.module)
            .env("PKCS11SPY_OUTPUT", &log)
            .env("HSMKEY_MODULE", spy)
            .args(&args)
            .arg(&out);
        let result = cmd.output().unwrap();
        assert!(
            result.status.success(),
            "{scheme}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("C_WrapKey"),
            "{scheme}: the spy saw the session"
        );
        // Every C_GetAttributeValue call's template, and every decrypt call.
        let reads = value_reads_of_keys(&text);
        assert!(
            reads.is_empty(),
            "{scheme}: CKA_VALUE requested:\n{}",
            reads.join("\n\n")
        );
        assert!(
            !text.contains("C_Decrypt"),
            "{scheme}: nothing is decrypted on the host's behalf"
        );
        let restore_log = file(&dst, &format!("spy-{}.log", rand_suffix()));
        let mut cmd = dst.cmd();
        let how: Vec<&str> = if scheme.starts_with("kek") {
            vec!["--kek", "kek"]
        } else {
            vec!["--recipient-key", "transport"]
        };
        cmd.env("PKCS11SPY", &dst.module)
            .env("PKCS11SPY_OUTPUT", &restore_log)
            .env("HSMKEY_MODULE", spy)
            .args(["--sessions", "4", "verify", path_str(&out)])
            .args(&how);
        assert!(cmd.output().unwrap().status.success(), "{scheme} verify");
        let text = std::fs::read_to_string(&restore_log).unwrap();
        let reads = value_reads_of_keys(&text);
        assert!(
            reads.is_empty(),
            "{scheme} verify: CKA_VALUE requested:\n{}",
            reads.join("\n\n")
        );
        assert!(!text.contains("C_Decrypt"), "{scheme} verify");
    }
}

/// `backup --all` names each key it leaves out by label and CKA_ID, in the
/// JSON report and in the text, so keys that share a label (or have none)
/// can be told apart.
#[test]
fn backup_all_lists_skipped_keys_with_their_ids() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("mine", "aes-256", "any");
    // A key that may not leave (CKA_EXTRACTABLE=false), with a known id.
    t.put_secret(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"locked".to_vec()),
        Attribute::Id(vec![0xc3, 0x0f]),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Value(vec![0x44; 16]),
    ]);
    let locked_id = "c30f".to_string();
    let shared = t.kind != Kind::Nss; // NSS keeps one object per label and class
    if shared {
        for (id, value) in [([0xb1u8], 0x22u8), ([0xb2], 0x33)] {
            t.put_secret(vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(b"dup".to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Value(vec![value; 32]),
            ]);
        }
    }
    let args = |out: &Path| {
        vec![
            "backup".to_string(),
            "--all".into(),
            "--kek".into(),
            "kek".into(),
            "--allow-skips".into(),
            "--out".into(),
            path_str(out).into(),
        ]
    };
    let out = file(&t, "all.bundle");
    let a: Vec<String> = args(&out);
    let v = t.json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let skipped: Vec<(String, String, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["label"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
                s["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        skipped.contains(&("locked".into(), locked_id.clone(), "policy-none".into())),
        "{skipped:?}"
    );
    if shared {
        for id in ["b1", "b2"] {
            assert!(
                skipped.contains(&("dup".into(), id.into(), "duplicate-label".into())),
                "{skipped:?}"
            );
        }
    }
    // The same in the text report.
    let out2 = file(&t, "all2.bundle");
    let text = t.cmd().args(args(&out2)).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "skipped locked, id {locked_id} (secret-key) [policy-none]: "
        )),
        "{text}"
    );
    if shared {
        assert!(
            text.contains("skipped dup, id b1 (secret-key) [duplicate-label]: "),
            "{text}"
        );
        assert!(text.contains("skipped dup, id b2 (secret-key)"), "{text}");
    }
}

/// The C_GetAttributeValue calls of a pkcs11-spy trace that ask for
/// CKA_VALUE of anything but a data object (the audit trail's chain head,
/// docs/AUDIT.md): an object is known as data once a call of the trace
/// read its CKA_CLASS as CKO_DATA.
fn value_reads_of_keys(trace: &str) -> Vec<&str> {
    let handle = |call: &str| {
        call.lines()
            .find(|l| l.starts_with("[in] hObject"))
            .map(str::to_string)
    };
    let mut data_objects = std::collections::HashSet::new();
    let mut reads = Vec::new();
    for call in trace
        .split("\n\n")
        .filter(|c| c.contains("C_GetAttributeValue"))
    {
        let obj = handle(call);
        if call.contains("CKO_DATA") {
            data_objects.insert(obj.clone());
        }
        let asks_value = call.contains("CKA_VALUE ") || call.contains("CKA_VALUE\n");
        if asks_value && !data_objects.contains(&obj) {
            reads.push(call);
        }
    }
    reads
}
