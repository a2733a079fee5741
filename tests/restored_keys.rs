//! Restored keys are first-class (docs/FORMAT.md, "What restore carries"):
//! after a backup and a restore on a fresh token, `key list --json` shows
//! every key as it showed the original (size, usage, policy, KCV, version),
//! and `key rotate` and `byok` work on them, on every token kind. Versions
//! restored from a bundle of an earlier hsmkey (random ids) get version ids.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_kw::KekAes256;
use base64::Engine;
use common::{code, labels, path_str, TestToken, KEK_VALUE};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use hmac::Mac;
use serde_json::Value;

/// The keys of a `key list --json` (a bare array, or an object's `keys`).
fn keys_of(v: &Value) -> Vec<Value> {
    v.as_array()
        .or_else(|| v["keys"].as_array())
        .unwrap_or_else(|| panic!("a key listing: {v}"))
        .clone()
}

/// What must be the same on the original and the restored key, by
/// (label, class).
fn facts(t: &TestToken, selector: Option<&str>) -> BTreeMap<(String, String), Value> {
    let mut args = vec!["key", "list"];
    args.extend(selector);
    keys_of(&t.json(&args))
        .into_iter()
        .filter(|k| k["label"] != "kek")
        .map(|k| {
            let key = (
                k["label"].as_str().unwrap().to_string(),
                k["class"].as_str().unwrap().to_string(),
            );
            let fields = [
                "name",
                "id",
                "type",
                "size",
                "version",
                "usage",
                "backup_policy",
                "kcv",
                "sensitive",
                "extractable",
            ];
            let mut kept = serde_json::Map::new();
            for f in fields {
                kept.insert(f.into(), k[f].clone());
            }
            (key, Value::Object(kept))
        })
        .collect()
}

/// A token with keys of every kind hsmkey makes, versions included, and the
/// shared KEK; all backed up to a bundle.
fn source() -> (TestToken, PathBuf) {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    for (label, ty) in [
        ("a128", "aes-128"),
        ("a256", "aes-256"),
        ("gen", "generic-256"),
        ("rsa", "rsa-2048"),
        ("p256", "ec-p256"),
        ("p384", "ec-p384"),
    ] {
        src.generate(label, ty, "any");
    }
    // A KEK that may leave (no encrypt: its KCV needs a session copy on
    // every token) and a key pair with every usage an RSA key can have.
    src.json(&[
        "key",
        "generate",
        "--label",
        "wrapper",
        "--type",
        "aes-256",
        "--usage",
        "wrap,unwrap",
        "--backup-policy",
        "any",
    ]);
    src.json(&[
        "key",
        "generate",
        "--label",
        "rsa-all",
        "--type",
        "rsa-2048",
        "--usage",
        "encrypt,decrypt,sign,verify,wrap,unwrap",
        "--backup-policy",
        "any",
    ]);
    for rotated in ["a256", "p256", "a256"] {
        src.json(&["key", "rotate", rotated]);
    }
    let bundle = src.dir.path().join("all.bundle");
    src.json(&[
        "backup",
        "--kek",
        "kek",
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    (src, bundle)
}

fn target() -> TestToken {
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    dst
}

fn byok_ok(t: &TestToken, key: &str, target: &str, alg: &str, bits: u32) -> Value {
    let wrapping = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/vectors/byok/cloud-rsa-{bits}.pub.pem"));
    let out = t.dir.path().join(format!("{target}-{key}.out"));
    t.json(&[
        "byok",
        "--key",
        key,
        "--target",
        target,
        "--algorithm",
        alg,
        "--wrapping-key",
        path_str(&wrapping),
        "--out",
        path_str(&out),
    ])
}

#[test]
fn restored_keys_list_rotate_and_export_like_the_originals() {
    let (src, bundle) = source();
    let dst = target();
    let restored = dst.json(&["restore", path_str(&bundle), "--kek", "kek"]);
    assert_eq!(restored["entries"].as_array().unwrap().len(), 11);

    let original = facts(&src, None);
    let copy = facts(&dst, None);
    assert_eq!(original.len(), 16, "{original:?}");
    for (key, fields) in &original {
        assert_eq!(Some(fields), copy.get(key), "{key:?}");
        if key.1 != "public-key" {
            assert!(fields["size"].is_u64(), "{key:?}: {fields}");
        }
    }
    assert_eq!(original.len(), copy.len());
    // The restored EC public keys keep the usage recorded (verify).
    assert_eq!(
        copy[&("p256@v2".into(), "public-key".into())]["usage"],
        serde_json::json!(["verify"])
    );

    // Rotation works on the restored keys, with the size of the original.
    for (name, next, size) in [
        ("a256", "a256@v4", 256),
        ("a128", "a128@v2", 128),
        ("p256", "p256@v3", 256),
        ("wrapper", "wrapper@v2", 256),
    ] {
        let made = keys_of(&dst.json(&["key", "rotate", name]));
        assert_eq!(made[0]["label"], next, "{name}");
        assert_eq!(made[0]["size"], size, "{name}");
        let src_made = keys_of(&src.json(&["key", "rotate", name]));
        assert_eq!(made[0]["usage"], src_made[0]["usage"], "{name}");
        assert_eq!(
            made[0]["backup_policy"], src_made[0]["backup_policy"],
            "{name}"
        );
    }

    // BYOK takes a restored key as it takes the original.
    for t in [&src, &dst] {
        let aws = byok_ok(t, "a256@v3", "aws", "RSAES_OAEP_SHA_1", 2048);
        assert_eq!(aws["size"], 256);
        let vault = byok_ok(t, "a128@v1", "vault", "SHA1", 4096);
        assert_eq!(vault["size"], 128);
    }
}

#[test]
fn renamed_restored_keys_are_versions_of_their_new_name() {
    let (src, bundle) = source();
    let dst = target();
    let restored = dst.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "a256",
        "--only",
        "p256",
        "--rename",
        "a256=b256",
        "--rename",
        "p256=q256",
    ]);
    assert_eq!(
        labels(&restored, "entries"),
        ["b256", "b256@v2", "b256@v3", "q256", "q256@v2"]
    );
    let original = facts(&src, None);
    let copy = facts(&dst, None);
    for ((label, class), fields) in &copy {
        let old = label
            .replacen("b256", "a256", 1)
            .replacen("q256", "p256", 1);
        let was = &original[&(old.clone(), class.clone())];
        for f in [
            "type",
            "size",
            "version",
            "usage",
            "backup_policy",
            "kcv",
            "sensitive",
            "extractable",
        ] {
            assert_eq!(fields[f], was[f], "{label} {class} {f}");
        }
        assert_eq!(
            fields["name"],
            if label.starts_with('b') {
                "b256"
            } else {
                "q256"
            }
        );
        assert_ne!(fields["id"], was["id"], "{label}: a new id");
    }
    // The bare new name selects every version, and rotation follows them.
    assert_eq!(keys_of(&dst.json(&["key", "list", "b256"])).len(), 3);
    let made = keys_of(&dst.json(&["key", "rotate", "b256"]));
    assert_eq!(
        (made[0]["label"].as_str(), made[0]["version"].as_u64()),
        (Some("b256@v4"), Some(4))
    );
    assert_eq!(made[0]["size"], 256);
    let made = keys_of(&dst.json(&["key", "rotate", "q256"]));
    assert_eq!(made[0]["label"], "q256@v3");
}

/// An EC key pair made by another tool, whose public key may encrypt, wrap
/// and derive: restore gives the public key the same usages.
#[test]
fn a_restored_public_key_keeps_the_usages_of_the_original() {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    let p256 = vec![0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    let made = src.with_session(|s| {
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(b"foreign-ec".to_vec()),
            Attribute::Id(vec![0xec, 0x01]),
            Attribute::EcParams(p256.clone()),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
            Attribute::Wrap(true),
            Attribute::Derive(true),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(b"foreign-ec".to_vec()),
            Attribute::Id(vec![0xec, 0x01]),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Derive(true),
        ];
        s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| e.to_string())
    });
    let original = facts(&src, None);
    let public = &original[&("foreign-ec".into(), "public-key".into())];
    let usage: Vec<&str> = public["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(made.is_ok(), "{made:?}");
    // All three soft tokens keep them (restore used to say no to encrypt,
    // wrap and derive on every EC public key).
    assert_eq!(
        usage,
        ["encrypt", "verify", "wrap", "derive"],
        "{:?}",
        src.kind
    );
    let bundle = src.dir.path().join("ec.bundle");
    src.json(&[
        "backup",
        "--kek",
        "kek",
        "foreign-ec",
        "--out",
        path_str(&bundle),
    ]);
    let dst = target();
    dst.json(&["restore", path_str(&bundle), "--kek", "kek"]);
    let copy = facts(&dst, None);
    for class in ["private-key", "public-key"] {
        let key = ("foreign-ec".to_string(), class.to_string());
        assert_eq!(copy.get(&key), original.get(&key), "{class}");
    }
}

/// The bundle's integrity key, unwrapped on the host with the known KEK.
fn mac_key(header: &Value) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(header["mac"]["wrap"], "rfc3394", "{header}");
    let wrapped = b64
        .decode(header["mac"]["wrapped_key"].as_str().unwrap())
        .unwrap();
    let mut key = vec![0u8; wrapped.len() - 8];
    KekAes256::from(KEK_VALUE)
        .unwrap(&wrapped, &mut key)
        .unwrap();
    key
}

/// Rewrite a KEK bundle's key lines with `edit` and MAC it again: what an
/// earlier hsmkey (or a differently made token) would have written.
fn rewrite(bundle: &Path, out: &Path, edit: impl Fn(&mut Value)) {
    let text = std::fs::read_to_string(bundle).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    let key = mac_key(&header);
    let mut body = format!("{}\n", lines[0]);
    let mut count = 0;
    for line in &lines[1..lines.len() - 1] {
        let mut entry: Value = serde_json::from_str(line).unwrap();
        edit(&mut entry);
        body.push_str(&serde_json::to_string(&entry).unwrap());
        body.push('\n');
        count += 1;
    }
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    let b64 = base64::engine::general_purpose::STANDARD;
    body.push_str(
        &serde_json::json!({"type": "trailer", "entries": count, "mac": b64.encode(tag)})
            .to_string(),
    );
    body.push('\n');
    std::fs::write(out, body).unwrap();
}

const LEGACY_ID: &str = "00112233445566778899aabbccddeeff";

#[test]
fn versions_from_an_earlier_hsmkey_are_restored_as_versions() {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    src.generate("leg", "aes-256", "any");
    src.json(&["key", "rotate", "leg"]);
    let bundle = src.dir.path().join("new.bundle");
    src.json(&["backup", "--kek", "kek", "leg", "--out", path_str(&bundle)]);
    // The same bundle as an earlier hsmkey wrote it: version 2 with a
    // random id.
    let legacy = src.dir.path().join("legacy.bundle");
    rewrite(&bundle, &legacy, |e| {
        if e["label"] == "leg@v2" {
            e["id"] = LEGACY_ID.into();
        }
    });
    let original = facts(&src, Some("leg"));

    let dst = target();
    let restored = dst.json(&["restore", path_str(&legacy), "--kek", "kek"]);
    let v2 = restored["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "leg@v2")
        .unwrap()
        .clone();
    assert_eq!(v2["id_from"], LEGACY_ID, "{restored}");
    let copy = facts(&dst, Some("leg"));
    assert_eq!(copy.len(), 2, "both versions of leg: {copy:?}");
    let restored_v2 = &copy[&("leg@v2".into(), "secret-key".into())];
    assert_eq!(restored_v2["version"], 2);
    assert_eq!(
        restored_v2["kcv"],
        original[&("leg@v2".into(), "secret-key".into())]["kcv"]
    );
    assert_ne!(restored_v2["id"], LEGACY_ID);
    // The same id on every run: a second restore finds it already there.
    let again = dst.json(&[
        "restore",
        path_str(&legacy),
        "--kek",
        "kek",
        "--on-conflict",
        "skip",
    ]);
    assert_eq!(labels(&again, "skipped"), ["leg", "leg@v2"]);

    // On a token that holds the version under its old id (the token the
    // earlier hsmkey made it on), the legacy bundle restores around it.
    let old_token = target();
    let as_before = src.dir.path().join("as-before.bundle");
    rewrite(&bundle, &as_before, |e| {
        if e["label"] == "leg@v2" {
            e["id"] = LEGACY_ID.into();
            e["name"] = "leg@v2".into();
            e["version"] = 1.into();
        }
    });
    old_token.json(&["restore", path_str(&as_before), "--kek", "kek"]);
    let shown = keys_of(&old_token.json(&["key", "show", "leg@v2"]));
    assert_eq!(
        (shown[0]["id"].as_str(), shown[0]["version"].as_u64()),
        (Some(LEGACY_ID), Some(1))
    );
    let before = old_token.object_set();
    let skipped = old_token.json(&[
        "restore",
        path_str(&legacy),
        "--kek",
        "kek",
        "--on-conflict",
        "skip",
    ]);
    assert_eq!(labels(&skipped, "skipped"), ["leg", "leg@v2"]);
    assert_eq!(old_token.object_set(), before);
    // Without skip it is a conflict, and nothing changes.
    let (exit, e) =
        old_token.json_err(
            old_token
                .cmd()
                .args(["restore", path_str(&legacy), "--kek", "kek"]),
        );
    assert_eq!((exit, code(&e)), (8, "HK1501"), "{e}");
    assert_eq!(old_token.object_set(), before);
}

/// A `trusted` key restored under a trusted KEK: no session key may wrap
/// it, so SoftHSM's forgotten size is measured under the trusted KEK.
#[test]
fn a_restored_trusted_key_shows_and_rotates_like_the_original() {
    let t = TestToken::new();
    if t.kind == common::Kind::Nss {
        return; // no SO sessions, no trusted keys (tests/key.rs)
    }
    t.json_with_so(&["key", "generate", "--label", "tkek", "--kek", "--trusted"]);
    t.generate("crown", "aes-128", "trusted");
    let before = facts(&t, Some("crown"));
    let out = t.dir.path().join("trusted.bundle");
    t.json(&["backup", "--kek", "tkek", "crown", "--out", path_str(&out)]);
    t.json(&["key", "destroy", "crown", "--yes"]);
    t.json(&["restore", path_str(&out), "--kek", "tkek"]);
    assert_eq!(facts(&t, Some("crown")), before);
    let made = keys_of(&t.json(&["key", "rotate", "crown"]));
    assert_eq!(
        (&made[0]["size"], &made[0]["backup_policy"]),
        (&Value::from(128), &Value::from("trusted"))
    );
}
