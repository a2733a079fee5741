//! Backups made on one kind of token restored on another: SoftHSM2 <->
//! kryoptic, NSS <-> SoftHSM2. These need all three tokens, so they run when
//! HSMKEY_TEST_CROSS=1 (scripts/test.sh sets it after building kryoptic).

mod common;

use std::path::PathBuf;

use common::{Kind, TestToken};
use serde_json::Value;

const PASSWORD: &str = "Cross#Token-2026";

fn enabled() -> bool {
    let on = std::env::var("HSMKEY_TEST_CROSS").as_deref() == Ok("1");
    if !on {
        eprintln!("cross-token tests need HSMKEY_TEST_CROSS=1 and all three tokens (scripts/test.sh runs them)");
    }
    on
}

fn password(t: &TestToken) -> PathBuf {
    let p = t.dir.path().join("pw.txt");
    std::fs::write(&p, PASSWORD).unwrap();
    p
}

fn kcvs(t: &TestToken) -> Vec<(String, String)> {
    let v = t.json(&["key", "list"]);
    let mut out: Vec<(String, String)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["class"] == "secret-key" && k["type"] == "aes")
        .map(|k| {
            (
                k["label"].as_str().unwrap().to_string(),
                k["kcv"].as_str().unwrap_or("null").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn fingerprint(t: &TestToken, label: &str) -> String {
    let out = t.dir.path().join(format!("{label}.pem"));
    let _ = std::fs::remove_file(&out);
    t.json(&["key", "public", label, "--out", out.to_str().unwrap()])["spki_sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Back up every key type on `from`, restore on `to` with a password, and
/// compare: AES KCVs, public keys of the pairs. Returns the restore report.
fn cross(from: Kind, to: Kind) -> Value {
    let (src, dst) = (TestToken::new_of(from), TestToken::new_of(to));
    for (label, ty) in [
        ("aes", "aes-256"),
        ("gen", "generic-256"),
        ("rsa", "rsa-2048"),
        ("ec", "ec-p256"),
    ] {
        src.generate(label, ty, "any");
    }
    src.json(&["key", "rotate", "aes"]);
    let bundle = src.dir.path().join("x.bundle");
    let pw = password(&src);
    src.json(&[
        "backup",
        "--password-file",
        pw.to_str().unwrap(),
        "--all",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let target_copy = dst.dir.path().join("x.bundle");
    std::fs::copy(&bundle, &target_copy).unwrap();
    let pw_dst = password(&dst);
    let report = dst.json(&[
        "restore",
        target_copy.to_str().unwrap(),
        "--password-file",
        pw_dst.to_str().unwrap(),
    ]);
    assert_eq!(kcvs(&src), kcvs(&dst), "{from:?} -> {to:?}: AES KCVs");
    for pair in ["rsa", "ec"] {
        assert_eq!(
            fingerprint(&src, pair),
            fingerprint(&dst, pair),
            "{from:?} -> {to:?}: {pair}"
        );
    }
    report
}

#[test]
fn softhsm_to_kryoptic() {
    if enabled() {
        let r = cross(Kind::SoftHsm, Kind::Kryoptic);
        assert_eq!(r["entries"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn kryoptic_to_softhsm() {
    if enabled() {
        let r = cross(Kind::Kryoptic, Kind::SoftHsm);
        assert_eq!(r["entries"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn nss_to_softhsm() {
    if enabled() {
        let r = cross(Kind::Nss, Kind::SoftHsm);
        assert_eq!(r["entries"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn softhsm_to_nss() {
    if enabled() {
        let r = cross(Kind::SoftHsm, Kind::Nss);
        assert_eq!(r["entries"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn kryoptic_to_nss_by_recipient() {
    if !enabled() {
        return;
    }
    let (src, dst) = (
        TestToken::new_of(Kind::Kryoptic),
        TestToken::new_of(Kind::Nss),
    );
    src.generate("k", "aes-256", "any");
    dst.json(&[
        "key",
        "generate",
        "--label",
        "transport",
        "--type",
        "rsa-2048",
        "--usage",
        "unwrap",
    ]);
    let pem = dst.dir.path().join("t.pem");
    dst.json(&["key", "public", "transport", "--out", pem.to_str().unwrap()]);
    let bundle = dst.dir.path().join("r.bundle");
    // Both have OAEP with SHA-256.
    src.json(&[
        "backup",
        "--recipient",
        pem.to_str().unwrap(),
        "--oaep-hash",
        "sha256",
        "k",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    dst.json(&[
        "restore",
        bundle.to_str().unwrap(),
        "--recipient-key",
        "transport",
    ]);
    assert_eq!(kcvs(&src), kcvs(&dst));
}
